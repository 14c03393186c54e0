/**
 * Opening the primary's SQLite connections. The only primary module that imports better-sqlite3's
 * constructor; everything else receives connections.
 */
import Database from 'better-sqlite3';

export type Connection = Database.Database;
export type Stmt = Database.Statement<unknown[], unknown>;

export type SynchronousMode = 'full' | 'normal';

export interface WriterPragmas {
  synchronous: SynchronousMode;
  busyTimeoutMs: number;
}

/**
 * openWriter opens the connection the primary writes through. WAL mode; `wal_autocheckpoint=0`
 * because only the primary checkpoints, and only frames it has captured (DESIGN.md §2);
 * `journal_size_limit` so a restarted WAL is truncated back instead of staying at its largest size.
 */
export function openWriter(path: string, pragmas: WriterPragmas): Connection {
  const db = new Database(path);
  try {
    db.pragma(`busy_timeout = ${pragmas.busyTimeoutMs}`);
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (String(mode).toLowerCase() !== 'wal') throw new Error(`could not put ${path} in WAL mode (got ${String(mode)})`);
    db.pragma('wal_autocheckpoint = 0');
    db.pragma(`synchronous = ${pragmas.synchronous.toUpperCase()}`);
    db.pragma('foreign_keys = ON');
    db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** JOURNAL_SIZE_LIMIT: the WAL is truncated back to this size when it restarts. */
export const JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024;

/**
 * openReader opens a connection used to hold read transactions or read pages (`sqlite_dbpage`). It
 * never writes; `wal_autocheckpoint=0` so closing it never checkpoints uncaptured frames.
 */
export function openReader(path: string, busyTimeoutMs: number): Connection {
  const db = new Database(path, { fileMustExist: true });
  db.pragma(`busy_timeout = ${busyTimeoutMs}`);
  db.pragma('wal_autocheckpoint = 0');
  db.pragma('query_only = ON');
  return db;
}

/** openQueryConnection opens a read-only connection for the API's reads. */
export function openQueryConnection(path: string, busyTimeoutMs: number): Connection {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  db.pragma(`busy_timeout = ${busyTimeoutMs}`);
  db.pragma('query_only = ON');
  return db;
}
