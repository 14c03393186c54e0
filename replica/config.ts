/**
 * ReplicaConfig: parsed once from argv and env at the edge (main.ts) and passed down. Defaults are the
 * named constants below.
 */
import { parseArgs } from 'node:util';
import { parseArgsOptions, parsedFlags, REPLICA_FLAGS } from '../shared/cli-flags.ts';
import { parseAuthConfig, type AuthConfig } from '../shared/auth.ts';
import { DEFAULT_SOURCE_INTERVAL_MS } from '../shared/bucket-feed.ts';
import { configError, DEFAULT_HOST, parseDurationMs, parseListen, positiveInt, queryTimeout } from '../shared/config.ts';
import { parsePatternList } from '../shared/db-pattern.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { DEFAULT_MAX_BODY_BYTES } from '../shared/http.ts';
import { leaseAndSync, type LeaseConfig, type SyncConfig } from '../shared/lease-config.ts';
import type { Keyring } from '../shared/object-keyring.ts';
import { parseBackupTarget, type BackupTarget } from '../shared/object-store.ts';
import { readKeyring } from '../shared/node/open-object-store.ts';
import { DEFAULT_BACKOFF_MAX_MS, DEFAULT_BACKOFF_MIN_MS, DEFAULT_BOOTSTRAP_CONCURRENCY, DEFAULT_HEARTBEAT_TIMEOUT_MS } from './follower.ts';

export const DEFAULT_REPLICA_PORT = 7401;
export const DEFAULT_READ_WAIT_MS = 5000;
export const DEFAULT_WRITE_WAIT_MS = 5000;
export const DEFAULT_MAX_HEALTHY_LAG_MS = 10_000;
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;
/** DEFAULT_MAX_DATABASES: how many databases a lazy replica keeps on disk before evicting the least recently used. */
export const DEFAULT_MAX_DATABASES = 100;
/** `--idle-close-ms`: a local database not read or applied to this long closes its connections (README.md#many-databases); 0 keeps all open. */
export const DEFAULT_IDLE_CLOSE_MS = 60_000;
/** `--max-open-databases`: with idle closing, the most local databases open at once (least recently used closed first). */
export const DEFAULT_MAX_OPEN_DATABASES = 512;

export interface ReplicaConfig {
  /** The primary; null for a replica fed from a bucket alone (`--source` without `--primary`): reads only. */
  primaryUrl: string | null;
  /** `--source`: the bucket to bootstrap and catch up from, listed every `intervalMs` while it feeds the replica. */
  source: { target: BackupTarget; intervalMs: number; /** `--encryption-key-file`: the keys the bucket's objects were sealed with, or null. */ keyring: Keyring | null } | null;
  /** Token the replica presents to the primary (needs replicate; write to forward writes). */
  primaryToken: string | undefined;
  dataDir: string;
  host: string;
  port: number;
  /** What the stream follows from the start: all, a list; in lazy mode the list the replica starts from is found on disk. */
  databases: '*' | string[];
  /** With `--lazy`, the names and patterns (`--databases`) a lazy replica may fetch, others DATABASE_NOT_FOUND; null: any. */
  lazyLimit: string[] | null;
  /** Lazy mode (`--lazy`): a database is fetched on its first request and evicted under `maxDatabases` (replica/lazy.ts). */
  lazy: boolean;
  /** Most databases a lazy replica keeps on disk (least recently used evicted first). */
  maxDatabases: number;
  auth: AuthConfig;
  maxBodyBytes: number;
  readWaitMs: number;
  writeWaitMs: number;
  onBehind: 'error' | 'primary';
  maxHealthyLagMs: number;
  heartbeatTimeoutMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  busyTimeoutMs: number;
  /** `--bootstrap-concurrency`: how many snapshots download at once. */
  bootstrapConcurrency: number;
  /** `--idle-close-ms`: close a local database's connections after this long unused (0: never). */
  idleCloseMs: number;
  /** `--max-open-databases`: with idle closing, the most local databases with open connections. */
  maxOpenDatabases: number;
  /** Time limit of one read request (ms); reads then run in a query pool. 0: in-process, no limit. */
  queryTimeoutMs: number;
  /** `--lease etcd://…`: the primary is whoever holds the lease (README.md#high-availability); `--primary` is then optional. */
  lease: LeaseConfig | null;
  /** `--candidate` (needs `--lease`): this replica stands in elections and takes over when the lease lapses. */
  candidate: boolean;
  /** `--sync-replicas N [--sync-timeout D]`: what this candidate does as primary after a promotion (as the primary's flags). */
  sync: SyncConfig;
}

