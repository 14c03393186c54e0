/**
 * Running the API's statements on a SQLite connection. The connection is described structurally (the
 * subset of better-sqlite3's API we use), so the primary, the Node replica and the Worker's SQLite can
 * all serve the same routes with the same results and errors, and this file imports no engine.
 */
import { EdgeliteError, type ErrorCode } from './errors.ts';
import type { ExecResult, QueryResult, SqlParams, SqlValue, Statement } from './protocol.ts';
import { bindArgs, parameterPlan, type ParamPlan } from './sql-params.ts';

/** SqlStatementHandle is the part of a prepared statement we use (better-sqlite3's `Statement`). */
export interface SqlStatementHandle {
  readonly readonly: boolean;
  readonly reader: boolean;
  /**
   * True when the engine binds as SQLite's C API does (by index, whatever the parameter's name; an
   * integer-valued number as an INTEGER): the Worker's binding. Absent (better-sqlite3): runStatement
   * reshapes the values (sql-params.ts) and passes integers as bigints.
   */
  readonly bindsByIndex?: boolean;
  raw(toggle?: boolean): this;
  /** better-sqlite3's: integers as bigints (runStatement turns the safe ones back into numbers). */
  safeIntegers?(toggle?: boolean): this;
  columns(): Array<{ name: string }>;
  all(...params: unknown[]): unknown[];
  run(...params: unknown[]): { changes: number; lastInsertRowid: number | bigint };
}

/** SqlConnection is the part of a connection we use (better-sqlite3's `Database`). */
export interface SqlConnection {
  prepare(sql: string): SqlStatementHandle;
}

export type StatementResult = QueryResult & Partial<ExecResult>;

const STATEMENT_CACHE_SIZE = 256;
const caches = new WeakMap<SqlConnection, Map<string, SqlStatementHandle>>();

/**
 * prepareCached returns a prepared statement for `sql`, prepared once per connection (LRU-bounded), so
 * a hot query is never re-prepared. SQLite errors come back as EdgeliteError.
 */
export function prepareCached(conn: SqlConnection, sql: string): SqlStatementHandle {
  let cache = caches.get(conn);
  if (!cache) {
    cache = new Map();
    caches.set(conn, cache);
  }
  const hit = cache.get(sql);
  if (hit) {
    cache.delete(sql);
    cache.set(sql, hit);
    return hit;
  }
  let stmt: SqlStatementHandle;
  try {
    stmt = conn.prepare(sql);
    // Integers beyond 2^53 read exactly (README.md#http-api); by default better-sqlite3 rounds them.
    if (!stmt.bindsByIndex) stmt.safeIntegers?.(true);
  } catch (err) {
    throw sqliteError(err);
  }
  cache.set(sql, stmt);
  if (cache.size > STATEMENT_CACHE_SIZE) {
    const oldest = cache.keys().next();
    if (!oldest.done) cache.delete(oldest.value);
  }
  return stmt;
}

/** clearStatementCache forgets the statements of a connection (after close, or a schema change). */
export function clearStatementCache(conn: SqlConnection): void {
  caches.delete(conn);
}

/** isReadOnlyStatement asks SQLite itself (sqlite3_stmt_readonly) whether `sql` writes. */
export function isReadOnlyStatement(conn: SqlConnection, sql: string): boolean {
  return prepareCached(conn, sql).readonly;
}

/** runRead runs one statement that must be read-only (READ_ONLY otherwise) and returns its rows. */
export function runRead(conn: SqlConnection, statement: Statement): QueryResult {
  const stmt = prepareCached(conn, statement.sql);
  if (!stmt.readonly) {
    throw new EdgeliteError('READ_ONLY', 'this statement writes; send it to /exec (reads only here)', {
      details: { sql: statement.sql.slice(0, 200) },
    });
  }
  return runStatement(stmt, statement.params, false, statement.sql);
}

/**
 * runWrite runs one statement of a write batch; the caller wraps the batch in one transaction. A
 * statement that returns rows (SELECT, RETURNING) reports them too.
 */
export function runWrite(conn: SqlConnection, statement: Statement): StatementResult {
  return runStatement(prepareCached(conn, statement.sql), statement.params, true, statement.sql);
}

/**
 * Column names per prepared statement. `columns()` builds a descriptor per column on every call (half
 * of a 7 µs point read, measured), so names are kept, but only for SQL without `*`: there the names come
 * from the SQL text, while `SELECT *` can change columns under a re-prepared statement (ALTER TABLE).
 */
