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

// The holder's renewals and write fence live in lease-keeper.ts; re-exported so one import serves.
export { LeaseKeeper, safetyMarginMs } from './lease-keeper.ts';
