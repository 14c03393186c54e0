/**
 * ReadLock keeps a read transaction open on the database at all times, so that no checkpoint by any
 * process can restart the WAL past frames the primary has not captured yet (docs/ARCHITECTURE.md#capture-rules). A WAL
 * restart needs every reader off the WAL; holding a read mark prevents it.
 *
 * Moving the mark forward uses two connections: begin the new read transaction, then end the old one,
 * so there is never a moment with no read transaction of ours. A read transaction that begins when the
 * WAL is fully checkpointed takes read mark 0, which does not block a restart — but then every frame
 * in the WAL was already backfilled, which needs our previous mark to cover them, and we capture
 * everything up to our previous mark before advancing. So a restart can only discard captured frames.
 */
import type { Connection, Stmt } from './sqlite.ts';

export class ReadLock {
  readonly #conns: [Connection, Connection];
  #active = -1;

  constructor(a: Connection, b: Connection) {
    this.#conns = [a, b];
  }

  get held(): boolean {
    return this.#active >= 0;
  }

  /** activeConnection is the connection holding the read transaction (reads see its snapshot). */
  get activeConnection(): Connection {
    if (this.#active < 0) throw new Error('ReadLock: no read transaction held');
    return this.#conns[this.#active]!;
  }

  /** idleConnection is a connection not holding the lock (e.g. to run a checkpoint from). */
  get idleConnection(): Connection {
    return this.#conns[this.#active === 0 ? 1 : 0];
  }

  /** advance takes a new read transaction at the current end of the WAL, then ends the old one. */
  advance(): void {
    const next = this.#active === 0 ? 1 : 0;
    begin(this.#conns[next]);
    if (this.#active >= 0) end(this.#conns[this.#active]!);
    this.#active = next;
  }

  /** release ends the read transaction (before a checkpoint of our own). */
  release(): void {
    if (this.#active >= 0) end(this.#conns[this.#active]!);
    this.#active = -1;
  }

  close(): void {
    this.release();
    for (const c of this.#conns) c.close();
  }
}

const snapshotReads = new WeakMap<Connection, Stmt>();

function begin(conn: Connection): void {
  conn.exec('BEGIN');
  // A deferred transaction takes its snapshot on the first read.
  let stmt = snapshotReads.get(conn);
  if (!stmt) {
    stmt = conn.prepare<unknown[]>('SELECT count(*) FROM sqlite_schema').pluck();
    snapshotReads.set(conn, stmt);
  }
  stmt.get();
}

function end(conn: Connection): void {
  if (conn.inTransaction) conn.exec('COMMIT');
}
