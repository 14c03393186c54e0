/**
 * PrimaryDatabase owns one writable database: its connections, the read lock, capture, the change-set
 * log and the generation metadata. Its SQLite work is synchronous; API writes and reads may instead run
 * in query processes (write-queue.ts, shared/node/query-pool.ts). The HTTP layer calls it.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseChecksum } from '../shared/checksum.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { QueryPool } from '../shared/node/query-pool.ts';
import type { QueryResult, Statement } from '../shared/protocol.ts';
import { runRead, runWrite, sqliteError, type StatementResult } from '../shared/sql.ts';
import { formatChecksum, parseChecksum, type Position } from '../shared/types.ts';
import { Capturer, decodeCursor, type Captured, type CaptureState } from './capture.ts';
import { ChangeSetLog, type LogOptions } from './log.ts';
import { newDatabaseId, readMeta, writeMeta, type DatabaseMeta } from './meta.ts';
import { PageCache } from './page-cache.ts';
import { fileChecksum, readAll, readPages } from './db-read.ts';
import { ReadLock } from './read-lock.ts';
import { WriteQueue, type WriteQueueStats } from './write-queue.ts';
import { SnapshotView } from './snapshot.ts';
import { assertNoTransaction, checkStatement } from '../shared/statement-policy.ts';
import { openQueryConnection, openReader, openWriter, type Connection, type SynchronousMode } from './sqlite.ts';
import { WalReader } from './wal-reader.ts';

export interface DatabaseOptions {
  synchronous: SynchronousMode;
  busyTimeoutMs: number;
  compress: boolean;
  /** Checkpoint once the WAL holds this many frames (all captured and logged first). */
  checkpointFrames: number;
  log: Omit<LogOptions, 'sync'>;
  onCapture: (c: Captured) => void;
  /** Whether any stream subscriber wants delta change sets (see page-cache.ts). */
  wantDeltas?: () => boolean;
  /** Where API reads run, time-limited (shared/node/query-pool.ts); absent: on this thread, unlimited. */
  queryPool?: QueryPool | null;
  logger: (event: Record<string, unknown>) => void;
}

export interface ExecOutcome {
  results: StatementResult[];
  position: Position;
}

export class PrimaryDatabase {
  readonly name: string;
  readonly path: string;
  readonly #writer: Connection;
  readonly #query: Connection;
  readonly #lock: ReadLock;
  readonly #wal: WalReader;
  readonly #log: ChangeSetLog;
  readonly #metaPath: string;
  readonly #opts: DatabaseOptions;
  #meta: DatabaseMeta;
  #capturer: Capturer;
  #checkpointedAtFrame = -1;
  readonly #pageCache = new PageCache();
  /** The API writes, when they run in query processes (write-queue.ts); null: exec on this thread. */
  readonly #writes: WriteQueue | null;
  #closed = false;

  private constructor(name: string, path: string, dataDir: string, opts: DatabaseOptions) {
    this.name = name;
    this.path = path;
    this.#opts = opts;
    const pool = opts.queryPool;
    this.#writes = pool
      ? new WriteQueue({ pool, path, sync: opts.synchronous, waitMs: pool.timeoutMs, onCommitted: () => this.capture() })
      : null;
    const stateDir = join(dataDir, '.edgelite', name);
    mkdirSync(stateDir, { recursive: true });
    this.#metaPath = join(stateDir, 'meta.json');
    this.#writer = openWriter(path, { synchronous: opts.synchronous, busyTimeoutMs: opts.busyTimeoutMs });
    this.#lock = new ReadLock(openReader(path, opts.busyTimeoutMs), openReader(path, opts.busyTimeoutMs));
    this.#query = openQueryConnection(path, opts.busyTimeoutMs);
    this.#wal = new WalReader(`${path}-wal`);
    this.#log = ChangeSetLog.open(join(stateDir, 'log'), { ...opts.log, sync: opts.synchronous });
    const existing = readMeta(this.#metaPath);
    this.#meta = existing ?? {
      version: 1,
      databaseId: newDatabaseId(),
      generation: 0,
      startTxid: 0,
      startChecksum: formatChecksum(0n),
      startCursor: null,
      reason: 'created',
    };
    this.#capturer = this.#recover();
  }

