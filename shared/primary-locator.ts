/**
 * PrimaryLocator finds the primary through the failover lease (README.md#high-availability,
 * docs/ARCHITECTURE.md#high-availability): it reads the holder's record (`PREFIX/primary`) from the
 * lease store every `intervalMs` and on demand, and keeps the highest epoch this node has seen, from
 * records and from the `Edgelite-Epoch` of answers (observe), which is the replica's fence: a stream or
 * snapshot from a primary of an older epoch is refused (shared/primary-client.ts).
 *
 * One locator per node process: the supervisor (bin/ha.ts) makes one and hands it to each role it runs,
 * so the highest epoch seen survives a role switch. Worker-safe: fetch and timers only.
 *
 * etcd unreachable: the last record is kept (the holder it names is still the best guess, and its own
 * lease fences its writes), each failed read is counted, and the outage is logged once, when it starts,
 * and once when etcd answers again.
 */
import { EdgeliteError } from './errors.ts';
import type { PrimaryRecord } from './lease.ts';
import type { Logger } from './log.ts';

/** EPOCH_HEADER is the answer header with the lease epoch of the primary that answered (the primary sets it: primary/ha.ts). */
export const EPOCH_HEADER = 'edgelite-epoch';

/** DEFAULT_LOCATOR_INTERVAL_MS: how often the holder's record is read. */
export const DEFAULT_LOCATOR_INTERVAL_MS = 500;

/** PrimaryRecordSource is the part of a LeaseStore (shared/lease.ts) the locator reads. */
export interface PrimaryRecordSource {
  primary(): Promise<PrimaryRecord | null>;
  /** Names the store in logs. */
  readonly description: string;
}

export interface PrimaryLocatorOptions {
  store: PrimaryRecordSource;
  /** How often start() reads the record; default DEFAULT_LOCATOR_INTERVAL_MS. */
  intervalMs?: number;
  logger?: Logger;
}

/** PrimaryChange is what onChange callbacks get: the new holder (null: none holds the lease) and the one before. */
export type PrimaryChangeListener = (current: PrimaryRecord | null, previous: PrimaryRecord | null) => void;

export class PrimaryLocator {
  readonly #store: PrimaryRecordSource;
  readonly #intervalMs: number;
  readonly #logger: Logger;
  #current: PrimaryRecord | null = null;
  #maxEpoch = 0;
  #listeners = new Set<PrimaryChangeListener>();
  #inFlight: Promise<PrimaryRecord | null> | null = null;
  #next: Promise<PrimaryRecord | null> | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #running = false;
  /** Whether the last read failed (an outage is logged once, when it starts). */
  #down = false;
  /** Reads of the record that failed (etcd unreachable or refusing), since the locator was made. */
  failures = 0;
  /** Reads that succeeded. */
  reads = 0;

  constructor(o: PrimaryLocatorOptions) {
    const interval = o.intervalMs ?? DEFAULT_LOCATOR_INTERVAL_MS;
    if (!Number.isFinite(interval) || interval <= 0) throw new EdgeliteError('MISCONFIGURED', `the locator's intervalMs must be > 0, got ${interval}`);
    this.#store = o.store;
    this.#intervalMs = interval;
    this.#logger = o.logger ?? (() => {});
  }

  /** current is the holder's record as last read (kept while etcd is unreachable), or null when none holds the lease. */
  get current(): PrimaryRecord | null {
    return this.#current;
  }

  /** maxEpoch is the highest epoch seen, in records and in answers (0: none yet). */
  get maxEpoch(): number {
    return this.#maxEpoch;
  }

  /** description names the lease store. */
  get description(): string {
    return this.#store.description;
  }

