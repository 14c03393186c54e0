/**
 * WriteQueue runs a database's API writes in query processes (shared/node/query-pool.ts), under the
 * time limit, with group commit: the writes that queue while one batch runs go together in the next,
 * one SQLite transaction (and one captured change set) for all, each in its own savepoint so each
 * keeps its own outcome (shared/node/ipc-codec.ts). One batch per database is in flight at a time: another would
 * only wait on SQLite's lock inside its process, and the database must know when a process may hold
 * the write lock, so that its own write barriers (checkpoint, snapshot, new generation) wait their turn
 * here instead of blocking the event loop in `BEGIN IMMEDIATE` (which would also keep the time limit's
 * timer from ever killing that process).
 *
 * Retries keep each client's answer its own: a write that must run outside a transaction (VACUUM), or
 * a batch that failed as a whole (a failed COMMIT), is sent again alone; when a batch times out, the
 * writes that had run go again, and the one running at the limit is sent again alone, so only a write
 * that exceeds the limit on its own gets QUERY_TIMEOUT (never committed).
 *
 * With `local` (synchronous=NORMAL: no fsync per commit), a batch first runs on the primary's own writer,
 * on this thread, for a slice of the limit that SQLite enforces (shared/node/write-batch.ts): nearly
 * every write commits there. A batch stopped at the end of its slice was rolled back whole: a lone write
 * goes to a query process with the rest of its limit, the writes of a larger batch are queued again
 * alone (each with its whole limit), so a write never holds the event loop for more than about one
 * slice, and 408 still means not committed (docs/ARCHITECTURE.md#query-time-limits).
 */
import { EdgeliteError } from '../shared/errors.ts';
import type Database from 'better-sqlite3';
import { queryTimeout } from '../shared/node/query-limit.ts';
import { outcomeFromReply } from '../shared/node/query-pool-options.ts';
import type { BatchOutcome, QueryPool, WriteSync } from '../shared/node/query-pool.ts';
import { writeInSlice, type SliceWrite } from '../shared/node/write-batch.ts';
import type { Statement } from '../shared/protocol.ts';
import { sqliteError, type StatementResult } from '../shared/sql.ts';

export const DEFAULT_MAX_WAITING_WRITES = 1000;
/** MAX_BATCH: most writes in one batch (one transaction); more wait for the next. */
export const MAX_BATCH = 64;

export interface WriteQueueOptions {
  pool: QueryPool;
  path: string;
  sync: WriteSync;
  /** How long a write may wait for its batch before BUSY (ms). */
  waitMs: number;
  maxWaiting?: number;
  /** Called after each batch that may have committed, before its writers are answered (capture). */
  onCommitted: () => void;
  /** The primary's own writer, where a batch runs first for `sliceMs` (absent: always in a process). */
  local?: { conn: () => Database.Database; sliceMs: number; busyTimeoutMs: number };
}

interface Write {
  statements: Statement[];
  /** Must run in a batch of its own. */
  alone: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
  resolve: (results: StatementResult[]) => void;
  reject: (err: EdgeliteError) => void;
}

interface Barrier {
  run: () => void;
  cancel: (err: EdgeliteError) => void;
}

/** WriteQueueStats: what the queue has committed so far and what waits now, for /metrics. */
export interface WriteQueueStats {
  /** Batches that came back with at least one write committed (one transaction each). */
  batches: number;
  /** Writes answered as committed; `writes / batches` is the mean batch size. */
  writes: number;
  /** Writes queued now (barriers not counted). */
  waiting: number;
  /** Whether a batch is in a query process now. */
  busy: boolean;
  /** Batches committed on the primary's own thread, within their slice. */
  inProcess: number;
  /** Batches stopped at the end of their slice (rolled back) and run again elsewhere. */
  handedOff: number;
}

export class WriteQueue {
  readonly #o: WriteQueueOptions;
  readonly #maxWaiting: number;
  readonly #queue: Array<Write | Barrier> = [];
  #inFlight = false;
  #closed = false;
  #batches = 0;
  #writes = 0;
  #inProcess = 0;
  #handedOff = 0;
  #scheduled = false;

  constructor(o: WriteQueueOptions) {
    this.#o = o;
    this.#maxWaiting = o.maxWaiting ?? DEFAULT_MAX_WAITING_WRITES;
  }

  /** busy is true while a batch is in a query process (which may hold the write lock). */
  get busy(): boolean {
    return this.#inFlight;
  }

  get waiting(): number {
    return this.#queue.length;
  }

