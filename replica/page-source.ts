/**
 * The replica's SQLite file at the page level: its connections (the page writer, short-lived page
 * readers), reading all of its pages, and the page-1 header fields in which it deliberately differs
 * from the primary's database (see HeaderOverride).
 */
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { DatabaseChecksum, lockPageNumber } from '../shared/checksum.ts';
import { EdgeliteError, type ErrorCode } from '../shared/errors.ts';
import type { PageImage } from '../shared/types.ts';

/** Offsets in the 100-byte SQLite database header (page 1). */
export const HEADER_PAGE_SIZE_OFFSET = 16;
export const HEADER_WRITE_VERSION_OFFSET = 18;
export const HEADER_READ_VERSION_OFFSET = 19;
export const HEADER_SCHEMA_COOKIE_OFFSET = 40;
/** Value of header bytes 18 and 19 for a database in WAL mode. */
export const WAL_FORMAT_VERSION = 2;
/** Bytes 18–19 of a WAL-mode header read as one big-endian u16. */
export const WAL_FORMAT = (WAL_FORMAT_VERSION << 8) | WAL_FORMAT_VERSION;

/**
 * HeaderOverride says how the replica's page 1 differs from the primary's page 1:
 *
 * - `cookieDelta`: the replica's schema cookie (offset 40) is the primary's plus this (mod 2^32). A
 *   snapshot restored over an existing replica must raise the cookie above the file's current one, or
 *   connections that cached the old schema keep using it (docs/ARCHITECTURE.md#apply-rules). The primary's cookie may be lower
 *   than ours, so we add a constant instead of writing the primary's value: the local cookie then moves
 *   whenever the primary's does and never returns to a value some reader may still hold.
 * - `format`: the primary's bytes 18–19 (as a big-endian u16). The replica's file is always WAL (2, 2);
 *   a snapshot taken from a rollback-journal file says (1, 1).
 *
 * Both fields lie outside the bytes the checksum normalises, so the replica hashes page 1 as the
 * primary sent it (toPrimaryPage1) and its checksums stay equal to the primary's.
 */
export interface HeaderOverride {
  cookieDelta: number;
  format: number;
}

export const NO_OVERRIDE: HeaderOverride = Object.freeze({ cookieDelta: 0, format: WAL_FORMAT });

/** pageSizeOf reads the page size from a database header (offset 16, big-endian u16; 1 means 65536). */
export function pageSizeOf(page1: Uint8Array): number {
  const raw = (page1[HEADER_PAGE_SIZE_OFFSET]! << 8) | page1[HEADER_PAGE_SIZE_OFFSET + 1]!;
  return raw === 1 ? 65536 : raw;
}

/** schemaCookieOf reads the schema cookie (offset 40, big-endian u32). */
export function schemaCookieOf(page1: Uint8Array): number {
  return new DataView(page1.buffer, page1.byteOffset, page1.byteLength).getUint32(HEADER_SCHEMA_COOKIE_OFFSET);
}

/** formatOf reads header bytes 18–19 as a big-endian u16. */
export function formatOf(page1: Uint8Array): number {
  return (page1[HEADER_WRITE_VERSION_OFFSET]! << 8) | page1[HEADER_READ_VERSION_OFFSET]!;
}

function withHeader(page1: Uint8Array, format: number, cookie: number): Uint8Array {
  const copy = new Uint8Array(page1); // a copy with its own buffer (Buffer#slice would be a view)
  copy[HEADER_WRITE_VERSION_OFFSET] = format >>> 8;
  copy[HEADER_READ_VERSION_OFFSET] = format & 0xff;
  new DataView(copy.buffer).setUint32(HEADER_SCHEMA_COOKIE_OFFSET, cookie >>> 0);
  return copy;
}

/** toLocalPage1 is the page 1 the replica writes for the primary's `page1` (a copy; input untouched). */
export function toLocalPage1(page1: Uint8Array, override: HeaderOverride): Uint8Array {
  return withHeader(page1, WAL_FORMAT, schemaCookieOf(page1) + override.cookieDelta);
}

