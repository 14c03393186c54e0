/**
 * Catch-up ranges through a cache (shared/changes.ts, README.md#http-api): a real primary, a real shared
 * HTTP cache in front of it (test/kit/caching-proxy.ts: undici's RFC 9111 cache with a cache lock), and
 * real Node replicas whose every request to the primary goes through the cache, all over loopback HTTP
 * with auth on. Shown: the route's answers (200 immutable with a strong ETag, 308 to the aligned start,
 * 304, USE_STREAM for the open tail, SNAPSHOT_NEEDED past what the log holds); ten replicas far behind
 * catching up while the primary serves each range once and the tail comes by the stream; the Worker's
 * transport (global fetch) reading the same ranges; a flipped byte in a cached range detected, never
 * applied, and read again past the cache; a replica older than the retained log re-snapshotted.
 */
import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAuthConfig } from '../../shared/auth.ts';
import { decodeSegment } from '../../shared/backup-objects.ts';
import { CHANGES_CACHE_CONTROL, changesPath } from '../../shared/changes.ts';
import { FrameDecoder } from '../../shared/frames.ts';
import { decodeChangeSet } from '../../shared/changeset.ts';
import { silentLogger } from '../../shared/log.ts';
import { PrimaryClient } from '../../shared/primary-client.ts';
import type { Position } from '../../shared/types.ts';
import { createPrimaryApp } from '../../primary/app.ts';
import type { RangeLayout } from '../../primary/changes.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import type { PrimaryDatabase } from '../../primary/database.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { PrimaryStore } from '../../primary/store.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { stopsAfterEach, tempDir } from '../helpers.ts';
import { integrityCheck } from '../kit/api.ts';
import { CachingProxy } from '../kit/caching-proxy.ts';
import { waitFor } from '../kit/wait.ts';

const DB = 'app';
const TOKEN = 'cdn-replicate-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };
/** Small ranges, so a few hundred writes make many: 32 txids a block, a range closed past 48 KiB. */
const LAYOUT: RangeLayout = { rangeTxids: 32, rangeBytes: 48 * 1024 };

