/**
 * Real primaries under a real failover lease, for the tests of those who follow the holder (the Worker,
 * the client library): each is startPrimary with a PrimaryHa whose writable() is a LeaseKeeper's, after a
 * real LeaseStore.campaign in etcd (test/kit/etcd.ts). The test moves the lease by hand (resign, take).
 */
import { join } from 'node:path';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { LeaseKeeper, type LeaseStore } from '../../shared/lease.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import type { PrimaryHa } from '../../primary/ha.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';

export const TEST_LEASE_TTL_MS = 5000;

/** LeasedPrimary is one primary and its hold on the lease. */
export class LeasedPrimary implements PrimaryHa {
  readonly node: string;
  readonly handle: PrimaryHandle;
  readonly #store: LeaseStore;
  #keeper: LeaseKeeper | null = null;
  /** The epoch it last held (0 before it ever held the lease): kept after it resigns, as a zombie would. */
  #epoch = 0;

  private constructor(node: string, handle: PrimaryHandle, store: LeaseStore) {
    this.node = node;
    this.handle = handle;
    this.#store = store;
  }

  static async start(dir: string, node: string, store: LeaseStore): Promise<LeasedPrimary> {
    let self: LeasedPrimary | null = null;
    const ha: PrimaryHa = {
      node,
      get epoch() {
        return self!.epoch;
      },
      writable: () => self!.writable(),
      holder: () => self!.holder(),
      publishSyncSet: (nodes) => self!.publishSyncSet(nodes),
    };
    const handle = await startPrimary({ ...parsePrimaryConfig(['--data', join(dir, node), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger, { ha });
    self = new LeasedPrimary(node, handle, store);
    return self;
  }

  get url(): string {
    return this.handle.url;
  }
  get epoch(): number {
    return this.#epoch;
  }
  writable(): boolean {
    return this.#keeper?.writable() ?? false;
  }
  holder(): { url: string; epoch: number } | null {
    return this.#keeper ? { url: this.url, epoch: this.#epoch } : null;
  }
  publishSyncSet(nodes: string[]): Promise<boolean> {
    return this.#store.publishSyncSet({ epoch: this.#epoch, nodes, since: Date.now() });
  }

  /** take campaigns for the vacant lease (throws if another holds it) and keeps it renewed; `advertise` is the record's URL (default its own). */
  async take(advertise = this.url): Promise<number> {
    const r = await this.#store.campaign({ node: this.node, url: advertise, ttlMs: TEST_LEASE_TTL_MS, since: Date.now() });
    if (!r.won) throw new Error(`${this.node} could not take the lease: ${r.holder?.node ?? 'none'} holds it`);
    this.#keeper = new LeaseKeeper({ store: this.#store, epoch: r.epoch, leaseId: r.leaseId, ttlMs: TEST_LEASE_TTL_MS, grantedAt: r.grantedAt });
    this.#epoch = r.epoch;
    return r.epoch;
  }

  /** resign gives the lease up at once (the record goes); writes are refused from now on. */
  async resign(): Promise<void> {
    const k = this.#keeper;
    this.#keeper = null;
    await k?.resign();
  }

  /** exec runs SQL on this primary directly and returns the answer's status and body. */
  async exec(db: string, sql: string, params: unknown[] = []): Promise<{ status: number; body: any }> {
    const res = await fetch(`${this.url}/v1/db/${db}/exec`, { method: 'POST', body: JSON.stringify({ sql, params }), headers: { 'content-type': 'application/json' } });
    return { status: res.status, body: await res.json() };
  }

  /** rows reads with SQL on this primary directly. */
  async rows(db: string, sql: string): Promise<unknown[][]> {
    const res = await fetch(`${this.url}/v1/db/${db}/query`, { method: 'POST', body: JSON.stringify({ sql }), headers: { 'content-type': 'application/json' } });
    const body = (await res.json()) as { results: Array<{ rows: unknown[][] }> };
    if (res.status !== 200) throw new Error(`query on ${this.node}: ${res.status} ${JSON.stringify(body)}`);
    return body.results[0]!.rows;
  }

  /** createDb makes `db` with a kv table (only while this primary holds the lease). */
  async createDb(db: string): Promise<void> {
    const res = await fetch(`${this.url}/v1/db/${db}`, { method: 'PUT' });
    if (res.status >= 300) throw new Error(`create ${db} on ${this.node}: ${res.status} ${await res.text()}`);
    const t = await this.exec(db, 'CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)');
    if (t.status !== 200) throw new Error(`create table on ${this.node}: ${JSON.stringify(t.body)}`);
  }

  async close(): Promise<void> {
    const k = this.#keeper;
    this.#keeper = null;
    k?.stop();
    await this.handle.close();
  }
}
