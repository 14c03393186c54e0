/**
 * LagTracker measures how stale a replica's copy of one database may be, the same way on the Node
 * replica and the Worker. The primary sends a heartbeat every second with its newest txid and commit
 * time. A replica holding everything a heartbeat heard within CONTACT_GRACE_MS reported is current (lag
 * 0); otherwise the lag is the time since its data was last known current: the later of the last
 * heartbeat it had caught up with and the primary's commit time of the newest transaction it applied.
 * Infinite when neither is known (nothing heard or applied since start).
 */
import type { Position } from './types.ts';

/** CONTACT_GRACE_MS: two heartbeats. Silence shorter than this is normal. */
export const CONTACT_GRACE_MS = 2000;

export interface PrimaryView {
  generation: number;
  txid: number;
  /** Primary's commit time of its newest transaction (ms). */
  timestamp: number;
  /** When we heard it (ms, our clock). */
  heardAt: number;
}

export class LagTracker {
  #primary: PrimaryView | null = null;
  #appliedTimestamp = 0;
  #caughtUpAt = 0;
  readonly #now: () => number;

  constructor(now: () => number = () => Date.now()) {
    this.#now = now;
  }

  get primary(): PrimaryView | null {
    return this.#primary;
  }

  /** notePrimary records a heartbeat's view of the primary, with what we hold now. */
  notePrimary(view: PrimaryView, position: Position | null): void {
    this.#primary = view;
    this.#noteCaughtUp(position);
  }

  /** noteApplied records an apply (or a snapshot) with the primary's commit time of its newest txid. */
  noteApplied(timestamp: number, position: Position | null): void {
    this.#appliedTimestamp = timestamp;
    this.#noteCaughtUp(position);
  }

  lagTxids(position: Position | null): number {
    if (!this.#primary || !position) return 0;
    return Math.max(0, this.#primary.txid - position.txid);
  }

  lagMs(position: Position | null): number {
    if (!position) return Number.POSITIVE_INFINITY;
    const now = this.#now();
    const view = this.#primary;
    if (view && reached(position, view) && now - view.heardAt <= CONTACT_GRACE_MS) return 0;
    const currentAsOf = Math.max(this.#caughtUpAt, this.#appliedTimestamp);
    return currentAsOf === 0 ? Number.POSITIVE_INFINITY : Math.max(0, now - currentAsOf);
  }

  #noteCaughtUp(position: Position | null): void {
    const view = this.#primary;
    if (view && position && reached(position, view)) this.#caughtUpAt = Math.max(this.#caughtUpAt, view.heardAt);
  }
}

function reached(p: Position, view: { generation: number; txid: number }): boolean {
  return p.generation >= view.generation && p.txid >= view.txid;
}
