/**
 * forEachDatabase: the walk over many databases of `doctor --all` and `export` (README.md#analytics-export),
 * bounded in concurrency, its progress a bar on a terminal and log lines otherwise (shared/node/progress.ts).
 */
import type { Logger } from '../shared/log.ts';
import { progress } from '../shared/node/progress.ts';

/** CONCURRENCY: databases examined at once by `--all` (each is one request or one download). */
export const CONCURRENCY = 4;

/**
 * forEachDatabase runs `fn` for every name, CONCURRENCY at a time, with a step of progress per
 * database done, and returns the results in the order of `names`. `fn` reports its own failures in
 * its result: one database failing does not stop the others.
 */
export async function forEachDatabase<T>(names: readonly string[], fn: (name: string) => Promise<T>, o: { label: string; quiet: boolean; logger: Logger }): Promise<T[]> {
  const bar = progress({ label: o.label, total: names.length, quiet: o.quiet, logger: o.logger });
  const out: T[] = new Array(names.length);
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const i = next++;
      out[i] = await fn(names[i]!);
      bar.tick(1, names[i]!);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, names.length) }, worker));
  } finally {
    bar.stop();
  }
  return out;
}
