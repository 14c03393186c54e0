/**
 * One database's part of `edgelite migrate` (README.md#migrations): read its record, plan, and apply
 * each pending file as one transaction through the exec API (a replica forwards it to the primary),
 * the file's record row in the same transaction, so a run killed at any point never applies a file
 * twice: the next run sees the row, or nothing of the file. `--dry-run` does the same on a fork that
 * is dropped afterwards.
 */
import { EdgeliteError, toEdgeliteError } from '../shared/errors.ts';
import { fileTransaction, HAS_MIGRATIONS_TABLE, parseApplied, planMigrations, READ_APPLIED, txidStatements, type AppliedMigration } from '../shared/migrate-plan.ts';
import type { MigrationFile } from '../shared/migrate-sql.ts';
import type { CliApi } from '../shared/node/cli-api.ts';
import { SCHEMA_STATEMENTS, SchemaModel, type ExpandedFile } from './migrate-model.ts';

export type DatabaseStatus = 'migrated' | 'up-to-date' | 'failed' | 'skipped';

/** DatabaseResult is one database's line of the report (and of `--json`). */
export interface DatabaseResult {
  name: string;
  status: DatabaseStatus;
  /** Files this run applied, with the txid each committed at. */
  applied: Array<{ name: string; txid: number }>;
  /** Files found applied already. */
  alreadyApplied: number;
  /** Applied files that are not in the directory. */
  missing: string[];
  /** Pending files numbered below an applied one. */
  outOfOrder: string[];
  /** With `--dry-run`: the fork the files ran on (dropped afterwards). */
  fork?: string;
  error?: { code: string; message: string; migration?: string };
  /** Something that went wrong after the files committed (the txids could not be written down). */
  warning?: string;
}

/** readRecord reads what `_edgelite_migrations` holds, and the schema rows a model is built from. */
async function readRecord(api: CliApi, db: string): Promise<{ applied: AppliedMigration[]; schema: unknown[][]; tables: unknown[][] }> {
  const [has, schema, tables] = await api.query(db, [HAS_MIGRATIONS_TABLE, ...SCHEMA_STATEMENTS]);
  const exists = Number(has?.[0]?.[0] ?? 0) > 0;
  const applied = exists ? parseApplied((await api.query(db, [READ_APPLIED]))[0]!) : [];
  return { applied, schema: schema!, tables: tables! };
}

/** migrateDatabase applies the pending files of `files` (sorted) to `db`; failures go into the result. */
export async function migrateDatabase(api: CliApi, db: string, files: readonly MigrationFile[]): Promise<DatabaseResult> {
  const result: DatabaseResult = { name: db, status: 'up-to-date', applied: [], alreadyApplied: 0, missing: [], outOfOrder: [] };
  let current: string | undefined;
  let model: SchemaModel | null = null;
  try {
    const record = await readRecord(api, db);
    const plan = planMigrations(files, record.applied, db);
    result.alreadyApplied = plan.applied.length;
    result.missing = plan.missing;
    result.outOfOrder = plan.outOfOrder;
    // The model is needed only to plan a rebuild; it then runs every pending file, in order.
    if (plan.pending.some((f) => f.steps.some((s) => s.kind === 'rebuild'))) model = new SchemaModel(record.schema, record.tables);
    for (const file of plan.pending) {
      current = file.name;
      const expanded: ExpandedFile = model ? model.expand(file) : { statements: file.steps.flatMap((s) => (s.kind === 'sql' ? [s.sql] : [])), rebuilt: [] };
      try {
        const { txid } = await api.exec(db, fileTransaction(file, expanded.statements, expanded.rebuilt));
        result.applied.push({ name: file.name, txid });
      } catch (err) {
        // Another run (or the request of a run killed a moment ago) may have applied it meanwhile.
        const now = await readRecord(api, db).catch(() => null);
        const row = now?.applied.find((a) => a.name === file.name);
        if (row && row.checksum === file.checksum) {
          result.alreadyApplied++;
          continue;
        }
        throw err;
      }
    }
    current = undefined;
    result.status = result.applied.length > 0 ? 'migrated' : 'up-to-date';
  } catch (err) {
    const e = toEdgeliteError(err);
    const migration = current ?? (typeof e.details?.migration === 'string' ? e.details.migration : undefined);
    result.status = 'failed';
    result.error = { code: e.code, message: explain(e), ...(migration ? { migration } : {}) };
  } finally {
    model?.close();
  }
  if (result.applied.length > 0) {
    try {
      await api.exec(db, txidStatements(result.applied));
    } catch (err) {
      const e = toEdgeliteError(err);
      result.warning = `the files committed, but their txids could not be written down (applied_txid stays NULL): ${e.code}: ${e.message}`;
    }
  }
  return result;
}

/** explain makes SQLite's words for migrate's own checks say what they mean. */
function explain(e: EdgeliteError): string {
  if (/CHECK constraint failed: foreign_key_check/.test(e.message)) {
    return `foreign_key_check found rows of a rebuilt table whose parent is missing; the whole file was rolled back (${e.message})`;
  }
  if (/UNIQUE constraint failed: _edgelite_migrations\.name/.test(e.message)) return `another run applied this file at the same time (${e.message})`;
  return e.message;
}

/** forkName: where `--dry-run` runs `db`'s migrations (a valid name of at most 64 characters). */
export function forkName(db: string, random: string): string {
  return `${db.slice(0, 64 - 8 - random.length)}.dryrun-${random}`;
}

/**
 * dryRun forks `db`, migrates the fork, reports, and drops the fork whatever happened; the original is
 * only read (the fork copies its current state), so it stays byte for byte as it was.
 */
export async function dryRun(api: CliApi, db: string, files: readonly MigrationFile[], random: string): Promise<DatabaseResult> {
  const fork = forkName(db, random);
  try {
    await api.fork(fork, db);
  } catch (err) {
    const e = toEdgeliteError(err);
    return { name: db, status: 'failed', applied: [], alreadyApplied: 0, missing: [], outOfOrder: [], fork, error: { code: e.code, message: `cannot fork ${db} into ${fork} for the dry run: ${e.message}` } };
  }
  let result: DatabaseResult;
  try {
    result = { ...(await migrateDatabase(api, fork, files)), name: db, fork };
  } finally {
    await api.drop(fork).catch((err: unknown) => {
      const e = toEdgeliteError(err);
      throw new EdgeliteError(e.code, `the dry run's fork ${fork} could not be dropped (drop it with DELETE /v1/db/${fork}): ${e.message}`, { cause: err });
    });
  }
  return result;
}
