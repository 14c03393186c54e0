/**
 * Opening the primary's SQLite connections. The only primary module that imports better-sqlite3's
 * constructor; everything else receives connections. The writer's settings live in
 * shared/node/sqlite-writer.ts, because the query processes open writers the same way.
 */
import Database from 'better-sqlite3';

export type Connection = Database.Database;
export type Stmt = Database.Statement<unknown[], unknown>;

export { JOURNAL_SIZE_LIMIT, openWriter, type SynchronousMode, type WriterPragmas } from '../shared/node/sqlite-writer.ts';

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