describe('catch-up ranges through a caching proxy', () => {
  const stops = stopsAfterEach();

  async function primaryBehindProxy(): Promise<{ primary: PrimaryHandle; proxy: CachingProxy; dir: string; db: PrimaryDatabase }> {
    const t = tempDir('cdn');
    stops.push(t.cleanup);
    const config = parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0', '--query-timeout-ms', '0'], {});
    const primary = await startPrimary({ ...config, auth: parseAuthConfig(TOKEN, undefined), ranges: LAYOUT }, silentLogger);
    stops.push(() => primary.close());
    const proxy = await CachingProxy.start(primary.url);
    stops.push(() => proxy.close());
    const { db } = primary.store.create(DB);
    db.exec([{ sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)', params: [] }]);
    return { primary, proxy, dir: t.dir, db };
  }

  async function replicaAt(proxy: CachingProxy, dir: string): Promise<ReplicaHandle> {
    const config = parseReplicaConfig(['--primary', proxy.url, '--data', dir, '--listen', '127.0.0.1:0', '--databases', DB, '--query-timeout-ms', '0'], { EDGELITE_PRIMARY_TOKEN: TOKEN });
    const r = await startReplica({ ...config, backoffMaxMs: 300 }, silentLogger);
    stops.push(() => r.close());
    return r;
  }

  function caughtUp(r: ReplicaHandle, db: PrimaryDatabase): boolean {
    const a = r.store.get(DB)?.position;
    const p = db.position;
    return !!a && a.generation === p.generation && a.txid === p.txid && a.checksum === p.checksum;
  }

  /** write runs `n` inserts of 0.5–3 KB (one to a few pages each) and waits until the log is durable. */
  let seq = 0;
  async function write(db: PrimaryDatabase, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      seq++;
      db.exec([{ sql: 'INSERT INTO t (v) VALUES (?)', params: [`${seq}:`.padEnd(500 + ((seq * 7919) % 2500), 'abcdefghij'[seq % 10]!)] }]);
    }
    await db.log.sync(); // a block is served once the log is fsynced past it
  }

  async function get(base: string, path: string, headers: Record<string, string> = AUTH): Promise<Response> {
    return fetch(base + path, { headers, redirect: 'manual' });
  }

  it('answers a sealed range immutable with a strong ETag, 308s an unaligned start, 304s a match, and refuses the tail and what the log does not hold', async () => {
    const { primary, db } = await primaryBehindProxy();
    await write(db, 100);
    const g = db.position.generation;
    const first = db.generationStart.txid + 1;

    const r = await get(primary.url, changesPath(DB, g, first));
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-control')).toBe(CHANGES_CACHE_CONTROL);
    const etag = r.headers.get('etag')!;
    expect(etag).toMatch(/^"[0-9a-f-]+"$/); // strong: no W/
    const [from, to] = r.headers.get('edgelite-txids')!.split('-').map(Number) as [number, number];
    expect(from).toBe(first);
    expect(to).toBeLessThan(first + LAYOUT.rangeTxids);
    const body = new Uint8Array(await r.arrayBuffer());
    // The body is a backup segment of the log's own change sets, each with its checksums, in a chain.
    const sets = decodeSegment('range', body, { generation: g, minTxid: from, maxTxid: to });
    for (let i = 1; i < sets.length; i++) expect(sets[i]!.preChecksum).toBe(sets[i - 1]!.postChecksum);
    expect(Buffer.from(body).equals(Buffer.concat(db.log.readRange(g, from, to)!.map((x) => x.payload)))).toBe(true);
    expect(body.length).toBeLessThanOrEqual(LAYOUT.rangeBytes);
    // Immutable: asked again after more writes, the same bytes under the same tag.
    await write(db, 10);
    const again = await get(primary.url, changesPath(DB, g, first));
    expect(again.headers.get('etag')).toBe(etag);
    expect(Buffer.from(await again.arrayBuffer()).equals(Buffer.from(body))).toBe(true);

    const moved = await get(primary.url, changesPath(DB, g, from + 1));
    expect(moved.status).toBe(308);
    expect(moved.headers.get('location')).toBe(changesPath(DB, g, from));
    expect(moved.headers.get('cache-control')).toBe(CHANGES_CACHE_CONTROL);
    const next = await get(primary.url, changesPath(DB, g, to + 1));
    expect(next.status).toBe(200); // the end of one range + 1 is always the start of the next
    expect(Number(next.headers.get('edgelite-txids')!.split('-')[0])).toBe(to + 1);

    const same = await get(primary.url, changesPath(DB, g, first), { ...AUTH, 'if-none-match': etag });
    expect(same.status).toBe(304);
    expect(same.headers.get('etag')).toBe(etag);
    expect((await same.arrayBuffer()).byteLength).toBe(0);

    const cur = db.position.txid;
    const refused = async (path: string, headers?: Record<string, string>) => {
      const res = await get(primary.url, path, headers);
      expect(res.headers.get('cache-control'), path).toBe('no-store');
      return [res.status, ((await res.json()) as { error: { code: string } }).error.code];
    };
    expect(await refused(changesPath(DB, g, cur + 1))).toEqual([409, 'USE_STREAM']);
    // The open block (txids after the last block boundary): not sealed, so the stream's.
    const openBlock = Math.floor((cur - 1) / LAYOUT.rangeTxids) * LAYOUT.rangeTxids + 1;
    expect(cur % LAYOUT.rangeTxids).not.toBe(0);
    expect(await refused(changesPath(DB, g, openBlock))).toEqual([409, 'USE_STREAM']);
    expect(await refused(changesPath(DB, g + 1, first))).toEqual([409, 'SNAPSHOT_NEEDED']);
    expect(await refused(changesPath(DB, g, cur + 5))).toEqual([409, 'SNAPSHOT_NEEDED']);
    expect(await refused(`/v1/db/${DB}/changes/1/1`)).toEqual([400, 'BAD_REQUEST']);
    expect(await refused(changesPath(DB, g, first), {})).toEqual([401, 'UNAUTHORIZED']);
  });

  it('ten replicas hundreds of txids behind catch up through the cache while the primary serves each range once; the tail comes by the stream', async () => {
    const { primary, proxy, dir, db } = await primaryBehindProxy();
    await write(db, 5);
    const dirs = Array.from({ length: 10 }, (_, i) => join(dir, `r${i}`));
    let replicas = await Promise.all(dirs.map((d) => replicaAt(proxy, d)));
    await waitFor(() => replicas.every((r) => caughtUp(r, db)), 'ten replicas to bootstrap');
    await Promise.all(replicas.map((r) => r.close()));
    const behind = db.position.txid;

    await write(db, 650);
    const mark = { origin: proxy.origin.length, received: proxy.received.length };
    replicas = await Promise.all(dirs.map((d) => replicaAt(proxy, d)));
    await waitFor(() => replicas.every((r) => caughtUp(r, db)), 'ten replicas to catch up', 60_000);

    const origin = proxy.origin.slice(mark.origin);
    const ranges = origin.filter((o) => o.method === 'GET' && o.path.includes('/changes/') && o.status === 200);
    // Each range came from the primary once, however many replicas read it.
    expect(new Set(ranges.map((o) => o.path)).size).toBe(ranges.length);
    expect(ranges.length).toBeGreaterThanOrEqual(40);
    const asked = proxy.received.slice(mark.received).filter((l) => l.startsWith('GET ') && l.includes('/changes/'));
    expect(asked.length).toBeGreaterThanOrEqual(10 * ranges.length);
    // Each replica was told to take the ranges first (USE_RANGES), then streamed; no snapshot, no fresh read.
    const posts = origin.filter((o) => o.method === 'POST');
    expect(posts.filter((o) => o.status === 409)).toHaveLength(10);
    expect(posts.filter((o) => o.status === 200).length).toBeGreaterThanOrEqual(10);
    expect(asked.filter((l) => l.includes('fresh='))).toEqual([]);
    for (const r of replicas) {
      expect(r.follower.applied(DB).snapshots).toBe(0);
      expect(r.follower.applied(DB).changeSets).toBe(db.position.txid - behind);
    }
    // The ranges end before the primary's txid: what came after them came by the stream.
    const lastRangeEnd = Math.max(...ranges.map((o) => Number.parseInt(o.path.slice(-16), 16)));
    expect(lastRangeEnd).toBeLessThan(db.position.txid);
    // Both sides count it in /metrics: the primary its range answers by status, each replica what it read.
    const auth = { authorization: `Bearer ${TOKEN}` };
    const primaryMetrics = await (await fetch(`${primary.url}/metrics`, { headers: auth })).text();
    const rangeGets200 = proxy.origin.filter((o) => o.method === 'GET' && o.path.includes('/changes/') && o.status === 200).length;
    expect(Number(/^edgelite_catchup_range_answers_total\{status="200"\} (\d+)$/m.exec(primaryMetrics)?.[1])).toBe(rangeGets200);
    const replicaMetrics = await (await fetch(`${replicas[0]!.url}/metrics`, { headers: auth })).text();
    const metric = (name: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(replicaMetrics)?.[1]);
    expect(metric('edgelite_catchup_ranges_total')).toBeGreaterThan(0);
    expect(metric('edgelite_catchup_range_changesets_total')).toBeGreaterThan(0);
    expect(metric('edgelite_catchup_range_changesets_total')).toBeLessThanOrEqual(db.position.txid - behind);
    expect(metric('edgelite_catchup_ranges_refused_total')).toBe(0);

    // Live: new writes reach every replica on the stream, with no range read.
    const before = proxy.received.length;
    await write(db, 5);
    await waitFor(() => replicas.every((r) => caughtUp(r, db)), 'ten replicas to follow the tail');
    expect(proxy.received.slice(before).filter((l) => l.includes('/changes/'))).toEqual([]);
    expect(integrityCheck(join(dirs[0]!, `${DB}.db`))).toBe('ok');
  });

  it('the Worker\'s transport (global fetch) reads the same ranges ahead of the stream, in one verified chain', async () => {
    const { proxy, db } = await primaryBehindProxy();
    await write(db, 3);
    const from: Position = db.position;
    await write(db, 120);
    const client = new PrimaryClient({ url: proxy.url, token: TOKEN });
    stops.push(() => client.close());
    const abort = new AbortController();
    const decoder = new FrameDecoder();
    let at = from;
    outer: for await (const chunk of await client.openStream([DB], { [DB]: from }, abort.signal)) {
      for (const f of decoder.push(chunk)) {
        if (f.type === 'ready') break outer;
        if (f.type !== 'changeset') continue;
        const cs = decodeChangeSet(f.data);
        expect([cs.minTxid, cs.preChecksum]).toEqual([at.txid + 1, at.checksum]);
        at = { generation: cs.generation, txid: cs.maxTxid, checksum: cs.postChecksum };
      }
    }
    abort.abort();
    expect(at).toEqual(db.position);
    const stats = client.rangeStats;
    expect(stats.ranges).toBeGreaterThanOrEqual(8);
    expect([stats.damaged, stats.fresh]).toEqual([0, 0]);
  });

  it('a flipped byte in a cached range is detected, never applied, and read again past the cache', async () => {
    const { primary, proxy, dir, db } = await primaryBehindProxy();
    await write(db, 3);
    const replica = await replicaAt(proxy, join(dir, 'r'));
    await waitFor(() => caughtUp(replica, db), 'the replica to bootstrap');
    await replica.close();
    const pos = db.position;
    await write(db, 100);

    // Fill the cache with the range the replica will ask for first, then poison it.
    const g = pos.generation;
    const asked = await get(proxy.url, changesPath(DB, g, pos.txid + 1));
    const path = asked.status === 308 ? asked.headers.get('location')! : changesPath(DB, g, pos.txid + 1);
    const good = Buffer.from(await (await get(proxy.url, path)).arrayBuffer());
    const atOrigin = proxy.originCount(path);
    expect(atOrigin).toBe(1);
    proxy.damage(path, Math.floor(good.length / 2));
    const served = await get(proxy.url, path);
    expect(served.headers.get('etag')).toBe((await get(primary.url, path)).headers.get('etag'));
    expect(Buffer.from(await served.arrayBuffer()).equals(good)).toBe(false);

    const back = await replicaAt(proxy, join(dir, 'r'));
    await waitFor(() => caughtUp(back, db), 'the replica to catch up past the poisoned range');
    // The client refused the damaged copy before the follower saw it, and asked the primary directly.
    expect(back.follower.applied(DB).snapshots).toBe(0);
    expect(proxy.origin.filter((o) => o.path.startsWith(`${path}?fresh=`) && o.status === 200)).toHaveLength(1);
    expect(proxy.originCount(path)).toBe(atOrigin); // the poisoned copy stays in the cache: detection, not luck
    expect(Buffer.from(await (await get(proxy.url, path)).arrayBuffer()).equals(good)).toBe(false);
    expect(integrityCheck(join(dir, 'r', `${DB}.db`))).toBe('ok');
  });

  it('a replica older than the retained log gets SNAPSHOT_NEEDED for its range and re-snapshots', async () => {
    const t = tempDir('cdn-retention');
    stops.push(t.cleanup);
    // Retention that keeps only the newest segment, and small segments: the log soon drops old txids.
    const store = new PrimaryStore(join(t.dir, 'p'), {
      synchronous: 'normal',
      busyTimeoutMs: 5000,
      compress: false,
      checkpointFrames: 40,
      pollIntervalMs: 100,
      log: { retention: { maxRecords: 1 }, segmentBytes: 16 * 1024 },
      queryPool: null,
      logger: silentLogger,
    }).open();
    const app = createPrimaryApp({ store, auth: parseAuthConfig(TOKEN, undefined), maxBodyBytes: 1 << 20, logger: silentLogger, ranges: LAYOUT });
    let server!: ServerType;
    const port = await new Promise<number>((resolve) => (server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, (i: AddressInfo) => resolve(i.port))));
    const url = `http://127.0.0.1:${port}`;
    stops.push(() => {
      store.close();
    });
    stops.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const proxy = await CachingProxy.start(url);
    stops.push(() => proxy.close());
    const { db } = store.create(DB);
    db.exec([{ sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)', params: [] }]);
    await write(db, 3);

    const replica = await replicaAt(proxy, join(t.dir, 'r'));
    await waitFor(() => caughtUp(replica, db), 'the replica to bootstrap');
    await replica.close();
    const pos = db.position;
    await write(db, 200);
    expect(db.log.firstTxid!).toBeGreaterThan(pos.txid + 1);

    const res = await get(url, changesPath(DB, pos.generation, pos.txid + 1));
    expect([res.status, res.headers.get('cache-control'), ((await res.json()) as { error: { code: string } }).error.code]).toEqual([409, 'no-store', 'SNAPSHOT_NEEDED']);

    const mark = proxy.received.length;
    const back = await replicaAt(proxy, join(t.dir, 'r'));
    await waitFor(() => caughtUp(back, db), 'the replica to re-snapshot');
    expect(back.follower.applied(DB).snapshots).toBe(1);
    expect(proxy.received.slice(mark).filter((l) => l === `GET /v1/db/${DB}/snapshot`)).toHaveLength(1);
    expect(integrityCheck(join(t.dir, 'r', `${DB}.db`))).toBe('ok');
  });
});
