/**
 * The failover lease in etcd (README.md#high-availability, docs/ARCHITECTURE.md#high-availability),
 * spoken through etcd's v3 JSON gateway over fetch, so the primary, the Node replicas, the Worker and the
 * client library read the same records the same way. Worker-safe: fetch and Web APIs only.
 *
 * Keys under the lease URL's prefix (`etcd://host:port/PREFIX`):
 * - `PREFIX/primary`: the holder's PrimaryRecord, put with the holder's etcd lease. Created only when
 *   absent (a txn comparing its create revision with 0), so at most one node holds it; it disappears
 *   when the holder stops renewing for the TTL. Its **create revision is the epoch**: etcd's revisions
 *   only grow, so a later acquisition always has a larger epoch.
 * - `PREFIX/candidates/NODE`: each candidate's CandidateRecord (positions, for the election), put with
 *   the candidate's own lease, so a dead candidate's record goes away by itself.
 * - `PREFIX/sync`: the SyncSetRecord of `--sync-replicas` (which candidates the holder waits for), put
 *   only while the holder's record still has the holder's epoch.
 */
import { parseDurationMs } from './config.ts';
import { EdgeliteError } from './errors.ts';

/** LeaseTarget is a parsed `--lease etcd://host:port/prefix`. */
export interface LeaseTarget {
  /** The etcd client URL, `http://host:port`. */
  endpoint: string;
  /** The key prefix, without a trailing slash (`edgelite` when the URL has no path). */
  prefix: string;
}

/** DEFAULT_LEASE_TTL_MS: `--lease-ttl`. A dead primary's writes move to a candidate about this long after its death. */
export const DEFAULT_LEASE_TTL_MS = 5_000;
/** How long one etcd request may take before it counts as failed (a keepalive that late is no renewal). */
export const ETCD_REQUEST_TIMEOUT_MS = 2_000;

/** parseLeaseUrl reads `etcd://host:port/prefix` (the prefix defaults to `edgelite`); anything else is MISCONFIGURED. */
export function parseLeaseUrl(url: string, flag = '--lease'): LeaseTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new EdgeliteError('MISCONFIGURED', `${flag} must be etcd://HOST:PORT/PREFIX, got "${url}"`);
  }
  if (u.protocol !== 'etcd:' || !u.hostname || u.username || u.password || u.search || u.hash) {
    throw new EdgeliteError('MISCONFIGURED', `${flag} must be etcd://HOST:PORT/PREFIX (no credentials, query or fragment), got "${url}"`);
  }
  const prefix = decodeURIComponent(u.pathname).replace(/^\/+|\/+$/g, '') || 'edgelite';
  return { endpoint: `http://${u.host}`, prefix };
}

/** parseLeaseTtl reads `--lease-ttl`: whole seconds (etcd's lease unit), at least 2. */
export function parseLeaseTtlMs(ms: number, flag = '--lease-ttl'): number {
  if (!Number.isSafeInteger(ms) || ms < 2000 || ms % 1000 !== 0) throw new EdgeliteError('MISCONFIGURED', `${flag} must be whole seconds, at least 2s, got ${ms} ms`);
  return ms;
}

/** PrimaryRecord is the value of `PREFIX/primary`. `epoch` is not stored: it is the key's create revision. */
export interface PrimaryRecord {
  node: string;
  /** Where the holder serves (`--advertise`): replicas, the Worker and clients send writes and streams here. */
  url: string;
  epoch: number;
  ttlMs: number;
  /** When the holder took it (ms since the epoch, the holder's clock). */
  since: number;
}

/** CandidatePosition is one database's position as a candidate reports it (checksum as 16 hex digits). */
export interface CandidatePosition {
  generation: number;
  txid: number;
  checksum: string;
}

/** CandidateRecord is the value of `PREFIX/candidates/NODE`. */
export interface CandidateRecord {
  node: string;
  url: string;
  /** 'primary' for the holder itself (it stands again when it loses the lease), else 'replica'. */
  role: 'primary' | 'replica';
  positions: Record<string, CandidatePosition>;
  /** The highest epoch this node has seen. */
  epoch: number;
  time: number;
}

/** SyncSetRecord is the value of `PREFIX/sync`: the candidates a `--sync-replicas` holder waits for. */
export interface SyncSetRecord {
  epoch: number;
  nodes: string[];
  since: number;
}

/** KeyValue is one etcd key as the gateway lists it. */
export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  lease: string | null;
}

export type Fetch = (input: string, init: RequestInit) => Promise<Response>;

