/**
 * Reading a primary database's pages and WAL whole, for recovery and new generations (database.ts):
 * the checksum of the file on its own, every page through `sqlite_dbpage`, the WAL to its end, and
 * what chooseRecovery (recovery.ts) needs to know about the WAL.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { DatabaseChecksum, lockPageNumber } from '../shared/checksum.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { WalSinceLogged } from './recovery.ts';
import type { Connection } from './sqlite.ts';
import type { WalCursor, WalReader, WalTransaction } from './wal-reader.ts';

/** readPages yields every page of the database but SQLite's lock page (never stored, never hashed). */
export function* readPages(conn: Connection, pageSize: number): Generator<{ pgno: number; data: Uint8Array }> {
  const lock = lockPageNumber(pageSize);
  for (const row of conn.prepare('SELECT pgno, data FROM sqlite_dbpage WHERE pgno != ?').iterate(lock)) {
    yield row as { pgno: number; data: Uint8Array };
  }
}

/** readPageImages reads the listed pages as `conn` sees them (its read transaction's snapshot), in order. */
export function readPageImages(conn: Connection, pgnos: number[]): Array<{ pgno: number; data: Uint8Array }> {
  const stmt = conn.prepare('SELECT data FROM sqlite_dbpage WHERE pgno = ?').pluck();
  return pgnos.map((pgno) => {
    const data = stmt.get(pgno);
    if (!(data instanceof Uint8Array)) throw new EdgeliteError('INTERNAL', `page ${pgno} could not be read`);
    return { pgno, data };
  });
}

/**
 * fileChecksum is the checksum of the database file itself, without its WAL: the pages SQLite would
 * see with no WAL frames (size from the header when it is valid, else from the file length).
 */
export function fileChecksum(path: string, pageSize: number): bigint {
  const fd = openSync(path, 'r');
  try {
    const page = new Uint8Array(pageSize);
    if (readSync(fd, page, 0, pageSize, 0) < pageSize) return -1n;
    const header = new DataView(page.buffer);
    const counterValid = header.getUint32(24) === header.getUint32(92);
    const pages = counterValid ? header.getUint32(28) : Math.floor(fstatSync(fd).size / pageSize);
    const sum = new DatabaseChecksum(pageSize);
    const lock = lockPageNumber(pageSize);
    for (let pgno = 1; pgno <= pages; pgno++) {
      if (pgno === lock) continue;
      if (readSync(fd, page, 0, pageSize, (pgno - 1) * pageSize) < pageSize) return -1n;
      sum.setPage(pgno, page);
    }
    return sum.value;
  } finally {
    closeSync(fd);
  }
}

/** readAll reads the WAL to its end from `cursor`, appending to `transactions`. */
export function readAll(wal: WalReader, transactions: WalTransaction[], cursor: WalCursor | null): { transactions: WalTransaction[]; cursor: WalCursor | null } {
  for (;;) {
    const res = wal.read(cursor);
    if (res.start === 'mismatch') return { transactions, cursor };
    transactions.push(...res.transactions);
    cursor = res.cursor ?? cursor;
    if (res.transactions.length === 0) return { transactions, cursor };
  }
}

/** databaseChecksum is the checksum of every page `conn` reads (its read transaction's snapshot). */
export function databaseChecksum(conn: Connection, pageSize: number): DatabaseChecksum {
  return DatabaseChecksum.fromPages(pageSize, readPages(conn, pageSize));
}

/** walEnd is the cursor at the end of the WAL as it is now, read from its first frame. */
export function walEnd(wal: WalReader): WalCursor | null {
  return readAll(wal, [], null).cursor;
}

/**
 * walSinceLogged reads the WAL from the logged cursor: what chooseRecovery needs, and the transactions
 * to catch up with. `path` is the database file, null when the generation cannot continue (generation
 * 0): then neither the transactions nor the file's own checksum (a whole-file read) are read.
 */
export function walSinceLogged(wal: WalReader, cursor: WalCursor, path: string | null, pageSize: number): { wal: WalSinceLogged; transactions: WalTransaction[] } {
  let res;
  try {
    res = wal.read(cursor);
  } catch (err) {
    if (!(err instanceof EdgeliteError) || err.code !== 'WAL_INVALID') throw err;
    return { wal: { start: 'invalid', message: err.message }, transactions: [] };
  }
  const continues = path !== null && (res.start === 'continued' || res.start === 'restarted');
  const transactions = continues ? readAll(wal, res.transactions, res.cursor).transactions : [];
  const file = path !== null && res.start === 'restarted' ? fileChecksum(path, pageSize) : null;
  return { wal: { start: res.start, header: res.header !== null, transactions: transactions.length, fileChecksum: file }, transactions };
}
