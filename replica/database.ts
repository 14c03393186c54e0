/**
 * ReplicaDatabase is one followed database on a replica: the page applier (the only writer) and a
 * read-only query connection, over the facade both replicas share (shared/replica-facade.ts: lag, the
 * reads waiting for a txid, the follower's flags and change events). Idle, the store closes its
 * connections (closeIdle, README.md#many-databases); the next read or apply reopens them.
 */
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { EdgeliteError } from '../shared/errors.ts';
import type { QueryResult, Statement } from '../shared/protocol.ts';
import { clearStatementCache, runRead } from '../shared/sql.ts';
import { checkStatement } from '../shared/statement-policy.ts';
import type { ChangeSet, PageImage, Position } from '../shared/types.ts';
import type { QueryPool } from '../shared/node/query-pool.ts';
import { ReplicaFacade } from '../shared/replica-facade.ts';
import { SnapshotView } from '../shared/node/snapshot-view.ts';
import { PageApplier } from './apply.ts';
import type { InstallableSnapshot } from './snapshot-file.ts';
import { toPrimaryPage1 } from './page1-header.ts';

export { CONTACT_GRACE_MS, type PrimaryView } from '../shared/lag.ts';

export class ReplicaDatabase extends ReplicaFacade {
  readonly path: string;
  readonly #applier: PageApplier;
  #query: Database.Database | null = null;

  /** Where query() runs, time-limited; null runs it on this thread (queryTimeoutMs 0). */
  readonly queryPool: QueryPool | null;
  /** When a read or an apply last used it (Date.now()), and who hears of every use (the store's LRU). */
  usedAt = Date.now();
  readonly #onUse: (db: ReplicaDatabase) => void;
  /** Whether the query pool may hold connections to it (a read ran there since the last closeIdle). */
  #pooled = false;

  constructor(name: string, path: string, busyTimeoutMs: number, queryPool: QueryPool | null = null, onUse: (db: ReplicaDatabase) => void = () => {}) {
    super(name);
    this.path = path;
    this.queryPool = queryPool;
    this.#onUse = onUse;
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

  /** apply applies consecutive change sets in one transaction, then wakes the reads waiting for them. */
  apply(changeSets: ChangeSet[]): Position {
    this.#use();
    const pos = this.#applier.apply(changeSets);
    this.noteApplied(changeSets[changeSets.length - 1]!.timestamp, pos);
    return pos;
  }

  /**
   * restore replaces the database with a snapshot (bootstrap or re-snapshot): a file image, or its pages
   * in ascending order (read from a downloaded file, so the image is never in memory whole).
   */
  restore(image: Uint8Array | Iterable<PageImage>, position: Position, databaseId: number, timestamp: number): Position {
    this.#use();
    const pos = this.#applier.restoreSnapshot(image, position, databaseId);
    this.needsSnapshot = null;
    if (this.#query) clearStatementCache(this.#query);
    this.noteApplied(timestamp, pos);
    return pos;
  }

  /**
   * takeSnapshot replaces the database with a downloaded, verified snapshot: the file itself when there
   * is no local file yet (PageApplier.installFile: nothing copied), else its pages (restore). Says which.
   */
  takeSnapshot(file: InstallableSnapshot & { pages(): Iterable<PageImage> }, timestamp: number): 'file' | 'pages' {
    this.#use();
    if (this.#applier.installFile(file)) {
      this.needsSnapshot = null;
      this.noteApplied(timestamp, file.head.position);
      return 'file';
    }
    this.restore(file.pages(), file.head.position, file.head.databaseId, timestamp);
    return 'pages';
  }

  /**
   * query runs read-only statements on the local file: through the query pool when there is one (on
   * this thread's connection for a slice, then in a query process: a runaway is stopped at the time
   * limit and never blocks this thread for more than the slice), else on this thread, unlimited.
   */
  async query(statements: Statement[]): Promise<QueryResult[]> {
    if (!this.position) {
      throw new EdgeliteError('UNAVAILABLE', `database ${this.name} is not replicated yet (bootstrapping)`);
    }
    for (const s of statements) {
      checkStatement(s.sql, 'read');
    }
    this.#use();
    if (this.queryPool) {
      this.#pooled = true;
      return this.queryPool.run(this.path, statements, this.queryPool.timeoutMs, this.#local);
    }
    const conn = this.#queryConnection();
    return statements.map((s) => runRead(conn, s));
  }

  /** readPage returns the local image of one page (a delta change set's base), or null if absent. */
  readPage(pgno: number): Uint8Array | null {
    if (!this.position) return null;
    this.#use();
    this.#pageRead ??= this.#queryConnection().prepare('SELECT data FROM sqlite_dbpage WHERE pgno = ?').pluck();
    const row = this.#pageRead.get(pgno);
    return row instanceof Uint8Array ? row : null;
  }

  /**
   * beginSnapshot pins the local copy at its position for GET /v1/db/{name}/snapshot
   * (README.md#http-api): a read-only connection of its own begins a read transaction in the same
   * synchronous turn as the position is taken, and only the applier, on this thread, writes the file,
   * so no apply falls between the two and the pages read are exactly the position's. Page 1 goes out as
   * the primary has it (toPrimaryPage1 with the header override of that moment), so the image hashes to
   * the position's checksum and the primary's wire format holds. The caller ends the view.
   */
  beginSnapshot(onEnd?: () => void): SnapshotView {
    const position = this.position;
    const databaseId = this.databaseId;
    const pageSize = this.#applier.pageSize;
    if (!position || databaseId === null || pageSize === null) {
      throw new EdgeliteError('REPLICA_BEHIND', `database ${this.name} is not replicated here yet`);
    }
    this.#use();
    const header = this.#applier.headerOverride;
    const conn = new Database(this.path, { readonly: true, fileMustExist: true });
    try {
      conn.pragma(`busy_timeout = ${this.#busyTimeoutMs}`);
      conn.exec('BEGIN');
      const pageCount = Number(conn.pragma('page_count', { simple: true }));
      return new SnapshotView(conn, { ...position }, databaseId, pageSize, pageCount, { page1: (page) => toPrimaryPage1(page, header), ...(onEnd ? { onEnd } : {}) });
    } catch (err) {
      conn.close();
      throw err;
    }
  }

  #pageRead: Database.Statement | null = null;
  readonly #local = (): Database.Database => this.#queryConnection();

  /** prepare returns a read-only statement on the local file (for in-process hot paths). */
  prepare(sql: string): Database.Statement {
    checkStatement(sql, 'read');
    this.#use();
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

  checkpoint(): void {
    this.#use();
    this.#applier.checkpoint();
  }

  /** isOpen says whether it may hold connections (and descriptors): false after closeIdle until the next use. */
  get isOpen(): boolean {
    return this.#applier.isOpen || this.#query !== null || this.#pooled;
  }

  /**
   * closeIdle closes every connection it holds (the query connection, the query processes' ones, the
   * applier's writer and sidecar) and keeps what it knows in memory (position, lag, waits); the next
   * read or apply reopens what it needs. A statement from prepare() must not be used after it.
   */
  closeIdle(): void {
    this.#closeReads();
    if (this.#pooled) this.queryPool?.forget(this.path);
    this.#pooled = false;
    this.#applier.suspend();
  }

  #use(): void {
    this.usedAt = Date.now();
    this.#onUse(this);
  }

  close(): void {
    this.closeWaits(new EdgeliteError('UNAVAILABLE', `database ${this.name} closed`));
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