  stats(): WriteQueueStats {
    let waiting = 0;
    for (const item of this.#queue) if ('statements' in item) waiting++;
    return { batches: this.#batches, writes: this.#writes, waiting, busy: this.#inFlight, inProcess: this.#inProcess, handedOff: this.#handedOff };
  }

  /** submit queues one write (its statements are one transaction) and resolves once it is committed. */
  submit(statements: Statement[]): Promise<StatementResult[]> {
    if (this.#closed) return Promise.reject(new EdgeliteError('UNAVAILABLE', 'the database is closed'));
    if (this.#queue.length >= this.#maxWaiting) {
      return Promise.reject(new EdgeliteError('BUSY', `too many writes waiting (${this.#queue.length}); try again later`, {
        details: { queued: this.#queue.length },
      }));
    }
    return new Promise<StatementResult[]>((resolve, reject) => {
      const write: Write = { statements, alone: false, timer: undefined, resolve, reject };
      write.timer = setTimeout(() => {
        const i = this.#queue.indexOf(write);
        if (i >= 0) this.#queue.splice(i, 1);
        reject(new EdgeliteError('BUSY', `the database was busy with other writes for ${this.#o.waitMs} ms; try again later`, {
          details: { waitMs: this.#o.waitMs },
        }));
      }, this.#o.waitMs);
      this.#queue.push(write);
      this.#schedule();
    });
  }

  /**
   * #schedule pumps now, or with `local` at the end of this turn of the event loop (setImmediate), so
   * that the writes that arrive together still share a batch when batches run on this thread.
   */
  #schedule(): void {
    if (!this.#o.local) return this.#pump();
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#pump();
    });
  }

  /** barrier runs `fn` in turn with the writes, when no batch is in flight. */
  barrier<T>(fn: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(new EdgeliteError('UNAVAILABLE', 'the database is closed'));
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({
        run: () => {
          try {
            resolve(fn());
          } catch (err) {
            reject(err);
          }
        },
        cancel: reject,
      });
      this.#pump();
    });
  }

  /** close fails every queued write with UNAVAILABLE (a batch in flight ends with its pool). */
  close(): void {
    this.#closed = true;
    const closed = new EdgeliteError('UNAVAILABLE', 'the database is closed');
    for (const item of this.#queue.splice(0)) {
      if ('statements' in item) {
        clearTimeout(item.timer);
        item.reject(closed);
      } else {
        item.cancel(closed);
      }
    }
  }

  #pump(): void {
    while (!this.#inFlight && this.#queue.length > 0) {
      const first = this.#queue[0]!;
      if (!('statements' in first)) {
        this.#queue.shift();
        first.run();
        continue;
      }
      const batch: Write[] = [];
      while (batch.length < MAX_BATCH) {
        const next = this.#queue[0];
        if (!next || !('statements' in next) || (next.alone && batch.length > 0)) break;
        this.#queue.shift();
        clearTimeout(next.timer);
        batch.push(next);
        if (next.alone) break;
      }
      this.#inFlight = true;
      if (this.#o.local) this.#runLocal(batch, this.#o.local);
      else this.#send(batch, this.#o.pool.timeoutMs);
    }
  }

  /** #send runs the batch in a query process, with `timeoutMs` of its limit left. */
  #send(batch: Write[], timeoutMs: number): void {
    this.#o.pool.writeBatch(this.#o.path, batch.map((w) => w.statements), this.#o.sync, timeoutMs, this.#o.pool.timeoutMs).then(
      (outcomes) => this.#done(batch, outcomes),
      (err: unknown) => this.#failed(batch, err as EdgeliteError),
    );
  }

  /**
   * #runLocal runs the batch on the primary's writer for its slice and answers it; else, nothing of it
   * committed: a batch stopped at the end of its slice is queued again write by write (a lone one goes
   * to a process with the rest of its limit), and one that could not run here goes to a process whole.
   */
  #runLocal(batch: Write[], local: NonNullable<WriteQueueOptions['local']>): void {
    const limitMs = this.#o.pool.timeoutMs;
    const slice = Math.min(local.sliceMs, limitMs);
    const t0 = performance.now();
    let run: SliceWrite;
    try {
      run = writeInSlice(local.conn(), batch.map((w) => w.statements), slice, local.busyTimeoutMs);
    } catch (err) {
      this.#failed(batch, sqliteError(err));
      return;
    }
    if ('outcomes' in run) {
      this.#inProcess++;
      this.#done(batch, run.outcomes.map(outcomeFromReply));
      return;
    }
    this.#handedOff++;
    if (run.handOff !== 'stopped') return this.#send(batch, limitMs);
    if (batch.length > 1) {
      this.#inFlight = false;
      this.#queue.unshift(...batch.map((w) => ({ ...w, alone: true })));
      return;
    }
    const left = Math.ceil(limitMs - (performance.now() - t0));
    if (slice >= limitMs || left < 1) return this.#failed(batch, queryTimeout(limitMs, true, 0));
    this.#send(batch, left);
  }

  #done(batch: Write[], outcomes: BatchOutcome[]): void {
    this.#inFlight = false;
    if (!this.#captured(batch)) return;
    const again: Write[] = [];
    outcomes.forEach((o, i) => {
      const w = batch[i]!;
      if ('results' in o) w.resolve(o.results);
      else if ('error' in o) w.reject(o.error);
      else again.push({ ...w, alone: true });
    });
    const committed = outcomes.filter((o) => 'results' in o).length;
    this.#writes += committed;
    if (committed > 0) this.#batches++;
    this.#queue.unshift(...again);
    this.#pump();
  }

  #failed(batch: Write[], err: EdgeliteError): void {
    this.#inFlight = false;
    if (!this.#captured(batch)) return;
    if (batch.length === 1 || this.#closed || err.code === 'BUSY' || err.code === 'UNAVAILABLE') {
      for (const w of batch) w.reject(err);
    } else if (err.code === 'QUERY_TIMEOUT') {
      const running = Math.min(Number(err.details?.completed ?? 0), batch.length - 1);
      const others = batch.filter((_, i) => i !== running);
      this.#queue.unshift(...others, { ...batch[running]!, alone: true });
    } else {
      this.#queue.unshift(...batch.map((w) => ({ ...w, alone: true })));
    }
    this.#pump();
  }

  /** #captured runs onCommitted; if it throws, the batch's writers get that error (as exec's would). */
  #captured(batch: Write[]): boolean {
    try {
      this.#o.onCommitted();
      return true;
    } catch (err) {
      const e = err instanceof EdgeliteError ? err : new EdgeliteError('INTERNAL', `capture after a write failed: ${String(err)}`, { cause: err });
      for (const w of batch) w.reject(e);
      this.#pump();
      return false;
    }
  }
}
