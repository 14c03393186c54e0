/**
 * What `edgelite migrate` does to one database (README.md#migrations): the record table
 * `_edgelite_migrations`, which files are pending given its rows, and the statements of one file's
 * transaction (the file's own steps, then its record row, so the two commit together or not at all).
 * Pure and Worker-safe.
 */
import { EdgeliteError } from './errors.ts';
import type { Statement } from './protocol.ts';
import { foreignKeyViolationsSql } from './migrate-rebuild.ts';
import type { MigrationFile } from './migrate-sql.ts';

export const MIGRATIONS_TABLE = '_edgelite_migrations';

/**
 * CREATE_MIGRATIONS_TABLE: one row per applied file. `foreign_key_violations` is what
 * `foreign_key_check` found in the tables the file rebuilt; its CHECK makes the file's transaction
 * fail ("CHECK constraint failed: foreign_key_check") instead of committing a rebuild that broke a
 * reference, so the column is 0 in every row that exists.
 */
export const CREATE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
  name TEXT PRIMARY KEY,
  checksum TEXT NOT NULL,
  applied_txid INTEGER,
  applied_at TEXT NOT NULL,
  foreign_key_violations INTEGER NOT NULL DEFAULT 0 CONSTRAINT foreign_key_check CHECK (foreign_key_violations = 0)
) STRICT`;

/** READ_APPLIED lists the record (only once the table exists: see HAS_MIGRATIONS_TABLE). */
export const READ_APPLIED = `SELECT name, checksum, applied_txid, applied_at FROM ${MIGRATIONS_TABLE} ORDER BY name`;
export const HAS_MIGRATIONS_TABLE = `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '${MIGRATIONS_TABLE}'`;

/** AppliedMigration is one row of `_edgelite_migrations`. */
export interface AppliedMigration {
  name: string;
  checksum: string;
  /** The txid of the commit that applied it; null if the tool stopped before writing it down. */
  appliedTxid: number | null;
  appliedAt: string;
}

/** parseApplied reads READ_APPLIED's rows. */
export function parseApplied(rows: readonly unknown[][]): AppliedMigration[] {
  return rows.map(([name, checksum, txid, at]) => ({
    name: String(name),
    checksum: String(checksum),
    appliedTxid: txid === null || txid === undefined ? null : Number(txid),
    appliedAt: String(at),
  }));
}

export interface MigrationPlan {
  /** Files to apply, in order. */
  pending: MigrationFile[];
  /** Files already applied (same checksum). */
  applied: string[];
  /** Applied files that are not in the directory: reported, never undone. */
  missing: string[];
  /** Pending files numbered below an applied one (applied all the same, in order). */
  outOfOrder: string[];
}

/**
 * planMigrations compares the directory with the record: an applied file whose checksum changed is
 * refused (CHECKSUM_MISMATCH, naming it: edit a migration by adding a new one).
 */
export function planMigrations(files: readonly MigrationFile[], applied: readonly AppliedMigration[], db: string): MigrationPlan {
  const byName = new Map(applied.map((a) => [a.name, a]));
  const local = new Set(files.map((f) => f.name));
  const pending: MigrationFile[] = [];
  const done: string[] = [];
  for (const f of files) {
    const a = byName.get(f.name);
    if (!a) {
      pending.push(f);
      continue;
    }
    if (a.checksum !== f.checksum) {
      throw new EdgeliteError(
        'CHECKSUM_MISMATCH',
        `${f.name} was applied to ${db} with checksum ${a.checksum} (at ${a.appliedAt}) and has been edited since (now ${f.checksum}): an applied migration is never run again; undo the edit and put the change in a new file`,
        { details: { db, migration: f.name, applied: a.checksum, local: f.checksum } },
      );
    }
    done.push(f.name);
  }
  const highest = files.filter((f) => byName.has(f.name)).reduce<bigint>((m, f) => (f.number > m ? f.number : m), -1n);
  return {
    pending,
    applied: done,
    missing: applied.filter((a) => !local.has(a.name)).map((a) => a.name),
    outOfOrder: pending.filter((f) => f.number < highest).map((f) => f.name),
  };
}

/**
 * fileTransaction is one file's request to `/exec` (one transaction on the primary): the record table
 * if missing, the file's statements (rebuilds already expanded), then its record row, which counts
 * `foreign_key_check` of the rebuilt tables. A second run of the same file fails on the row's key.
 */
export function fileTransaction(file: MigrationFile, statements: readonly string[], rebuilt: readonly string[]): Statement[] {
  return [
    { sql: CREATE_MIGRATIONS_TABLE, params: [] },
    ...statements.map((sql) => ({ sql, params: [] })),
    {
      sql: `INSERT INTO ${MIGRATIONS_TABLE} (name, checksum, applied_at, foreign_key_violations) VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ${foreignKeyViolationsSql(rebuilt)})`,
      params: [file.name, file.checksum],
    },
  ];
}

/** txidStatements write down the txids the files committed at (a write of its own, after them). */
export function txidStatements(applied: ReadonlyArray<{ name: string; txid: number }>): Statement[] {
  return applied.map((a) => ({ sql: `UPDATE ${MIGRATIONS_TABLE} SET applied_txid = ? WHERE name = ? AND applied_txid IS NULL`, params: [a.txid, a.name] }));
}
