/**
 * PositionWaiters holds the reads waiting for a replica to reach a txid (read-your-writes, strong) and
 * for its lag to come within a bound (bounded staleness): the same on the Node replica and the Worker.
 * Txids keep increasing across generations, so a position reaches (generation, txid) when both are at
 * least as large.
 */
import { EdgeliteError } from './errors.ts';
import type { Position } from './types.ts';

interface Waiter {
  generation: number;
  txid: number;
  resolve: () => void;
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export function reached(p: Position | null, generation: number, txid: number): boolean {
  return !!p && p.generation >= generation && p.txid >= txid;
}

export class PositionWaiters {
  #waiters: Waiter[] = [];
  readonly #name: string;
  readonly #position: () => Position | null;
  readonly #lagMs: () => number;

  constructor(name: string, position: () => Position | null, lagMs: () => number) {
    this.#name = name;
    this.#position = position;
    this.#lagMs = lagMs;
  }

  /** waitFor resolves once the position reaches (generation, txid), or rejects with REPLICA_BEHIND. */
  waitFor(generation: number, txid: number, timeoutMs: number): Promise<void> {
    if (reached(this.#position(), generation, txid)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        generation,
        txid,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          const p = this.#position();
          reject(new EdgeliteError('REPLICA_BEHIND', `replica has not reached txid ${txid} within ${timeoutMs} ms`, {
            details: { db: this.#name, wantTxid: txid, haveTxid: p?.txid ?? null, generation: p?.generation ?? null },
          }));
        }, timeoutMs),
      };
      this.#waiters.push(waiter);
    });
  }

  /** waitForLag resolves once the lag is at most maxLagMs, or rejects with REPLICA_BEHIND. */
  async waitForLag(maxLagMs: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#lagMs() > maxLagMs) {
      if (Date.now() >= deadline) {
        const lag = this.#lagMs();
        throw new EdgeliteError('REPLICA_BEHIND', `replica lag ${Math.round(lag)} ms exceeds ${maxLagMs} ms`, {
          details: { db: this.#name, lagMs: Number.isFinite(lag) ? lag : null, maxLagMs },
        });
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** wake resolves every waiter the position now reaches (call after each apply or snapshot). */
  wake(): void {
    if (this.#waiters.length === 0) return;
    const p = this.#position();
    const still: Waiter[] = [];
    for (const w of this.#waiters) {
      if (reached(p, w.generation, w.txid)) {
        clearTimeout(w.timer);
        w.resolve();
      } else {
        still.push(w);
      }
    }
    this.#waiters = still;
  }

  /** rejectAll fails every waiter (the database is closing). */
  rejectAll(err: Error): void {
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.#waiters = [];
  }
}
