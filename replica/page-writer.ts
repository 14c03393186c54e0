/**
 * PageWriter is PageApplier's one writer connection (apply.ts says why it only ever writes pages, each
 * write one statement fed by a table-valued function), and knows whether that connection can write.
 *
 * Why it can be reopened (each fact measured as an unprivileged user, see
 * test/unit/apply-readonly.test.ts):
 * - SQLite opens a file it may not write (0444) read-only without an error, and the connection stays
 *   read-only after the file becomes writable: every write fails SQLITE_READONLY until it is reopened.
 * - A process's connections to one file share one shared-memory (`-shm`) mapping, opened read-only if
 *   the first of them could not write it; a connection opened while another one still holds that
 *   mapping is read-only too. So a reopen helps only once every connection of this process to the file
 *   is closed (PageApplier's `closeReaders` option).
 * - better-sqlite3's `readonly` only echoes the open option (it says false here), and `BEGIN IMMEDIATE`
 *   succeeds on a read-only connection; PROBE_SQL is a write that writes nothing and fails SQLITE_READONLY
 *   exactly when a real write would.
 */
import fs from 'node:fs';
import type Database from 'better-sqlite3';
import { EdgeliteError } from '../shared/errors.ts';
import { openWriter, setWalMode, sqliteError, type WriterOptions } from './sqlite-file.ts';
import { fsyncPath } from './position-file.ts';

const PAGES_FUNCTION = 'edgelite_pages';
/** PROBE_SQL starts a write transaction and, on a file with pages, writes none (the WAL does not grow). */
const PROBE_SQL = 'INSERT INTO sqlite_dbpage(pgno, data) SELECT 1, NULL WHERE 0';

/** A row for sqlite_dbpage: a page image, or `[n, null]` to truncate the file to n - 1 pages. */
export type Row = [number, Uint8Array | null];

export interface CheckpointResult {
  /** True when a reader kept the checkpoint from finishing (it never waits for readers). */
  busy: boolean;
  walFrames: number;
  checkpointedFrames: number;
}

export class PageWriter {
  readonly path: string;
  readonly #options: WriterOptions;
  #conn: { db: Database.Database; write: Database.Statement } | null = null;
  #rows: Iterable<Row> = [];
  /** Why the connection cannot write (closed, or its probe or last write failed SQLITE_READONLY*), or null. */
  #readOnly: EdgeliteError | null = null;

  /** The constructor opens the file (creating it if absent); a read-only connection is kept (readOnly says so). */
  constructor(path: string, options: WriterOptions) {
    this.path = path;
    this.#options = options;
    this.#open();
  }

  /** readOnly is why the connection cannot write, or null: when set, reopen() before any write. */
  get readOnly(): EdgeliteError | null {
    return this.#readOnly;
  }