const columnNames = new WeakMap<SqlStatementHandle, string[]>();

/** Parameter plans per prepared statement (sql-params.ts); null: only bare `?`, the array binds as is. */
const plans = new WeakMap<SqlStatementHandle, ParamPlan | null>();

/**
 * bindingArgs is what to pass to the statement's all/run for `params` (README.md#http-api): an array
 * binds by SQLite's parameter index (`?`, `?NNN` and named ones alike), an object by name; an
 * integer-valued number binds as an INTEGER, as the Worker's engine binds it (better-sqlite3 binds every
 * number as a REAL, which `typeof(?)` and an untyped column would show).
 */
function bindingArgs(stmt: SqlStatementHandle, params: SqlParams, sql: string): unknown[] {
  if (stmt.bindsByIndex) return Array.isArray(params) ? params : [params];
  if (!Array.isArray(params)) {
    const out: Record<string, unknown> = {};
    for (const k in params) out[k] = asInteger(params[k]);
    return [out];
  }
  let plan = plans.get(stmt);
  if (plan === undefined) {
    plan = parameterPlan(sql);
    plans.set(stmt, plan);
  }
  const values = params.map(asInteger);
  return plan === null ? values : bindArgs(plan, values);
}

function asInteger(v: unknown): unknown {
  return typeof v === 'number' && Number.isSafeInteger(v) && !Object.is(v, -0) ? BigInt(v) : v;
}

/** safeToNumbers turns the bigints of safeIntegers mode back into numbers where a number is exact. */
function safeToNumbers(rows: SqlValue[][]): void {
  for (const row of rows) {
    for (let i = 0; i < row.length; i++) {
      const v = row[i];
      if (typeof v === 'bigint' && v >= MIN_SAFE && v <= MAX_SAFE) row[i] = Number(v);
    }
  }
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function exactInteger(v: number | bigint): number | bigint {
  return typeof v === 'bigint' && v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : v;
}

function runStatement(stmt: SqlStatementHandle, params: SqlParams, write = false, sql = '*'): StatementResult {
  try {
    const args = bindingArgs(stmt, params, sql);
    if (stmt.reader) {
      let columns = columnNames.get(stmt);
      if (!columns) stmt.raw(true);
      const rows = stmt.all(...args) as SqlValue[][];
      if (!stmt.bindsByIndex) safeToNumbers(rows);
      if (!columns) {
        columns = stmt.columns().map((c) => c.name);
        if (!sql.includes('*')) columnNames.set(stmt, columns);
      }
      return { columns, rows };
    }
    const info = stmt.run(...args);
    const result: StatementResult = { columns: [], rows: [] };
    if (write) {
      result.changes = info.changes;
      result.lastInsertRowid = exactInteger(info.lastInsertRowid);
    }
    return result;
  } catch (err) {
    throw sqliteError(err);
  }
}

const SQLITE_CODE_MAP: Array<[RegExp, ErrorCode]> = [
  [/^SQLITE_CONSTRAINT/, 'CONSTRAINT_VIOLATION'],
  [/^SQLITE_READONLY/, 'READ_ONLY'],
  [/^SQLITE_(BUSY|LOCKED)/, 'BUSY'],
  [/^SQLITE_INTERRUPT/, 'QUERY_TIMEOUT'],
  [/^SQLITE_FULL/, 'DISK_FULL'],
  [/^SQLITE_(IOERR|CANTOPEN)/, 'IO_ERROR'],
  [/^SQLITE_AUTH/, 'FORBIDDEN'],
];

/** sqliteError maps an engine error (better-sqlite3's SqliteError code, binding errors) to ours. */
export function sqliteError(err: unknown): EdgeliteError {
  if (err instanceof EdgeliteError) return err;
  const e = err as { code?: unknown; message?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const code = typeof e?.code === 'string' ? e.code : '';
  for (const [pattern, ours] of SQLITE_CODE_MAP) {
    if (pattern.test(code)) return new EdgeliteError(ours, message, { cause: err, details: { sqliteCode: code } });
  }
  if (code.startsWith('SQLITE_') || err instanceof RangeError || err instanceof TypeError) {
    return new EdgeliteError('SQL_ERROR', message, { cause: err, details: code ? { sqliteCode: code } : undefined });
  }
  return new EdgeliteError('INTERNAL', message, { cause: err });
}
