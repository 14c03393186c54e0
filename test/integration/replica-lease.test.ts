/**
 * Replicas under the failover lease (README.md#high-availability) against a real etcd (test/kit/etcd.ts)
 * and real primaries in this process, each holding the lease through a real LeaseStore.campaign and
 * LeaseKeeper: a replica started with only `--lease` finds the holder and follows it, and the next one
 * without a restart (stream and forwarding); no holder: forwards fail fast, not applied; a stream and a
 * snapshot from a primary of an older epoch are refused (STALE_PRIMARY); a forward refused NOT_PRIMARY
 * `not-applied` by the old holder is sent once more to the new one; a forward cut mid-flight is
 * `unknown` and never sent again. Plus the PrimaryLocator's own contract (records, epochs, outages).
 */
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { LeaseKeeper, LeaseStore } from '../../shared/lease.ts';
import { silentLogger, type Logger } from '../../shared/log.ts';
import { EPOCH_HEADER, PrimaryLocator } from '../../shared/primary-locator.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { EPOCH_HEADER as PRIMARY_EPOCH_HEADER, type PrimaryHa } from '../../primary/ha.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { nodePrimaryClient } from '../../replica/primary-fetch.ts';
import { startReplica, type ReplicaHandle, type ReplicaExtras } from '../../replica/server.ts';
import { rejectedEdgelite, stopsAfterEach, tempDir } from '../helpers.ts';
import { exec, freePort, http, query } from '../kit/api.ts';
import { etcdForFile } from '../kit/etcd.ts';
import { FaultProxy } from '../kit/proxy.ts';
import { waitFor } from '../kit/wait.ts';

const TTL_MS = 2000;
const etcd = etcdForFile();
let prefixes = 0;

const stops = stopsAfterEach();
const nextPrefix = (): string => `replica-lease-${++prefixes}`;
const leaseUrl = (prefix: string): string => `etcd://${etcd.url.replace(/^http:\/\//, '')}/${prefix}`;

interface HaPrimary {
  primary: PrimaryHandle;
  epoch: number;
  keeper: LeaseKeeper | null;
  url: string;
}

/**
 * holder starts a primary on `dir` that holds the lease under `prefix` (campaign + LeaseKeeper), its
 * PrimaryHa as bin/ha.ts builds it. `advertise` is what the record names (default: the primary itself).
 */
async function holder(dir: string, prefix: string, node: string, o: { port?: number; advertise?: string } = {}): Promise<HaPrimary> {
  const port = o.port ?? (await freePort());
  const store = new LeaseStore({ endpoint: etcd.url, prefix });
  const won = await store.campaign({ node, url: o.advertise ?? `http://127.0.0.1:${port}`, ttlMs: TTL_MS, since: Date.now() });
  if (!won.won) throw new Error(`${node} should win the vacant lease, ${JSON.stringify(won.holder)} holds it`);
  const keeper = new LeaseKeeper({ store, epoch: won.epoch, leaseId: won.leaseId, ttlMs: TTL_MS, grantedAt: won.grantedAt });
  const seen = new PrimaryLocator({ store, intervalMs: 200 });
  seen.start();
  const ha: PrimaryHa = {
    node,
    epoch: won.epoch,
    writable: () => keeper.writable(),
    holder: () => seen.current,
    publishSyncSet: (nodes) => store.publishSyncSet({ epoch: won.epoch, nodes, since: Date.now() }),
  };
  const primary = await primaryOn(dir, port, ha);
  stops.push(() => {
    keeper.stop();
    seen.stop();
  });
  return { primary, epoch: won.epoch, keeper, url: primary.url };
}

/** stale starts a primary with a PrimaryHa of `epoch` that never lost it in its own eyes (writable): a deposed primary that did not notice. */
async function stale(dir: string, epoch: number): Promise<HaPrimary> {
  const ha: PrimaryHa = { node: 'stale', epoch, writable: () => true, holder: () => null, publishSyncSet: async () => false };
  const primary = await primaryOn(dir, 0, ha);
  return { primary, epoch, keeper: null, url: primary.url };
}

