/**
 * Bounds on a replica's reconnect attempts over a window, from its backoff settings, so that a test can
 * fail both a replica that retries in a tight loop (too many) and one that stopped retrying (too few).
 * The rule they assume is the replicas' (docs/ARCHITECTURE.md#failure-rules): the k-th retry after a run
 * of failures starts waits `base/2 + random·base/2` with `base = min(max, min·2^k)`, k from 0.
 */

export interface BackoffSettings {
  minMs: number;
  maxMs: number;
}

/** BackoffBounds: the fewest and the most retries that can start within a window. */
export interface BackoffBounds {
  fewest: number;
  most: number;
}

/**
 * retryBounds counts the retries that fit in `windowMs` after the first failure: the most if every wait
 * is the shortest the rule allows (base/2) and a failed attempt takes no time; the fewest if every wait
 * is the longest (base) and each attempt also spends `attemptMs` failing (connect, request, error).
 */
export function retryBounds(windowMs: number, backoff: BackoffSettings, attemptMs: number): BackoffBounds {
  if (!(backoff.minMs > 0 && backoff.maxMs >= backoff.minMs)) throw new RangeError(`backoff must have 0 < minMs <= maxMs, got ${JSON.stringify(backoff)}`);
  const count = (wait: (base: number) => number): number => {
    let n = 0;
    let elapsed = 0;
    for (;;) {
      elapsed += wait(Math.min(backoff.maxMs, backoff.minMs * 2 ** Math.min(n, 20)));
      if (elapsed > windowMs) return n;
      n++;
    }
  };
  return { fewest: count((base) => base + attemptMs), most: count((base) => base / 2) };
}

/**
 * failureTimes lists when a replica process logged a failed session ('stream ended', by the `time` of
 * its JSON log line, in ms) between `fromMs` and `toMs`: while its primary was down, each is one attempt.
 */
export function failureTimes(logs: ReadonlyArray<Record<string, unknown>>, fromMs: number, toMs: number): number[] {
  return logs
    .filter((l) => l.msg === 'stream ended')
    .map((l) => Date.parse(String(l.time)))
    .filter((t) => t >= fromMs && t <= toMs);
}
