/**
 * LeaseKeeper: how a lease holder keeps its etcd lease and fences its own writes
 * (README.md#high-availability, docs/ARCHITECTURE.md#high-availability). Worker-safe.
 */
import type { LeaseStore } from './lease.ts';

/**
 * safetyMarginMs: a holder stops accepting writes this long before its lease can expire in etcd. The
 * lease in etcd runs from when etcd handled a renewal, which is after the holder sent it: counting from
 * the send, minus this margin, leaves room for clocks that run at slightly different rates.
 */
export function safetyMarginMs(ttlMs: number): number {
  return Math.max(500, Math.round(ttlMs / 4));
}

/**
 * LeaseKeeper renews a won lease every TTL/4 and says until when the holder may accept writes: the
 * send time of the last renewal etcd confirmed + TTL − safetyMarginMs. A renewal etcd answers with TTL 0
 * (the lease is gone) is final: `lost` resolves and writable() stays false.
 */
export class LeaseKeeper {
  readonly epoch: number;
  readonly leaseId: string;
  readonly #store: LeaseStore;
  readonly #ttlMs: number;
  readonly #now: () => number;
  #writableUntil: number;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #stopped = false;
  #lost = false;
  #resolveLost!: (why: string) => void;
  /** Resolves (with the reason) once the lease is known to be gone. */
  readonly lost: Promise<string>;
  /** Renewals that failed to reach etcd (each a step nearer the margin). */
  failures = 0;

  constructor(o: { store: LeaseStore; epoch: number; leaseId: string; ttlMs: number; grantedAt: number; now?: () => number }) {
    this.#store = o.store;
    this.epoch = o.epoch;
    this.leaseId = o.leaseId;
    this.#ttlMs = o.ttlMs;
    this.#now = o.now ?? (() => performance.now());
    this.#writableUntil = o.grantedAt + o.ttlMs - safetyMarginMs(o.ttlMs);
    this.lost = new Promise((resolve) => (this.#resolveLost = resolve));
    this.#schedule();
  }

  /** writable: this holder may acknowledge a write now. */
  writable(): boolean {
    return !this.#lost && !this.#stopped && this.#now() < this.#writableUntil;
  }

  /** writableForMs is how long writes stay allowed without another renewal (≤ 0: not now). */
  writableForMs(): number {
    return this.#lost || this.#stopped ? 0 : this.#writableUntil - this.#now();
  }

  #schedule(): void {
    if (this.#stopped || this.#lost) return;
    this.#timer = setTimeout(() => void this.#renew(), Math.max(100, Math.floor(this.#ttlMs / 4)));
  }

  async #renew(): Promise<void> {
    const sent = this.#now();
    try {
      const ttl = await this.#store.etcd.keepAlive(this.leaseId);
      if (this.#stopped) return;
      if (ttl <= 0) {
        this.#markLost('etcd no longer holds the lease (it expired)');
        return;
      }
      this.#writableUntil = Math.max(this.#writableUntil, sent + ttl - safetyMarginMs(ttl));
    } catch {
      this.failures++;
      if (this.#now() >= this.#writableUntil + safetyMarginMs(this.#ttlMs)) {
        this.#markLost('renewals failed past the lease TTL');
        return;
      }
    }
    this.#schedule();
  }

  #markLost(why: string): void {
    if (this.#lost) return;
    this.#lost = true;
    this.#resolveLost(why);
  }

  /** stop ends renewals (the lease then lapses unless resign() gave it up first). */
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#markLost('stopped');
  }

  /** resign stops renewals and gives the lease up in etcd, so a candidate takes over at once. */
  async resign(): Promise<void> {
    this.stop();
    await this.#store.resign(this.epoch, this.leaseId);
  }
}