  /** open opens (creating if needed) `<dataDir>/<name>.db` and recovers its capture state. */
  static open(name: string, dataDir: string, opts: DatabaseOptions): PrimaryDatabase {
    return new PrimaryDatabase(name, join(dataDir, `${name}.db`), dataDir, opts);
  }

  get databaseId(): number {
    return this.#meta.databaseId;
  }

  get position(): Position {
    return this.#capturer.position;
  }

  get pageSize(): number {
    return this.#capturer.checksum.pageSize;
  }

  get pageCount(): number {
    return this.#capturer.checksum.pageCount;
  }

  /** lastCommitTime is the primary's commit time of the newest captured transaction (ms). */
  get lastCommitTime(): number {
    return this.#capturer.state.timestamp;
  }

  get log(): ChangeSetLog {
    return this.#log;
  }

  /** writeStats: the group commit's figures (write-queue.ts), for /metrics; null without a query pool. */
  get writeStats(): WriteQueueStats | null {
    return this.#writes?.stats() ?? null;
  }

  /** generationStart is the position a replica may hold at the start of the current generation. */
  get generationStart(): Position {
    return { generation: this.#meta.generation, txid: this.#meta.startTxid, checksum: parseChecksum(this.#meta.startChecksum) };
  }

  /**
   * #recover reconciles the log with the database under a write barrier (no foreign commit can land
   * while it runs): continue the generation when the WAL verifies from the logged cursor, or when the
   * database is exactly what the log says; otherwise start a new generation at the current state.
   */
  #recover(): Capturer {
    this.#writer.exec('BEGIN IMMEDIATE');
    try {
      this.#lock.advance();
      const pageSize = Number(this.#writer.pragma('page_size', { simple: true }));
      const checksum = DatabaseChecksum.fromPages(pageSize, readPages(this.#lock.activeConnection, pageSize));
      const last = this.#log.last();
      const fromLog = last && last.generation >= this.#meta.generation;
      const logged = fromLog
        ? { generation: last.generation, txid: last.maxTxid, checksum: last.postChecksum, cursor: decodeCursor(last.meta) }
        : { generation: this.#meta.generation, txid: this.#meta.startTxid, checksum: parseChecksum(this.#meta.startChecksum), cursor: this.#meta.startCursor };
      const state: CaptureState = {
        databaseId: this.#meta.databaseId,
        generation: logged.generation,
        txid: logged.txid,
        cursor: logged.cursor,
        timestamp: last?.timestamp ?? Date.now(),
      };
      const capturer = this.#newCapturer(checksum, state);
      const pending = logged.cursor ? this.#wal.read(logged.cursor) : null;
      if (this.#meta.generation > 0 && pending?.start === 'continued') {
        const txs = readAll(this.#wal, pending.transactions, pending.cursor);
        if (txs.transactions.length > 0) {
          capturer.emitCatchUp(txs.transactions, logged.checksum);
          this.#opts.logger({ msg: 'recovered transactions from the WAL', db: this.name, count: txs.transactions.length, txid: state.txid });
          return capturer;
        }
        if (checksum.value === logged.checksum) {
          // A missing or empty WAL reads as 'continued' with nothing new; its next frames are fresh.
          if (!pending.header) state.cursor = null;
          return capturer;
        }
      } else if (this.#meta.generation > 0 && pending?.start === 'restarted' && fileChecksum(this.path, pageSize) === logged.checksum) {
        // The WAL restarted after everything in the old one was captured and checkpointed (we were
        // killed between a commit that restarted it and its capture): the database file itself is the
        // logged state, so the new WAL's transactions are exactly what follows the logged position.
        const txs = readAll(this.#wal, pending.transactions, pending.cursor);
        state.cursor = txs.cursor;
        if (txs.transactions.length > 0) {
          capturer.emitCatchUp(txs.transactions, logged.checksum);
          this.#opts.logger({ msg: 'recovered transactions from a restarted WAL', db: this.name, count: txs.transactions.length, txid: state.txid });
          return capturer;
        }
        if (checksum.value === logged.checksum) return capturer;
      } else if (this.#meta.generation > 0 && checksum.value === logged.checksum) {
        // The WAL was checkpointed away (clean shutdown, or a checkpoint with no new writes).
        state.cursor = readAll(this.#wal, [], null).cursor;
        return capturer;
      }
      const reason = this.#meta.generation === 0 ? 'created' : `database differs from the log (WAL ${pending?.start ?? 'absent'})`;
      this.#startGeneration(capturer, reason);
      return capturer;
    } finally {
      this.#writer.exec('ROLLBACK');
    }
  }

  /** #startGeneration declares the current state a new snapshot point; txids keep increasing. */
  #startGeneration(capturer: Capturer, reason: string): void {
    const state = capturer.state as CaptureState;
    state.cursor = readAll(this.#wal, [], null).cursor;
    state.generation = this.#meta.generation + 1;
    if (this.#meta.generation > 0) state.txid += 1;
    this.#meta = {
      ...this.#meta,
      generation: state.generation,
      startTxid: state.txid,
      startChecksum: formatChecksum(capturer.checksum.value),
      startCursor: state.cursor,
      reason,
    };
    writeMeta(this.#metaPath, this.#meta);
    this.#opts.logger({ msg: 'new generation', db: this.name, generation: state.generation, txid: state.txid, reason });
  }

  #newCapturer(checksum: DatabaseChecksum, state: CaptureState): Capturer {
    return new Capturer({
      db: this.name,
      wal: this.#wal,
      lock: this.#lock,
      log: this.#log,
      checksum,
      state,
      compress: this.#opts.compress,
      onCapture: this.#opts.onCapture,
      pageCache: this.#pageCache,
      wantDeltas: this.#opts.wantDeltas ?? (() => false),
    });
  }

  /**
   * capture picks up transactions committed since the last capture (by us or by another process).
   * An unverifiable WAL starts a new generation under a write barrier.
   */
  capture(): number {
    this.#assertOpen();
    try {
      const n = this.#capturer.capture();
      const cursor = this.#capturer.state.cursor;
      // Never while a query process may hold the write lock: it would block this thread (write-gate.ts).
      // The capture after that write comes back does it.
      if (cursor && cursor.frame >= this.#opts.checkpointFrames && cursor.frame !== this.#checkpointedAtFrame && !this.#writes?.busy) {
        this.checkpoint();
        this.#checkpointedAtFrame = cursor.frame;
      }
      return n;
    } catch (err) {
      if (!(err instanceof EdgeliteError) || err.code !== 'WAL_INVALID') throw err;
      if (this.#writes?.busy) return 0; // the barrier below must wait; the capture after the write retries
      this.#writer.exec('BEGIN IMMEDIATE');
      try {
        this.#lock.advance();
        const checksum = DatabaseChecksum.fromPages(this.pageSize, readPages(this.#lock.activeConnection, this.pageSize));
        const state = { ...this.#capturer.state };
        this.#capturer = this.#newCapturer(checksum, state);
        this.#startGeneration(this.#capturer, err.message);
      } finally {
        this.#writer.exec('ROLLBACK');
      }
      return 0;
    }
  }

  /**
   * exec runs a batch of statements as one transaction (a single statement runs on its own, so VACUUM
   * works), captures it, and returns the results with the position that contains it.
   */
  exec(statements: Statement[]): ExecOutcome {
    this.#assertOpen();
    for (const s of statements) checkStatement(s.sql, 'write');
    let results: StatementResult[];
    if (statements.length === 1) {
      results = [runWrite(this.#writer, statements[0]!)];
      assertNoTransaction(this.#writer);
    } else {
      const tx = this.#writer.transaction(() => statements.map((s) => runWrite(this.#writer, s)));
      try {
        results = tx.immediate();
      } catch (err) {
        throw sqliteError(err);
      }
    }
    this.capture();
    return { results, position: this.position };
  }

  /**
   * write is the API's exec: with a query pool, the statements run in a query process under the time
   * limit (QUERY_TIMEOUT: not committed), group-committed with the writes queued alongside
   * (write-queue.ts), and captured here when they come back; without one, exec on this thread.
   */
  async write(statements: Statement[]): Promise<ExecOutcome> {
    if (!this.#writes) return this.exec(statements);
    this.#assertOpen();
    for (const s of statements) checkStatement(s.sql, 'write');
    const results = await this.#writes.submit(statements);
    return { results, position: this.position };
  }

  /** openSnapshot is beginSnapshot in turn with the API writes (its barrier must not wait on theirs). */
  openSnapshot(): Promise<SnapshotView> {
    return this.#writes ? this.#writes.barrier(() => this.beginSnapshot()) : Promise.resolve().then(() => this.beginSnapshot());
  }

  /**
   * whenDurable resolves once what was captured so far is as durable as the database promises: with
   * synchronous=FULL after a group-committed fsync of the log; with NORMAL at once (the log is fsynced
   * in batches and always before a checkpoint).
   */
  async whenDurable(): Promise<void> {
    if (this.#opts.synchronous === 'full') await this.#log.sync();
  }

  /**
   * query runs read-only statements: in the query pool when there is one, so that a runaway read is
   * stopped at the time limit (QUERY_TIMEOUT) and never blocks this thread, where captures, writes and
   * the stream run; else on the primary's own read-only connection.
   */
  async query(statements: Statement[]): Promise<QueryResult[]> {
    this.#assertOpen();
    for (const s of statements) checkStatement(s.sql, 'read');
    if (this.#opts.queryPool) return this.#opts.queryPool.run(this.path, statements);
    return statements.map((s) => {
      const result = runRead(this.#query, s);
      assertNoTransaction(this.#query);
      return result;
    });
  }

  /**
   * beginSnapshot pins a consistent view at a known position without blocking writers for longer than
   * one capture: under a write barrier it captures everything, then opens a read transaction on a new
   * connection. The caller reads pages from it and must call `end()`.
   */
  beginSnapshot(): SnapshotView {
    this.#assertOpen();
    const conn = openReader(this.path, this.#opts.busyTimeoutMs);
    this.#writer.exec('BEGIN IMMEDIATE');
    try {
      this.#capturer.capture();
      conn.exec('BEGIN');
      const pageCount = Number(conn.pragma('page_count', { simple: true }));
      return new SnapshotView(conn, this.position, this.databaseId, this.pageSize, pageCount);
    } catch (err) {
      conn.close();
      throw err;
    } finally {
      this.#writer.exec('ROLLBACK');
    }
  }

  /**
   * checkpoint moves captured frames into the database file so the WAL can restart: under a write
   * barrier, capture the rest, make the log durable, drop our read mark, PASSIVE-checkpoint, and take
   * the mark again (at 0, which lets the next writer restart the WAL over frames we already hold).
   */
  checkpoint(): void {
    this.#assertOpen();
    this.#writer.exec('BEGIN IMMEDIATE');
    try {
      this.#capturer.capture();
      this.#log.syncNow();
      this.#lock.release();
      this.#lock.idleConnection.pragma('wal_checkpoint(PASSIVE)');
      this.#log.prune();
    } finally {
      this.#lock.advance();
      this.#writer.exec('ROLLBACK');
    }
  }

  /** close captures what is left, makes the log durable and closes every connection. */
  close(): void {
    if (this.#closed) return;
    this.#writes?.close();
    try {
      this.capture();
      this.#log.syncNow();
    } finally {
      this.#closed = true;
      this.#lock.close();
      this.#query.close();
      this.#wal.close();
      this.#writer.close();
      this.#log.close();
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new EdgeliteError('UNAVAILABLE', `database ${this.name} is closed`);
  }
}

