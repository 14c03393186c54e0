/**
 * Pass two of `edgelite export` (README.md#analytics-export): read every row of every planned table from
 * its snapshots with better-sqlite3 and feed it to DuckDB through its appender, typed as planned
 * (bin/export-types.ts); then, for Parquet and CSV, COPY each table to its own file. DuckDB's sqlite
 * extension is not used: it is a download at run time. A `.duckdb` output is written in place; Parquet
 * and CSV are staged in a DuckDB file in the temp directory (so a large export spills to disk, not RAM).
 */
import { DuckDBInstance, type DuckDBAppender, type DuckDBConnection } from '@duckdb/node-api';
import { join } from 'node:path';
import { EdgeliteError } from '../shared/errors.ts';
import { quoteName, quoteString } from '../shared/doctor-sql.ts';
import type { Progress } from '../shared/node/progress.ts';
import { openSnapshot, type PlannedTable } from './export-plan.ts';
import { classOf, columnDdl, textOf, type ExportColumn } from './export-types.ts';

export type ExportFormat = 'parquet' | 'csv' | 'duckdb';
export const EXPORT_FORMATS: readonly ExportFormat[] = ['parquet', 'csv', 'duckdb'];

/** TENANT_COLUMN: the column `--all` adds; `_edgelite_tenant` where a table already has a `tenant`. */
export const TENANT_COLUMN = 'tenant';

/** tenantColumnOf is the tenant column's name for `table`. */
export function tenantColumnOf(table: PlannedTable): string {
  return table.columns.some((c) => c.name.toLowerCase() === TENANT_COLUMN) ? `_edgelite_${TENANT_COLUMN}` : TENANT_COLUMN;
}

/** tableFileName is a table's file name in the output directory (URI-encoded unless plainly safe). */
export function tableFileName(table: string, format: 'parquet' | 'csv'): string {
  const base = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(table) ? table : encodeURIComponent(table).replaceAll('.', '%2E');
  return `${base}.${format}`;
}

export interface WriteOptions {
  format: ExportFormat;
  /** The output: a directory (parquet, csv) that exists and is empty, or a .duckdb file that does not exist. */
  out: string;
  /** With `--all`: a tenant column leads every table. */
  withTenant: boolean;
  tempDir: string;
  bar: Progress;
}

/** APPEND_TICK: rows appended between two progress ticks. */
const APPEND_TICK = 5000;

/** writeExport writes every table; it returns the files written (one per table, or the .duckdb file). */
export async function writeExport(tables: readonly PlannedTable[], o: WriteOptions): Promise<string[]> {
  const instance = await DuckDBInstance.create(o.format === 'duckdb' ? o.out : join(o.tempDir, 'staging.duckdb'));
  const conn = await instance.connect();
  const files: string[] = [];
  try {
    for (const table of tables) {
      await loadTable(conn, table, o);
      if (o.format === 'duckdb') continue;
      const file = join(o.out, tableFileName(table.name, o.format));
      const options = o.format === 'parquet' ? 'FORMAT parquet' : 'FORMAT csv, HEADER true';
      await conn.run(`COPY ${quoteName(table.name)} TO ${quoteString(file)} (${options})`);
      await conn.run(`DROP TABLE ${quoteName(table.name)}`);
      files.push(file);
    }
    if (o.format === 'duckdb') {
      await conn.run('CHECKPOINT');
      files.push(o.out);
    }
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
  return files;
}

/** ddlOf is the DuckDB CREATE TABLE of a planned table. */
export function ddlOf(table: PlannedTable, withTenant: boolean): string {
  const cols = withTenant ? [columnDdl(tenantColumnOf(table), 'VARCHAR')] : [];
  for (const c of table.columns) {
    cols.push(columnDdl(c.name, c.type));
    if (c.classColumn) cols.push(columnDdl(c.classColumn, 'VARCHAR'));
  }
  return `CREATE TABLE ${quoteName(table.name)} (${cols.join(', ')})`;
}

async function loadTable(conn: DuckDBConnection, table: PlannedTable, o: WriteOptions): Promise<void> {
  await conn.run(ddlOf(table, o.withTenant));
  const appender = await conn.createAppender(table.name);
  try {
    for (const source of table.sources) {
      const db = openSnapshot(source.path);
      try {
        const select = source.columns.map((c) => (c === null ? 'NULL' : quoteName(c))).join(', ');
        let n = 0;
        for (const row of db.prepare(`SELECT ${select} FROM ${quoteName(source.table)}`).raw().iterate() as IterableIterator<unknown[]>) {
          if (o.withTenant) appender.appendVarchar(source.db);
          table.columns.forEach((c, i) => appendValue(appender, c, row[i], source.db, table.name));
          appender.endRow();
          if (++n % APPEND_TICK === 0) o.bar.tick(APPEND_TICK, `${source.db}.${table.name}`);
        }
        o.bar.tick(n % APPEND_TICK, `${source.db}.${table.name}`);
      } finally {
        db.close();
      }
    }
  } finally {
    appender.closeSync();
  }
}

/** appendValue appends one SQLite value to its planned column (and a mixed column's class). */
function appendValue(a: DuckDBAppender, c: ExportColumn, v: unknown, db: string, table: string): void {
  if (c.mixed) {
    if (v === null) {
      a.appendNull();
      a.appendNull();
    } else {
      a.appendVarchar(textOf(v));
      a.appendVarchar(classOf(v)!);
    }
    return;
  }
  if (v === null) return a.appendNull();
  const wrong = () => new EdgeliteError('INTERNAL', `${db}.${table}.${c.name}: a ${classOf(v)} value in a column planned as ${c.type} (the snapshot changed between passes?)`);
  switch (c.type) {
    case 'BIGINT':
      if (typeof v !== 'bigint') throw wrong();
      return a.appendBigInt(v);
    case 'DOUBLE':
      // An integer here is within ±2^53 (bin/export-types.ts), so the conversion is exact.
      if (typeof v === 'bigint') return a.appendDouble(Number(v));
      if (typeof v !== 'number') throw wrong();
      return a.appendDouble(v);
    case 'VARCHAR':
      if (typeof v !== 'string') throw wrong();
      return a.appendVarchar(v);
    case 'BLOB':
      if (!(v instanceof Uint8Array)) throw wrong();
      return a.appendBlob(v);
  }
}
