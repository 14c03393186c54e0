/**
 * `edgelite restore URL --db NAME [--txid N | --time ISO] --out FILE [--force] [--encryption-key-file PATH]`,
 * `edgelite restore URL --all --data DIR [--time ISO] [--force] [--encryption-key-file PATH]` and
 * `edgelite backups URL [--db NAME] [--json]`: argv and env parsed here, once; the work is in
 * primary/restore.ts and primary/restore-all.ts. `backups` needs no key: object names are plaintext,
 * and a listing is all it reads.
 */
import { EdgeliteError } from '../shared/errors.ts';
import { parseBackupTarget, type ObjectStore } from '../shared/object-store.ts';
import { BACKUPS, RESTORE, type CommandSpec } from '../shared/cli-flags.ts';
import type { Logger } from '../shared/log.ts';
import type { RestoreTarget } from '../shared/backup-layout.ts';
import { validateDatabaseName } from '../shared/types.ts';
import { toolLogger } from '../shared/node/log.ts';
import { openObjectStore, readKeyring } from '../shared/node/open-object-store.ts';
import { progress } from '../shared/node/progress.ts';
import { parseFlags } from './commands/flags.ts';
import { listBackups, restoreDatabase, type BackupSummary } from '../primary/restore.ts';
import { restoreAll, type RestoreAllTarget, type RestoredDatabase } from '../primary/restore-all.ts';

export const RESTORE_USAGE = `usage: edgelite restore s3://BUCKET/PREFIX | file:///DIR --db NAME [--txid N | --time ISO] --out FILE [--force] [--s3-endpoint URL] [--encryption-key-file PATH]
       edgelite restore s3://BUCKET/PREFIX | file:///DIR --all --data DIR [--time ISO] [--force] [--s3-endpoint URL] [--encryption-key-file PATH]
       edgelite backups s3://BUCKET/PREFIX | file:///DIR [--db NAME] [--json] [--s3-endpoint URL]`;

export async function restoreMain(argv: string[]): Promise<void> {
  const { url, values } = parse(RESTORE, argv);
  const logger = toolLogger('restore', argv);
  if (values.all === true || values.data !== undefined) return restoreAllMain(url, values, logger);
  const db = values.db;
  const out = values.out;
  if (typeof db !== 'string' || typeof out !== 'string') throw new EdgeliteError('MISCONFIGURED', `--db and --out are required\n${RESTORE_USAGE}`);
  const target = restoreTarget(values.txid, values.time);
  const objects = openStore(url, values);
  const bar = progress({ label: 'restore', total: 0, logger });
  const result = await restoreDatabase(objects, {
    db: validateDatabaseName(db),
    target,
    out,
    force: values.force === true,
    onProgress: (p) => bar.update(p.done, `${db} objects`, p.total),
  }).finally(() => bar.stop());
  process.stdout.write(`${JSON.stringify({ restored: out, ...result, timestamp: new Date(result.timestamp).toISOString() })}\n`);
}

/** openStore opens the backup URL with `--s3-endpoint`, and `--encryption-key-file` when given. */
function openStore(url: string, values: Record<string, string | boolean | undefined>): ObjectStore {
  const keyFile = values['encryption-key-file'];
  return openObjectStore(parseBackupTarget(url, process.env, values['s3-endpoint'] as string | undefined), typeof keyFile === 'string' ? readKeyring(keyFile) : null);
}

