/** The test kit's arithmetic: the backoff bounds and round time limits the fault and e2e tests assert with. */
import { describe, expect, it } from 'vitest';
import { failureTimes, retryBounds } from '../kit/backoff.ts';
import { roundsTimeout } from '../kit/rounds.ts';

describe('retryBounds', () => {
  it('counts the retries the shortest and the longest waits fit in a window', () => {
    // Waits of base/2: 25, 50, 100, 200, 200, ... (cumulative 25, 75, 175, 375, 575, ...).
    // Waits of base + 100: 150, 200, 300, 500, 500, ... (cumulative 150, 350, 650, 1150, 1650, ...).
    expect(retryBounds(1000, { minMs: 50, maxMs: 400 }, 100)).toEqual({ fewest: 3, most: 7 });
    expect(retryBounds(4000, { minMs: 50, maxMs: 400 }, 100)).toEqual({ fewest: 9, most: 22 });
    expect(retryBounds(10, { minMs: 50, maxMs: 400 }, 100)).toEqual({ fewest: 0, most: 0 });
  });

  it('a tight loop and a replica that stopped retrying both fall outside the bounds', () => {
    const { fewest, most } = retryBounds(3000, { minMs: 50, maxMs: 5000 }, 400);
    expect(fewest).toBeGreaterThanOrEqual(1);
    expect(most).toBeLessThan(3000 / 10);
  });

  it('refuses settings that are not a backoff', () => {
    expect(() => retryBounds(1000, { minMs: 0, maxMs: 400 }, 0)).toThrow(/minMs/);
    expect(() => retryBounds(1000, { minMs: 500, maxMs: 400 }, 0)).toThrow(/minMs/);
  });
});

describe('failureTimes', () => {
  it('keeps the failed sessions logged inside the window, by their log time', () => {
    const at = (ms: number, msg = 'stream ended') => ({ msg, time: new Date(ms).toISOString() });
    const logs = [at(1000), at(2000), at(2500, 'snapshot applied'), at(3000), at(4000)];
    expect(failureTimes(logs, 2000, 3000)).toEqual([2000, 3000]);
  });
});

describe('roundsTimeout', () => {
  it('grows with the rounds, on top of the setup allowance', () => {
    expect(roundsTimeout(12, 3000)).toBe(96_000);
    expect(roundsTimeout(150, 3000)).toBe(510_000);
    expect(roundsTimeout(0, 3000, 5000)).toBe(5000);
  });

  it('refuses a count that is not a number of rounds', () => {
    expect(() => roundsTimeout(1.5, 3000)).toThrow(/count/);
    expect(() => roundsTimeout(3, 0)).toThrow(/perRoundMs/);
  });
});
