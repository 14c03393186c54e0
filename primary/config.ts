/**
 * PrimaryConfig: everything the primary needs, parsed once from argv and env at the edge (main.ts) and
 * passed down. Defaults are the named constants below.
 */
import { parseArgs } from 'node:util';
import { parseArgsOptions, parsedFlags, PRIMARY_FLAGS } from '../shared/cli-flags.ts';
import { parseAuthConfig, type AuthConfig } from '../shared/auth.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { configError, DEFAULT_HOST, parseDurationMs, parseListen, positiveInt, queryTimeout } from '../shared/config.ts';
import { DEFAULT_MAX_BODY_BYTES } from '../shared/http.ts';
import { parseBackupTarget, type BackupTarget } from '../shared/object-store.ts';
import { leaseAndSync, type LeaseConfig, type SyncConfig } from '../shared/lease-config.ts';
import type { Keyring } from '../shared/object-keyring.ts';
import { readKeyring } from '../shared/node/open-object-store.ts';
import type { CompactionPolicy } from '../shared/backup-compaction.ts';
import type { SynchronousMode } from './sqlite.ts';
import type { RangeLayout } from './changes.ts';

export const DEFAULT_PRIMARY_PORT = 7400;
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;
/** Checkpoint after ~16 MiB of WAL at 4 KiB pages. */
export const DEFAULT_CHECKPOINT_FRAMES = 4000;
export const DEFAULT_POLL_INTERVAL_MS = 100;
/** `--idle-close-ms`: a database unused this long is closed (README.md#many-databases); 0 keeps all open. */
export const DEFAULT_IDLE_CLOSE_MS = 60_000;
/** `--max-open-databases` (primary/store.ts DEFAULT_MAX_OPEN): about ten descriptors each. */
export const DEFAULT_MAX_OPEN_DATABASES = 512;
/** `--backup-interval`: how often databases that changed upload a segment. */
export const DEFAULT_BACKUP_INTERVAL_MS = 1000;
/** `--backup-retention`: every point this far back stays restorable (docs/FORMAT.md#compaction-and-retention). */
export const DEFAULT_BACKUP_RETENTION_MS = 7 * 24 * 3_600_000;
/**
 * `--backup-ack-timeout`: how long a write waits for its change set to be in the bucket with
 * `--backup-ack` before it is answered 504 BACKUP_PENDING (committed on the primary, not uploaded yet).
 * Below the client library's and a forwarding replica's request timeouts (15 s, 30 s), so a slow
 * bucket gives a typed answer, never a dropped request whose outcome is unknown.
 */
export const DEFAULT_BACKUP_ACK_TIMEOUT_MS = 10_000;

export interface PrimaryConfig {
  dataDir: string;
  host: string;
  port: number;
  synchronous: SynchronousMode;
  busyTimeoutMs: number;
  compress: boolean;
  checkpointFrames: number;
  pollIntervalMs: number;
  /** `--idle-close-ms`: close a database nobody used for this long (0: never; every database stays open). */
  idleCloseMs: number;
  /** `--max-open-databases`: with idle closing, the most databases open at once (least recently used closed first). */
  maxOpenDatabases: number;
  maxBodyBytes: number;
  /** Time limit of an API read (ms): it runs in a query process, killed at the limit; 0 runs reads in-process with none. */
  queryTimeoutMs: number;
  auth: AuthConfig;
  retention: { maxRecords?: number; maxBytes?: number; maxAgeMs?: number };
  /** Continuous backup (`--backup URL`), or null. */
  backup: { target: BackupTarget; intervalMs: number; /** `--encryption-key-file`: every object encrypted (shared/object-crypt.ts), or null. */ keyring: Keyring | null; /** Tests only: a snapshot every N segments (primary/backup.ts). */ snapshotEverySegments?: number; /** Tests only: other compaction levels (shared/backup-compaction.ts); `levelsMs: []` merges nothing. */ compaction?: Partial<Omit<CompactionPolicy, 'retentionMs'>>; /** `--backup-retention` (ms); parse sets it, DEFAULT_BACKUP_RETENTION_MS when absent. */ retentionMs?: number } | null;
  /** `--backup-ack` (only with `--backup`): a write is answered once its change set is in the bucket, waiting at most timeoutMs; null: off. */
  backupAck: { timeoutMs: number } | null;
  /** Tests only: how catch-up ranges are cut (primary/changes.ts); absent, the defaults. */
  ranges?: RangeLayout;
  /** `--lease etcd://…` (README.md#high-availability): only the lease holder accepts writes; null: no lease, always writable. */
  lease: LeaseConfig | null;
  /** `--sync-replicas N` (needs `--lease`): a write is answered once N candidates applied it, waiting at most timeoutMs; 0: off. */
  sync: SyncConfig;
}

/** PRIMARY_USAGE ends a configuration error; the flags themselves are listed by `edgelite primary --help` (README.md#cli). */
export const PRIMARY_USAGE = `usage: edgelite primary --data DIR [flags]   (\`edgelite primary --help\` lists them)
  env: EDGELITE_TOKEN (all rights) or EDGELITE_TOKENS ("read=...; write+read=...; replicate=...; read+write@tenant-*=...")
  env for s3://: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL`;

