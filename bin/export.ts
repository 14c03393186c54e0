/**
 * `edgelite export NAME | --all --format parquet|csv|duckdb --out PATH --primary URL [--token T]`
 * (README.md#analytics-export): snapshots into analytics files. Each database is downloaded as one
 * consistent snapshot into a temp directory, read with better-sqlite3 and written through DuckDB
 * (bin/export-write.ts). `--all` puts every database into one dataset: one table (one file) per table
 * name, with the database's name in a leading `tenant` column. Prints one JSON summary line on stdout.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { EXPORT } from '../shared/cli-flags.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { silentLogger, type Logger } from '../shared/log.ts';
import { validateDatabaseName } from '../shared/types.ts';
import { CliApi } from '../shared/node/cli-api.ts';
import { toolLogger } from '../shared/node/log.ts';
import { progress } from '../shared/node/progress.ts';
import { parseFlags } from './commands/flags.ts';
import { download, type Downloaded } from './export-snapshot.ts';
import { plan, type PlannedTable } from './export-plan.ts';
import { forEachDatabase } from './export-progress.ts';
import { EXPORT_FORMATS, tableFileName, tenantColumnOf, writeExport, type ExportFormat } from './export-write.ts';

export const EXPORT_USAGE = 'usage: edgelite export NAME | --all --format parquet|csv|duckdb --out PATH --primary URL [--token T]   (token also EDGELITE_TOKEN; needs the replicate right on a primary, read on a replica)';

export interface ExportOptions {
  databases: string[] | 'all';
  format: ExportFormat;
  out: string;
  primary: string;
  token: string | undefined;
}

/** parseExportArgs reads argv once, against EXPORT's flag table; a bad flag is MISCONFIGURED with the usage. */
export function parseExportArgs(argv: string[], env: NodeJS.ProcessEnv): ExportOptions {
  const f = parseFlags(EXPORT, argv, EXPORT_USAGE);
  const o = { format: f.str('format'), out: f.str('out'), primary: f.str('primary'), all: f.on('all'), token: f.str('token') };
  const name = f.args[0];
  if ((name === undefined) === (o.all !== true)) throw new EdgeliteError('MISCONFIGURED', `give either a database NAME or --all\n${EXPORT_USAGE}`);
  if (!o.format || !(EXPORT_FORMATS as readonly string[]).includes(o.format)) {
    throw new EdgeliteError('MISCONFIGURED', `--format must be one of ${EXPORT_FORMATS.join(', ')}${o.format ? `, not ${JSON.stringify(o.format)}` : ''}\n${EXPORT_USAGE}`);
  }
  if (!o.out) throw new EdgeliteError('MISCONFIGURED', `--out PATH is required\n${EXPORT_USAGE}`);
  if (!o.primary) throw new EdgeliteError('MISCONFIGURED', `--primary URL is required\n${EXPORT_USAGE}`);
  return {
    databases: o.all ? 'all' : [validateDatabaseName(name)],
    format: o.format as ExportFormat,
    out: resolve(o.out),
    primary: o.primary,
    token: o.token ?? env.EDGELITE_TOKEN,
  };
}

/** ExportSummary is the JSON line `edgelite export` prints. */
export interface ExportSummary {
  format: ExportFormat;
  out: string;
  databases: Array<Pick<Downloaded, 'db' | 'position'>>;
  tables: Array<{ name: string; rows: number; file: string | null }>;
}

/** prepareOut refuses an output that would mix with other files: a directory must be new or empty, a .duckdb file new. */
function prepareOut(o: ExportOptions): void {
  if (o.format === 'duckdb') {
    if (existsSync(o.out)) throw new EdgeliteError('BAD_REQUEST', `--out ${o.out} exists: a .duckdb output must be a new file`);
    return;
  }
  if (existsSync(o.out) && (!statSync(o.out).isDirectory() || readdirSync(o.out).length > 0)) {
    throw new EdgeliteError('BAD_REQUEST', `--out ${o.out} exists and is not an empty directory (a ${o.format} export is a directory of one file per table)`);
  }
  mkdirSync(o.out, { recursive: true });
}

/** runExport does the whole export and returns its summary; progress off a terminal goes to `logger`. */
export async function runExport(o: ExportOptions, logger: Logger = silentLogger): Promise<ExportSummary> {
  const api = new CliApi(o.primary, o.token);
  const names = o.databases === 'all' ? await api.databases() : o.databases;
  if (names.length === 0) throw new EdgeliteError('DATABASE_NOT_FOUND', `${api.url} lists no databases to export`);
  prepareOut(o);
  const temp = mkdtempSync(join(tmpdir(), 'edgelite-export-'));
  try {
    // A dataset missing a tenant is a silent loss: one failed download fails the export.
    const sources = await forEachDatabase(names, (db) => download(api.url, o.token, db, temp), { label: 'export: snapshot', quiet: names.length === 1, logger });
    const tables = plan(sources);
    const bar = progress({ label: 'export', total: tables.reduce((n, t) => n + t.rows, 0), logger });
    try {
      await writeExport(tables, { format: o.format, out: o.out, withTenant: o.databases === 'all', tempDir: temp, bar });
    } finally {
      bar.stop();
    }
    const summary: ExportSummary = {
      format: o.format,
      out: o.out,
      databases: sources.map((s) => ({ db: s.db, position: s.position })),
      tables: tables.map((t) => ({ name: t.name, rows: t.rows, file: o.format === 'duckdb' ? null : tableFileName(t.name, o.format) })),
    };
    if (o.format !== 'duckdb') writeFileSync(join(o.out, 'manifest.json'), `${JSON.stringify(manifest(summary, tables, o.databases === 'all'), null, 2)}\n`);
    return summary;
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
}

/** manifest describes a directory export: its sources' positions and each table's file and column types. */
function manifest(summary: ExportSummary, tables: readonly PlannedTable[], withTenant: boolean): Record<string, unknown> {
  return {
    format: summary.format,
    databases: summary.databases,
    tables: tables.map((t) => ({
      name: t.name,
      file: tableFileName(t.name, summary.format as 'parquet' | 'csv'),
      rows: t.rows,
      tenantColumn: withTenant ? tenantColumnOf(t) : null,
      columns: t.columns.map((c) => ({ name: c.name, type: c.type, declared: c.declared, sqliteClasses: c.classes, classColumn: c.classColumn })),
    })),
  };
}

export async function exportMain(argv: string[]): Promise<void> {
  const summary = await runExport(parseExportArgs(argv, process.env), toolLogger('export', argv));
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}
