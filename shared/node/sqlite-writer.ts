/**
 * openWriter opens a connection that writes a primary's database: the primary's own writer and the
 * query processes that run its API writes (sql-process.ts) open it the same way. WAL mode;
 * `wal_autocheckpoint=0` because only the primary checkpoints, and only frames it has captured
 * (docs/ARCHITECTURE.md#capture-rules); `journal_size_limit` so a restarted WAL is truncated back instead of staying at its
 * largest size.
 */
import Database from 'better-sqlite3';

export type SynchronousMode = 'full' | 'normal';

export interface WriterPragmas {
  synchronous: SynchronousMode;
  busyTimeoutMs: number;
}

/** JOURNAL_SIZE_LIMIT: the WAL is truncated back to this size when it restarts. */
export const JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024;

export function openWriter(path: string, pragmas: WriterPragmas, options: Database.Options = {}): Database.Database {
  const db = new Database(path, options);
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