  /**
   * reopen closes the connection and opens the file again. Throws (IO_ERROR, readOnly still set) when
   * the new connection cannot write either; the caller must have closed its other connections first.
   */
  reopen(): void {
    this.close();
    this.#open();
    if (this.#readOnly) throw this.#readOnly;
  }

  /** run writes `rows` in one autocommit statement; an error thrown while iterating them is rethrown. */
  run(rows: Iterable<Row>): void {
    const { write } = this.#connected();
    this.#rows = rows;
    try {
      write.run();
    } catch (err) {
      if (err instanceof EdgeliteError) throw err;
      const mapped = sqliteError(err, `writing pages to ${this.path}`);
      if (isReadOnly(err)) this.#readOnly = mapped;
      throw mapped;
    } finally {
      this.#rows = [];
    }
  }

  /**
   * install copies the database file `from` (complete and verified, page 1 already local) into this
   * writer's empty file in place: the same inode, so a reader that opened the empty file first sees
   * the database, like after any apply (docs/ARCHITECTURE.md#bootstrap-by-file). The kernel copies
   * (copy_file_range), no page goes through SQLite; on a filesystem that can share extents (btrfs, XFS)
   * it clones them instead (COPYFILE_FICLONE: still the same destination inode; elsewhere, as on this
   * project's ext4 machines, it falls back to the copy). An exclusive lock keeps readers out while the copy
   * runs (the copy's own descriptor is closed, and so POSIX releases the lock, only once it is
   * complete). Then the connection switches to WAL, as the file's header now says, which creates the
   * WAL and shared memory now (a directory that loses its write permission later still replicates),
   * and forgets its cache. A failed copy truncates the file back to empty and closes the connection.
   */
  install(from: string): void {
    const { db } = this.#connected();
    try {
      db.exec('BEGIN EXCLUSIVE');
    } catch (err) {
      throw sqliteError(err, `locking ${this.path} to install a snapshot`);
    }
    let copied = false;
    try {
      fs.copyFileSync(from, this.path, fs.constants.COPYFILE_FICLONE);
      if (this.#options.durable) fsyncPath(this.path);
      copied = true;
    } catch (err) {
      fs.truncateSync(this.path, 0);
      const code = (err as NodeJS.ErrnoException).code;
      throw new EdgeliteError(code === 'ENOSPC' ? 'DISK_FULL' : 'IO_ERROR', `installing a snapshot in ${this.path}: ${(err as Error).message}`, { cause: err });
    } finally {
      try {
        db.exec('ROLLBACK');
      } finally {
        if (!copied) this.close();
      }
    }
    try {
      setWalMode(db);
      this.dropCache();
    } catch (err) {
      this.close(); // the next write reopens it and reads the file from scratch
      throw err instanceof EdgeliteError ? err : sqliteError(err, `switching ${this.path} to WAL after installing a snapshot`);
    }
  }

  /**
   * setWalMode fixes the page size of an empty file and switches it to WAL (its first write). On a file
   * it may not write this fails SQLITE_READONLY like any write, and the connection is reopened next time.
   */
  setWalMode(pageSize: number): void {
    try {
      setWalMode(this.#connected().db, pageSize);
    } catch (err) {
      const mapped = err instanceof EdgeliteError ? err : sqliteError(err, `switching ${this.path} to WAL`);
      this.#readOnly = mapped;
      throw mapped;
    }
  }

  /**
   * dropCache empties the page cache after the schema cookie changed. The next statement then reloads
   * the schema (SQLite does so on a cookie change, for any statement), and it must read the pages fresh:
   * the cached ones still carry the b-tree parse of their old content, which sqlite_dbpage overwrote
   * underneath, and reading the schema through them failed with SQLITE_CORRUPT ("malformed database
   * schema") in test/unit/apply.test.ts.
   */
  dropCache(): void {
    this.#connected().db.pragma('shrink_memory');
  }

  /** checkpoint runs `wal_checkpoint(TRUNCATE)` without waiting for readers (see PageApplier.checkpoint). */
  checkpoint(): CheckpointResult {
    const { db } = this.#connected();
    try {
      db.pragma('busy_timeout = 0');
      const [row] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number; log: number; checkpointed: number }>;
      return { busy: row?.busy === 1, walFrames: row?.log ?? 0, checkpointedFrames: row?.checkpointed ?? 0 };
    } catch (err) {
      throw sqliteError(err, `checkpointing ${this.path}`);
    } finally {
      db.pragma(`busy_timeout = ${this.#options.busyTimeoutMs}`);
    }
  }

  /** close closes the connection; a later reopen() opens a new one. */
  close(): void {
    const conn = this.#conn;
    this.#conn = null;
    this.#readOnly = new EdgeliteError('IO_ERROR', `the writer of ${this.path} is closed`);
    conn?.db.close();
  }

  #open(): void {
    const db = openWriter(this.path, this.#options);
    try {
      const rows = () => this.#rows;
      db.table(PAGES_FUNCTION, { columns: ['pgno', 'data'], rows: function* () { yield* rows(); } });
      const write = db.prepare(`INSERT INTO sqlite_dbpage(pgno, data) SELECT pgno, data FROM ${PAGES_FUNCTION}()`);
      // Not an empty file: a write transaction on it writes page 1, fixing the page size and journal
      // mode the first snapshot must decide. Its first write tells instead.
      this.#readOnly = fs.statSync(this.path).size > 0 ? probe(db, this.path) : null;
      this.#conn = { db, write };
    } catch (err) {
      db.close();
      throw err instanceof EdgeliteError ? err : sqliteError(err, `opening ${this.path}`);
    }
  }

  #connected(): { db: Database.Database; write: Database.Statement } {
    if (this.#conn === null) throw this.#readOnly!;
    return this.#conn;
  }
}

/** probe returns why `db` cannot write (SQLITE_READONLY*), or null; any other failure is thrown. */
function probe(db: Database.Database, path: string): EdgeliteError | null {
  try {
    db.prepare(PROBE_SQL).run();
    return null;
  } catch (err) {
    if (!isReadOnly(err)) throw err;
    return sqliteError(err, `${path} cannot be written by this process (opened read-only)`);
  }
}

function isReadOnly(err: unknown): boolean {
  return String((err as { code?: unknown }).code ?? '').startsWith('SQLITE_READONLY');
}
