/**
 * How the replica opens its file for writing pages (openWriter, setWalMode) and how SQLite's errors on
 * that file become ours (sqliteError): a full disk is DISK_FULL, a file it may not write IO_ERROR.
 */
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { EdgeliteError, type ErrorCode } from '../shared/errors.ts';

/**
 * WRITABLE_SCHEMA: the writer and the from-scratch reader never use the schema, but SQLite parses it
 * before their first statement and after every schema cookie change, and a schema that does not parse
 * fails every statement ("malformed database schema"). With writable_schema on, parse errors are
 * ignored, so a replica whose file got corrupted can still be read, found wrong and re-snapshotted.
 */
export const WRITABLE_SCHEMA = 'writable_schema = ON';

/** WAL_SIZE_LIMIT: after a checkpoint restarts the WAL, it is truncated back to this size. */
export const WAL_SIZE_LIMIT = 4 * 1024 * 1024;

export interface WriterOptions {
  busyTimeoutMs: number;
  /** synchronous=FULL instead of NORMAL. */
  durable: boolean;
  /** For an empty file: fix this page size and switch to WAL now, instead of at the first snapshot. */
  pageSizeHint: number | undefined;
}

/**
 * openWriter opens (creating if absent) the connection that writes pages: unsafe mode, because
 * sqlite_dbpage refuses writes in defensive mode; writable_schema (WRITABLE_SCHEMA); WAL, except for
 * an empty file without a page size hint, whose page size the first snapshot decides (the switch to
 * WAL writes page 1 and so fixes the page size).
 */
export function openWriter(path: string, options: WriterOptions): Database.Database {
  let writer: Database.Database;
  try {
    writer = new Database(path, { timeout: options.busyTimeoutMs });
  } catch (err) {
    throw sqliteError(err, `opening ${path}`);
  }
  try {
    writer.unsafeMode(true);
    writer.pragma(WRITABLE_SCHEMA);
    writer.pragma(`synchronous = ${options.durable ? 'FULL' : 'NORMAL'}`);
    writer.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`);
    if (fs.statSync(path).size > 0) setWalMode(writer);
    else if (options.pageSizeHint !== undefined) setWalMode(writer, options.pageSizeHint);
    return writer;
  } catch (err) {
    writer.close();
    throw err instanceof EdgeliteError ? err : sqliteError(err, `opening ${path}`);
  }
}

export function setWalMode(db: Database.Database, pageSize?: number): void {
  if (pageSize !== undefined) db.pragma(`page_size = ${pageSize}`);
  const mode = String(db.pragma('journal_mode = WAL', { simple: true })).toLowerCase();
  if (mode !== 'wal') throw new EdgeliteError('IO_ERROR', `could not put ${db.name} in WAL mode (got ${mode})`);
}

const SQLITE_CODES: Array<[prefix: string, code: ErrorCode]> = [
  ['SQLITE_BUSY', 'BUSY'],
  ['SQLITE_LOCKED', 'BUSY'],
  ['SQLITE_FULL', 'DISK_FULL'],
  ['SQLITE_IOERR', 'IO_ERROR'],
  ['SQLITE_CANTOPEN', 'IO_ERROR'],
  ['SQLITE_CORRUPT', 'IO_ERROR'],
  ['SQLITE_NOTADB', 'IO_ERROR'],
  // A file this process may not write (SQLite opened it read-only): a disk fault like EACCES on the
  // sidecar, not READ_ONLY, which tells a client its statement writes (HTTP 400).
  ['SQLITE_READONLY', 'IO_ERROR'],
];

export function sqliteError(err: unknown, op: string): EdgeliteError {
  const sqlCode = String((err as { code?: unknown }).code ?? '');
  const code = SQLITE_CODES.find(([prefix]) => sqlCode.startsWith(prefix))?.[1] ?? 'INTERNAL';
  return new EdgeliteError(code, `${op}: ${(err as Error).message}`, { cause: err, details: { sqliteCode: sqlCode } });
}

/** fileSignature identifies the state of a replica file and its WAL (inode, size, mtime and ctime in ns; "-" when absent). */
export function fileSignature(path: string): string {
  const one = (p: string): string => {
    const st = fs.statSync(p, { bigint: true, throwIfNoEntry: false });
    return st ? `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : '-';
  };
  return `${one(path)}|${one(`${path}-wal`)}`;
}
