/** LagTracker: the staleness bound both replicas report and bounded reads rely on. */
import { describe, expect, it } from 'vitest';
import { CONTACT_GRACE_MS, LagTracker } from '../../shared/lag.ts';

const at = (txid: number) => ({ generation: 1, txid, checksum: 0n });

describe('LagTracker', () => {
  it('is infinite before anything is known, 0 when current with a fresh heartbeat', () => {
    let now = 10_000;
    const lag = new LagTracker(() => now);
    expect(lag.lagMs(null)).toBe(Number.POSITIVE_INFINITY);
    expect(lag.lagMs(at(5))).toBe(Number.POSITIVE_INFINITY);
    lag.notePrimary({ generation: 1, txid: 5, timestamp: 9_000, heardAt: now }, at(5));
    expect(lag.lagMs(at(5))).toBe(0);
    now += CONTACT_GRACE_MS + 500;
    // Silence past the grace: staleness is the time since we were last known current.
    expect(lag.lagMs(at(5))).toBe(CONTACT_GRACE_MS + 500);
  });

  it('counts from the newest applied commit when behind, and txids from the heartbeat', () => {
    let now = 50_000;
    const lag = new LagTracker(() => now);
    lag.noteApplied(49_000, at(3));
    lag.notePrimary({ generation: 1, txid: 9, timestamp: 49_900, heardAt: now }, at(3));
    expect(lag.lagTxids(at(3))).toBe(6);
    expect(lag.lagMs(at(3))).toBe(1000);
    now += 100;
    lag.noteApplied(49_900, at(9));
    expect(lag.lagMs(at(9))).toBe(0);
  });
});