const enc = new TextEncoder();
const dec = new TextDecoder();
const b64 = (s: string): string => {
  let bin = '';
  for (const b of enc.encode(s)) bin += String.fromCharCode(b);
  return btoa(bin);
};
const unb64 = (s: string): string => dec.decode(Uint8Array.from(atob(s), (c) => c.charCodeAt(0)));
/** prefixEnd is etcd's range_end for "every key starting with `p`". */
function prefixEnd(p: string): string {
  const bytes = enc.encode(p);
  let i = bytes.length - 1;
  while (i >= 0 && bytes[i] === 0xff) i--;
  if (i < 0) return '\0';
  const end = bytes.slice(0, i + 1);
  end[i]! += 1;
  let bin = '';
  for (const b of end) bin += String.fromCharCode(b);
  return btoa(bin);
}

interface RawKv {
  key: string;
  value?: string;
  create_revision: string;
  mod_revision: string;
  lease?: string;
}
const kvOf = (r: RawKv): KeyValue => ({ key: unb64(r.key), value: r.value === undefined ? '' : unb64(r.value), createRevision: Number(r.create_revision), modRevision: Number(r.mod_revision), lease: r.lease && r.lease !== '0' ? r.lease : null });

/** EtcdClient is the part of etcd's v3 API edgelite uses, through the JSON gateway. Every failure is UNAVAILABLE naming etcd. */
export class EtcdClient {
  readonly endpoint: string;
  readonly #fetch: Fetch;
  readonly #timeoutMs: number;

  constructor(o: { endpoint: string; fetch?: Fetch; timeoutMs?: number }) {
    this.endpoint = o.endpoint;
    this.#fetch = o.fetch ?? ((input, init) => fetch(input, init));
    this.#timeoutMs = o.timeoutMs ?? ETCD_REQUEST_TIMEOUT_MS;
  }

  async call<T>(path: string, body: unknown): Promise<T> {
    let res: Response;
    let text: string;
    try {
      res = await this.#fetch(`${this.endpoint}/v3/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(this.#timeoutMs) });
      text = await res.text();
    } catch (err) {
      throw new EdgeliteError('UNAVAILABLE', `etcd ${this.endpoint} unreachable (${path}): ${(err as Error).message}`, { cause: err });
    }
    if (!res.ok) throw new EdgeliteError('UNAVAILABLE', `etcd ${this.endpoint} answered ${res.status} to ${path}: ${text.slice(0, 200)}`);
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new EdgeliteError('UNAVAILABLE', `etcd ${this.endpoint} answered ${path} with something not JSON`, { cause: err });
    }
  }

  /** grant creates a lease of `ttlMs` (whole seconds) and returns its id. */
  async grant(ttlMs: number): Promise<string> {
    const r = await this.call<{ ID: string }>('lease/grant', { TTL: Math.ceil(ttlMs / 1000) });
    return r.ID;
  }

  /** keepAlive renews a lease once: its TTL in ms, or 0 when it no longer exists (expired or revoked). */
  async keepAlive(id: string): Promise<number> {
    const r = await this.call<{ result?: { TTL?: string } }>('lease/keepalive', { ID: id });
    return Number(r.result?.TTL ?? 0) * 1000;
  }

  async revoke(id: string): Promise<void> {
    await this.call('lease/revoke', { ID: id }).catch((err: unknown) => {
      // A lease that is already gone is revoked.
      if (!(err instanceof EdgeliteError && /not found/i.test(err.message))) throw err;
    });
  }

  async get(key: string): Promise<KeyValue | null> {
    const r = await this.call<{ kvs?: RawKv[] }>('kv/range', { key: b64(key) });
    return r.kvs?.[0] ? kvOf(r.kvs[0]) : null;
  }

  /** list reads every key under `prefix`. */
  async list(prefix: string): Promise<KeyValue[]> {
    const r = await this.call<{ kvs?: RawKv[] }>('kv/range', { key: b64(prefix), range_end: prefixEnd(prefix) });
    return (r.kvs ?? []).map(kvOf);
  }

  async put(key: string, value: string, lease: string | null = null): Promise<number> {
    const r = await this.call<{ header: { revision: string } }>('kv/put', { key: b64(key), value: b64(value), ...(lease ? { lease } : {}) });
    return Number(r.header.revision);
  }

  /** create puts `key` only if it does not exist: the new create revision, or the key as it is. */
  async create(key: string, value: string, lease: string | null): Promise<{ created: true; revision: number } | { created: false; current: KeyValue | null }> {
    const r = await this.call<{ succeeded?: boolean; header: { revision: string }; responses?: Array<{ response_range?: { kvs?: RawKv[] } }> }>('kv/txn', {
      compare: [{ key: b64(key), target: 'CREATE', create_revision: '0' }],
      success: [{ request_put: { key: b64(key), value: b64(value), ...(lease ? { lease } : {}) } }],
      failure: [{ request_range: { key: b64(key) } }],
    });
    if (r.succeeded) return { created: true, revision: Number(r.header.revision) };
    const kv = r.responses?.[0]?.response_range?.kvs?.[0];
    return { created: false, current: kv ? kvOf(kv) : null };
  }

  /** putIf puts `key` only while `guard` still has create revision `createRevision` (a fenced write). */
  async putIf(guard: string, createRevision: number, key: string, value: string): Promise<boolean> {
    const r = await this.call<{ succeeded?: boolean }>('kv/txn', {
      compare: [{ key: b64(guard), target: 'CREATE', create_revision: String(createRevision) }],
      success: [{ request_put: { key: b64(key), value: b64(value) } }],
    });
    return r.succeeded === true;
  }

  /** deleteIf deletes `key` only while its create revision is `createRevision`. */
  async deleteIf(key: string, createRevision: number): Promise<boolean> {
    const r = await this.call<{ succeeded?: boolean }>('kv/txn', {
      compare: [{ key: b64(key), target: 'CREATE', create_revision: String(createRevision) }],
      success: [{ request_delete_range: { key: b64(key) } }],
    });
    return r.succeeded === true;
  }
}

