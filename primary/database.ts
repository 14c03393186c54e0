/**
 * PrimaryDatabase owns one writable database: its connections, the read lock, capture, the change-set
 * log and the generation metadata. Its SQLite work is synchronous; API writes and reads may instead run
 * in query processes (write-queue.ts, shared/node/query-pool.ts). The HTTP layer calls it.
 */
import { mkdirSync } from 'node:fs';
import { dropClosedRecord, fileSignature, readClosedRecord, readPageHashes, recordPosition, unchangedSince, walUntouchedSinceOpen, writeClosedRecord, type ClosedRecord, type FileSignature } from './closed-record.ts';
import { join } from 'node:path';
import { DatabaseChecksum } from '../shared/checksum.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { QueryPool } from '../shared/node/query-pool.ts';
import type { QueryResult, Statement } from '../shared/protocol.ts';
import { runRead, runWrite, sqliteError, type StatementResult } from '../shared/sql.ts';
import { formatChecksum, parseChecksum, type Position } from '../shared/types.ts';
import { Capturer, decodeCursor, type Captured, type CaptureState } from './capture.ts';
import { ChangeSetLog, type LogOptions } from './log.ts';
import { generationStarts, MAX_GENERATION_STARTS, metaPath, newMeta, readMeta, stateDir as stateDirOf, writeMeta, type DatabaseMeta } from './meta.ts';
import type { GenerationStart } from '../shared/consistency.ts';
import { PageCache } from './page-cache.ts';
import { databaseChecksum, readPageImages, walEnd, walSinceLogged } from './db-read.ts';
import { ReadLock } from './read-lock.ts';
import { WriteQueue, type WriteQueueStats } from './write-queue.ts';
import { SnapshotView } from './snapshot.ts';
import { assertNoTransaction, checkStatement } from '../shared/statement-policy.ts';
import { openQueryConnection, openReader, openWriter, type Connection, type SynchronousMode } from './sqlite.ts';
import { chooseRecovery } from './recovery.ts';
import { WalReader, type WalCursor } from './wal-reader.ts';

export interface DatabaseOptions {
  synchronous: SynchronousMode;
  busyTimeoutMs: number;
  compress: boolean;
  /** Checkpoint once the WAL holds this many frames (all captured and logged first). */
  checkpointFrames: number;
  log: Omit<LogOptions, 'sync'>;
  onCapture: (c: Captured) => void;
  /**
   * onGeneration hears every new generation this database starts, recovery at open included, once the
   * write barrier it started under is gone (the store turns it into the stream's new-generation frame).
   */
  onGeneration?: (change: GenerationChange) => void;
  /** Whether any stream subscriber wants delta change sets (see page-cache.ts). */
  wantDeltas?: () => boolean;
  /** Where API reads run, time-limited (shared/node/query-pool.ts); absent: on this thread, unlimited. */
  queryPool?: QueryPool | null;
  logger: (event: Record<string, unknown>) => void;
  /** The commit-time clock (ms): Date.now unless a test runs simulated time (with the backup's clock). */
  clock?: () => number;
}

/** GenerationChange: the database started `generation` at `txid` (its snapshot point), for `reason`. */
export interface GenerationChange {
  db: string;
  generation: number;
  txid: number;
  reason: string;
}

export interface ExecOutcome {
  results: StatementResult[];
  position: Position;
}

export class PrimaryDatabase {
  readonly name: string;
  readonly path: string;
  readonly #writer: Connection;
  /** The API reads' connection, opened by the first read (a write to a closed database does not wait for it). */
  #queryConn: Connection | null = null;
  readonly #lock: ReadLock;
  readonly #wal: WalReader;
  readonly #log: ChangeSetLog;
  readonly #metaPath: string;
  readonly #stateDir: string;
  readonly #opts: DatabaseOptions;
  #meta: DatabaseMeta;
  #capturer: Capturer;
  #checkpointedAtFrame = -1;
  readonly #pageCache = new PageCache();
  /** The API writes, when they run in query processes (write-queue.ts); null: exec on this thread. */
  readonly #writes: WriteQueue | null;
  #closed = false;
  /** A generation started under the current write barrier, announced when the barrier ends. */
  #unannounced: GenerationChange | null = null;

