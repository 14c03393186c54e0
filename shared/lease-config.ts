/**
 * The failover flags (README.md#high-availability), parsed the same way by the primary and the replica:
 * `--lease etcd://HOST:PORT/PREFIX [--lease-ttl 5s] [--advertise URL] [--node-id ID]` and
 * `--sync-replicas N [--sync-timeout 10s]`. Worker-safe and pure.
 */
import { parseDurationMs } from './config.ts';
import { EdgeliteError } from './errors.ts';
import { DEFAULT_LEASE_TTL_MS, parseLeaseUrl, type LeaseTarget } from './lease.ts';

/** parseLeaseTtl reads `--lease-ttl`: whole seconds (etcd's lease unit), at least 2. */
export function parseLeaseTtlMs(ms: number, flag = '--lease-ttl'): number {
  if (!Number.isSafeInteger(ms) || ms < 2000 || ms % 1000 !== 0) throw new EdgeliteError('MISCONFIGURED', `${flag} must be whole seconds, at least 2s, got ${ms} ms`);
  return ms;
}

/** LeaseConfig is `--lease URL [--lease-ttl 5s] [--advertise URL] [--node-id ID]`, on the primary and on replicas. */
export interface LeaseConfig {
  target: LeaseTarget;
  ttlMs: number;
  /** The URL others reach this node at (`--advertise`; default: http://LISTEN). */
  advertise: string;
  /** This node's name in the lease records (`--node-id`; default: the advertised host and port). */
  node: string;
}

/** parseLeaseConfig reads the lease flags (their table: shared/cli-flags.ts); null without `--lease` (then the other three are refused). */
export function parseLeaseConfig(values: { lease?: string; 'lease-ttl'?: string; advertise?: string; 'node-id'?: string }, host: string, port: number): LeaseConfig | null {
  if (values.lease === undefined) {
    for (const f of ['lease-ttl', 'advertise', 'node-id'] as const) if (values[f] !== undefined) throw new EdgeliteError('MISCONFIGURED', `--${f} needs --lease`);
    return null;
  }
  const target = parseLeaseUrl(values.lease);
  const ttlMs = parseLeaseTtlMs(values['lease-ttl'] === undefined ? DEFAULT_LEASE_TTL_MS : parseDurationMs(values['lease-ttl'], '--lease-ttl'));
  const advertise = values.advertise ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (!/^https?:\/\/[^/]/.test(advertise) || !URL.canParse(advertise)) throw new EdgeliteError('MISCONFIGURED', `--advertise must be an http(s) URL, got "${advertise}"`);
  if (port === 0 && values.advertise === undefined) throw new EdgeliteError('MISCONFIGURED', '--lease with an ephemeral port (--listen HOST:0) needs --advertise');
  const node = values['node-id'] ?? new URL(advertise).host.replace(/[^A-Za-z0-9.-]/g, '-');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(node)) throw new EdgeliteError('MISCONFIGURED', `--node-id must be 1-64 letters, digits, '.', '_' or '-', got "${node}"`);
  return { target, ttlMs, advertise: advertise.replace(/\/+$/, ''), node };
}

/** SyncConfig is `--sync-replicas N [--sync-timeout D]`. */
export interface SyncConfig {
  replicas: number;
  timeoutMs: number;
}

/** `--sync-timeout`: how long a write waits for `--sync-replicas` candidates before 504 REPLICATION_PENDING (as the backup ack's 10 s). */
export const DEFAULT_SYNC_TIMEOUT_MS = 10_000;

/** leaseAndSync reads the lease flags and `--sync-replicas N [--sync-timeout D]` (which need `--lease`: candidates exist only there). */
export function leaseAndSync(values: Record<string, string | boolean | undefined>, host: string, port: number): { lease: LeaseConfig | null; sync: SyncConfig } {
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const lease = parseLeaseConfig({ lease: str('lease'), 'lease-ttl': str('lease-ttl'), advertise: str('advertise'), 'node-id': str('node-id') }, host, port);
  const n = str('sync-replicas');
  const replicas = n === undefined ? 0 : Number(n);
  if (!Number.isSafeInteger(replicas) || replicas < 0 || (n !== undefined && !/^\d+$/.test(n))) throw new EdgeliteError('MISCONFIGURED', `--sync-replicas must be a whole number >= 0, got "${n}"`);
  if (replicas > 0 && !lease) throw new EdgeliteError('MISCONFIGURED', '--sync-replicas needs --lease (the candidates it waits for are found through the lease)');
  if (replicas === 0 && str('sync-timeout') !== undefined) throw new EdgeliteError('MISCONFIGURED', '--sync-timeout needs --sync-replicas');
  const t = str('sync-timeout');
  return { lease, sync: { replicas, timeoutMs: t === undefined ? DEFAULT_SYNC_TIMEOUT_MS : parseDurationMs(t, '--sync-timeout') } };
}