/** LeaseStore reads and writes edgelite's records under one prefix. */
export class LeaseStore {
  readonly etcd: EtcdClient;
  readonly target: LeaseTarget;

  constructor(target: LeaseTarget, o: { fetch?: Fetch; timeoutMs?: number } = {}) {
    this.target = target;
    this.etcd = new EtcdClient({ endpoint: target.endpoint, ...o });
  }

  get primaryKey(): string {
    return `${this.target.prefix}/primary`;
  }
  get syncKey(): string {
    return `${this.target.prefix}/sync`;
  }
  candidateKey(node: string): string {
    return `${this.target.prefix}/candidates/${node}`;
  }

  /** description names the store in logs and errors. */
  get description(): string {
    return `etcd://${this.target.endpoint.replace(/^http:\/\//, '')}/${this.target.prefix}`;
  }

  /** primary is the current holder's record, or null when the lease is vacant. */
  async primary(): Promise<PrimaryRecord | null> {
    const kv = await this.etcd.get(this.primaryKey);
    return kv ? primaryOf(kv) : null;
  }

  /**
   * campaign takes the lease for `record` if it is vacant: a new etcd lease of the TTL and the primary
   * key created with it. Won: the epoch and the etcd lease id (renew it with a LeaseKeeper). Lost: who holds it.
   */
  async campaign(record: Omit<PrimaryRecord, 'epoch'>, now: () => number = () => performance.now()): Promise<{ won: true; epoch: number; leaseId: string; grantedAt: number } | { won: false; holder: PrimaryRecord | null }> {
    const grantedAt = now();
    const leaseId = await this.etcd.grant(record.ttlMs);
    const r = await this.etcd.create(this.primaryKey, JSON.stringify(record), leaseId).catch(async (err: unknown) => {
      await this.etcd.revoke(leaseId).catch(() => undefined);
      throw err;
    });
    if (r.created) return { won: true, epoch: r.revision, leaseId, grantedAt };
    await this.etcd.revoke(leaseId).catch(() => undefined);
    return { won: false, holder: r.current ? primaryOf(r.current) : null };
  }

  /** resign gives the lease up (the record goes at once): the holder stepping down. */
  async resign(epoch: number, leaseId: string): Promise<void> {
    await this.etcd.deleteIf(this.primaryKey, epoch);
    await this.etcd.revoke(leaseId);
  }

  async candidates(): Promise<CandidateRecord[]> {
    const kvs = await this.etcd.list(`${this.target.prefix}/candidates/`);
    return kvs.flatMap((kv) => {
      try {
        return [JSON.parse(kv.value) as CandidateRecord];
      } catch {
        return [];
      }
    });
  }

  async publishCandidate(record: CandidateRecord, leaseId: string): Promise<void> {
    await this.etcd.put(this.candidateKey(record.node), JSON.stringify(record), leaseId);
  }

  /** publishSyncSet records the sync set, only while `epoch` still holds the lease. False: it no longer does. */
  async publishSyncSet(record: SyncSetRecord): Promise<boolean> {
    return this.etcd.putIf(this.primaryKey, record.epoch, this.syncKey, JSON.stringify(record));
  }