/** REPLICA_USAGE ends a configuration error; the flags themselves are listed by `edgelite replica --help` (README.md#cli). */
export const REPLICA_USAGE = `usage: edgelite replica --primary URL | --source BUCKET | --lease etcd://... --data DIR [flags]   (\`edgelite replica --help\` lists them)
  env: EDGELITE_PRIMARY_TOKEN (token for the primary), EDGELITE_TOKEN / EDGELITE_TOKENS (this server's auth)`;

/**
 * parseDatabases reads `--databases` / EDGELITE_DATABASES: `*`, or comma-separated names and patterns
 * (`tenant-*,global`, shared/db-pattern.ts); a pattern follows every matching database, including ones
 * created later. A bad entry is MISCONFIGURED naming it.
 */
export function parseDatabases(text: string): '*' | string[] {
  if (text.trim() === '*') return '*';
  return parsePatternList(text, '--databases');
}

/** parseReplicaConfig reads argv and env once; any bad value is MISCONFIGURED, naming the flag or variable. */
export function parseReplicaConfig(argv: string[], env: Record<string, string | undefined>): ReplicaConfig {
  try {
    return parse(argv, env);
  } catch (err) {
    throw configError(err);
  }
}

/** OPTIONS: the parseArgs form of REPLICA_FLAGS, the table `edgelite replica --help` prints (README.md#cli). */
const OPTIONS = parseArgsOptions(REPLICA_FLAGS);