/** parsePrimaryConfig reads argv and env once; any bad value is MISCONFIGURED, naming the flag or variable. */
export function parsePrimaryConfig(argv: string[], env: Record<string, string | undefined>): PrimaryConfig {
  try {
    return parse(argv, env);
  } catch (err) {
    throw configError(err);
  }
}

/** OPTIONS: the parseArgs form of PRIMARY_FLAGS, the table `edgelite primary --help` prints (README.md#cli). */
const OPTIONS = parseArgsOptions(PRIMARY_FLAGS);

function parse(argv: string[], env: Record<string, string | undefined>): PrimaryConfig {
  const { values, on } = parsedFlags(parseArgs({ args: argv, options: OPTIONS, strict: true }).values);
  const dataDir = values.data ?? env.EDGELITE_DATA;
  if (!dataDir) throw new EdgeliteError('MISCONFIGURED', `--data is required\n${PRIMARY_USAGE}`);
  const { host, port } = parseListen(values.listen ?? env.EDGELITE_LISTEN ?? `${DEFAULT_HOST}:${DEFAULT_PRIMARY_PORT}`, DEFAULT_PRIMARY_PORT);
  const synchronous = (values.synchronous ?? env.EDGELITE_SYNCHRONOUS ?? 'normal').toLowerCase();
  if (synchronous !== 'normal' && synchronous !== 'full') {
    throw new EdgeliteError('MISCONFIGURED', `--synchronous must be normal or full, got "${synchronous}"`);
  }
  return {
    dataDir,
    host,
    port,
    synchronous,
    busyTimeoutMs: DEFAULT_BUSY_TIMEOUT_MS,
    compress: on('compress'),
    checkpointFrames: positiveInt(values['checkpoint-frames'], DEFAULT_CHECKPOINT_FRAMES, '--checkpoint-frames'),
    pollIntervalMs: DEFAULT_POLL_INTERVAL_MS,
    idleCloseMs: nonNegativeMs(values['idle-close-ms'] ?? env.EDGELITE_IDLE_CLOSE_MS, DEFAULT_IDLE_CLOSE_MS, '--idle-close-ms'),
    maxOpenDatabases: positiveInt(values['max-open-databases'] ?? env.EDGELITE_MAX_OPEN_DATABASES, DEFAULT_MAX_OPEN_DATABASES, '--max-open-databases'),
    maxBodyBytes: positiveInt(values['max-body-bytes'], DEFAULT_MAX_BODY_BYTES, '--max-body-bytes'),
    queryTimeoutMs: queryTimeout(values['query-timeout-ms']),
    auth: parseAuthConfig(env.EDGELITE_TOKEN, env.EDGELITE_TOKENS),
    retention: {},
    backup: withRetention(parseBackup(values.backup, values['backup-interval'], values['s3-endpoint'], env, values['encryption-key-file']), values['backup-retention']),
    backupAck: parseBackupAck(values.backup !== undefined, on('backup-ack'), values['backup-ack-timeout']),
    ...leaseAndSync(values, host, port),
  };
}

function parseBackup(url: string | undefined, interval: string | undefined, endpoint: string | undefined, env: Record<string, string | undefined>, keyFile?: string): PrimaryConfig['backup'] {
  if (url === undefined) {
    if (interval !== undefined || endpoint !== undefined) throw new EdgeliteError('MISCONFIGURED', '--backup-interval and --s3-endpoint need --backup');
    if (keyFile !== undefined) throw new EdgeliteError('MISCONFIGURED', '--encryption-key-file needs --backup');
    return null;
  }
  return {
    target: parseBackupTarget(url, env, endpoint),
    intervalMs: interval === undefined ? DEFAULT_BACKUP_INTERVAL_MS : parseDurationMs(interval, '--backup-interval'),
    keyring: keyFile === undefined ? null : readKeyring(keyFile),
  };
}

/** withRetention adds `--backup-retention` (default DEFAULT_BACKUP_RETENTION_MS), refused without --backup. */
function withRetention(backup: PrimaryConfig['backup'], retention: string | undefined): PrimaryConfig['backup'] {
  if (backup === null) {
    if (retention !== undefined) throw new EdgeliteError('MISCONFIGURED', '--backup-retention needs --backup');
    return null;
  }
  return { ...backup, retentionMs: retention === undefined ? DEFAULT_BACKUP_RETENTION_MS : parseDurationMs(retention, '--backup-retention') };
}

/** parseBackupAck reads `--backup-ack [--backup-ack-timeout D]`; both need `--backup`. */
function parseBackupAck(backup: boolean, ack: boolean | undefined, timeout: string | undefined): PrimaryConfig['backupAck'] {
  if (!ack) {
    if (timeout !== undefined) throw new EdgeliteError('MISCONFIGURED', '--backup-ack-timeout needs --backup-ack');
    return null;
  }
  if (!backup) throw new EdgeliteError('MISCONFIGURED', '--backup-ack needs --backup (a write can only wait for a bucket there is)');
  return { timeoutMs: timeout === undefined ? DEFAULT_BACKUP_ACK_TIMEOUT_MS : parseDurationMs(timeout, '--backup-ack-timeout') };
}

/** nonNegativeMs reads a whole number of milliseconds, 0 allowed; absent: the default. */
function nonNegativeMs(raw: string | undefined, fallback: number, flag: string): number {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) throw new EdgeliteError('MISCONFIGURED', `${flag} must be a whole number of milliseconds (0: never), got "${raw}"`);
  return Number(raw);
}
