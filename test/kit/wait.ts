/**
 * The one wait helper of the tests: poll a condition against a deadline, never sleep a fixed time and
 * hope. A timeout names what was awaited, so a failing run says what never happened.
 */

/** waitFor polls `fn` every `everyMs` until it returns a truthy value (returned), or throws after `timeoutMs`. */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 20_000, everyMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** waitUntil is waitFor for a condition with no value to return (the benches' form). */
export async function waitUntil(fn: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000, everyMs = 10): Promise<void> {
  await waitFor(fn, what, timeoutMs, everyMs);
}

/** sleep waits `ms`: for pacing a load or holding a fault open, never for waiting on a condition. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