function parse(argv: string[], env: Record<string, string | undefined>): ReplicaConfig {
  const { values, on } = parsedFlags(parseArgs({ args: argv, options: OPTIONS, strict: true }).values);
  const source = parseSource(values.source, values['source-interval'], values['s3-endpoint'], values['encryption-key-file'], env);
  const primaryUrl = values.primary ?? env.EDGELITE_PRIMARY ?? null;
  const { host, port } = parseListen(values.listen ?? env.EDGELITE_LISTEN ?? `${DEFAULT_HOST}:${DEFAULT_REPLICA_PORT}`, DEFAULT_REPLICA_PORT);
  const { lease, sync } = leaseAndSync(values, host, port);
  if (on('candidate') && !lease) throw new EdgeliteError('MISCONFIGURED', '--candidate needs --lease (elections run in the lease store)');
  if (!on('candidate') && sync.replicas > 0) throw new EdgeliteError('MISCONFIGURED', '--sync-replicas on a replica needs --candidate (it is what the replica does once promoted)');
  if (!primaryUrl && !source && !lease) throw new EdgeliteError('MISCONFIGURED', `--primary is required (or --source, or --lease)\n${REPLICA_USAGE}`);
  if (primaryUrl !== null && (!/^https?:\/\/[^/]/.test(primaryUrl) || !URL.canParse(primaryUrl))) throw new EdgeliteError('MISCONFIGURED', `--primary (EDGELITE_PRIMARY) must be an http(s) URL, got "${primaryUrl}"`);
  const dataDir = values.data ?? env.EDGELITE_DATA;
  if (!dataDir) throw new EdgeliteError('MISCONFIGURED', `--data is required\n${REPLICA_USAGE}`);
  const onBehind = values['on-behind'] ?? 'error';
  if (onBehind !== 'error' && onBehind !== 'primary') {
    throw new EdgeliteError('MISCONFIGURED', `--on-behind must be error or primary, got "${onBehind}"`);
  }
  const lazyEnv = env.EDGELITE_LAZY;
  if (lazyEnv !== undefined && !['0', '1', 'true', 'false', ''].includes(lazyEnv)) {
    throw new EdgeliteError('MISCONFIGURED', `EDGELITE_LAZY must be 1/true or 0/false, got "${lazyEnv}"`);
  }
  const lazy = on('lazy') || lazyEnv === '1' || lazyEnv === 'true';
  const databasesText = values.databases ?? env.EDGELITE_DATABASES;
  if (primaryUrl === null && !lease && lazy) throw new EdgeliteError('MISCONFIGURED', '--lazy asks the primary which databases exist: it needs --primary');
  if (primaryUrl === null && !lease && onBehind === 'primary') throw new EdgeliteError('MISCONFIGURED', '--on-behind primary needs --primary');
  const maxText = values['max-databases'] ?? env.EDGELITE_MAX_DATABASES;
  if (!lazy && maxText !== undefined) throw new EdgeliteError('MISCONFIGURED', '--max-databases only applies with --lazy (nothing is evicted otherwise)');
  return {
    primaryUrl,
    source,
    primaryToken: env.EDGELITE_PRIMARY_TOKEN ?? env.EDGELITE_TOKEN,
    dataDir,
    host,
    port,
    databases: lazy ? [] : parseDatabases(databasesText ?? '*'),
    lazyLimit: lazy ? lazyLimit(databasesText) : null,
    lazy,
    maxDatabases: positiveInt(maxText, DEFAULT_MAX_DATABASES, '--max-databases'),
    auth: parseAuthConfig(env.EDGELITE_TOKEN, env.EDGELITE_TOKENS),
    maxBodyBytes: positiveInt(values['max-body-bytes'], DEFAULT_MAX_BODY_BYTES, '--max-body-bytes'),
    readWaitMs: positiveInt(values['read-wait-ms'], DEFAULT_READ_WAIT_MS, '--read-wait-ms'),
    writeWaitMs: positiveInt(values['write-wait-ms'], DEFAULT_WRITE_WAIT_MS, '--write-wait-ms'),
    onBehind,
    maxHealthyLagMs: positiveInt(values['max-lag-ms'], DEFAULT_MAX_HEALTHY_LAG_MS, '--max-lag-ms'),
    heartbeatTimeoutMs: positiveInt(values['heartbeat-timeout-ms'], DEFAULT_HEARTBEAT_TIMEOUT_MS, '--heartbeat-timeout-ms'),
    backoffMinMs: DEFAULT_BACKOFF_MIN_MS,
    backoffMaxMs: DEFAULT_BACKOFF_MAX_MS,
    busyTimeoutMs: DEFAULT_BUSY_TIMEOUT_MS,
    bootstrapConcurrency: positiveInt(values['bootstrap-concurrency'] ?? env.EDGELITE_BOOTSTRAP_CONCURRENCY, DEFAULT_BOOTSTRAP_CONCURRENCY, '--bootstrap-concurrency'),
    idleCloseMs: nonNegativeMs(values['idle-close-ms'] ?? env.EDGELITE_IDLE_CLOSE_MS, DEFAULT_IDLE_CLOSE_MS, '--idle-close-ms'),
    maxOpenDatabases: positiveInt(values['max-open-databases'] ?? env.EDGELITE_MAX_OPEN_DATABASES, DEFAULT_MAX_OPEN_DATABASES, '--max-open-databases'),
    queryTimeoutMs: queryTimeout(values['query-timeout-ms']),
    lease,
    candidate: on('candidate'),
    sync,
  };
}

/** lazyLimit: with --lazy, `--databases` limits what may be fetched (`*` or absent: anything the primary has). */
function lazyLimit(text: string | undefined): string[] | null {
  const parsed = text === undefined ? '*' : parseDatabases(text);
  return parsed === '*' ? null : parsed;
}

/** parseSource reads `--source` the way the primary reads `--backup` (parseBackupTarget: AWS_* variables, `--s3-endpoint`). */
function parseSource(url: string | undefined, interval: string | undefined, endpoint: string | undefined, keyFile: string | undefined, env: Record<string, string | undefined>): ReplicaConfig['source'] {
  if (url === undefined) {
    if (interval !== undefined || endpoint !== undefined || keyFile !== undefined) throw new EdgeliteError('MISCONFIGURED', '--source-interval, --s3-endpoint and --encryption-key-file need --source');
    return null;
  }
  return {
    target: parseBackupTarget(url, env, endpoint),
    intervalMs: interval === undefined ? DEFAULT_SOURCE_INTERVAL_MS : parseDurationMs(interval, '--source-interval'),
    keyring: keyFile === undefined ? null : readKeyring(keyFile),
  };
}

/** nonNegativeMs reads a whole number of milliseconds, 0 allowed (as the primary's `--idle-close-ms`); absent: the default. */
function nonNegativeMs(raw: string | undefined, fallback: number, flag: string): number {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) throw new EdgeliteError('MISCONFIGURED', `${flag} must be a whole number of milliseconds (0: never), got "${raw}"`);
  return Number(raw);
}
