/** PageApplier's options: defaults as named constants, validated once with messages naming the option. */
import { EdgeliteError } from '../shared/errors.ts';
import { isPageSize, PAGE_SIZE_RULE } from '../shared/page-size.ts';

export interface ApplierOptions {
  /** Page size for a replica file created empty, so it can be put in WAL mode at once. */
  pageSizeHint?: number;
  /**
   * fsync the position sidecar (and run SQLite with synchronous=FULL). Off by default: a process crash
   * loses nothing either way, and after an OS crash a replica whose file matches no recorded position
   * re-snapshots. Measured cost in the bench (test/bench/apply.bench.ts).
   */
  durable?: boolean;
  /** How long a write waits for a lock another connection holds (ms). Default WRITER_BUSY_TIMEOUT_MS. */
  busyTimeoutMs?: number;
  /** Where open() reports why it could not restore a position. Default console.warn. */
  log?: (message: string) => void;
  /**
   * Closes the owner's other connections to the file in this process (they reopen when next used).
   * Called before a writer that could not write is reopened: SQLite shares one read-only shared memory
   * per file among a process's connections, so with them open the new writer is read-only too.
   */
  closeReaders?: () => void;
}

export const DEFAULT_DURABLE = false;
export const WRITER_BUSY_TIMEOUT_MS = 5000;
const KNOWN_OPTIONS = ['pageSizeHint', 'durable', 'busyTimeoutMs', 'log', 'closeReaders'];

/** checkApplierOptions validates options up front; returns the page size hint and busy timeout to use. */
export function checkApplierOptions(options: ApplierOptions): { hint: number | undefined; timeout: number } {
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.includes(key)) throw new EdgeliteError('BAD_REQUEST', `unknown PageApplier option "${key}"`);
  }
  for (const key of ['log', 'closeReaders'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'function') throw new EdgeliteError('BAD_REQUEST', `invalid ${key}: want a function`);
  }
  const hint = options.pageSizeHint;
  if (hint !== undefined && !isPageSize(hint)) {
    throw new EdgeliteError('BAD_REQUEST', `invalid pageSizeHint ${hint}: want ${PAGE_SIZE_RULE}`);
  }
  const timeout = options.busyTimeoutMs ?? WRITER_BUSY_TIMEOUT_MS;
  if (!Number.isSafeInteger(timeout) || timeout < 0) {
    throw new EdgeliteError('BAD_REQUEST', `invalid busyTimeoutMs ${timeout}: want a non-negative integer`);
  }
  return { hint, timeout };
}
