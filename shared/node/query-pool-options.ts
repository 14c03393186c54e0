/**
 * query-pool-options: the QueryPool's options, figures and outcome types (query-pool.ts), validated once
 * in its constructor, and the rebuilding of errors a query process sent.
 */
import { availableParallelism } from 'node:os';
import { EdgeliteError, isErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { QueryResult } from '../protocol.ts';
import type { IpcError, SavepointResult } from './ipc-codec.ts';

export const DEFAULT_QUERY_POOL_SIZE = Math.max(2, Math.min(4, availableParallelism()));
export const DEFAULT_QUERY_QUEUE = 1000;
export const DEFAULT_QUERY_BUSY_TIMEOUT_MS = 5000;

export interface QueryPoolOptions {
  /** Per-request time limit (ms), queueing included. */
  timeoutMs: number;
  /** Most processes running at once. */
  size?: number;
  /** Most requests waiting for a process; more are refused with BUSY. */
  maxQueue?: number;
  /** SQLite busy_timeout of the processes' connections. */
  busyTimeoutMs?: number;
  /**
   * Where reads given a local connection run first: 'auto' runs them on it for `sliceMs` when this
   * SQLite has the deadline hook (query-limit.ts), and hands what is still running to a process; 'off'
   * sends every read to a process.
   */
  inProcessReads?: 'auto' | 'off';
  /** How long a read may run in-process before it moves to a process (ms; query-limit-reads.ts). */
  sliceMs?: number;
  logger?: Logger;
}

export interface QueryPoolStats {
  /** Processes alive and usable (starting or ready). */
  live: number;
  /** Processes that said they are ready. */
  ready: number;
  busy: number;
  queued: number;
  /** Killed processes whose exit has not been seen yet. */
  dying: number;
  /** Requests answered with QUERY_TIMEOUT so far (each killed a process, unless stopped in-process). */
  timeouts: number;
  /** Requests refused with BUSY so far (queue full, or waited too long). */
  refused: number;
  /** Reads answered in-process, within their slice, so far. */
  inProcess: number;
  /** Reads stopped at the end of their in-process slice and handed to a process so far. */
  handedOff: number;
  pids: number[];
}

/** BatchOutcome: a write's outcome, its error rebuilt (ipc-codec.ts's SavepointResult on this side). */
export type BatchOutcome = { results: QueryResult[] } | { error: EdgeliteError } | { alone: true };

export const KNOWN_OPTIONS = new Set(['timeoutMs', 'size', 'maxQueue', 'busyTimeoutMs', 'inProcessReads', 'sliceMs', 'logger']);

export function outcomeFromReply(o: SavepointResult): BatchOutcome {
  return 'error' in o ? { error: errorFromReply(o.error) } : o;
}

/** errorFromReply rebuilds the EdgeliteError the process mapped (sqliteError) on its side. */
export function errorFromReply(e: IpcError): EdgeliteError {
  const message = typeof e.message === 'string' ? e.message : 'query failed';
  if (!isErrorCode(e.code)) return new EdgeliteError('INTERNAL', `query process sent an unknown error code: ${message}`);
  return new EdgeliteError(e.code, message, e.details === undefined ? {} : { details: e.details });
}

/** MAX_INT32: timers take at most this many ms (setTimeout treats more as 1). */
const MAX_INT32 = 2 ** 31 - 1;

export function checkInt(v: unknown, name: string, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > MAX_INT32) {
    throw new EdgeliteError('BAD_REQUEST', `QueryPool: "${name}" must be an integer from ${min} to ${MAX_INT32}, got ${String(v)}`);
  }
  return v;
}