  async syncSet(): Promise<SyncSetRecord | null> {
    const kv = await this.etcd.get(this.syncKey);
    if (!kv) return null;
    try {
      return JSON.parse(kv.value) as SyncSetRecord;
    } catch {
      return null;
    }
  }
}

function primaryOf(kv: KeyValue): PrimaryRecord {
  let v: Partial<PrimaryRecord>;
  try {
    v = JSON.parse(kv.value) as Partial<PrimaryRecord>;
  } catch {
    v = {};
  }
  return { node: String(v.node ?? '?'), url: String(v.url ?? ''), ttlMs: Number(v.ttlMs ?? 0), since: Number(v.since ?? 0), epoch: kv.createRevision };
}

/**
 * safetyMarginMs: a holder stops accepting writes this long before its lease can expire in etcd. The
 * lease in etcd runs from when etcd handled a renewal, which is after the holder sent it: counting from
 * the send, minus this margin, leaves room for clocks that run at slightly different rates.
 */
export function safetyMarginMs(ttlMs: number): number {
  return Math.max(500, Math.round(ttlMs / 4));
}

/**
 * LeaseKeeper renews a won lease every TTL/4 and says until when the holder may accept writes: the
 * send time of the last renewal etcd confirmed + TTL − safetyMarginMs. A renewal etcd answers with TTL 0
 * (the lease is gone) is final: `lost` resolves and writable() stays false.
 */
export class LeaseKeeper {
  readonly epoch: number;
  readonly leaseId: string;
  readonly #store: LeaseStore;
  readonly #ttlMs: number;
  readonly #now: () => number;
  #writableUntil: number;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #stopped = false;
  #lost = false;
  #resolveLost!: (why: string) => void;
  /** Resolves (with the reason) once the lease is known to be gone. */
  readonly lost: Promise<string>;
  /** Renewals that failed to reach etcd (each a step nearer the margin). */
  failures = 0;

  constructor(o: { store: LeaseStore; epoch: number; leaseId: string; ttlMs: number; grantedAt: number; now?: () => number }) {
    this.#store = o.store;
    this.epoch = o.epoch;
    this.leaseId = o.leaseId;
    this.#ttlMs = o.ttlMs;
    this.#now = o.now ?? (() => performance.now());
    this.#writableUntil = o.grantedAt + o.ttlMs - safetyMarginMs(o.ttlMs);
    this.lost = new Promise((resolve) => (this.#resolveLost = resolve));
    this.#schedule();
  }

  /** writable: this holder may acknowledge a write now. */
  writable(): boolean {
    return !this.#lost && !this.#stopped && this.#now() < this.#writableUntil;
  }

  /** writableForMs is how long writes stay allowed without another renewal (≤ 0: not now). */
  writableForMs(): number {
    return this.#lost || this.#stopped ? 0 : this.#writableUntil - this.#now();
  }

  #schedule(): void {
    if (this.#stopped || this.#lost) return;
    this.#timer = setTimeout(() => void this.#renew(), Math.max(100, Math.floor(this.#ttlMs / 4)));
  }

  async #renew(): Promise<void> {
    const sent = this.#now();
    try {
      const ttl = await this.#store.etcd.keepAlive(this.leaseId);
      if (this.#stopped) return;
      if (ttl <= 0) {
        this.#markLost('etcd no longer holds the lease (it expired)');
        return;
      }
      this.#writableUntil = Math.max(this.#writableUntil, sent + ttl - safetyMarginMs(ttl));
    } catch {
      this.failures++;
      if (this.#now() >= this.#writableUntil + safetyMarginMs(this.#ttlMs)) {
        this.#markLost('renewals failed past the lease TTL');
        return;
      }
    }
    this.#schedule();
  }

  #markLost(why: string): void {
    if (this.#lost) return;
    this.#lost = true;
    this.#resolveLost(why);
  }

  /** stop ends renewals (the lease then lapses unless resign() gave it up first). */
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#markLost('stopped');
  }

  /** resign stops renewals and gives the lease up in etcd, so a candidate takes over at once. */
  async resign(): Promise<void> {
    this.stop();
    await this.#store.resign(this.epoch, this.leaseId);
  }
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

/** LEASE_FLAGS are the parseArgs options of LeaseConfig, for both roles' parsers. */
export const LEASE_FLAGS = {
  lease: { type: 'string' },
  'lease-ttl': { type: 'string' },
  advertise: { type: 'string' },
  'node-id': { type: 'string' },
} as const;

/** parseLeaseConfig reads LEASE_FLAGS; null without `--lease` (then the other three are refused). */
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
