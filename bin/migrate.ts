/**
 * `edgelite migrate DIR --db NAME | --all --primary URL [--token T] [--dry-run] [--fail-fast]
 * [--concurrency N] [--json]` (README.md#migrations): applies the pending `NNNN_name.sql` files of DIR,
 * each in one transaction on the primary with its record row in `_edgelite_migrations`, to one
 * database or to every database the server lists (bounded concurrency, a progress bar on a terminal,
 * a result per database). The URL may be the primary or any replica (writes are forwarded). Exit
 * status 1 when a database failed.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MIGRATE } from '../shared/cli-flags.ts';
import { EdgeliteError, toEdgeliteError } from '../shared/errors.ts';
import { silentLogger, type Logger } from '../shared/log.ts';
import { MIGRATION_NAME, migrationError, parseMigration, sortMigrations, type MigrationFile } from '../shared/migrate-sql.ts';
import { CliApi } from '../shared/node/cli-api.ts';
import { toolLogger } from '../shared/node/log.ts';
import { progress } from '../shared/node/progress.ts';
import { parseFlags } from './commands/flags.ts';
import { dryRun, migrateDatabase, type DatabaseResult } from './migrate-db.ts';

export const MIGRATE_USAGE =
  'usage: edgelite migrate DIR --db NAME | --all --primary URL [--token T] [--dry-run] [--fail-fast] [--concurrency N] [--json]   (token also EDGELITE_TOKEN)';

/** DEFAULT_CONCURRENCY: databases migrated at once by `--all`. */
export const DEFAULT_CONCURRENCY = 4;
export const MAX_CONCURRENCY = 64;

export interface MigrateOptions {
  dir: string;
  primary: string;
  databases: string[] | 'all';
  token: string | undefined;
  dryRun: boolean;
  failFast: boolean;
  concurrency: number;
  json: boolean;
}

/** parseMigrateArgs reads argv once, at the edge, against MIGRATE's flag table; a bad flag is MISCONFIGURED with the usage. */
export function parseMigrateArgs(argv: string[], env: NodeJS.ProcessEnv): MigrateOptions {
  const f = parseFlags(MIGRATE, argv, MIGRATE_USAGE);
  const o = { db: f.list('db'), all: f.on('all'), primary: f.str('primary'), token: f.str('token'), dryRun: f.on('dry-run'), failFast: f.on('fail-fast'), concurrency: f.str('concurrency'), json: f.on('json') };
  const dir = f.args[0];
  if (!dir) throw new EdgeliteError('MISCONFIGURED', `the migrations directory DIR is required\n${MIGRATE_USAGE}`);
  if (!o.primary) throw new EdgeliteError('MISCONFIGURED', `--primary URL is required\n${MIGRATE_USAGE}`);
  if ((o.db === undefined) === (o.all !== true)) throw new EdgeliteError('MISCONFIGURED', `give either --db NAME or --all\n${MIGRATE_USAGE}`);
  const concurrency = o.concurrency === undefined ? DEFAULT_CONCURRENCY : Number(o.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
    throw new EdgeliteError('MISCONFIGURED', `--concurrency must be a whole number from 1 to ${MAX_CONCURRENCY}, got ${JSON.stringify(o.concurrency)}\n${MIGRATE_USAGE}`);
  }
  return {
    dir,
    primary: o.primary,
    databases: o.all ? 'all' : o.db!,
    token: o.token ?? env.EDGELITE_TOKEN,
    dryRun: o.dryRun === true,
    failFast: o.failFast === true,
    concurrency,
    json: o.json === true,
  };
}

/**
 * readMigrations reads every `NNNN_name.sql` of `dir`, sorted by number. Another `.sql` file is refused
 * (a misnamed migration would otherwise be skipped without a word); other files are ignored.
 */