/**
 * toPrimaryPage1 undoes toLocalPage1: the page 1 the primary has, for checksums and for serving the
 * replica's file as a snapshot of the primary's database.
 */
export function toPrimaryPage1(page1: Uint8Array, override: HeaderOverride): Uint8Array {
  if (override.cookieDelta === 0 && override.format === formatOf(page1)) return page1;
  return withHeader(page1, override.format, schemaCookieOf(page1) - override.cookieDelta);
}

/** LocalPages is what a database file holds, as read through sqlite_dbpage. */
export interface LocalPages {
  /** null for an empty (0-page) database, whose page size is not fixed yet. */
  pageSize: number | null;
  pageCount: number;
}

/**
 * readLocalPages calls `onPage` for every page of the main database of `db` through sqlite_dbpage, in
 * page order, skipping the lock page (sqlite_dbpage shows it as zeros; it is never stored). The page
 * views are only valid during the call. Reads run in one read transaction, so they are consistent.
 */
export function readLocalPages(db: Database.Database, onPage: (page: PageImage) => void): LocalPages {
  const read = db.transaction((): LocalPages => {
    let pageSize: number | null = null;
    let lockPage = 0;
    let pageCount = 0;
    const rows = db.prepare('SELECT pgno, data FROM sqlite_dbpage').raw(true).iterate() as IterableIterator<
      [number, Uint8Array]
    >;
    for (const [pgno, data] of rows) {
      if (pageSize === null) {
        pageSize = data.length;
        lockPage = lockPageNumber(pageSize);
      }
      if (pgno !== pageCount + 1) {
        throw new EdgeliteError('INTERNAL', `sqlite_dbpage returned page ${pgno} after page ${pageCount}`);
      }
      pageCount = pgno;
      if (pgno !== lockPage) onPage({ pgno, data });
    }
    return { pageSize, pageCount };
  });
  return read.deferred();
}

/**
 * WRITABLE_SCHEMA: the writer and the from-scratch reader never use the schema, but SQLite parses it
 * before their first statement and after every schema cookie change, and a schema that does not parse
 * fails every statement ("malformed database schema"). With writable_schema on, parse errors are
 * ignored, so a replica whose file got corrupted can still be read, found wrong and re-snapshotted.
 */

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
    writer.pragma('writable_schema = ON');
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

export function isPageSize(n: number): boolean {
  return Number.isInteger(n) && n >= 512 && n <= 65536 && (n & (n - 1)) === 0;
}

export function setWalMode(db: Database.Database, pageSize?: number): void {
  if (pageSize !== undefined) db.pragma(`page_size = ${pageSize}`);
  const mode = String(db.pragma('journal_mode = WAL', { simple: true })).toLowerCase();
  if (mode !== 'wal') throw new EdgeliteError('IO_ERROR', `could not put ${db.name} in WAL mode (got ${mode})`);
}

export interface FromScratch {
  pageSize: number | null;
  pageCount: number;
  /** Checksum of every page but page 1, which the caller sets (it depends on the HeaderOverride). */
  sum: DatabaseChecksum | null;
  page1: Uint8Array | null;
}

/** readFromScratch reads every page of the file through a short-lived read-only connection. */
export function readFromScratch(path: string): FromScratch {
  let reader: Database.Database;
  try {
    reader = new Database(path, { readonly: true, fileMustExist: true });
    reader.unsafeMode(true);
    reader.pragma('writable_schema = ON'); // see WRITABLE_SCHEMA
  } catch (err) {
    throw sqliteError(err, `opening ${path} to read its pages`);
  }
  try {
    let sum: DatabaseChecksum | null = null;
    let page1: Uint8Array | null = null;
    const { pageSize, pageCount } = readLocalPages(reader, ({ pgno, data }) => {
      sum ??= new DatabaseChecksum(data.length);
      if (pgno === 1) page1 = new Uint8Array(data); // a copy: Buffer#slice would be a view
      else sum.setPage(pgno, data);
    });
    return { pageSize, pageCount, sum, page1 };
  } catch (err) {
    throw err instanceof EdgeliteError ? err : sqliteError(err, `reading pages of ${path}`);
  } finally {
    reader.close();
  }
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