/** restoreAllMain is `restore --all --data DIR`: one JSON line per database on stdout, progress on stderr. */
async function restoreAllMain(url: string, values: Record<string, string | boolean | undefined>, logger: Logger): Promise<void> {
  const dataDir = values.data;
  if (values.all !== true || typeof dataDir !== 'string') throw new EdgeliteError('MISCONFIGURED', `--all and --data DIR go together\n${RESTORE_USAGE}`);
  if (values.db !== undefined || values.out !== undefined) throw new EdgeliteError('MISCONFIGURED', '--all restores every database: pass --data DIR, not --db or --out');
  if (values.txid !== undefined) throw new EdgeliteError('MISCONFIGURED', '--all takes --time ISO, not --txid (txids are per database)');
  const target = restoreTarget(undefined, values.time) as RestoreAllTarget;
  const objects = openStore(url, values);
  const bar = progress({ label: 'restore', total: 0, logger, format: mib });
  const outcomes = await restoreAll(objects, {
    dataDir,
    target,
    force: values.force === true,
    source: url,
    onProgress: (p) => bar.update(p.bytes, `${p.objects}/${p.totalObjects} objects  ${p.databases}/${p.totalDatabases} databases`, p.totalBytes),
    onDatabase: (r) => process.stdout.write(`${JSON.stringify(outcomeJson(r))}\n`),
  }).finally(() => bar.stop());
  const failed = outcomes.filter((r) => r.status === 'failed');
  if (failed.length > 0) {
    const first = failed[0]!.status === 'failed' ? failed[0]!.error.code : 'INTERNAL';
    throw new EdgeliteError(first, `restore failed for ${failed.length} of ${outcomes.length} databases: ${failed.map((r) => r.db).join(', ')} (their lines on stdout say why)`);
  }
}

function outcomeJson(r: RestoredDatabase): Record<string, unknown> {
  switch (r.status) {
    case 'restored': {
      const { result, file, startGeneration, startTxid, note } = r;
      return { restored: file, ...result, timestamp: new Date(result.timestamp).toISOString(), startGeneration, startTxid, ...(note === undefined ? {} : { note }) };
    }
    case 'failed':
      return { db: r.db, failed: { code: r.error.code, message: r.error.message } };
    case 'skipped':
      return { db: r.db, skipped: r.reason, message: r.message };
  }
}

/** mib prints a byte count as MiB, for the restore's progress. */
function mib(n: number): string {
  return `${(n / 2 ** 20).toFixed(1)} MiB`;
}

export async function backupsMain(argv: string[]): Promise<void> {
  const { url, values } = parse(BACKUPS, argv);
  const objects = openObjectStore(parseBackupTarget(url, process.env, values['s3-endpoint'] as string | undefined));
  const list = await listBackups(objects, typeof values.db === 'string' ? validateDatabaseName(values.db) : undefined);
  process.stdout.write(values.json === true ? `${JSON.stringify({ databases: list })}\n` : table(list));
}

/** parse reads a command's argv against its flag table: exactly one backup URL, and the flags by name. */
function parse(spec: CommandSpec, argv: string[]): { url: string; values: Record<string, string | boolean | undefined> } {
  const f = parseFlags(spec, argv, RESTORE_USAGE);
  const [url, ...extra] = f.args;
  if (url === undefined || extra.length > 0) throw new EdgeliteError('MISCONFIGURED', `want exactly one backup URL\n${RESTORE_USAGE}`);
  const values: Record<string, string | boolean | undefined> = {};
  for (const flag of spec.flags) values[flag.name] = flag.value === undefined ? f.on(flag.name) || undefined : f.str(flag.name);
  return { url, values };
}

function restoreTarget(txid: unknown, time: unknown): RestoreTarget {
  if (txid !== undefined && time !== undefined) throw new EdgeliteError('MISCONFIGURED', 'pass --txid or --time, not both');
  if (typeof txid === 'string') {
    const n = Number(txid);
    if (!Number.isSafeInteger(n) || n < 0) throw new EdgeliteError('MISCONFIGURED', `--txid must be a txid (a non-negative integer), got "${txid}"`);
    return { txid: n };
  }
  if (typeof time === 'string') {
    const ms = Date.parse(time);
    if (Number.isNaN(ms)) throw new EdgeliteError('MISCONFIGURED', `--time must be an ISO 8601 time, got "${time}"`);
    return { time: ms };
  }
  return { latest: true };
}

function table(list: BackupSummary[]): string {
  const rows = [['DATABASE', 'GENERATION', 'TXIDS', 'FROM', 'TO', 'OBJECTS', 'BYTES']];
  for (const d of list) {
    for (const g of d.generations) {
      if (g.ranges.length === 0) rows.push([d.db, String(g.generation), '(none restorable)', '', '', String(g.snapshots + g.segments), String(g.bytes)]);
      for (const r of g.ranges) rows.push([d.db, String(g.generation), `${r.fromTxid}..${r.toTxid}`, r.fromTime, r.toTime, String(g.snapshots + g.segments), String(g.bytes)]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}
