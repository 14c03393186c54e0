/**
 * ReplicaFacade is what the Node replica's ReplicaDatabase and the Worker's WorkerReplica have in
 * common, written once: one followed database's lag (what the primary last said, shared/lag.ts), the
 * reads waiting for a txid or a lag bound (shared/waiters.ts), the follower's flags (`ready`,
 * `needsSnapshot`), and change events, so that nothing has to poll: every apply, snapshot, heartbeat
 * and `ready` wakes the waits and calls the listeners (docs/ARCHITECTURE.md#tokens-and-consistency).
 * Each subclass holds the pages (a SQLite file, a Durable Object's storage) and says where they stand.
 */
import type { Waitable } from './consistency.ts';
import type { StreamPosition } from './frames.ts';
import { LagTracker, type PrimaryView } from './lag.ts';
import type { Position } from './types.ts';
import { PositionWaiters } from './waiters.ts';

/** HeardPosition is a heartbeat's view of the primary; `heardAt` (our clock) defaults to now. */
export type HeardPosition = StreamPosition & { heardAt?: number };

export abstract class ReplicaFacade implements Waitable {
  readonly name: string;
  /** Set while a snapshot is needed; reads keep being served from the last good state. */
  needsSnapshot: string | null = null;
  readonly #lag: LagTracker;
  readonly #now: () => number;
  readonly #waiters: PositionWaiters;
  readonly #listeners = new Set<() => void>();
  #ready = false;

  constructor(name: string, now: () => number = () => Date.now()) {
    this.name = name;
    this.#now = now;
    this.#lag = new LagTracker(now);
    this.#waiters = new PositionWaiters(name, () => this.position, () => this.lagMs);
  }

  /** position is where the copy stands; null when it has no data it can vouch for. */
  abstract get position(): Position | null;

  abstract get databaseId(): number | null;

  /** ready: bootstrapped and caught up with the primary once (the follower sets it). */
  get ready(): boolean {
    return this.#ready;
  }

  set ready(value: boolean) {
    this.#ready = value;
    this.changed();
  }

  get primary(): PrimaryView | null {
    return this.#lag.primary;
  }

  /** lagTxids is how many txids the primary had (at its last heartbeat) that we have not applied. */
  get lagTxids(): number {
    return this.#lag.lagTxids(this.position);
  }

  /** lagMs bounds how stale the data may be, the same on both replicas (shared/lag.ts). */
  get lagMs(): number {
    return this.#lag.lagMs(this.position);
  }

  /** notePrimary records a heartbeat's view of the primary; a bounded read may now be satisfied. */
  notePrimary(view: HeardPosition): void {
    const { generation, txid, timestamp } = view;
    this.#lag.notePrimary({ generation, txid, timestamp, heardAt: view.heardAt ?? this.#now() }, this.position);
    this.changed();
  }

  /** waitFor resolves once this replica has applied `txid` (shared/waiters.ts), or REPLICA_BEHIND. */
  waitFor(generation: number, txid: number, timeoutMs: number): Promise<void> {
    return this.#waiters.waitFor(generation, txid, timeoutMs);
  }

  /** waitForLag resolves once lagMs ≤ maxLagMs, or rejects with REPLICA_BEHIND after `timeoutMs`. */
  waitForLag(maxLagMs: number, timeoutMs: number): Promise<void> {
    return this.#waiters.waitForLag(maxLagMs, timeoutMs);
  }

  /**
   * until resolves true once `holds()` is true, checked now and at every change (apply, snapshot,
   * heartbeat, ready), or false after `timeoutMs`: how a caller waits for "bootstrapped" or "ready".
   */
  until(holds: () => boolean, timeoutMs: number): Promise<boolean> {
    return this.#waiters.until(holds, timeoutMs);
  }

  /** onChange calls `listener` after every change (as until re-checks); returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** noteApplied records an apply or a snapshot (the primary's commit time of its newest txid). */
  protected noteApplied(timestamp: number, position: Position): void {
    this.#lag.noteApplied(timestamp, position);
    this.changed();
  }

  /** changed wakes the waits and calls the listeners: the position, lag or flags may have moved. */
  protected changed(): void {
    this.#waiters.wake();
    for (const listener of this.#listeners) listener();
  }

  /** closeWaits fails every pending wait and drops the listeners (the database is closing). */
  protected closeWaits(err: Error): void {
    this.#waiters.rejectAll(err);
    this.#listeners.clear();
  }
}
