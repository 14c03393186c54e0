/**
 * progress: how a long command (export, migrate --all, restore, a replica's snapshot download) shows how
 * far it got (README.md#progress).
 * On a terminal (stderr a TTY) a cli-progress bar redrawn in place; otherwise a log line: one at
 * `info` every PROGRESS_LOG_EVERY_MS and one at the end, so a CI log or a pipe gets a few readable
 * lines, and one at `debug` per step for whoever asks (`--log-level debug`).
 */
import { Writable } from 'node:stream';
import cliProgress from 'cli-progress';
import type { Logger } from '../log.ts';

/** PROGRESS_LOG_EVERY_MS: off a terminal, the most often an `info` progress line is written. */
export const PROGRESS_LOG_EVERY_MS = 2000;

export interface Progress {
  /** tick moves the count by `n` and names what is being done. */
  tick(n: number, what: string): void;
  /** update sets the count to `done` (of a total that may have grown to `total`). */
  update(done: number, what: string, total?: number): void;
  /** stop ends the bar, or writes the last line. */
  stop(): void;
}

export interface ProgressOptions {
  /** What the line starts with: `export`, `migrate`, `restore`. */
  label: string;
  total: number;
  /** Where the lines go off a terminal. */
  logger: Logger;
  /** Nothing at all (one database: the result says it). */
  quiet?: boolean;
  /** Where the bar is drawn: stderr by default. Off a TTY, the logger gets the lines instead. */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** How a count prints (default: as is; bytes as MiB, for instance). */
  format?: (n: number) => string;
  everyMs?: number;
  now?: () => number;
}

export const QUIET: Progress = { tick() {}, update() {}, stop() {} };

/** drawing: the bar on a terminal now, if any (a command draws one at a time), so log lines can go above it. */
let drawing: { stream: NodeJS.WritableStream; bar: cliProgress.SingleBar } | null = null;

/** isDrawing says whether a bar is drawn on `stream` now: a second one there would garble both. */
export function isDrawing(stream: NodeJS.WritableStream): boolean {
  return drawing?.stream === stream;
}

/**
 * aboveBars wraps a terminal stream for a logger: while a bar is drawn on it, a log line first clears
 * the bar's line, and the bar is drawn again below the log line (so neither garbles the other).
 */
export function aboveBars(stream: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      const bar = drawing?.stream === stream ? drawing.bar : null;
      stream.write(bar ? `\r\x1b[K${chunk.toString()}` : chunk);
      bar?.render();
      done();
    },
  });
}

/** progress starts a bar of `total` steps on a TTY, or the log lines elsewhere. */
export function progress(o: ProgressOptions): Progress {
  if (o.quiet) return QUIET;
  const stream = o.stream ?? process.stderr;
  return stream.isTTY === true ? bar(o, stream) : lines(o);
}

function bar(o: ProgressOptions, stream: NodeJS.WritableStream): Progress {
  const fmt = o.format ?? String;
  const b = new cliProgress.SingleBar(
    {
      format: `${o.label} [{bar}] {percentage}% {value}/{total} {what}`,
      stream: stream as NodeJS.WriteStream,
      hideCursor: true,
      clearOnComplete: false,
      forceRedraw: true, // a log line above it (aboveBars) needs it drawn again
      formatValue: (v, _options, type) => (type === 'value' || type === 'total' ? fmt(v) : String(v)),
    },
    cliProgress.Presets.shades_classic,
  );
  let done = 0;
  b.start(Math.max(1, o.total), 0, { what: '' });
  drawing = { stream, bar: b };
  return {
    tick: (n, what) => {
      done += n;
      b.update(done, { what });
    },
    update: (d, what, total) => {
      done = d;
      if (total !== undefined) b.setTotal(Math.max(1, total));
      b.update(done, { what });
    },
    stop: () => {
      b.stop();
      if (drawing?.bar === b) drawing = null;
    },
  };
}

function lines(o: ProgressOptions): Progress {
  const now = o.now ?? Date.now;
  const every = o.everyMs ?? PROGRESS_LOG_EVERY_MS;
  const fmt = o.format ?? String;
  let total = o.total;
  let done = 0;
  let what = '';
  let last = now();
  let written = true; // nothing new to say yet
  const event = (level: 'debug' | 'info') => ({ msg: `${o.label}: ${what} (${fmt(done)}/${fmt(total)})`, level, done, total, ...(what ? { what } : {}) });
  const step = () => {
    written = false;
    o.logger(event('debug'));
    const t = now();
    if (t - last < every) return;
    last = t;
    written = true;
    o.logger(event('info'));
  };
  return {
    tick: (n, w) => {
      done += n;
      what = w;
      step();
    },
    update: (d, w, t) => {
      done = d;
      what = w;
      if (t !== undefined) total = t;
      step();
    },
    stop: () => {
      if (!written) o.logger(event('info'));
      written = true;
    },
  };
}