export async function readMigrations(dir: string): Promise<MigrationFile[]> {
  let names: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
    names = readdirSync(dir).sort();
  } catch (err) {
    throw new EdgeliteError('MISCONFIGURED', `migrations directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const files: MigrationFile[] = [];
  for (const name of names) {
    if (!name.endsWith('.sql')) continue;
    if (!MIGRATION_NAME.test(name)) throw migrationError(name, 'a migration file is named NNNN_name.sql (four or more digits)');
    files.push(await parseMigration(name, readFileSync(join(dir, name))));
  }
  if (files.length === 0) throw new EdgeliteError('MISCONFIGURED', `migrations directory ${dir} holds no NNNN_name.sql file`);
  return sortMigrations(files);
}

export interface RunOptions {
  concurrency: number;
  failFast: boolean;
  dryRun: boolean;
  /** No progress output (one database). */
  quiet: boolean;
  /** Where progress lines go off a terminal, and each failed database (default: nowhere). */
  logger?: Logger;
}

/**
 * migrateAll migrates `names`, `concurrency` at a time, and returns one result per name in order. A
 * failed database does not stop the others unless `failFast`: then none is started after it (those
 * are `skipped`), and the ones running finish.
 */
export async function migrateAll(api: CliApi, names: readonly string[], files: readonly MigrationFile[], o: RunOptions): Promise<DatabaseResult[]> {
  const logger = o.logger ?? silentLogger;
  const bar = progress({ label: 'migrate', total: names.length, quiet: o.quiet, logger });
  const out: DatabaseResult[] = names.map((name) => ({ name, status: 'skipped', applied: [], alreadyApplied: 0, missing: [], outOfOrder: [] }));
  let next = 0;
  let stop = false;
  const worker = async () => {
    while (!stop && next < names.length) {
      const i = next++;
      const name = names[i]!;
      let r: DatabaseResult;
      try {
        r = o.dryRun ? await dryRun(api, name, files, randomBytes(4).toString('hex')) : await migrateDatabase(api, name, files);
      } catch (err) {
        const e = toEdgeliteError(err);
        r = { ...out[i]!, status: 'failed', error: { code: e.code, message: e.message } };
      }
      out[i] = r;
      if (r.status === 'failed') logger({ msg: `${name} failed`, level: 'warn', db: name, code: r.error?.code, message: r.error?.message });
      if (r.status === 'failed' && o.failFast) stop = true;
      bar.tick(1, `${name} ${r.status}`);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(o.concurrency, names.length) }, worker));
  } finally {
    bar.stop();
  }
  return out;
}

export async function migrateMain(argv: string[]): Promise<void> {
  const o = parseMigrateArgs(argv, process.env);
  const logger = toolLogger('migrate', argv);
  const files = await readMigrations(o.dir);
  const api = new CliApi(o.primary, o.token);
  const names = o.databases === 'all' ? await api.databases() : o.databases;
  const results = await migrateAll(api, names, files, { concurrency: o.concurrency, failFast: o.failFast, dryRun: o.dryRun, quiet: o.databases !== 'all', logger });
  const summary = summarize(results);
  process.stdout.write(o.json ? `${JSON.stringify({ url: api.url, dryRun: o.dryRun, files: files.map((f) => f.name), databases: results, summary }, null, 2)}\n` : formatResults(results, summary, o.dryRun));
  if (summary.failed > 0 || summary.skipped > 0) process.exitCode = 1;
}

export type Summary = Record<DatabaseResult['status'], number>;

export function summarize(results: readonly DatabaseResult[]): Summary {
  const s: Summary = { migrated: 0, 'up-to-date': 0, failed: 0, skipped: 0 };
  for (const r of results) s[r.status]++;
  return s;
}

/** formatResults is the human form: one line per database (more for what needs a look), then the counts. */
export function formatResults(results: readonly DatabaseResult[], summary: Summary, dry: boolean): string {
  let out = '';
  for (const r of results) {
    const on = r.fork ? ` (dry run on fork ${r.fork}, dropped)` : '';
    const applied = r.applied.map((a) => `${a.name} @${a.txid}`).join(', ');
    if (r.status === 'failed') out += `${r.name}: FAILED${r.error?.migration ? ` at ${r.error.migration}` : ''}: ${r.error?.code}: ${r.error?.message}${applied ? `; applied before it: ${applied}` : ''}${on}\n`;
    else if (r.status === 'skipped') out += `${r.name}: skipped (--fail-fast)\n`;
    else if (r.status === 'migrated') out += `${r.name}: ${dry ? 'would apply' : 'applied'} ${applied}${r.alreadyApplied ? ` (${r.alreadyApplied} already applied)` : ''}${on}\n`;
    else out += `${r.name}: up to date (${r.alreadyApplied} applied)${on}\n`;
    if (r.missing.length) out += `  applied but not in the directory: ${r.missing.join(', ')}\n`;
    if (r.outOfOrder.length) out += `  applied out of order (numbered below an applied file): ${r.outOfOrder.join(', ')}\n`;
    if (r.warning) out += `  warning: ${r.warning}\n`;
  }
  out += `${results.length} database(s): ${summary.migrated} ${dry ? 'would migrate' : 'migrated'}, ${summary['up-to-date']} up to date, ${summary.failed} failed, ${summary.skipped} skipped\n`;
  return out;
}
