/**
 * SnapshotQueue runs the follower core's snapshot downloads (docs/ARCHITECTURE.md#many-databases):
 * at most `concurrency` at once, first asked first served, at most one per database (asking again for
 * one queued or downloading is a no-op). A download is independent of the stream session that asked
 * for it: a session that restarts (to let finished databases join it) does not cut the others.
 * Worker-safe: no Node imports.
 *
 * How the core (follower.ts) uses it, the same on the Node replica and the Worker:
 * - A database whose port says it needs a snapshot, or whose snapshot is queued or downloading, is asked
 *   for with no position, so the primary answers `snapshot-needed` and sends it nothing more; the core
 *   applies nothing to it meanwhile.
 * - A snapshot does not end the session: the installed database waits (its frames dropped: none can fit
 *   the new copy, and the next session resends them from the snapshot's position) until the session
 *   restarts, once the queue is empty or JOIN_BATCH_MS after the session began: one restart per batch
 *   of installed snapshots, not one per snapshot. A failed download ends the session like a stream
 *   failure (backoff; the next session asks for the database again).
 */
import { EdgeliteError } from './errors.ts';

/** CORE_BOOTSTRAP_CONCURRENCY: parallel snapshot downloads where the replica does not say (the Worker: one database per object). */
export const CORE_BOOTSTRAP_CONCURRENCY = 1;
/**
 * JOIN_BATCH_MS: while snapshots are still downloading, installed ones join the stream (a session
 * restart) at most this long after the session began: how many sessions a bootstrap of thousands opens.
 */
export const JOIN_BATCH_MS = 2000;

export interface SnapshotQueueOptions {
  /** How many downloads may run at once (≥ 1). */
  concurrency: number;
  /** run downloads and installs one database's snapshot; `signal` aborts it (cancel). */
  run(db: string, reason: string, signal: AbortSignal): Promise<void>;
  /**
   * done hears how a download ended: `err` null when installed. Not called for a cancelled one (its
   * caller asked for the end and waits on cancel()).
   */
  done(db: string, err: unknown): void;
}

interface Job {
  db: string;
  reason: string;
  abort: AbortController | null;
  settled: Promise<void> | null;
  cancelled: boolean;
}

export class SnapshotQueue {
  readonly #o: SnapshotQueueOptions;
  /** Every job queued or running, by database, in the order asked (a Map keeps insertion order). */
  readonly #jobs = new Map<string, Job>();
  #running = 0;
  #maxRunning = 0;

  constructor(options: SnapshotQueueOptions) {
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new EdgeliteError('MISCONFIGURED', `snapshot concurrency must be a whole number ≥ 1, got ${options.concurrency}`);
    }
    this.#o = options;
  }

  /** has says whether `db` is queued or downloading. */
  has(db: string): boolean {
    return this.#jobs.has(db);
  }

  /** running counts the downloads in progress (cancelled ones until they settle); queued the ones waiting for a slot. */
  get running(): number {
    return this.#running;
  }

  get queued(): number {
    let n = 0;
    for (const job of this.#jobs.values()) if (job.abort === null) n++;
    return n;
  }

  /** maxRunning is the most downloads that ever ran at once (what a test checks against the bound). */
  get maxRunning(): number {
    return this.#maxRunning;
  }

  /** idle says nothing is queued or downloading. */
  get idle(): boolean {
    return this.#jobs.size === 0;
  }

  /** add queues a snapshot of `db`; false when one is already queued or downloading. */
  add(db: string, reason: string): boolean {
    if (this.#jobs.has(db)) return false;
    this.#jobs.set(db, { db, reason, abort: null, settled: null, cancelled: false });
    this.#pump();
    return true;
  }

  /**
   * cancel drops the queued jobs whose database `which` selects and aborts the running ones; resolves
   * once every aborted download has settled, so nothing writes to those databases any more.
   */
  cancel(which: (db: string) => boolean, reason: string): Promise<void> {
    const waits: Array<Promise<void>> = [];
    for (const job of [...this.#jobs.values()]) {
      if (!which(job.db)) continue;
      job.cancelled = true;
      // Forgotten at once: a snapshot asked for again meanwhile is a new job, not this cancelled one.
      this.#jobs.delete(job.db);
      if (job.abort === null) continue;
      job.abort.abort(new EdgeliteError('UNAVAILABLE', `snapshot of ${job.db} cancelled: ${reason}`));
      waits.push(job.settled!);
    }
    return Promise.all(waits).then(() => {});
  }

  #pump(): void {
    for (const job of this.#jobs.values()) {
      if (this.#running >= this.#o.concurrency) return;
      if (job.abort !== null) continue;
      this.#start(job);
    }
  }

  #start(job: Job): void {
    const abort = new AbortController();
    job.abort = abort;
    this.#running++;
    this.#maxRunning = Math.max(this.#maxRunning, this.#running);
    let failure: unknown = null;
    // A microtask first: run() may throw synchronously, and add() must not throw for it.
    job.settled = Promise.resolve()
      .then(() => this.#o.run(job.db, job.reason, abort.signal))
      .catch((err: unknown) => {
        failure = err ?? new EdgeliteError('INTERNAL', `snapshot of ${job.db} failed`);
      })
      .then(() => {
        this.#running--;
        if (this.#jobs.get(job.db) === job) this.#jobs.delete(job.db);
        if (!job.cancelled) this.#o.done(job.db, failure);
        this.#pump();
      });
  }
}
