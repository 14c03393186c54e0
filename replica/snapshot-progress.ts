/**
 * The progress of a snapshot download (replica/snapshot-file.ts): a bar on a terminal, else log lines
 * (README.md#progress).
 */
import { isDrawing, progress, type Progress } from '../shared/node/progress.ts';
import type { Logger } from '../shared/log.ts';

/** PROGRESS_MIN_BYTES: smaller snapshots take well under a second here and log no progress. */
export const PROGRESS_MIN_BYTES = 8 * 1024 * 1024;
/** A progress line at every 1/PROGRESS_STEPS of the bytes, and at least every PROGRESS_MAX_INTERVAL_MS. */
const PROGRESS_STEPS = 10;
const PROGRESS_MAX_INTERVAL_MS = 10_000;

/** ProgressTerminal: a stream a bar may be drawn on (a bar only when `isTTY`). */
export type ProgressTerminal = NodeJS.WritableStream & { isTTY?: boolean };

/** mib prints a byte count as MiB with one decimal, for the bar. */
const mib = (n: number) => `${(n / (1024 * 1024)).toFixed(1)} MiB`;

/**
 * DownloadProgress shows a large download's progress. On a terminal (ProgressTerminal), a bar of its
 * bytes in MiB, redrawn in place (shared/node/progress.ts). Otherwise log lines: one when it starts, at
 * every tenth of its bytes (so even a fast download shows it) and at least every
 * PROGRESS_MAX_INTERVAL_MS (so a slow one never looks stuck), with its rate and an estimate of the time
 * left. Downloads smaller than PROGRESS_MIN_BYTES show nothing.
 */
export class DownloadProgress {
  readonly #db: string;
  readonly #total: number;
  readonly #logger: Logger;
  readonly #enabled: boolean;
  readonly #bar: Progress | null;
  readonly #started = Date.now();
  #lastAt = this.#started;
  #lastStep = 0;
  #stopped = false;

  constructor(db: string, total: number, logger: Logger, terminal?: ProgressTerminal) {
    this.#db = db;
    this.#total = total;
    this.#logger = logger;
    this.#enabled = total >= PROGRESS_MIN_BYTES;
    const drawn = this.#enabled && terminal?.isTTY === true && !isDrawing(terminal);
    this.#bar = drawn ? progress({ label: `snapshot ${db}`, total, logger, stream: terminal, format: mib }) : null;
    if (this.#enabled && !this.#bar) logger({ msg: 'snapshot download started', db, total });
  }

  note(bytes: number): void {
    if (this.#bar) return this.#bar.update(bytes, '');
    if (!this.#enabled || bytes >= this.#total) return; // the last line is done()'s
    const now = Date.now();
    const step = Math.floor((bytes * PROGRESS_STEPS) / this.#total);
    if (step <= this.#lastStep && now - this.#lastAt < PROGRESS_MAX_INTERVAL_MS) return;
    this.#lastStep = step;
    this.#lastAt = now;
    this.#log(bytes, now);
  }

  done(): void {
    if (this.#bar) {
      this.#bar.update(this.#total, 'verified');
      this.stop();
    } else if (this.#enabled) this.#log(this.#total, Date.now());
  }

  /** stop ends the bar of a download that failed (its error is reported by the caller). */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#bar?.stop();
  }

  #log(bytes: number, now: number): void {
    const elapsedMs = now - this.#started;
    const bytesPerSec = elapsedMs > 0 ? Math.round((bytes * 1000) / elapsedMs) : null;
    const etaMs = bytesPerSec ? Math.round(((this.#total - bytes) * 1000) / bytesPerSec) : null;
    const percent = Math.floor((bytes * 1000) / this.#total) / 10;
    this.#logger({ msg: 'snapshot download', db: this.#db, bytes, total: this.#total, percent, bytesPerSec, elapsedMs, etaMs });
  }
}
