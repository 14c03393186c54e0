/**
 * Waiting on a replica without polling. Conditions holds promises that each wait for a condition to
 * hold, re-checked whenever the owner says something changed (wake) and once more at the deadline.
 * PositionWaiters builds on it the reads waiting for a replica to reach a txid (read-your-writes,
 * strong) and for its lag to come within a bound (bounded staleness): the same on the Node replica and
 * the Worker. Txids keep increasing across generations, so a position reaches (generation, txid) when
 * both are at least as large.
 *
 * Why waking on changes is enough for the lag: lagMs only grows while nothing happens (shared/lag.ts),
 * and falls only when an apply, a snapshot or a heartbeat is noted, each of which wakes the waiters; so
 * a bound not met now can first be met at one of those, and a wait that never sees one ends at its
 * deadline.
 */
import { EdgeliteError } from './errors.ts';
import type { Position } from './types.ts';

interface Pending {
  holds: () => boolean;
  resolve: (held: boolean) => void;
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class Conditions {
  #pending = new Set<Pending>();

  /** size is how many waits are pending. */
  get size(): number {
    return this.#pending.size;
  }

  /**
   * until resolves true as soon as `holds()` is true (now, or at a wake), or false once `timeoutMs` have
   * passed without it. A `holds` that throws rejects the wait with that error.
   */
  until(holds: () => boolean, timeoutMs: number): Promise<boolean> {
    try {
      if (holds()) return Promise.resolve(true);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<boolean>((resolve, reject) => {
      const pending: Pending = {
        holds,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#pending.delete(pending);
          this.#settle(pending, true);
        }, Math.max(0, timeoutMs)),
      };
      this.#pending.add(pending);
    });
  }

  /** wake re-checks every pending wait and resolves those whose condition now holds. */
  wake(): void {
    for (const pending of this.#pending) {
      if (this.#settle(pending, false)) {
        clearTimeout(pending.timer);
        this.#pending.delete(pending);
      }
    }
  }

  /** rejectAll fails every pending wait (the owner is closing). */
  rejectAll(err: Error): void {
    for (const pending of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(err);
    }
    this.#pending.clear();
  }

  /** settle resolves `pending` if its condition holds (or, at the deadline, false); says if it did. */
  #settle(pending: Pending, deadline: boolean): boolean {
    let held: boolean;
    try {
      held = pending.holds();
    } catch (err) {
      pending.reject(err as Error);
      return true;
    }
    if (held || deadline) pending.resolve(held);
    return held || deadline;
  }
}

export function reached(p: Position | null, generation: number, txid: number): boolean {
  return !!p && p.generation >= generation && p.txid >= txid;
}

export class PositionWaiters {
  readonly #conditions = new Conditions();
  readonly #name: string;
  readonly #position: () => Position | null;
  readonly #lagMs: () => number;

  constructor(name: string, position: () => Position | null, lagMs: () => number) {
    this.#name = name;
    this.#position = position;
    this.#lagMs = lagMs;
  }

  /** waitFor resolves once the position reaches (generation, txid), or rejects with REPLICA_BEHIND. */
  async waitFor(generation: number, txid: number, timeoutMs: number): Promise<void> {
    if (await this.#conditions.until(() => reached(this.#position(), generation, txid), timeoutMs)) return;
    const p = this.#position();
    throw new EdgeliteError('REPLICA_BEHIND', `replica has not reached txid ${txid} within ${timeoutMs} ms`, {
      details: { db: this.#name, wantTxid: txid, haveTxid: p?.txid ?? null, generation: p?.generation ?? null },
    });
  }

  /** waitForLag resolves once the lag is at most maxLagMs, or rejects with REPLICA_BEHIND. */
  async waitForLag(maxLagMs: number, timeoutMs: number): Promise<void> {
    if (await this.#conditions.until(() => this.#lagMs() <= maxLagMs, timeoutMs)) return;
    const lag = this.#lagMs();
    throw new EdgeliteError('REPLICA_BEHIND', `replica lag ${Math.round(lag)} ms exceeds ${maxLagMs} ms`, {
      details: { db: this.#name, lagMs: Number.isFinite(lag) ? lag : null, maxLagMs },
    });
  }

  /** until waits for any condition on the replica (see Conditions.until), woken with the others. */
  until(holds: () => boolean, timeoutMs: number): Promise<boolean> {
    return this.#conditions.until(holds, timeoutMs);
  }

  /** wake resolves every wait whose condition now holds (call after each apply, snapshot or heartbeat). */
  wake(): void {
    this.#conditions.wake();
  }

  /** rejectAll fails every waiter (the database is closing). */
  rejectAll(err: Error): void {
    this.#conditions.rejectAll(err);
  }
}
