/**
 * A small synchronous SQLite binding over wa-sqlite's WebAssembly build, shaped as shared/sql.ts's
 * structural SqlConnection, so the Worker runs queries through the same runRead as the Node replica and
 * returns the same results and errors.
 *
 * Why not wa-sqlite's own API: it wraps prepare/step in async functions and does not export
 * `sqlite3_stmt_readonly`. Here every call is a plain synchronous call into the module, so a query runs start to finish
 * with no await in the middle (nothing can apply pages under a running statement), and "does this
 * statement write?" is answered by an authorizer that watches what the statement's compilation asks to do.
 */
import type { SqlConnection, SqlStatementHandle } from '../../../shared/sql.ts';

/** WasmModule is the part of the Emscripten module of wa-sqlite we call. */
export interface WasmModule extends SqliteExports {
  HEAPU8: Uint8Array;
  ccall(name: string, returnType: 'number' | 'string' | null, argTypes: string[], args: unknown[]): unknown;
  getValue(ptr: number, type: string): number;
  getTempRet0(): number;
  _malloc(n: number): number;
  _free(ptr: number): void;
  _sqlite3_malloc(n: number): number;
  _sqlite3_free(ptr: number): void;
  _getSqliteFree(): number;
  lengthBytesUTF8(s: string): number;
  stringToUTF8(s: string, ptr: number, max: number): void;
  UTF8ToString(ptr: number): string;
  registerVFS(vfs: object, makeDefault: boolean): number;
  setAuthorizer(db: number, fn: ((userData: unknown, action: number, p3: string | null, p4: string | null) => number) | null, userData: unknown): number;
}

/**
 * SqliteExports are the C functions wa-sqlite's build exports, called directly: ccall's argument
 * conversion costs more than the call itself on the point-read path. 64-bit integers travel as two
 * 32-bit halves (low half argument or result, high half next argument or getTempRet0()).
 */
export interface SqliteExports {
  _sqlite3_prepare_v2(db: number, sql: number, n: number, stmtOut: number, tailOut: number): number;
  _sqlite3_step(stmt: number): number;
  _sqlite3_reset(stmt: number): number;
  _sqlite3_clear_bindings(stmt: number): number;
  _sqlite3_finalize(stmt: number): number;
  _sqlite3_close(db: number): number;
  _sqlite3_errmsg(db: number): number;
  _sqlite3_changes(db: number): number;
  _sqlite3_column_count(stmt: number): number;
  _sqlite3_column_name(stmt: number, i: number): number;
  _sqlite3_column_type(stmt: number, i: number): number;
  _sqlite3_column_int64(stmt: number, i: number): number;
  _sqlite3_column_double(stmt: number, i: number): number;
  _sqlite3_column_text(stmt: number, i: number): number;
  _sqlite3_column_blob(stmt: number, i: number): number;
  _sqlite3_column_bytes(stmt: number, i: number): number;
  _sqlite3_bind_parameter_count(stmt: number): number;
  _sqlite3_bind_parameter_name(stmt: number, i: number): number;
  _sqlite3_bind_null(stmt: number, i: number): number;
  _sqlite3_bind_int64(stmt: number, i: number, lo: number, hi: number): number;
  _sqlite3_bind_double(stmt: number, i: number, value: number): number;
  _sqlite3_bind_text(stmt: number, i: number, ptr: number, n: number, destructor: number): number;
  _sqlite3_bind_blob(stmt: number, i: number, ptr: number, n: number, destructor: number): number;
}

const SQLITE_OK = 0;
const SQLITE_ROW = 100;
const SQLITE_DONE = 101;
const SQLITE_INTEGER = 1;
const SQLITE_FLOAT = 2;
const SQLITE_TEXT = 3;
const SQLITE_BLOB = 4;
export const SQLITE_OPEN_READONLY = 0x1;