  /** start reads the record now and then every intervalMs, until stop(). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    void this.#poll();
  }

  stop(): void {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  async #poll(): Promise<void> {
    await this.refresh().catch(() => undefined); // counted and logged by refresh
    if (!this.#running) return;
    this.#timer = setTimeout(() => void this.#poll(), this.#intervalMs);
  }

  /**
   * refresh reads the record, in a read that starts after this call (one read at a time: callers
   * during a read share the next one), and returns the holder it found, or rejects with the store's
   * error, the last record kept.
   */
  refresh(): Promise<PrimaryRecord | null> {
    if (!this.#inFlight) return this.#begin();
    // A read already under way may have left before what the caller just learned: queue one more.
    this.#next ??= this.#inFlight.then(noop, noop).then(() => {
      this.#next = null;
      return this.#begin();
    });
    return this.#next;
  }

  #begin(): Promise<PrimaryRecord | null> {
    const p: Promise<PrimaryRecord | null> = this.#read().finally(() => {
      if (this.#inFlight === p) this.#inFlight = null;
    });
    this.#inFlight = p;
    return p;
  }

  async #read(): Promise<PrimaryRecord | null> {
    let r: PrimaryRecord | null;
    try {
      r = await this.#store.primary();
    } catch (err) {
      this.failures++;
      if (!this.#down) {
        this.#down = true;
        this.#logger({ msg: 'lease store unreachable; following the last known primary', store: this.#store.description, primary: this.#current?.url ?? null, epoch: this.#current?.epoch ?? null, error: (err as Error).message });
      }
      throw err;
    }
    this.reads++;
    if (this.#down) {
      this.#down = false;
      this.#logger({ msg: 'lease store reachable again', store: this.#store.description, failures: this.failures });
    }
    this.#set(r);
    return r;
  }

  #set(r: PrimaryRecord | null): void {
    if (r && r.epoch > this.#maxEpoch) this.#maxEpoch = r.epoch;
    const prev = this.#current;
    this.#current = r;
    if (prev?.url === r?.url && prev?.epoch === r?.epoch) return;
    this.#logger({ msg: r ? 'primary found through the lease' : 'no node holds the lease', primary: r?.url ?? null, node: r?.node ?? null, epoch: r?.epoch ?? null, previous: prev?.url ?? null, previousEpoch: prev?.epoch ?? null });
    for (const cb of [...this.#listeners]) cb(r, prev);
  }

  /**
   * observe records an epoch an answer carried: false when it is older than one already seen (the
   * answer is from a deposed primary); a newer one raises maxEpoch and re-reads the record (the lease
   * moved since the last read).
   */
  observe(epoch: number): boolean {
    if (!Number.isSafeInteger(epoch) || epoch < this.#maxEpoch) return false;
    if (epoch > this.#maxEpoch) {
      this.#maxEpoch = epoch;
      if (!this.#current || this.#current.epoch < epoch) this.refresh().catch(() => undefined);
    }
    return true;
  }

  /** onChange calls `cb` whenever the holder's URL or epoch changes, or the lease becomes vacant; returns the unsubscribe. */
  onChange(cb: PrimaryChangeListener): () => void {
    this.#listeners.add(cb);
    return () => void this.#listeners.delete(cb);
  }

  /**
   * waitForPrimary resolves with the holder as soon as one is known (at once if it is), reading the
   * record on the way; PRIMARY_UNAVAILABLE (`details.outcome: 'not-applied'`) after `timeoutMs`, or
   * `signal`'s reason when it aborts first.
   */
  waitForPrimary(timeoutMs: number, signal?: AbortSignal): Promise<PrimaryRecord> {
    if (this.#current) return Promise.resolve(this.#current);
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<PrimaryRecord>((resolve, reject) => {
      const done = (fn: () => void) => {
        clearTimeout(timer);
        off();
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const onAbort = () => done(() => reject(signal!.reason));
      const off = this.onChange((r) => {
        if (r) done(() => resolve(r));
      });
      const timer = setTimeout(() => done(() => reject(noHolder(`none appeared in ${timeoutMs} ms`))), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.refresh().catch(() => undefined);
    });
  }
}

const noop = (): void => {};

/** noHolder is the PRIMARY_UNAVAILABLE of a request made while no node holds the lease: it was sent nowhere. */
export function noHolder(more?: string): EdgeliteError {
  return new EdgeliteError('PRIMARY_UNAVAILABLE', `no node holds the lease${more ? ` (${more})` : ''}; retry shortly`, { details: { outcome: 'not-applied' } });
}
