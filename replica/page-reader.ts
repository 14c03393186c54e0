/**
 * Reading a replica file's pages as they are on disk, through sqlite_dbpage: all of them in one read
 * transaction (readLocalPages), and from scratch through a short-lived connection of its own
 * (readFromScratch), which is how the applier checks a file against its position without trusting any
 * connection's cache.
 */
import Database from 'better-sqlite3';
import { statSync } from 'node:fs';
import { DatabaseChecksum } from '../shared/checksum.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { lockPageNumber } from '../shared/page-size.ts';
import type { PageImage } from '../shared/types.ts';
import { sqliteError, WRITABLE_SCHEMA } from './sqlite-file.ts';

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

export interface FromScratch {
  pageSize: number | null;
  pageCount: number;
  /** Checksum of every page but page 1, which the caller sets (it depends on the HeaderOverride). */
  sum: DatabaseChecksum | null;
  page1: Uint8Array | null;
}

/** readFromScratch reads every page of the file through a short-lived read-only connection. */
export function readFromScratch(path: string): FromScratch {
  // An empty file with no WAL holds no page: said without opening SQLite (a fresh replica of thousands
  // of databases creates each one empty before its snapshot arrives).
  if (fileSize(path) === 0 && (fileSize(`${path}-wal`) ?? 0) === 0) return { pageSize: null, pageCount: 0, sum: null, page1: null };
  let reader: Database.Database;
  try {
    reader = new Database(path, { readonly: true, fileMustExist: true });
    reader.unsafeMode(true);
    reader.pragma(WRITABLE_SCHEMA);
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

/** fileSize of `path`, or null when it does not exist. */
function fileSize(path: string): number | null {
  return statSync(path, { throwIfNoEntry: false })?.size ?? null;
}