const PRIMARY_CODES: Record<number, string> = {
  1: 'SQLITE_ERROR', 2: 'SQLITE_INTERNAL', 3: 'SQLITE_PERM', 4: 'SQLITE_ABORT', 5: 'SQLITE_BUSY',
  6: 'SQLITE_LOCKED', 7: 'SQLITE_NOMEM', 8: 'SQLITE_READONLY', 9: 'SQLITE_INTERRUPT', 10: 'SQLITE_IOERR',
  11: 'SQLITE_CORRUPT', 12: 'SQLITE_NOTFOUND', 13: 'SQLITE_FULL', 14: 'SQLITE_CANTOPEN', 15: 'SQLITE_PROTOCOL',
  17: 'SQLITE_SCHEMA', 18: 'SQLITE_TOOBIG', 19: 'SQLITE_CONSTRAINT', 20: 'SQLITE_MISMATCH', 21: 'SQLITE_MISUSE',
  23: 'SQLITE_AUTH', 25: 'SQLITE_RANGE', 26: 'SQLITE_NOTADB',
};

/** Authorizer actions that change a database (sqlite3.h): what makes sqlite3_stmt_readonly false. */
const WRITE_ACTIONS = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 23, 26, 27, 28, 29, 30]);
const SQLITE_ATTACH = 24;
const SQLITE_DETACH = 25;
const SQLITE_DENY = 1;

/** SqliteError carries SQLite's code name (`SQLITE_READONLY`), which shared/sql.ts maps to ours. */
export class SqliteError extends Error {
  override readonly name = 'SqliteError';
  readonly code: string;
  constructor(message: string, rc: number) {
    super(message);
    this.code = PRIMARY_CODES[rc & 0xff] ?? `SQLITE_${rc}`;
  }
}

/** MAX_LIVE_STATEMENTS bounds prepared statements held in wasm memory; older ones re-prepare on use. */
export const MAX_LIVE_STATEMENTS = 64;

const decoder = new TextDecoder();

/**
 * WaSqliteConnection is one read-only connection. Statements are handles that survive finalization: when
 * more than MAX_LIVE_STATEMENTS are live the least recently used is finalized, and prepared again the
 * next time it runs, so shared/sql.ts's own statement cache never holds a dangling pointer.
 */
export class WaSqliteConnection implements SqlConnection {
  readonly #m: WasmModule;
  readonly #db: number;
  readonly #live = new Map<WaStatement, true>();
  /** Set by the authorizer while a statement compiles. */
  writesSeen = false;
  #closed = false;

