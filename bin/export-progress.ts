/**
 * Progress for the commands that walk many databases or rows (`doctor --all`, `export`): a cli-progress
 * bar when stderr is a terminal, plain log lines otherwise (README.md#analytics-export), so a CI log
 * stays readable.
 */
import cliProgress from 'cli-progress';

export interface Progress {
  /** tick moves the bar by `n` and names what is being done. */
  tick(n: number, what: string): void;
  stop(): void;
}

/**
 * progress starts a bar of `total` steps on a TTY; elsewhere each tick whose `what` changed prints one
 * line `edgelite LABEL: WHAT (done/total)`. `quiet` prints nothing at all.
 */
export function progress(label: string, total: number, quiet = false, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (quiet) return { tick() {}, stop() {} };
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      { format: `${label} [{bar}] {percentage}% {value}/{total} {what}`, stream, hideCursor: true, clearOnComplete: false },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { what: '' });
    return { tick: (n, what) => bar.increment(n, { what }), stop: () => bar.stop() };
  }
  let done = 0;
  let last = '';
  return {
    tick(n, what) {
      done += n;
      if (what === last) return;
      last = what;
      stream.write(`edgelite ${label}: ${what} (${done}/${total})\n`);
    },
    stop() {},
  };
}

/** CONCURRENCY: databases examined at once by `--all` (each is one request or one download). */
export const CONCURRENCY = 4;

/**
 * forEachDatabase runs `fn` for every name, CONCURRENCY at a time, with a bar (or log lines) per
 * database done, and returns the results in the order of `names`. `fn` reports its own failures in its
 * result: one database failing does not stop the others.
 */
export async function forEachDatabase<T>(names: readonly string[], fn: (name: string) => Promise<T>, o: { label: string; quiet: boolean }): Promise<T[]> {
  const bar = progress(o.label, names.length, o.quiet);
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
