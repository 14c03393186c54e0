/**
 * The Worker's configuration, read once from its environment (wrangler.toml [vars] and secrets) and
 * validated with messages that name the variable. Nothing below this file reads `env` for settings.
 */
import { parseAuthConfig, type AuthConfig } from '../../../shared/auth.ts';
import { DEFAULT_SOURCE_INTERVAL_MS } from '../../../shared/bucket-feed.ts';
import { parseKeyring, type Keyring } from '../../../shared/object-keyring.ts';
import { parseBackupTarget, type S3Config } from '../../../shared/object-store.ts';
import { configError } from '../../../shared/config.ts';
import { EdgeliteError } from '../../../shared/errors.ts';
import { parseLeaseUrl, type LeaseTarget } from '../../../shared/lease.ts';
import { validateDatabaseName } from '../../../shared/types.ts';

/** Env is the Worker's bindings: the Durable Object namespace, vars and secrets (all strings). */
export interface Env {
  REPLICA: DurableObjectNamespace;
  PRIMARY_URL?: string;
  /** `etcd://host:port/prefix`: find the primary through the failover lease record (README.md#high-availability). */
  LEASE_URL?: string;
  DATABASES?: string;
  EDGELITE_PRIMARY_TOKEN?: string;
  EDGELITE_TOKEN?: string;
  EDGELITE_TOKENS?: string;
  ALLOW_NO_AUTH?: string;
  READ_WAIT_MS?: string;
  WRITE_WAIT_MS?: string;
  PAGE_CACHE_MB?: string;
  HEARTBEAT_TIMEOUT_MS?: string;
  ALARM_INTERVAL_MS?: string;
  MAX_BODY_BYTES?: string;
  /** `s3://bucket/prefix` of a primary's backup to bootstrap and catch up from (the Node replica's --source). */
  SOURCE_URL?: string;
  SOURCE_INTERVAL_MS?: string;
  /** Secret: the text of the key file the bucket's objects were sealed with (the Node replica's --encryption-key-file). */
  SOURCE_ENCRYPTION_KEYS?: string;
  /** The S3 endpoint (the Node side's --s3-endpoint), else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL. */
  S3_ENDPOINT?: string;
  AWS_ACCESS_KEY_ID?: string;
  AWS_SECRET_ACCESS_KEY?: string;
  AWS_SESSION_TOKEN?: string;
  AWS_REGION?: string;
  AWS_DEFAULT_REGION?: string;
  AWS_ENDPOINT_URL_S3?: string;
  AWS_ENDPOINT_URL?: string;
}

export interface WorkerConfig {
  /** PRIMARY_URL's origin; with LEASE_URL it may be null (then only the lease names the primary). */
  primaryUrl: string | null;
  /** LEASE_URL parsed: the primary is the holder of this lease, PRIMARY_URL only until one is read. */
  lease: LeaseTarget | null;
  /** '*' follows any database asked for; a list restricts the Worker to those names. */
  databases: '*' | string[];
  primaryToken: string | undefined;
  auth: AuthConfig;
  readWaitMs: number;
  writeWaitMs: number;
  pageCacheBytes: number;
  heartbeatTimeoutMs: number;
  alarmIntervalMs: number;
  maxBodyBytes: number;
  /** SOURCE_URL: the bucket to bootstrap and catch up from, listed every `intervalMs` while the primary is unreachable. */
  source: { s3: S3Config; intervalMs: number; /** SOURCE_ENCRYPTION_KEYS parsed, or null: objects are plaintext. */ keyring: Keyring | null } | null;
}

export const DEFAULT_READ_WAIT_MS = 5000;
export const DEFAULT_WRITE_WAIT_MS = 5000;
export const DEFAULT_PAGE_CACHE_MB = 32;
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 5000;
/** DEFAULT_ALARM_INTERVAL_MS: how often the object wakes to check its stream and reconnect it. */
export const DEFAULT_ALARM_INTERVAL_MS = 10_000;
export const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;

/**
 * parseWorkerConfig validates `env`; MISCONFIGURED naming the variable when one is wrong. A Worker
 * cannot refuse to start, so the caller keeps the error and answers every request with it (503).
 */
export function parseWorkerConfig(env: Env): WorkerConfig {
  try {
    return parse(env);
  } catch (err) {
    throw configError(err);
  }
}

