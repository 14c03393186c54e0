/**
 * One error base with stable codes, and the one table that maps each code to an HTTP status. Every HTTP
 * error body is `{"error": {"code", "message"}}` (plus `details` where a code documents them).
 */

/** ERROR_STATUS is the single code → HTTP status table. Codes are part of the public surface. */
export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  INVALID_DATABASE_NAME: 400,
  INVALID_TOKEN: 400,
  TOKEN_DATABASE_MISMATCH: 400,
  /** The token's write is not in the database's history: a newer generation started without it (docs/ARCHITECTURE.md#tokens-and-consistency). */
  TOKEN_LOST: 410,
  UNSUPPORTED_MEDIA_TYPE: 415,
  SQL_ERROR: 400,
  READ_ONLY: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  DATABASE_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  DATABASE_EXISTS: 409,
  CONSTRAINT_VIOLATION: 409,
  /** A fork at a txid the source's log cannot rebuild (retention, another generation, ahead of it): primary/fork.ts. `details.db`, `details.txid`. */
  FORK_TXID_UNAVAILABLE: 409,
  GENERATION_MISMATCH: 409,
  SNAPSHOT_NEEDED: 409,
  /** A catch-up range asked for is still open (its txids are not all sealed): take them from the stream (shared/changes.ts). */
  USE_STREAM: 409,
  /** A stream request with `"ranges": true` from a position at least one sealed range behind: GET the ranges first (shared/changes.ts). */
  USE_RANGES: 409,
  PAYLOAD_TOO_LARGE: 413,
  QUERY_TIMEOUT: 408,
  BUSY: 503,
  REPLICA_BEHIND: 504,
  PRIMARY_UNAVAILABLE: 502,
  /** A replica fed from a bucket with no --primary has nowhere to forward a write (or a strong read). */
  NO_PRIMARY: 503,
  UNAVAILABLE: 503,
  /**
   * This node does not hold the failover lease (README.md#high-availability): `details.primary` is the
   * holder's URL (or null while none holds it), `details.epoch` its epoch; `details.outcome` is
   * `not-applied` (refused before it ran) or `unknown` (committed here as the lease ran out).
   */
  NOT_PRIMARY: 503,
  /**
   * A replica under the lease refused a stream or snapshot from a primary whose `Edgelite-Epoch` is older
   * than one it has seen (README.md#high-availability): a deposed primary. `details.epoch`, `details.maxEpoch`.
   */
  STALE_PRIMARY: 502,
  /** `edgelite promote`: the holder did not hand the lease over (the target did not catch up in time, or another node took it). */
  HANDOVER_FAILED: 409,
  /** `--sync-replicas`: committed on the primary, but not applied by enough candidates in time (`details.outcome: 'applied'`). */
  REPLICATION_PENDING: 504,
  /** The server's own configuration is wrong (the Worker, which cannot refuse to start): not the client's fault. */
  MISCONFIGURED: 503,
  CHECKSUM_MISMATCH: 500,
  POSITION_MISMATCH: 409,
  CORRUPT_CHANGESET: 422,
  CORRUPT_FRAME: 422,
  WAL_INVALID: 500,
  LOG_CORRUPT: 500,
  /** A backup object failed a check (checksum, length, name): reported, never applied (docs/FORMAT.md). */
  BACKUP_CORRUPT: 500,
  /**
   * Backup objects and the keys given do not match (details.reason: no-key, unknown-key-id, not-encrypted):
   * the reader's configuration (`--encryption-key-file`), not the request, is wrong, as with MISCONFIGURED.
   */
  BACKUP_KEY_MISMATCH: 503,
  /** The backup holds no restorable state at the requested txid or time (before the first backup, after the last upload). */
  NOT_RESTORABLE: 404,
  /** `--backup-ack`: the write is committed on the primary, but its change set did not reach the bucket in time (`details.outcome: 'applied'`). */
  BACKUP_PENDING: 504,
  DISK_FULL: 507,
  IO_ERROR: 500,
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

export interface EdgeliteErrorOptions {
  cause?: unknown;
  details?: Record<string, unknown>;
  /** divergence marks an error that means "this replica's copy is not where the stream is" (below). */
  divergence?: Divergence;
}

/**
 * Divergence says why a replica's copy cannot take the next change set and only a new snapshot can put
 * it right (docs/ARCHITECTURE.md#failure-rules). It is internal, never on the wire: the follower decides
 * to re-snapshot on `divergenceOf(err)`, not by matching wire codes, so a storage failure (IO_ERROR,
 * DISK_FULL) or a corrupt frame (reconnect and resume) can never be mistaken for one.
 */
export type Divergence =
  | 'database-id'
  | 'generation'
  | 'page-size'
  | 'txid'
  | 'pre-checksum'
  | 'post-checksum'
  | 'delta-base'
  | 'no-position';

/** divergenceOf returns the divergence an error carries, or null for every other failure. */
export function divergenceOf(err: unknown): Divergence | null {
  return err instanceof EdgeliteError ? err.divergence : null;
}

/**
 * AppliedOutcome answers "may this failed write have been applied?", the one vocabulary for it, carried
 * as `details.outcome` by every error of a write that did not get an answer: `not-applied` (it never
 * reached the primary, or was refused before it could commit: safe to send again) or `unknown` (it may
 * have committed: sending it again may apply it twice). A third, `applied`, is for a write that did
 * commit but without a guarantee the server was asked for (BACKUP_PENDING: committed on the primary's
 * disk, not yet in the bucket): never send it again.
 */
export type AppliedOutcome = 'not-applied' | 'unknown' | 'applied';

/**
 * EdgeliteError is the error base: a stable `code`, a message for people, optional `details` for
 * programs, and the `cause` it wraps. Its HTTP status comes from ERROR_STATUS, never from the thrower.
 */
export class EdgeliteError extends Error {
  override readonly name = 'EdgeliteError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  readonly divergence: Divergence | null;

  constructor(code: ErrorCode, message: string, options: EdgeliteErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
    this.divergence = options.divergence ?? null;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }

  toBody(): ErrorBody {
    const error: ErrorBody['error'] = { code: this.code, message: this.message };
    if (this.details !== undefined) error.details = this.details;
    return { error };
  }
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_STATUS, code);
}

/** statusFor maps a code to its HTTP status. */
export function statusFor(code: ErrorCode): number {
  return ERROR_STATUS[code];
}

/**
 * toEdgeliteError turns anything thrown into an EdgeliteError: ours pass through, anything else becomes
 * INTERNAL with the original as `cause`, so no handler has to guess.
 */
export function toEdgeliteError(err: unknown): EdgeliteError {
  if (err instanceof EdgeliteError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new EdgeliteError('INTERNAL', message, { cause: err });
}

/** errorFromBody rebuilds an EdgeliteError from an HTTP error body (used by clients and forwarders). */
export function errorFromBody(body: unknown, status: number): EdgeliteError {
  const e = (body as Partial<ErrorBody> | null)?.error;
  if (e && isErrorCode(e.code) && typeof e.message === 'string') {
    return new EdgeliteError(e.code, e.message, e.details ? { details: e.details } : {});
  }
  return new EdgeliteError(status >= 500 ? 'UNAVAILABLE' : 'BAD_REQUEST', `unexpected HTTP ${status} response`);
}
