/**
 * Event-driven waits (shared/waiters.ts, shared/replica-facade.ts, ReplicaStore.until): a wait is
 * settled by the change that satisfies it (an apply, a heartbeat, `ready`, a database opening), or by
 * its deadline, and nothing polls meanwhile: under fake timers the only timer pending is the deadline.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EdgeliteError } from '../../shared/errors.ts';
import { CONTACT_GRACE_MS } from '../../shared/lag.ts';
import { ReplicaFacade } from '../../shared/replica-facade.ts';
import type { Position } from '../../shared/types.ts';
import { Conditions } from '../../shared/waiters.ts';
import { ReplicaStore } from '../../replica/store.ts';
import { tempDir } from '../helpers.ts';

/** Facade is the smallest real replica facade: a position that applies move. */
class Facade extends ReplicaFacade {
  #position: Position | null = null;

  get position(): Position | null {
    return this.#position;
  }

  get databaseId(): number | null {
    return this.#position ? 7 : null;
  }

  applyTo(txid: number, timestamp: number): void {
    this.#position = { generation: 1, txid, checksum: BigInt(txid) };
    this.noteApplied(timestamp, this.#position);
  }

  close(): void {
    this.closeWaits(new EdgeliteError('UNAVAILABLE', 'closed'));
  }
}

/** state tells whether a promise has settled, after letting pending callbacks run. */
async function state(p: Promise<unknown>): Promise<'pending' | 'resolved' | 'rejected'> {
  let s: 'pending' | 'resolved' | 'rejected' = 'pending';
  p.then(() => (s = 'resolved'), () => (s = 'rejected'));
  await vi.advanceTimersByTimeAsync(0);
  return s;
}

describe('event-driven waits', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_000_000 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a waitForLag satisfied by a heartbeat resolves then, with no timer but its deadline meanwhile', async () => {
    const f = new Facade('app');
    f.applyTo(5, Date.now() - 60_000); // applied long ago, nothing heard since: lag is a minute
    const wait = f.waitForLag(100, 30_000);
    expect(await state(wait)).toBe('pending');
    expect(vi.getTimerCount()).toBe(1);
    const armed = vi.spyOn(globalThis, 'setTimeout');
    await vi.advanceTimersByTimeAsync(10_000);
    expect(await state(wait)).toBe('pending');
    expect(armed).not.toHaveBeenCalled(); // no polling loop re-arms a timer: only the deadline waits
    armed.mockRestore();
    f.notePrimary({ generation: 1, txid: 5, timestamp: Date.now() - 5 }); // caught up as of now
    expect(f.lagMs).toBe(0);
    expect(await state(wait)).toBe('resolved');
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a heartbeat that shows the replica behind does not satisfy it; the apply that catches up does', async () => {
    const f = new Facade('app');
    f.applyTo(5, Date.now() - 60_000);
    const wait = f.waitForLag(100, 30_000);
    f.notePrimary({ generation: 1, txid: 9, timestamp: Date.now() }); // primary is at 9, we are at 5
    expect(await state(wait)).toBe('pending');
    f.applyTo(9, Date.now());
    expect(await state(wait)).toBe('resolved');
  });

  it('an unsatisfied waitForLag rejects REPLICA_BEHIND at its deadline, not before', async () => {
    const f = new Facade('app');
    f.applyTo(5, Date.now());
    f.notePrimary({ generation: 1, txid: 5, timestamp: Date.now() });
    await vi.advanceTimersByTimeAsync(CONTACT_GRACE_MS + 1000); // silence: lag grows with time alone
    expect(f.lagMs).toBe(CONTACT_GRACE_MS + 1000);
    const wait = f.waitForLag(500, 1000);
    const error = wait.catch((err: unknown) => err);
    await vi.advanceTimersByTimeAsync(999);
    expect(await state(wait)).toBe('pending');
    await vi.advanceTimersByTimeAsync(1);
    const err = (await error) as EdgeliteError;
    expect(err).toBeInstanceOf(EdgeliteError);
    expect([err.code, err.details?.maxLagMs, err.details?.lagMs]).toEqual(['REPLICA_BEHIND', 500, CONTACT_GRACE_MS + 2000]);
  });

  it('waitFor resolves at the apply that reaches the txid, and times out at its deadline', async () => {
    const f = new Facade('app');
    const reached = f.waitFor(1, 7, 5000);
    f.applyTo(6, Date.now());
    expect(await state(reached)).toBe('pending');
    f.applyTo(7, Date.now());
    expect(await state(reached)).toBe('resolved');
    const late = f.waitFor(1, 9, 5000).catch((err: unknown) => err);
    await vi.advanceTimersByTimeAsync(5000);
    expect(((await late) as EdgeliteError).details).toMatchObject({ db: 'app', wantTxid: 9, haveTxid: 7 });
  });

  it('until is woken by ready and by applies, calls the change listeners, and close rejects what waits', async () => {
    const f = new Facade('app');
    const changes: boolean[] = [];
    f.onChange(() => changes.push(f.ready));
    const ready = f.until(() => f.ready && f.position !== null, 5000);
    f.applyTo(1, Date.now());
    expect(await state(ready)).toBe('pending');
    f.ready = true;
    expect(await state(ready)).toBe('resolved');
    expect(changes).toEqual([false, true]);
    const never = f.until(() => false, 5000);
    const expired = f.until(() => false, 10);
    await vi.advanceTimersByTimeAsync(10);
    await expect(expired).resolves.toBe(false);
    f.close();
    await expect(never).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('Conditions rejects a wait whose condition throws', async () => {
    const c = new Conditions();
    let fail = false;
    const wait = c.until(() => {
      if (fail) throw new Error('boom');
      return false;
    }, 5000);
    fail = true;
    c.wake();
    await expect(wait).rejects.toThrow('boom');
    expect(c.size).toBe(0);
  });
});

describe('ReplicaStore.until', () => {
  it('is woken when a database opens and when it changes, with no polling', async () => {
    const t = tempDir('store-until');
    const store = new ReplicaStore(t.dir, { busyTimeoutMs: 1000, logger: () => {} });
    try {
      const started = Date.now();
      const wait = store.until(() => store.get('app')?.ready === true, 10_000);
      setTimeout(() => store.ensure('app'), 20);
      setTimeout(() => {
        store.get('app')!.ready = true;
      }, 40);
      await expect(wait).resolves.toBe(true);
      expect(Date.now() - started).toBeLessThan(5000);
      await expect(store.until(() => store.get('absent') !== undefined, 30)).resolves.toBe(false);
    } finally {
      store.close();
      t.cleanup();
    }
  });
});