  private constructor(name: string, path: string, dataDir: string, opts: DatabaseOptions) {
    this.name = name;
    this.path = path;
    this.#opts = opts;
    const pool = opts.queryPool;
    // With synchronous=NORMAL a commit costs no fsync, so batches start on this thread's writer for a
    // slice of the limit (write-queue.ts); with FULL they always go to a process (the fsync off the loop).
    const local = pool && pool.sliceMs > 0 && opts.synchronous === 'normal'
      ? { conn: () => this.#writer, sliceMs: pool.sliceMs, busyTimeoutMs: opts.busyTimeoutMs }
      : undefined;
    this.#writes = pool
      ? new WriteQueue({ pool, path, sync: opts.synchronous, waitMs: pool.timeoutMs, onCommitted: () => this.capture(), ...(local ? { local } : {}) })
      : null;
    const stateDir = stateDirOf(dataDir, name);
    mkdirSync(stateDir, { recursive: true });
    this.#stateDir = stateDir;
    // Read before anything of ours touches the files, then removed: from here on it would describe the past.
    const record = readClosedRecord(stateDir);
    if (record) dropClosedRecord(stateDir);
    // Whether the files are as the record left them is judged now, before our connections open: opening
    // one creates an empty WAL (closed-record.ts#walUntouchedSinceOpen), so a check after it never trusts.
    const untouched = record && unchangedSince(record, path) ? { record, wal: fileSignature(`${path}-wal`) } : null;
    this.#metaPath = metaPath(dataDir, name);
    this.#writer = openWriter(path, { synchronous: opts.synchronous, busyTimeoutMs: opts.busyTimeoutMs });
    this.#lock = new ReadLock(openReader(path, opts.busyTimeoutMs), openReader(path, opts.busyTimeoutMs));
    this.#wal = new WalReader(`${path}-wal`);
    // A closed record is written after the close fsynced the log: what the log holds up to it is durable.
    const durable = record ? { durableThrough: record.txid } : {};
    this.#log = ChangeSetLog.open(join(stateDir, 'log'), { ...opts.log, sync: opts.synchronous, ...durable });
    const existing = readMeta(this.#metaPath);
    this.#meta = existing ?? newMeta();
    this.#capturer = this.#recover(record, untouched?.wal);
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

  /** generations lists this database's generation starts, oldest first, the current one last. */
  get generations(): GenerationStart[] {
    return generationStarts(this.#meta);
  }

  /**
   * #recover reconciles the log with the database under a write barrier (no foreign commit can land
   * while it runs): it reads what chooseRecovery (recovery.ts) decides on, then carries the decision out.
   */
  #recover(record: ClosedRecord | null, walBeforeOpen: FileSignature | undefined): Capturer {
    return this.#barrier(() => {
      this.#lock.advance();
      const pageSize = Number(this.#writer.pragma('page_size', { simple: true }));
      const last = this.#log.last();
      const fromLog = last && last.generation >= this.#meta.generation;
      const logged = fromLog
        ? { generation: last.generation, txid: last.maxTxid, checksum: last.postChecksum, cursor: decodeCursor(last.meta) }
        : { generation: this.#meta.generation, txid: this.#meta.startTxid, checksum: parseChecksum(this.#meta.startChecksum), cursor: this.#meta.startCursor };
      const { generation, txid, cursor } = logged;
      const state: CaptureState = { databaseId: this.#meta.databaseId, generation, txid, cursor, timestamp: last?.timestamp ?? (this.#opts.clock ?? Date.now)() };
      const trusted = record && walBeforeOpen !== undefined ? this.#trusted(record, logged, pageSize, walBeforeOpen) : null;
      this.#opts.logger({ level: 'debug', msg: 'opened', db: this.name, how: trusted ? 'closed record' : 'read every page' });
      if (trusted) {
        // Closed cleanly and untouched since (closed-record.ts): the page hashes stored at close are the
        // checksum, with no read of every page. The WAL, if a foreign connection kept it, is all backfilled.
        return this.#newCapturer(trusted, { ...state, timestamp: record!.timestamp, cursor: walEnd(this.#wal) });
      }
      const checksum = databaseChecksum(this.#lock.activeConnection, pageSize);
      const pending = cursor ? walSinceLogged(this.#wal, cursor, this.#meta.generation > 0 ? this.path : null, pageSize) : null;
      const decision = chooseRecovery({ generation: this.#meta.generation, loggedChecksum: logged.checksum, currentChecksum: checksum.value, wal: pending?.wal ?? null });
      switch (decision.action) {
        case 'resume': {
          const next = decision.cursor === 'logged' ? cursor : decision.cursor === 'none' ? null : walEnd(this.#wal);
          return this.#newCapturer(checksum, { ...state, cursor: next });
        }
        case 'catch-up': {
          const capturer = this.#newCapturer(checksum, state);
          const txs = pending?.transactions ?? [];
          capturer.emitCatchUp(txs, logged.checksum);
          const msg = decision.wal === 'continued' ? 'recovered transactions from the WAL' : 'recovered transactions from a restarted WAL';
          this.#opts.logger({ msg, db: this.name, count: txs.length, txid: capturer.state.txid });
          return capturer;
        }
        case 'new-generation': {
          const walCursor = decision.cursor === 'none' ? null : walEnd(this.#wal);
          const diffed = this.#meta.generation === 0 ? null : this.#diffFromClose(checksum, { generation, txid, checksum: logged.checksum }, state, walCursor);
          return diffed ?? this.#startGeneration(checksum, state, decision.reason, walCursor);
        }
      }
    });
  }

  /**
   * #trusted is the checksum a closed record vouches for, when it still describes the files and the log;
   * else null. The files matched the record before our connections opened (`walBeforeOpen`: the WAL's
   * signature then); under this barrier they must still be so: the same database file, the WAL as it was
   * or, if there was none, the empty one our open created.
   */
  #trusted(record: ClosedRecord, logged: { generation: number; txid: number; checksum: bigint }, pageSize: number, walBeforeOpen: FileSignature): DatabaseChecksum | null {
    const pos = recordPosition(record);
    const agrees = record.databaseId === this.#meta.databaseId && record.pageSize === pageSize &&
      pos.generation === logged.generation && pos.txid === logged.txid && pos.checksum === logged.checksum;
    if (!agrees || fileSignature(this.path) !== record.file || !walUntouchedSinceOpen(walBeforeOpen, `${this.path}-wal`)) return null;
    return readPageHashes(this.#stateDir, pos);
  }

  /**
   * #diffFromClose turns a database that differs from the log into one change set instead of a new
   * generation, when the page hashes stored at the last close are those of the logged position (the
   * way a foreign writer that checkpointed its WAL away is caught up: closed-record.ts,
   * docs/ARCHITECTURE.md#many-databases). The change set holds every page whose hash differs, and the
   * new size; its pre-checksum is the logged one, its post-checksum the database's now. Null: no hashes.
   */
  #diffFromClose(current: DatabaseChecksum, logged: Position, state: CaptureState, cursor: WalCursor | null): Capturer | null {
    const known = readPageHashes(this.#stateDir, logged);
    if (!known || known.pageSize !== current.pageSize) return null;
    const changed: number[] = [];
    for (let pgno = 1; pgno <= current.pageCount; pgno++) {
      const now = current.pageHashAt(pgno);
      if (now !== null && now !== known.pageHashAt(pgno)) changed.push(pgno);
    }
    const pages = readPageImages(this.#lock.activeConnection, changed);
    const capturer = this.#newCapturer(current, { ...state, cursor });
    capturer.emitDiff(pages, current.pageCount, logged.checksum, cursor);
    this.#opts.logger({ msg: 'caught up a foreign change by page hashes', db: this.name, pages: pages.length, txid: capturer.state.txid });
    return capturer;
  }

  /**
   * #startGeneration declares the current state (`checksum`) a new snapshot point and returns its
   * Capturer; txids keep increasing. The change is announced when the barrier it runs under ends.
   */
  #startGeneration(checksum: DatabaseChecksum, from: Readonly<CaptureState>, reason: string, cursor: WalCursor | null): Capturer {
    const generation = this.#meta.generation + 1;
    const txid = this.#meta.generation > 0 ? from.txid + 1 : from.txid;
    const generations = [...generationStarts(this.#meta), { generation, startTxid: txid }].slice(-MAX_GENERATION_STARTS);
    this.#meta = { ...this.#meta, generation, startTxid: txid, startChecksum: formatChecksum(checksum.value), startCursor: cursor, reason, generations };
    writeMeta(this.#metaPath, this.#meta);
    this.#opts.logger({ msg: 'new generation', db: this.name, generation, txid, reason });
    this.#unannounced = { db: this.name, generation, txid, reason };
    return this.#newCapturer(checksum, { ...from, generation, txid, cursor });
  }

  /**
   * #barrier runs `fn` under a write barrier (BEGIN IMMEDIATE: no commit by any process lands while it
   * runs), then announces a generation `fn` started, once the barrier is gone.
   */
  #barrier<T>(fn: () => T): T {
    this.#writer.exec('BEGIN IMMEDIATE');
    try {
      return fn();
    } finally {
      this.#writer.exec('ROLLBACK');
      const change = this.#unannounced;
      this.#unannounced = null;
      if (change) this.#opts.onGeneration?.(change);
    }
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
      ...(this.#opts.clock ? { clock: this.#opts.clock } : {}),
    });
  }

  /**
   * capture picks up transactions committed since the last capture (by us or by another process), and
   * checkpoints once the WAL is long enough.
   */
  capture(): number {
    this.#assertOpen();
    const n = this.#capture(false);
    const cursor = this.#capturer.state.cursor;
    // Never while a query process may hold the write lock: it would block this thread (write-gate.ts).
    // The capture after that write comes back does it.
    if (cursor && cursor.frame >= this.#opts.checkpointFrames && cursor.frame !== this.#checkpointedAtFrame && !this.#writes?.busy) {
      this.checkpoint();
      this.#checkpointedAtFrame = cursor.frame;
    }
    return n;
  }

  /**
   * #capture is the one capture path (writes, the watch and poll, snapshots, checkpoints): a WAL that
   * cannot be verified from the cursor (WAL_INVALID) starts a new generation at the current state, under
   * the caller's write barrier when `inBarrier`, else under one of its own.
   */
  #capture(inBarrier: boolean): number {
    try {
      return this.#capturer.capture();
    } catch (err) {
      if (!isWalInvalid(err)) throw err;
      const restart = () => {
        // The cursor first: a header SQLite would ignore throws here, and the read mark must then stay
        // where it is, keeping whatever SQLite appends uncaptured in the WAL (docs/ARCHITECTURE.md#failure-rules).
        const cursor = walEnd(this.#wal);
        this.#lock.advance();
        this.#capturer = this.#startGeneration(databaseChecksum(this.#lock.activeConnection, this.pageSize), this.#capturer.state, err.message, cursor);
      };
      if (inBarrier) restart();
      else if (!this.#writes?.busy) this.#barrier(restart); // else the capture after that write retries
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
   * query runs read-only statements: through the query pool when there is one, so that a runaway read is
   * stopped at the time limit (QUERY_TIMEOUT) and never blocks this thread, where captures, writes and
   * the stream run, for more than a slice (it starts on the primary's own read-only connection and what
   * is still running after the slice moves to a query process); else on that connection, unlimited.
   */
  async query(statements: Statement[]): Promise<QueryResult[]> {
    this.#assertOpen();
    for (const s of statements) checkStatement(s.sql, 'read');
    const pool = this.#opts.queryPool;
    if (pool) return pool.run(this.path, statements, pool.timeoutMs, this.#local);
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
    return this.#barrier(() => {
      try {
        this.#capture(true);
        conn.exec('BEGIN');
        const pageCount = Number(conn.pragma('page_count', { simple: true }));
        return new SnapshotView(conn, this.position, this.databaseId, this.pageSize, pageCount);
      } catch (err) {
        conn.close();
        throw err;
      }
    });
  }

  /**
   * checkpoint moves captured frames into the database file so the WAL can restart: under a write
   * barrier, capture the rest, make the log durable, drop our read mark, PASSIVE-checkpoint, and take
   * the mark again (at 0, which lets the next writer restart the WAL over frames we already hold).
   */
  checkpoint(): void {
    this.#assertOpen();
    this.#barrier(() => {
      this.#capture(true); // before the read mark moves: if it throws, the mark stays where it is
      try {
        this.#log.syncNow();
        this.#lock.release();
        this.#lock.idleConnection.pragma('wal_checkpoint(PASSIVE)');
        this.#log.prune();
      } finally {
        this.#lock.advance();
      }
    });
  }

  /**
   * closeForDrop closes the database once no API write is in flight (the write queue's turn), so a
   * drop never cuts a running write short; writes queued behind it fail with UNAVAILABLE.
   */
  async closeForDrop(): Promise<void> {
    if (this.#writes && !this.#closed) await this.#writes.barrier(() => undefined);
    this.close();
  }

  /** idle: no API write is running or queued, so closing now cuts nothing short. */
  get idle(): boolean {
    return !this.#writes || (!this.#writes.busy && this.#writes.stats().waiting === 0);
  }

  /**
   * closeToRecord closes the database and leaves a closed record (closed-record.ts) so the next open
   * is cheap. Under one write barrier: capture the rest, make the log durable, checkpoint everything
   * (PASSIVE, our read mark released), and take the files' signatures; no commit by anyone can land in
   * between. A foreign commit after the barrier changes a signature, so the record is then not trusted.
   * Returns the record (null when the database was already closed).
   */
  closeToRecord(): ClosedRecord | null {
    if (this.#closed) return null;
    this.#writes?.close();
    let record: ClosedRecord | null = null;
    try {
      this.#barrier(() => {
        this.#capture(true);
        this.#log.syncNow();
        this.#lock.release();
        this.#lock.idleConnection.pragma('wal_checkpoint(PASSIVE)');
        this.#log.prune();
        const p = this.position;
        record = {
          version: 1,
          databaseId: this.databaseId,
          generation: p.generation,
          txid: p.txid,
          checksum: formatChecksum(p.checksum),
          timestamp: this.lastCommitTime,
          pageSize: this.pageSize,
          pageCount: this.pageCount,
          generations: this.generations,
          file: fileSignature(this.path),
          wal: fileSignature(`${this.path}-wal`),
        };
        writeClosedRecord(this.#stateDir, record, this.#capturer.checksum);
      });
    } finally {
      this.#closeConnections();
    }
    return record;
  }

  /** close captures what is left, makes the log durable and closes every connection. */
  close(): void {
    if (this.#closed) return;
    this.#writes?.close();
    try {
      this.capture();
      this.#log.syncNow();
    } finally {
      this.#closeConnections();
    }
  }

  #closeConnections(): void {
    this.#closed = true;
    this.#lock.close();
    this.#queryConn?.close();
    this.#wal.close();
    this.#writer.close();
    this.#log.close();
  }

  get closed(): boolean {
    return this.#closed;
  }

  readonly #local = (): Connection => this.#query;

  get #query(): Connection {
    this.#assertOpen();
    return (this.#queryConn ??= openQueryConnection(this.path, this.#opts.busyTimeoutMs));
  }

  #assertOpen(): void {
    if (this.#closed) throw new EdgeliteError('UNAVAILABLE', `database ${this.name} is closed`);
  }
}

function isWalInvalid(err: unknown): err is EdgeliteError {
  return err instanceof EdgeliteError && err.code === 'WAL_INVALID';
}