function parse(env: Env): WorkerConfig {
  const leaseUrl = env.LEASE_URL?.trim();
  const lease = leaseUrl ? parseLeaseUrl(leaseUrl, 'LEASE_URL') : null;
  const primaryUrl = env.PRIMARY_URL?.trim();
  if (!primaryUrl && !lease) throw new EdgeliteError('MISCONFIGURED', 'PRIMARY_URL is not set: the URL of the edgelite primary (or LEASE_URL, etcd://HOST:PORT/PREFIX of its failover lease)');
  const url = primaryUrl ? parsePrimaryUrl(primaryUrl) : null;
  const auth = parseAuthConfig(env.EDGELITE_TOKEN || undefined, env.EDGELITE_TOKENS || undefined);
  if (auth.grants.length === 0 && env.ALLOW_NO_AUTH !== 'true') {
    throw new EdgeliteError('MISCONFIGURED', 'no EDGELITE_TOKEN or EDGELITE_TOKENS secret is set (set ALLOW_NO_AUTH = "true" only for local development)');
  }
  return {
    primaryUrl: url?.origin ?? null,
    lease,
    databases: parseDatabases(env.DATABASES),
    primaryToken: env.EDGELITE_PRIMARY_TOKEN || undefined,
    auth,
    readWaitMs: int(env.READ_WAIT_MS, DEFAULT_READ_WAIT_MS, 'READ_WAIT_MS'),
    writeWaitMs: int(env.WRITE_WAIT_MS, DEFAULT_WRITE_WAIT_MS, 'WRITE_WAIT_MS'),
    pageCacheBytes: int(env.PAGE_CACHE_MB, DEFAULT_PAGE_CACHE_MB, 'PAGE_CACHE_MB') * 1024 * 1024,
    heartbeatTimeoutMs: int(env.HEARTBEAT_TIMEOUT_MS, DEFAULT_HEARTBEAT_TIMEOUT_MS, 'HEARTBEAT_TIMEOUT_MS'),
    alarmIntervalMs: int(env.ALARM_INTERVAL_MS, DEFAULT_ALARM_INTERVAL_MS, 'ALARM_INTERVAL_MS'),
    maxBodyBytes: int(env.MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES, 'MAX_BODY_BYTES'),
    source: parseSource(env),
  };
}

function parsePrimaryUrl(primaryUrl: string): URL {
  let url: URL;
  try {
    url = new URL(primaryUrl);
  } catch (err) {
    throw new EdgeliteError('MISCONFIGURED', `PRIMARY_URL "${primaryUrl}" is not a URL`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new EdgeliteError('MISCONFIGURED', `PRIMARY_URL must be http(s), got ${primaryUrl}`);
  return url;
}

/** parseSource reads SOURCE_URL the way the Node replica reads --source (parseBackupTarget), S3 only. */
function parseSource(env: Env): WorkerConfig['source'] {
  const url = env.SOURCE_URL?.trim();
  if (!url) return null;
  const vars: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (typeof v === 'string' && v.trim() !== '') vars[k] = v.trim();
  const target = parseBackupTarget(url, vars, vars.S3_ENDPOINT);
  if (target.kind !== 's3') throw new EdgeliteError('MISCONFIGURED', `SOURCE_URL "${url}": a Worker reads an s3:// bucket, not a directory`);
  const keys = env.SOURCE_ENCRYPTION_KEYS;
  return {
    s3: target.s3,
    intervalMs: int(env.SOURCE_INTERVAL_MS, DEFAULT_SOURCE_INTERVAL_MS, 'SOURCE_INTERVAL_MS'),
    keyring: keys === undefined || keys.trim() === '' ? null : parseKeyring(keys, 'SOURCE_ENCRYPTION_KEYS'),
  };
}

function parseDatabases(text: string | undefined): '*' | string[] {
  const t = (text ?? '*').trim();
  if (t === '' || t === '*') return '*';
  return t.split(',').map((n) => n.trim()).filter(Boolean).map((n) => validateDatabaseName(n));
}

function int(text: string | undefined, fallback: number, name: string): number {
  if (text === undefined || text.trim() === '') return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0) throw new EdgeliteError('MISCONFIGURED', `${name} must be a positive integer, got "${text}"`);
  return n;
}
