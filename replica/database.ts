/**
 * ReplicaDatabase is one followed database on a replica: the page applier (the only writer), a
 * read-only query connection, what the primary last said about its position (for lag), and the reads
 * waiting for a txid (read-your-writes).
 */
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { EdgeliteError } from '../shared/errors.ts';
import type { QueryResult, Statement } from '../shared/protocol.ts';
import { clearStatementCache, runRead } from '../shared/sql.ts';
import { checkStatement } from '../shared/statement-policy.ts';
import type { ChangeSet, PageImage, Position } from '../shared/types.ts';
import { PageApplier } from './apply.ts';
import { PositionWaiters } from '../shared/waiters.ts';
import { LagTracker, type PrimaryView } from '../shared/lag.ts';
import type { QueryPool } from '../shared/node/query-pool.ts';


export { CONTACT_GRACE_MS, type PrimaryView } from '../shared/lag.ts';

export class ReplicaDatabase {
  readonly name: string;
  readonly path: string;
  readonly #applier: PageApplier;
  #query: Database.Database | null = null;
  readonly #waiters: PositionWaiters;
  readonly #lag = new LagTracker();
  /** Set while a snapshot is needed; reads keep being served from the last good state. */
  needsSnapshot: string | null = null;
  ready = false;

  /** Where query() runs, time-limited; null runs it on this thread (queryTimeoutMs 0). */
  readonly queryPool: QueryPool | null;

  constructor(name: string, path: string, busyTimeoutMs: number, queryPool: QueryPool | null = null) {
    this.name = name;
    this.#waiters = new PositionWaiters(name, () => this.position, () => this.lagMs);
    this.path = path;
    this.queryPool = queryPool;
    this.#applier = PageApplier.open(path, { closeReaders: () => this.#closeReads() });
    this.#busyTimeoutMs = busyTimeoutMs;
  }

  readonly #busyTimeoutMs: number;

  get position(): Position | null {
    return this.#applier.position;
  }

  get databaseId(): number | null {
    return this.#applier.databaseId;
  }

  get pageCount(): number {
    return this.#applier.pageCount;
  }

  get primary(): PrimaryView | null {
    return this.#lag.primary;
  }

  /** lagTxids is how many txids the primary had (at its last heartbeat) that we have not applied. */
  get lagTxids(): number {
    return this.#lag.lagTxids(this.position);
  }

  /** lagMs bounds how stale our data may be (shared/lag.ts). */
  get lagMs(): number {
    return this.#lag.lagMs(this.position);
  }

  notePrimary(view: PrimaryView): void {
    this.#lag.notePrimary(view, this.position);
  }

  /** apply applies consecutive change sets in one transaction, then wakes the reads waiting for them. */
  apply(changeSets: ChangeSet[]): Position {
    const pos = this.#applier.apply(changeSets);
    this.#lag.noteApplied(changeSets[changeSets.length - 1]!.timestamp, pos);
    this.#waiters.wake();
    return pos;
  }

  /**
   * restore replaces the database with a snapshot (bootstrap or re-snapshot): a file image, or its pages
   * in ascending order (read from a downloaded file, so the image is never in memory whole).
   */
  restore(image: Uint8Array | Iterable<PageImage>, position: Position, databaseId: number, timestamp: number): Position {
    const pos = this.#applier.restoreSnapshot(image, position, databaseId);
    this.#lag.noteApplied(timestamp, pos);
    this.needsSnapshot = null;
    if (this.#query) clearStatementCache(this.#query);
    this.#waiters.wake();
    return pos;
  }

  /**
   * query runs read-only statements on the local file: in the query pool when there is one (so a
   * runaway is stopped at the time limit and never blocks this thread), else on this thread.
   */
  async query(statements: Statement[]): Promise<QueryResult[]> {
    if (!this.position) {
      throw new EdgeliteError('UNAVAILABLE', `database ${this.name} is not replicated yet (bootstrapping)`);
    }
    for (const s of statements) {
      checkStatement(s.sql, 'read');
    }
    if (this.queryPool) return this.queryPool.run(this.path, statements);
    const conn = this.#queryConnection();
    return statements.map((s) => runRead(conn, s));
  }

  /** readPage returns the local image of one page (a delta change set's base), or null if absent. */
  readPage(pgno: number): Uint8Array | null {
    if (!this.position) return null;
    this.#pageRead ??= this.#queryConnection().prepare('SELECT data FROM sqlite_dbpage WHERE pgno = ?').pluck();
    const row = this.#pageRead.get(pgno);
    return row instanceof Uint8Array ? row : null;
  }

  #pageRead: Database.Statement | null = null;

  /** prepare returns a read-only statement on the local file (for in-process hot paths). */
  prepare(sql: string): Database.Statement {
    checkStatement(sql, 'read');
    const stmt = this.#queryConnection().prepare(sql);
    if (!stmt.readonly) throw new EdgeliteError('READ_ONLY', 'a replica statement must be read-only; send writes through exec');
    return stmt;
  }

  #queryConnection(): Database.Database {
    if (!this.#query) {
      if (!existsSync(this.path)) throw new EdgeliteError('UNAVAILABLE', `database ${this.name} has no file yet`);
      const conn = new Database(this.path, { readonly: true, fileMustExist: true });
      conn.pragma(`busy_timeout = ${this.#busyTimeoutMs}`);
      conn.pragma('query_only = ON');
      this.#query = conn;
    }
    return this.#query;
  }

  /** waitFor resolves once this replica has applied `txid` (shared/waiters.ts), or REPLICA_BEHIND. */
  waitFor(generation: number, txid: number, timeoutMs: number): Promise<void> {
    return this.#waiters.waitFor(generation, txid, timeoutMs);
  }

  /** waitForLag resolves once lagMs ≤ maxLagMs, or rejects with REPLICA_BEHIND after `timeoutMs`. */
  waitForLag(maxLagMs: number, timeoutMs: number): Promise<void> {
    return this.#waiters.waitForLag(maxLagMs, timeoutMs);
  }


  checkpoint(): void {
    this.#applier.checkpoint();
  }

  close(): void {
    this.#waiters.rejectAll(new EdgeliteError('UNAVAILABLE', `database ${this.name} closed`));
    this.#closeReads();
    this.#applier.close();
  }

  /** closeReads closes the read connection (the next read reopens it); see ApplierOptions.closeReaders. */
  #closeReads(): void {
    this.#pageRead = null;
    this.#query?.close();
    this.#query = null;
  }
}