  constructor(module: WasmModule, filename: string, vfsName: string) {
    this.#m = module;
    const out = module._malloc(4);
    try {
      const rc = module.ccall('sqlite3_open_v2', 'number', ['string', 'number', 'number', 'string'], [filename, out, SQLITE_OPEN_READONLY, vfsName]) as number;
      this.#db = module.getValue(out, '*');
      if (rc !== SQLITE_OK) throw this.error(rc);
    } finally {
      module._free(out);
    }
    // PRAGMAs count as reads, as sqlite3_stmt_readonly mostly has them: `PRAGMA x = y` is refused
    // before it gets here (checkStatement in shared/statement-policy.ts), and a PRAGMA that writes fails on the read-only file.
    module.setAuthorizer(this.#db, (_u, action) => {
      if (action === SQLITE_ATTACH || action === SQLITE_DETACH) return SQLITE_DENY;
      if (WRITE_ACTIONS.has(action)) this.writesSeen = true;
      return SQLITE_OK;
    }, null);
    this.exec('PRAGMA query_only = 1');
  }

  get module(): WasmModule {
    return this.#m;
  }

  get handle(): number {
    return this.#db;
  }

  prepare(sql: string): WaStatement {
    const stmt = new WaStatement(this, sql);
    stmt.ensure();
    return stmt;
  }

  /** exec runs a statement that returns no rows (setup PRAGMAs). */
  exec(sql: string): void {
    const s = this.prepare(sql);
    s.run();
    s.finalize();
  }

  /** compile prepares `sql` and returns the statement pointer and whether compiling it asked to write. */
  compile(sql: string): { ptr: number; writes: boolean } {
    if (this.#closed) throw new SqliteError('the connection is closed', 21);
    const m = this.#m;
    const n = m.lengthBytesUTF8(sql);
    const text = m._sqlite3_malloc(n + 1);
    const out = m._malloc(8);
    try {
      m.stringToUTF8(sql, text, n + 1);
      this.writesSeen = false;
      const rc = m._sqlite3_prepare_v2(this.#db, text, n, out, out + 4);
      const ptr = m.getValue(out, '*');
      if (rc !== SQLITE_OK) throw this.error(rc);
      const tail = m.getValue(out + 4, '*');
      if (ptr === 0) throw new RangeError('The supplied SQL string contains no statements');
      if (hasMoreSql(m.HEAPU8.subarray(tail, text + n))) {
        m._sqlite3_finalize(ptr);
        throw new RangeError('The supplied SQL string contains more than one statement');
      }
      return { ptr, writes: this.writesSeen };
    } finally {
      m._free(out);
      m._sqlite3_free(text);
    }
  }

  /** touch records `stmt` as just used and finalizes the least recently used past the limit. */
  touch(stmt: WaStatement): void {
    this.#live.delete(stmt);
    this.#live.set(stmt, true);
    while (this.#live.size > MAX_LIVE_STATEMENTS) {
      const oldest = this.#live.keys().next().value as WaStatement;
      this.#live.delete(oldest);
      oldest.finalize();
    }
  }

  forget(stmt: WaStatement): void {
    this.#live.delete(stmt);
  }

  error(rc: number): SqliteError {
    const message = this.#m.UTF8ToString(this.#m._sqlite3_errmsg(this.#db));
    return new SqliteError(message, rc);
  }

  close(): void {
    if (this.#closed) return;
    for (const s of [...this.#live.keys()]) s.finalize();
    this.#closed = true;
    this.#m._sqlite3_close(this.#db);
  }
}

/** hasMoreSql tells whether the tail left after one statement holds anything but spaces, `;` and comments. */
function hasMoreSql(tail: Uint8Array): boolean {
  const text = decoder.decode(tail);
  return text.replace(/(\s|;|--[^\n]*(\n|$)|\/\*[\s\S]*?\*\/)+/g, '') !== '';
}

/** WaStatement is a prepared statement (better-sqlite3's subset that shared/sql.ts uses). */
export class WaStatement implements SqlStatementHandle {
  readonly #conn: WaSqliteConnection;
  readonly sql: string;
  /** Binds by SQLite's parameter index, integers as INTEGER (shared/sql.ts passes values as they are). */
  readonly bindsByIndex = true;
  #ptr = 0;
  #writes = false;
  #columns: Array<{ name: string }> = [];

  constructor(conn: WaSqliteConnection, sql: string) {
    this.#conn = conn;
    this.sql = sql;
  }

  /** readonly is true when compiling the statement asked for no write (sqlite3_stmt_readonly). */
  get readonly(): boolean {
    this.ensure();
    return !this.#writes;
  }

  get reader(): boolean {
    this.ensure();
    return this.#columns.length > 0;
  }

  raw(): this {
    return this;
  }

  columns(): Array<{ name: string }> {
    this.ensure();
    return this.#columns;
  }

  ensure(): number {
    if (this.#ptr === 0) {
      const { ptr, writes } = this.#conn.compile(this.sql);
      this.#ptr = ptr;
      this.#writes = writes;
      const m = this.#conn.module;
      const n = m._sqlite3_column_count(ptr);
      this.#columns = [];
      for (let i = 0; i < n; i++) this.#columns.push({ name: m.UTF8ToString(m._sqlite3_column_name(ptr, i)) });
    }
    this.#conn.touch(this);
    return this.#ptr;
  }

  all(...params: unknown[]): unknown[][] {
    const ptr = this.#start(params);
    const m = this.#conn.module;
    const rows: unknown[][] = [];
    try {
      for (;;) {
        const rc = m._sqlite3_step(ptr);
        if (rc === SQLITE_DONE) break;
        if (rc !== SQLITE_ROW) throw this.#conn.error(rc);
        const row: unknown[] = new Array(this.#columns.length);
        for (let i = 0; i < row.length; i++) row[i] = this.#column(ptr, i);
        rows.push(row);
      }
    } finally {
      this.#reset(ptr);
    }
    return rows;
  }

  run(...params: unknown[]): { changes: number; lastInsertRowid: number } {
    const ptr = this.#start(params);
    const m = this.#conn.module;
    try {
      for (;;) {
        const rc = m._sqlite3_step(ptr);
        if (rc === SQLITE_DONE) break;
        if (rc !== SQLITE_ROW) throw this.#conn.error(rc);
      }
      return { changes: m._sqlite3_changes(this.#conn.handle), lastInsertRowid: 0 };
    } finally {
      this.#reset(ptr);
    }
  }

  finalize(): void {
    if (this.#ptr === 0) return;
    this.#conn.module._sqlite3_finalize(this.#ptr);
    this.#ptr = 0;
    this.#conn.forget(this);
  }

  #start(params: unknown[]): number {
    const ptr = this.ensure();
    bindAll(this.#conn, ptr, params);
    return ptr;
  }

  #reset(ptr: number): void {
    const m = this.#conn.module;
    m._sqlite3_reset(ptr);
    m._sqlite3_clear_bindings(ptr);
  }

  #column(ptr: number, i: number): unknown {
    const m = this.#conn.module;
    switch (m._sqlite3_column_type(ptr, i)) {
      case SQLITE_INTEGER: {
        const lo = m._sqlite3_column_int64(ptr, i);
        return int64(lo, m.getTempRet0());
      }
      case SQLITE_FLOAT:
        return m._sqlite3_column_double(ptr, i);
      case SQLITE_TEXT: {
        const p = m._sqlite3_column_text(ptr, i);
        const n = m._sqlite3_column_bytes(ptr, i);
        return decoder.decode(m.HEAPU8.subarray(p, p + n));
      }
      case SQLITE_BLOB: {
        const p = m._sqlite3_column_blob(ptr, i);
        const n = m._sqlite3_column_bytes(ptr, i);
        return m.HEAPU8.slice(p, p + n);
      }
      default:
        return null;
    }
  }
}

/** int64 joins the halves of a 64-bit integer: a number when it is safe, else a bigint (never rounded). */
function int64(lo: number, hi: number): number | bigint {
  const n = hi * 0x1_0000_0000 + (lo >>> 0);
  if (Number.isSafeInteger(n)) return n;
  return (BigInt(hi) << 32n) | BigInt(lo >>> 0);
}

/**
 * bindAll binds positional values, or one object of named values (`:name`, `@name` and `$name` all
 * match key `name`, as in better-sqlite3). Errors are RangeError/TypeError, which shared/sql.ts reports
 * as SQL_ERROR.
 */
function bindAll(conn: WaSqliteConnection, ptr: number, params: unknown[]): void {
  const m = conn.module;
  const count = m._sqlite3_bind_parameter_count(ptr);
  const first = params[0];
  const named = params.length === 1 && first !== null && typeof first === 'object' && !(first instanceof Uint8Array) && !Array.isArray(first);
  if (!named && params.length !== count) throw new RangeError(`Too ${params.length > count ? 'many' : 'few'} parameter values were provided`);
  for (let i = 1; i <= count; i++) {
    let value: unknown;
    if (named) {
      const namePtr = m._sqlite3_bind_parameter_name(ptr, i);
      const name = namePtr === 0 ? null : m.UTF8ToString(namePtr);
      if (!name) throw new RangeError(`parameter ${i} is positional but named values were given`);
      const key = name.slice(1);
      const values = first as Record<string, unknown>;
      if (!Object.prototype.hasOwnProperty.call(values, key)) throw new RangeError(`Missing named parameter "${key}"`);
      value = values[key];
    } else {
      value = params[i - 1];
    }
    const rc = bindOne(m, ptr, i, value);
    if (rc !== SQLITE_OK) throw conn.error(rc);
  }
}

function bindOne(m: WasmModule, ptr: number, i: number, value: unknown): number {
  if (value === null || value === undefined) return m._sqlite3_bind_null(ptr, i);
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value)) return m._sqlite3_bind_int64(ptr, i, value >>> 0, Math.floor(value / 0x1_0000_0000));
    return m._sqlite3_bind_double(ptr, i, value);
  }
  if (typeof value === 'bigint') {
    if (value > 0x7fffffffffffffffn || value < -0x8000000000000000n) throw new RangeError('BigInt value is too large to bind');
    return m._sqlite3_bind_int64(ptr, i, Number(value & 0xffffffffn), Number(value >> 32n));
  }
  if (typeof value === 'string') {
    const n = m.lengthBytesUTF8(value);
    const p = m._sqlite3_malloc(n + 1);
    m.stringToUTF8(value, p, n + 1);
    return m._sqlite3_bind_text(ptr, i, p, n, m._getSqliteFree());
  }
  if (value instanceof Uint8Array) {
    const p = m._sqlite3_malloc(Math.max(1, value.length));
    m.HEAPU8.set(value, p);
    return m._sqlite3_bind_blob(ptr, i, p, value.length, m._getSqliteFree());
  }
  throw new TypeError(`SQLite cannot bind a value of type ${typeof value}`);
}