async function primaryOn(dir: string, port: number, ha: PrimaryHa | null): Promise<PrimaryHandle> {
  const primary = await startPrimary({ ...parsePrimaryConfig(['--data', dir, '--listen', `127.0.0.1:${port}`], {}), auth: AUTH_DISABLED }, silentLogger, { ha });
  stops.push(() => primary.close());
  return primary;
}

/** seed makes a primary's data dir with database `app` (table kv, 20 rows) and stops it: a state to copy. */
async function seed(dir: string): Promise<void> {
  const p = await startPrimary({ ...parsePrimaryConfig(['--data', dir, '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
  await http(p.url, 'PUT', '/v1/db/app');
  await exec(p.url, 'app', { sql: 'CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)' });
  for (let i = 0; i < 20; i++) await exec(p.url, 'app', { sql: 'INSERT INTO kv VALUES (?, ?)', params: [`s${i}`, 'seed'] });
  await p.close();
}

async function replicaOf(prefix: string, dir: string, extras: ReplicaExtras = {}, logger: Logger = silentLogger): Promise<ReplicaHandle> {
  const config = parseReplicaConfig(['--lease', leaseUrl(prefix), '--data', dir, '--listen', '127.0.0.1:0', '--advertise', 'http://127.0.0.1:9'], {});
  const replica = await startReplica(config, logger, extras);
  stops.push(() => replica.close());
  return replica;
}

const txidOf = (p: PrimaryHandle): number => p.store.get('app')!.position.txid;
const caughtUp = (r: ReplicaHandle, p: PrimaryHandle) => waitFor(() => r.store.get('app')?.position?.txid === txidOf(p), `the replica at txid ${txidOf(p)}`);

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : Number.NaN;
}

describe('a replica under the lease', () => {
  it('finds the holder with only --lease, follows it, and follows the next holder without a restart', async () => {
    const t = tempDir('rl-follow');
    stops.push(t.cleanup);
    const prefix = nextPrefix();
    await seed(join(t.dir, 'a'));
    const a = await holder(join(t.dir, 'a'), prefix, 'a');
    const replica = await replicaOf(prefix, join(t.dir, 'r'));
    await caughtUp(replica, a.primary);
    // Forwarding and the stream go to the holder.
    const w = await http(replica.url, 'POST', '/v1/db/app/exec', { sql: "INSERT INTO kv VALUES ('via-replica-a', '1')" });
    expect(w.status, JSON.stringify(w.json)).toBe(200);
    expect(await query(a.url, 'app', "SELECT v FROM kv WHERE k = 'via-replica-a'")).toEqual([['1']]);
    await exec(a.url, 'app', { sql: "INSERT INTO kv VALUES ('at-a', '1')" });
    await caughtUp(replica, a.primary);
    expect((await http(replica.url, 'GET', '/v1/db/app')).json).toMatchObject({ primary: a.url, epoch: a.epoch });
    expect((await http(replica.url, 'GET', '/v1/health')).json).toMatchObject({ primary: a.url, epoch: a.epoch });

    // The holder steps down and stops: no node holds the lease; a forward fails at once, not applied.
    await a.keeper!.resign();
    await a.primary.close();
    await waitFor(async () => (await http(replica.url, 'GET', '/v1/health')).json.primary === null, 'the replica to see the lease vacant');
    const none = await http(replica.url, 'POST', '/v1/db/app/exec', { sql: "INSERT INTO kv VALUES ('nowhere', '1')" });
    expect(none.status).toBe(502);
    expect(none.json.error).toMatchObject({ code: 'PRIMARY_UNAVAILABLE', details: { outcome: 'not-applied' } });
    expect(none.json.error.message).toMatch(/no node holds the lease/);

    // B takes over with A's state (its data dir copied, as a promotion would have it).
    cpSync(join(t.dir, 'a'), join(t.dir, 'b'), { recursive: true });
    const b = await holder(join(t.dir, 'b'), prefix, 'b');
    expect(b.epoch).toBeGreaterThan(a.epoch);
    await exec(b.url, 'app', { sql: "INSERT INTO kv VALUES ('at-b', '1')" });
    await caughtUp(replica, b.primary);
    expect(await query(replica.url, 'app', "SELECT v FROM kv WHERE k = 'at-b'")).toEqual([['1']]);
    const w2 = await http(replica.url, 'POST', '/v1/db/app/exec', { sql: "INSERT INTO kv VALUES ('via-replica-b', '1')" });
    expect(w2.status, JSON.stringify(w2.json)).toBe(200);
    expect(w2.headers.get('edgelite-applied')).toBe('true');
    expect(await query(b.url, 'app', "SELECT count(*) FROM kv WHERE k = 'via-replica-b'")).toEqual([[1]]);
    expect((await http(replica.url, 'GET', '/v1/db/app')).json).toMatchObject({ primary: b.url, epoch: b.epoch });
    expect(replica.store.get('app')!.position!.checksum).toBe(b.primary.store.get('app')!.position.checksum);
    expect(replica.follower.connects).toBeGreaterThanOrEqual(2);
    expect(replica.follower.applied('app').snapshots).toBe(1); // the bootstrap only: B continued A's history
  }, 60_000);

  it('sends a write refused NOT_PRIMARY not-applied by the old holder once more to the new one, and refuses an older epoch', async () => {
    const t = tempDir('rl-retry');
    stops.push(t.cleanup);
    const prefix = nextPrefix();
    await seed(join(t.dir, 'a'));
    cpSync(join(t.dir, 'a'), join(t.dir, 'b'), { recursive: true });
    cpSync(join(t.dir, 'a'), join(t.dir, 'c'), { recursive: true });
    const a = await holder(join(t.dir, 'a'), prefix, 'a');
    // The node's one locator, read only on demand here: it still names A when the write arrives.
    const locator = new PrimaryLocator({ store: new LeaseStore({ endpoint: etcd.url, prefix }), intervalMs: 3_600_000 });
    stops.push(() => locator.stop());
    const events: Array<Record<string, unknown>> = [];
    const replica = await replicaOf(prefix, join(t.dir, 'r'), { locator }, (e) => events.push(e));
    await caughtUp(replica, a.primary);

    await a.keeper!.resign(); // A still runs: it answers writes NOT_PRIMARY, not applied
    const b = await holder(join(t.dir, 'b'), prefix, 'b');
    expect(locator.current?.url).toBe(a.url);
    const w = await http(replica.url, 'POST', '/v1/db/app/exec', { sql: "INSERT INTO kv VALUES ('moved', '1')" });
    expect(w.status, JSON.stringify(w.json)).toBe(200);
    expect(await query(b.url, 'app', "SELECT count(*) FROM kv WHERE k = 'moved'")).toEqual([[1]]);
    expect(await query(a.url, 'app', "SELECT count(*) FROM kv WHERE k = 'moved'")).toEqual([[0]]);
    expect(locator.current?.url).toBe(b.url);
    await caughtUp(replica, b.primary);
    expect(await query(replica.url, 'app', "SELECT v FROM kv WHERE k = 'moved'")).toEqual([['1']]);

    const direct = nodePrimaryClient({ url: locator });
    stops.push(() => direct.close());
    const at = await direct.forward('POST', '/v1/db/app/exec', JSON.stringify({ sql: 'SELECT 1' }));
    expect(at.status).toBe(200); // to B, the holder
    expect(at.headers[EPOCH_HEADER]).toBe(String(b.epoch));
    // B steps down too and nobody takes over: its refusal is passed on as it is, nothing sent elsewhere.
    await b.keeper!.resign();
    const refused = await direct.forward('POST', '/v1/db/app/exec', JSON.stringify({ sql: "INSERT INTO kv VALUES ('refused', '1')" }));
    expect(refused.status).toBe(503);
    expect(refused.body).toMatchObject({ error: { code: 'NOT_PRIMARY', details: { outcome: 'not-applied' } } });
    expect(locator.current).toBeNull();
    expect(await query(b.url, 'app', "SELECT count(*) FROM kv WHERE k = 'refused'")).toEqual([[0]]);
    // Nor a drop or a fork: only the holder changes which databases exist (primary/ha.ts assertWritable).
    const drop = await http(b.url, 'DELETE', '/v1/db/app');
    expect([drop.status, drop.json.error.code]).toEqual([503, 'NOT_PRIMARY']);
    const fork = await http(b.url, 'PUT', '/v1/db/branch', { from: 'app' });
    expect([fork.status, fork.json.error.code]).toEqual([503, 'NOT_PRIMARY']);
    expect([b.primary.store.get('app') !== undefined, b.primary.store.get('branch')]).toEqual([true, undefined]);

    // C is a deposed primary (A's epoch) that never noticed; the record is pointed at it by hand.
    const c = await stale(join(t.dir, 'c'), a.epoch);
    await exec(c.url, 'app', { sql: "INSERT INTO kv VALUES ('from-stale', '1')" });
    await etcd.call('kv/put', { key: Buffer.from(`${prefix}/primary`).toString('base64'), value: Buffer.from(JSON.stringify({ node: 'c', url: c.url, ttlMs: TTL_MS, since: Date.now() })).toString('base64') });
    const rec = await locator.refresh();
    expect(rec).toMatchObject({ url: c.url });
    expect(rec!.epoch).toBeGreaterThan(b.epoch);
    await waitFor(() => replica.follower.lastError?.match(/refused .* epoch \d+, older than epoch \d+/), 'the stream to be refused');
    const metrics = await (await fetch(`${replica.url}/metrics`)).text();
    expect(metric(metrics, 'edgelite_stale_primary_refusals_total')).toBeGreaterThanOrEqual(1);
    expect(events.some((e) => e.msg === 'refused a primary of an older epoch' && e.primary === c.url)).toBe(true);
    expect(await query(replica.url, 'app', "SELECT count(*) FROM kv WHERE k = 'from-stale'")).toEqual([[0]]);
    expect(replica.store.get('app')!.position!.txid).toBe(txidOf(b.primary));
    // A snapshot from it is refused too, before a byte of it is taken.
    const err = await rejectedEdgelite(direct.snapshot('app', { open: async () => {}, write: async () => {} }, undefined));
    expect(err.code).toBe('STALE_PRIMARY');
    expect(err.details).toMatchObject({ epoch: a.epoch, maxEpoch: rec!.epoch });
    expect(direct.staleRefusals).toBe(1);

    // A primary not under the lease at all (no epoch on its answers), named by a record: refused as well.
    cpSync(join(t.dir, 'a'), join(t.dir, 'd'), { recursive: true });
    const d = await primaryOn(join(t.dir, 'd'), 0, null);
    await etcd.call('kv/put', { key: Buffer.from(`${prefix}/primary`).toString('base64'), value: Buffer.from(JSON.stringify({ node: 'd', url: d.url, ttlMs: TTL_MS, since: Date.now() })).toString('base64') });
    expect(await locator.refresh()).toMatchObject({ url: d.url });
    await waitFor(() => replica.follower.lastError?.includes(`refused ${d.url}, epoch none`), 'the stream without an epoch to be refused');
    expect(replica.store.get('app')!.position!.txid).toBe(txidOf(b.primary));
  }, 60_000);

  it('a forward cut mid-flight is unknown and never sent again', async () => {
    const t = tempDir('rl-cut');
    stops.push(t.cleanup);
    const prefix = nextPrefix();
    await seed(join(t.dir, 'a'));
    const port = await freePort();
    const proxy = await FaultProxy.start({ target: `http://127.0.0.1:${port}` });
    stops.push(() => proxy.close());
    const a = await holder(join(t.dir, 'a'), prefix, 'a', { port, advertise: proxy.url }); // the record names the proxy
    const replica = await replicaOf(prefix, join(t.dir, 'r'));
    await caughtUp(replica, a.primary);
    const before = txidOf(a.primary);
    proxy.pause('down'); // the answer is held: the write commits at A, its answer never arrives
    const pending = http(replica.url, 'POST', '/v1/db/app/exec', { sql: "INSERT INTO kv VALUES ('cut', '1')" });
    await waitFor(() => txidOf(a.primary) > before, 'the write to commit at A');
    proxy.cut();
    proxy.resume('down');
    const w = await pending;
    expect(w.status).toBe(502);
    expect(w.json.error).toMatchObject({ code: 'PRIMARY_UNAVAILABLE', details: { outcome: 'unknown' } });
    expect(proxy.requests.filter((r) => r === 'POST /v1/db/app/exec')).toHaveLength(1);
    expect(await query(a.url, 'app', "SELECT count(*) FROM kv WHERE k = 'cut'")).toEqual([[1]]);
    await caughtUp(replica, a.primary); // the stream came back through the proxy
    expect(await query(replica.url, 'app', "SELECT count(*) FROM kv WHERE k = 'cut'")).toEqual([[1]]);
  }, 60_000);
});

describe('PrimaryLocator', () => {
  it('reads the holder, keeps the highest epoch, tells changes, waits for a holder', async () => {
    const prefix = nextPrefix();
    const store = new LeaseStore({ endpoint: etcd.url, prefix });
    const locator = new PrimaryLocator({ store, intervalMs: 100 });
    stops.push(() => locator.stop());
    const changes: Array<string | null> = [];
    const off = locator.onChange((r) => changes.push(r?.node ?? null));
    locator.start();
    await waitFor(() => locator.reads > 0, 'a first read');
    expect(locator.current).toBeNull();
    const waited = locator.waitForPrimary(10_000);
    const won = await store.campaign({ node: 'x', url: 'http://127.0.0.1:7', ttlMs: TTL_MS, since: 1 });
    if (!won.won) throw new Error('x should win');
    expect(await waited).toMatchObject({ node: 'x', epoch: won.epoch });
    expect(locator.maxEpoch).toBe(won.epoch);
    expect(locator.observe(won.epoch)).toBe(true);
    expect(locator.observe(won.epoch - 1)).toBe(false);
    expect(locator.observe(Number.NaN)).toBe(false);
    expect(locator.observe(won.epoch + 5)).toBe(true);
    expect(locator.maxEpoch).toBe(won.epoch + 5);
    expect(locator.observe(won.epoch)).toBe(false); // now older than one seen
    await store.resign(won.epoch, won.leaseId);
    await waitFor(() => changes.includes(null) && locator.current === null, 'the vacancy');
    expect(changes).toEqual(['x', null]);
    off();
    const timedOut = await rejectedEdgelite(locator.waitForPrimary(300));
    expect(timedOut.code).toBe('PRIMARY_UNAVAILABLE');
    expect(timedOut.details).toEqual({ outcome: 'not-applied' });
    const abort = new AbortController();
    const aborted = locator.waitForPrimary(10_000, abort.signal).catch((e: unknown) => e);
    abort.abort(new Error('gone'));
    expect(((await aborted) as Error).message).toBe('gone');
  }, 30_000);

  it('keeps the last record through an etcd outage, counts the failed reads, logs the outage once', async () => {
    const prefix = nextPrefix();
    const proxy = await FaultProxy.start({ target: etcd.url });
    stops.push(() => proxy.close());
    const direct = new LeaseStore({ endpoint: etcd.url, prefix });
    const won = await direct.campaign({ node: 'y', url: 'http://127.0.0.1:8', ttlMs: 60_000, since: 1 });
    if (!won.won) throw new Error('y should win');
    stops.push(() => direct.resign(won.epoch, won.leaseId));
    const events: Array<Record<string, unknown>> = [];
    const locator = new PrimaryLocator({ store: new LeaseStore({ endpoint: proxy.url, prefix }, { timeoutMs: 500 }), intervalMs: 50, logger: (e) => events.push(e) });
    stops.push(() => locator.stop());
    locator.start();
    await waitFor(() => locator.current?.node === 'y', 'the holder');
    proxy.refuse();
    proxy.cut();
    await waitFor(() => locator.failures >= 5, 'five failed reads');
    expect(locator.current).toMatchObject({ node: 'y', epoch: won.epoch });
    expect(events.filter((e) => e.msg === 'lease store unreachable; following the last known primary')).toHaveLength(1);
    proxy.refuse(false);
    await waitFor(() => events.some((e) => e.msg === 'lease store reachable again'), 'etcd back');
  }, 30_000);

  it('the epoch header the replica reads is the one the primary writes', () => {
    expect(EPOCH_HEADER).toBe(PRIMARY_EPOCH_HEADER);
  });
});
