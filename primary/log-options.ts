/** The change-set log's options: defaults as named constants, validated once (`resolveLogOptions`). */
import { EdgeliteError } from '../shared/errors.ts';
import { NODE_FSYNC, type LogFsync } from './log-sync.ts';

export const DEFAULT_SYNC_INTERVAL_MS = 100;
export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
export const DEFAULT_RETENTION_RECORDS = 100_000;
export const DEFAULT_RETENTION_BYTES = 1024 * 1024 * 1024;
export const DEFAULT_RETENTION_AGE_MS = 24 * 60 * 60 * 1000;

export interface LogRetention {
  maxRecords?: number;
  maxBytes?: number;
  maxAgeMs?: number;
}

/** LogOptions: defaults are the DEFAULT_* constants above. */
export interface LogOptions {
  /** full: callers await sync() before acknowledging; normal: fsync every syncIntervalMs and on sync(). */
  sync: 'full' | 'normal';
  syncIntervalMs?: number;
  /** Roll to a new segment when the next record would take the current one past this size. */
  segmentBytes?: number;
  retention?: LogRetention;
  fsync?: LogFsync;
  /**
   * keepAfter pins records retention may not drop: prune never deletes a segment holding a record with
   * maxTxid above keepAfter() (the backup's uploaded txid, docs/ARCHITECTURE.md#the-log-and-snapshots).
   */
  keepAfter?: () => number;
  /**
   * durableThrough: the txid through which the log is known to be durable already (a clean close
   * fsynced it, primary/closed-record.ts). A log that ends there is not flushed again at open.
   */
  durableThrough?: number;
}

export interface ResolvedLogOptions {
  sync: 'full' | 'normal';
  syncIntervalMs: number;
  segmentBytes: number;
  retention: Required<LogRetention>;
  fsync: LogFsync;
  keepAfter: (() => number) | null;
}

const OPTION_NAMES = ['sync', 'syncIntervalMs', 'segmentBytes', 'retention', 'fsync', 'keepAfter', 'durableThrough'];
const RETENTION_NAMES = ['maxRecords', 'maxBytes', 'maxAgeMs'];

/** resolveLogOptions validates options once, with messages that name the option, and fills defaults. */
export function resolveLogOptions(o: LogOptions): ResolvedLogOptions {
  const bad = (why: string): never => {
    throw new EdgeliteError('BAD_REQUEST', `invalid log options: ${why}`);
  };
  for (const k of Object.keys(o)) if (!OPTION_NAMES.includes(k)) bad(`unknown option "${k}" (known: ${OPTION_NAMES.join(', ')})`);
  for (const k of Object.keys(o.retention ?? {})) if (!RETENTION_NAMES.includes(k)) bad(`unknown retention option "${k}" (known: ${RETENTION_NAMES.join(', ')})`);
  if (o.sync !== 'full' && o.sync !== 'normal') bad(`sync must be "full" or "normal", got ${JSON.stringify(o.sync)}`);
  const positive = (name: string, v: number | undefined, def: number): number => {
    if (v === undefined) return def;
    return Number.isSafeInteger(v) && v > 0 ? v : bad(`${name} must be a positive integer, got ${v}`);
  };
  if (o.durableThrough !== undefined && !(Number.isSafeInteger(o.durableThrough) && o.durableThrough >= 0)) {
    bad(`durableThrough must be a txid (an integer >= 0), got ${o.durableThrough}`);
  }
  return {
    sync: o.sync,
    syncIntervalMs: positive('syncIntervalMs', o.syncIntervalMs, DEFAULT_SYNC_INTERVAL_MS),
    segmentBytes: positive('segmentBytes', o.segmentBytes, DEFAULT_SEGMENT_BYTES),
    retention: {
      maxRecords: positive('retention.maxRecords', o.retention?.maxRecords, DEFAULT_RETENTION_RECORDS),
      maxBytes: positive('retention.maxBytes', o.retention?.maxBytes, DEFAULT_RETENTION_BYTES),
      maxAgeMs: positive('retention.maxAgeMs', o.retention?.maxAgeMs, DEFAULT_RETENTION_AGE_MS),
    },
    fsync: o.fsync ?? NODE_FSYNC,
    keepAfter: o.keepAfter ?? null,
  };
}
