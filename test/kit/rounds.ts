/**
 * Round counts of the loop tests and the time limits that go with them. A loop runs more rounds under
 * EDGELITE_LONG=1; its time limit must grow with them, or a long run on a busy machine times out while
 * every round passed (150 stream flips once took 112 s against a fixed 120 s limit).
 */

/** LONG: the long mode (EDGELITE_LONG=1), many more rounds of every loop test. */
export const LONG = process.env.EDGELITE_LONG === '1';

/** SETUP_MS: what a loop test spends outside its rounds (servers, schema, the final checks). */
export const SETUP_MS = 60_000;

/** rounds is a loop's count: `normal` in the default run, `long` under EDGELITE_LONG=1. */
export function rounds(normal: number, long: number): number {
  return LONG ? long : normal;
}

/**
 * roundsTimeout is a loop test's time limit: `perRoundMs` for each of `count` rounds plus `setupMs`.
 * Take `perRoundMs` at about three times what a round takes on a quiet machine, so a shared one passes
 * and a hung round still fails well before the whole run would.
 */
export function roundsTimeout(count: number, perRoundMs: number, setupMs = SETUP_MS): number {
  if (!(Number.isSafeInteger(count) && count >= 0)) throw new RangeError(`count must be a whole number of rounds, got ${count}`);
  if (!(perRoundMs > 0)) throw new RangeError(`perRoundMs must be > 0, got ${perRoundMs}`);
  return setupMs + count * perRoundMs;
}
