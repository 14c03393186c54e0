/**
 * The Worker's configuration, read once from its environment (wrangler.toml [vars] and secrets) and
 * validated with messages that name the variable. Nothing below this file reads `env` for settings.
 */
import { parseAuthConfig, type AuthConfig } from '../../../shared/auth.ts';
import { configError } from '../../../shared/config.ts';
import { EdgeliteError } from '../../../shared/errors.ts';
import { validateDatabaseName } from '../../../shared/types.ts';

/** Env is the Worker's bindings: the Durable Object namespace, vars and secrets (all strings). */
export interface Env {
  REPLICA: DurableObjectNamespace;
  PRIMARY_URL?: string;
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
}

export interface WorkerConfig {
  primaryUrl: string;
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
  const primaryUrl = env.PRIMARY_URL?.trim();
  if (!primaryUrl) throw new EdgeliteError('MISCONFIGURED', 'PRIMARY_URL is not set: the URL of the edgelite primary');
  let url: URL;
  try {
    url = new URL(primaryUrl);
  } catch (err) {
    throw new EdgeliteError('MISCONFIGURED', `PRIMARY_URL "${primaryUrl}" is not a URL`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new EdgeliteError('MISCONFIGURED', `PRIMARY_URL must be http(s), got ${primaryUrl}`);
  const auth = parseAuthConfig(env.EDGELITE_TOKEN || undefined, env.EDGELITE_TOKENS || undefined);
  if (auth.grants.length === 0 && env.ALLOW_NO_AUTH !== 'true') {
    throw new EdgeliteError('MISCONFIGURED', 'no EDGELITE_TOKEN or EDGELITE_TOKENS secret is set (set ALLOW_NO_AUTH = "true" only for local development)');
  }
  return {
    primaryUrl: url.origin,
    databases: parseDatabases(env.DATABASES),
    primaryToken: env.EDGELITE_PRIMARY_TOKEN || undefined,
    auth,
    readWaitMs: int(env.READ_WAIT_MS, DEFAULT_READ_WAIT_MS, 'READ_WAIT_MS'),
    writeWaitMs: int(env.WRITE_WAIT_MS, DEFAULT_WRITE_WAIT_MS, 'WRITE_WAIT_MS'),
    pageCacheBytes: int(env.PAGE_CACHE_MB, DEFAULT_PAGE_CACHE_MB, 'PAGE_CACHE_MB') * 1024 * 1024,
    heartbeatTimeoutMs: int(env.HEARTBEAT_TIMEOUT_MS, DEFAULT_HEARTBEAT_TIMEOUT_MS, 'HEARTBEAT_TIMEOUT_MS'),
    alarmIntervalMs: int(env.ALARM_INTERVAL_MS, DEFAULT_ALARM_INTERVAL_MS, 'ALARM_INTERVAL_MS'),
    maxBodyBytes: int(env.MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES, 'MAX_BODY_BYTES'),
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
