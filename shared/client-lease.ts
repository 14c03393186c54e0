/**
 * LeaseHolder is how the client library finds the primary under the failover lease (the `lease` option,
 * README.md#client-library, README.md#high-availability): the holder's URL from the lease record in
 * etcd (shared/lease.ts LeaseStore, over the client's fetch), kept until a write to it is refused or
 * fails, then read again. Web APIs only (Node, browsers, Workers).
 */
import { EdgeliteError, type AppliedOutcome } from './errors.ts';
import type { FetchFn } from './client-http.ts';
import { LeaseStore, type LeaseTarget } from './lease.ts';

/** LEASE_POLL_MS: while no new holder is in the record (a failover under way), it is read again this often. */
export const LEASE_POLL_MS = 200;

/** Holder is where writes go: the lease holder's URL and epoch (epoch 0: the `primary` URL, no record read). */
export interface Holder {
  url: string;
  epoch: number;
}

export class LeaseHolder {
  readonly store: LeaseStore;
  readonly #fallback: string | null;
  #holder: Holder | null = null;

  constructor(target: LeaseTarget, fetchFn: FetchFn, fallback: string | null) {
    this.store = new LeaseStore(target, { fetch: fetchFn });
    this.#fallback = fallback;
  }

  /** known is the holder last read, or null. */
  get known(): Holder | null {
    return this.#holder;
  }

  /**
   * current is the holder to send to: the one last read, else the record read now (waiting until
   * `deadline` while the lease is vacant). When etcd cannot be read, the `primary` URL if one was given,
   * else UNAVAILABLE (`outcome: 'not-applied'`: nothing was sent).
   */
  async current(deadline: number): Promise<Holder> {
    if (this.#holder) return this.#holder;
    try {
      const h = await this.#poll(deadline, () => true);
      if (h) return h;
    } catch (err) {
      if (this.#fallback) return { url: this.#fallback, epoch: 0 };
      throw err;
    }
    if (this.#fallback) return { url: this.#fallback, epoch: 0 };
    throw notApplied(`no node holds the lease at ${this.store.description}`);
  }

  /** after reads the record until it names a holder other than `h` (a later epoch), until `deadline`; null if none came. */
  async after(h: Holder, deadline: number): Promise<Holder | null> {
    this.#holder = null;
    return this.#poll(deadline, (r) => r.epoch > h.epoch || r.url !== h.url);
  }

  /** forget drops the holder last read, so the next request reads the record again. */
  forget(): void {
    this.#holder = null;
  }

  async #poll(deadline: number, wanted: (h: Holder) => boolean): Promise<Holder | null> {
    for (;;) {
      let r;
      try {
        r = await this.store.primary();
      } catch (err) {
        throw notApplied(`the lease record at ${this.store.description} cannot be read: ${(err as Error).message}`, err);
      }
      if (r && r.url) {
        const h = { url: r.url.replace(/\/+$/, ''), epoch: r.epoch };
        this.#holder = h;
        if (wanted(h)) return h;
      }
      if (Date.now() + LEASE_POLL_MS > deadline) return null;
      await new Promise((resolve) => setTimeout(resolve, LEASE_POLL_MS));
    }
  }
}

function notApplied(message: string, cause?: unknown): EdgeliteError {
  return new EdgeliteError('UNAVAILABLE', `${message}; the write was not sent`, { ...(cause ? { cause } : {}), details: { outcome: 'not-applied' satisfies AppliedOutcome } });
}
