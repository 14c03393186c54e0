/**
 * The Cloudflare Worker replica (deploy/worker) in wrangler's local runtime (workerd, via unstable_dev)
 * against a real primary on 127.0.0.1, through a proxy that can damage the replication stream. It shows:
 * reads of primary writes, forwarded writes read back with their token, auth and typed errors, a
 * restart that resumes from the Durable Object's stored pages without a snapshot, small writes received
 * as delta change sets (bytes measured at the proxy), and damaged change sets refused (by the
 * change-set checksum, by the post-apply database checksum, and by a delta's base hash, the last two
 * healing by re-snapshot) the same way the Node replica refuses them. It also prints in-Worker timings.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unstable_dev, type Unstable_DevWorker } from 'wrangler';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { isDeltaChangeSet } from '../../shared/changeset-delta.ts';
import { FrameDecoder } from '../../shared/frames.ts';
import { silentLogger } from '../../shared/log.ts';
import { formatChecksum } from '../../shared/types.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';
import { startCorruptingProxy, type CorruptingProxy } from '../kit/proxy-damage.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORKER_DIR = join(ROOT, 'deploy/worker');
const READ = 'read-token-0123456789';
const WRITE = 'write-token-0123456789';
const ADMIN = 'admin-token-0123456789';

/** probeRuntime tells whether wrangler's local runtime (the workerd binary) can run on this machine. */
function probeRuntime(): { ok: boolean; reason: string } {
  try {
    const require = createRequire(import.meta.url);
    const bin = join(require.resolve('workerd/package.json'), '..', 'bin', 'workerd');
    if (!existsSync(bin)) return { ok: false, reason: `no workerd binary at ${bin}` };
    execFileSync(bin, ['--version'], { timeout: 10_000 });
    return { ok: true, reason: '' };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

const runtime = probeRuntime();

type Json = any; // response bodies of many shapes

describe('Worker replica in workerd (wrangler unstable_dev)', () => {
  // A machine where workerd cannot start fails the suite, with the reason: a skip would leave the
  // Worker untested while the run still reads as passed.
  beforeAll(() => {
    if (!runtime.ok) throw new Error(`wrangler's local runtime (workerd) cannot start here: ${runtime.reason}`);
  });

  const t = tempDir('worker');
  const persist = join(t.dir, 'worker-state');
  let primary: PrimaryHandle;
  let proxy: CorruptingProxy;
  let nodeProxy: CorruptingProxy;
  let node: ReplicaHandle;
  let worker: Unstable_DevWorker | null = null;

  async function startWorker(): Promise<Unstable_DevWorker> {
    return unstable_dev(join(WORKER_DIR, 'src/index.ts'), {
      config: join(WORKER_DIR, 'wrangler.toml'),
      persistTo: persist,
      logLevel: 'none',
      vars: {
        PRIMARY_URL: proxy.url,
        DATABASES: 'app,other',
        EDGELITE_TOKENS: `read=${READ}; read+write=${WRITE}; admin=${ADMIN}`,
        READ_WAIT_MS: '1500',
        WRITE_WAIT_MS: '10000',
        HEARTBEAT_TIMEOUT_MS: '3000',
      },
      experimental: { disableExperimentalWarning: true },
    });
  }

  async function call(method: string, path: string, token: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Json; headers: Headers }> {
    const res = await worker!.fetch(path, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
    });
    return { status: res.status, json: await res.json(), headers: res.headers as unknown as Headers };
  }

  const query = (sql: string, params: unknown[] = [], headers: Record<string, string> = {}) => call('POST', '/v1/db/app/query', READ, { sql, params }, headers);
  const describeApp = async (): Promise<Json> => (await call('GET', '/v1/db/app', READ)).json;

  async function primaryExec(sql: string, params: unknown[] = []): Promise<string> {
    const res = await fetch(`${primary.url}/v1/db/app/exec`, { method: 'POST', body: JSON.stringify({ sql, params }), headers: { 'content-type': 'application/json' } });
    const body = (await res.json()) as Json;
    expect(res.status, JSON.stringify(body)).toBe(200);
    return body.token as string;
  }

  function primaryChecksum(): string {
    return formatChecksum(primary.store.get('app')!.position.checksum);
  }

  /** plainChangeSetBytes reads `count` change sets after `from` from the primary as plain change sets (no deltas). */
  async function plainChangeSetBytes(from: { generation: number; txid: number; checksum: string }, count: number): Promise<number[]> {
    const abort = new AbortController();
    const res = await fetch(`${primary.url}/v1/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ databases: ['app'], positions: { app: from } }),
      signal: abort.signal,
    });
    const reader = res.body!.getReader();
    const decoder = new FrameDecoder();
    const sizes: number[] = [];
    try {
      while (sizes.length < count) {
        const { done, value } = await reader.read();
        if (done) throw new Error('the primary closed the stream');
        for (const f of decoder.push(value)) if (f.type === 'changeset' && !isDeltaChangeSet(f.data)) sizes.push(f.data.length);
      }
    } finally {
      abort.abort();
    }
    return sizes.slice(0, count);
  }

  beforeAll(async () => {
    primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
    await fetch(`${primary.url}/v1/db/app`, { method: 'PUT' });
    await primaryExec('CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)');
    for (let i = 0; i < 20; i++) await primaryExec('INSERT INTO kv VALUES (?, ?)', [`k${i}`, `v${i}`]);
    proxy = await startCorruptingProxy(primary.url);
    nodeProxy = await startCorruptingProxy(primary.url);
    node = await startReplica(parseReplicaConfig(['--primary', nodeProxy.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0', '--databases', 'app'], {}), silentLogger);
    worker = await startWorker();
  });

  afterAll(async () => {
    await worker?.stop();
    await node?.close();
    await proxy?.close();
    await nodeProxy?.close();
    await primary?.close();
    t.cleanup();
  });

  it('bootstraps by snapshot and serves a write made on the primary', async () => {
    const token = await primaryExec("INSERT INTO kv VALUES ('fresh', 'from-primary')");
    const r = await query('SELECT v FROM kv WHERE k = ?', ['fresh'], { 'Edgelite-Token': token });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json.results).toEqual([{ columns: ['v'], rows: [['from-primary']] }]);
    expect(r.headers.get('edgelite-served-by')).toBe('replica');
    const all = await query('SELECT count(*) AS n FROM kv');
    expect(all.json.results[0].rows).toEqual([[21]]);
    const d = await describeApp();
    expect(d).toMatchObject({ name: 'app', runtime: 'workerd', bootedFrom: 'snapshot', snapshots: 1, checksum: primaryChecksum(), stream: 'streaming' });
    expect(proxy.snapshots).toBe(1);
  });

  it('forwards a write to the primary and reads it back with its token', async () => {
    for (let i = 0; i < 5; i++) {
      const w = await call('POST', '/v1/db/app/exec', WRITE, { sql: 'INSERT INTO kv VALUES (?, ?)', params: [`w${i}`, `written-${i}`] });
      expect(w.status, JSON.stringify(w.json)).toBe(200);
      expect(w.json.results).toEqual([{ columns: [], rows: [], changes: 1, lastInsertRowid: expect.any(Number) }]);
      expect(w.headers.get('edgelite-token')).toBe(w.json.token);
      expect(w.headers.get('edgelite-applied')).toBe('true');
      const r = await query('SELECT v FROM kv WHERE k = ?', [`w${i}`], { 'Edgelite-Token': w.json.token });
      expect(r.json.results[0].rows).toEqual([[`written-${i}`]]);
    }
    const onPrimary = await fetch(`${primary.url}/v1/db/app/query`, { method: 'POST', body: JSON.stringify({ sql: "SELECT count(*) FROM kv WHERE k LIKE 'w%'" }), headers: { 'content-type': 'application/json' } });
    expect(((await onPrimary.json()) as Json).results[0].rows).toEqual([[5]]);
  });

  it('checks bearer tokens and answers with the typed errors of the Node replica', async () => {
    const anon = await worker!.fetch('/v1/db/app/query', { method: 'POST', body: JSON.stringify({ sql: 'SELECT 1' }), headers: { 'content-type': 'application/json' } });
    expect(anon.status).toBe(401);
    expect(((await anon.json()) as Json).error.code).toBe('UNAUTHORIZED');
    expect((await call('POST', '/v1/db/app/exec', READ, { sql: 'SELECT 1' })).json.error.code).toBe('FORBIDDEN');
    const write = await query("INSERT INTO kv VALUES ('x', 'y')");
    expect([write.status, write.json.error.code]).toEqual([400, 'READ_ONLY']);
    const bad = await query('SELECT nope FROM kv');
    expect([bad.status, bad.json.error.code]).toEqual([400, 'SQL_ERROR']);
    expect((await query('ATTACH DATABASE ? AS other', ['x.db'])).json.error.code).toBe('FORBIDDEN');
    expect((await query('PRAGMA query_only = 0')).json.error.code).toBe('FORBIDDEN');
    const unknown = await call('POST', '/v1/db/nope/query', READ, { sql: 'SELECT 1' });
    expect([unknown.status, unknown.json.error.code]).toEqual([404, 'DATABASE_NOT_FOUND']);
    const d = await describeApp();
    const ahead = `1.${(d.txid + 1000).toString(16).padStart(16, '0')}.${d.generation.toString(16).padStart(8, '0')}.${d.databaseId.toString(16).padStart(8, '0')}.app`;
    const behind = await query('SELECT 1', [], { 'Edgelite-Token': ahead });
    expect([behind.status, behind.json.error.code]).toEqual([504, 'REPLICA_BEHIND']);
    const blob = await query('SELECT x\'00ff\' AS b, 9007199254740993 AS big, 1.5 AS f, NULL AS n');
    expect(blob.json.results[0]).toEqual({ columns: ['b', 'big', 'f', 'n'], rows: [[{ base64: 'AP8=' }, '9007199254740993', 1.5, null]] });
  });

  it('answers 404 DATABASE_NOT_FOUND for a listed database the primary does not have (the stream says so)', async () => {
    const r = await call('POST', '/v1/db/other/query', READ, { sql: 'SELECT 1' });
    expect([r.status, r.json.error.code]).toEqual([404, 'DATABASE_NOT_FOUND']);
    const d = (await call('GET', '/v1/db/other', READ)).json;
    expect(d).toMatchObject({ name: 'other', txid: null, snapshots: 0 });
    expect(d.lastError).toMatch(/^DATABASE_NOT_FOUND: /);
    expect(d.connects).toBeGreaterThanOrEqual(1);
  });

  it('resumes from the stored pages after a restart, without a new snapshot', async () => {
    const snapshotsBefore = proxy.snapshots;
    await worker!.stop();
    worker = null;
    for (let i = 0; i < 5; i++) await primaryExec('INSERT INTO kv VALUES (?, ?)', [`while-down-${i}`, 'x']);
    worker = await startWorker();
    const r = await query("SELECT count(*) FROM kv WHERE k LIKE 'while-down-%'", [], { 'Edgelite-Consistency': 'strong' });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json.results[0].rows).toEqual([[5]]);
    const d = await describeApp();
    expect(d).toMatchObject({ bootedFrom: 'storage', snapshots: 0, snapshotsTotal: 1, checksum: primaryChecksum() });
    expect(proxy.snapshots).toBe(snapshotsBefore);
  });

  it('refuses a change set with a flipped byte (change-set checksum) and resumes, as the Node replica does', async () => {
    const before = await describeApp();
    const snapshots = [proxy.snapshots, nodeProxy.snapshots];
    const streams = proxy.streams;
    proxy.arm('byte');
    nodeProxy.arm('byte');
    const token = await primaryExec("INSERT INTO kv VALUES ('damaged-1', 'intact')");
    const r = await query('SELECT v FROM kv WHERE k = ?', ['damaged-1'], { 'Edgelite-Token': token });
    expect(r.json.results[0].rows).toEqual([['intact']]);
    expect([proxy.damaged, nodeProxy.damaged]).toEqual([1, 1]);
    const d = await describeApp();
    expect(d.rejected).toBe(before.rejected + 1);
    expect(d.lastError).toMatch(/CORRUPT_CHANGESET/);
    expect(d.checksum).toBe(primaryChecksum());
    // The shared follower core ended the session and reconnected from the stored position (no snapshot).
    expect(d.connects).toBeGreaterThan(before.connects);
    expect(proxy.streams).toBeGreaterThan(streams);
    expect(d.stream).toBe('streaming');
    await waitFor(() => node.store.get('app')?.position?.txid === d.txid, 'the Node replica to catch up');
    expect(formatChecksum(node.store.get('app')!.position!.checksum)).toBe(primaryChecksum());
    expect([proxy.snapshots, nodeProxy.snapshots]).toEqual(snapshots);
  });

  it('refuses a consistent but wrong change set (post-apply checksum) and heals by re-snapshot, as the Node replica does', async () => {
    const before = await describeApp();
    const snapshots = [proxy.snapshots, nodeProxy.snapshots];
    proxy.arm('consistent');
    nodeProxy.arm('consistent');
    const token = await primaryExec("INSERT INTO kv VALUES ('damaged-2', 'intact')");
    const r = await query('SELECT v FROM kv WHERE k = ?', ['damaged-2'], { 'Edgelite-Token': token });
    expect(r.json.results[0].rows).toEqual([['intact']]);
    const d = await describeApp();
    expect(d.rejected).toBe(before.rejected + 1);
    expect(d.lastError).toMatch(/CHECKSUM_MISMATCH/);
    expect(d.snapshots).toBe(before.snapshots + 1);
    expect(d.connects).toBeGreaterThan(before.connects); // the session after the re-snapshot resumes from its position
    expect(d.needsSnapshot).toBeNull();
    expect(d.checksum).toBe(primaryChecksum());
    await waitFor(() => node.store.get('app')?.position?.txid === d.txid, 'the Node replica to catch up');
    expect(formatChecksum(node.store.get('app')!.position!.checksum)).toBe(primaryChecksum());
    expect([proxy.snapshots, nodeProxy.snapshots]).toEqual([snapshots[0]! + 1, snapshots[1]! + 1]);
    const all = await query('SELECT count(*) FROM kv');
    const onPrimary = await fetch(`${primary.url}/v1/db/app/query`, { method: 'POST', body: JSON.stringify({ sql: 'SELECT count(*) FROM kv' }), headers: { 'content-type': 'application/json' } });
    expect(all.json.results[0].rows).toEqual(((await onPrimary.json()) as Json).results[0].rows);
  });

  it('receives single-row UPDATEs as delta change sets and ends at the primary\'s checksum', async () => {
    // One write read back through the Worker first: its change set came on a live stream session, so
    // the UPDATEs below are live frames (catch-up after a reconnect is plain, from the primary's log).
    const n = 20;
    let warm = '';
    for (let i = 0; i < n; i++) warm = await primaryExec('INSERT INTO kv VALUES (?, ?)', [`d${i}`, `original-${i}`]);
    expect((await query('SELECT 1', [], { 'Edgelite-Token': warm })).status).toBe(200);
    const before = await describeApp();
    const mark = proxy.changeSets.length;
    let token = '';
    for (let i = 0; i < n; i++) token = await primaryExec('UPDATE kv SET v = ? WHERE k = ?', [`updated-${i}`, `d${i}`]);
    const r = await query("SELECT k, v FROM kv WHERE v LIKE 'updated-%' ORDER BY k", [], { 'Edgelite-Token': token });
    expect(r.json.results[0].rows).toHaveLength(n);
    const d = await describeApp();
    expect(d.checksum).toBe(primaryChecksum());
    expect([d.snapshots, d.rejected]).toEqual([before.snapshots, before.rejected]);
    expect(d.apply.changeSets - before.apply.changeSets).toBe(n);
    const received = proxy.changeSets.slice(mark).filter((c) => c.maxTxid > before.txid);
    expect(received).toHaveLength(n);
    expect(received.every((c) => c.delta)).toBe(true);
    const plain = await plainChangeSetBytes({ generation: before.generation, txid: before.txid, checksum: before.checksum }, n);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const deltaMedian = median(received.map((c) => c.bytes));
    expect(deltaMedian).toBeLessThan(d.pageSize / 4);
    expect(median(plain)).toBeGreaterThan(d.pageSize);
    console.log(JSON.stringify({
      figure: 'worker-stream-bytes-per-single-row-update',
      updates: n,
      deltaChangeSetMedianBytes: deltaMedian,
      deltaFrameMedianBytes: median(received.map((c) => c.frameBytes)),
      deltaChangeSetMaxBytes: Math.max(...received.map((c) => c.bytes)),
      plainChangeSetMedianBytes: median(plain),
      pageSize: d.pageSize,
    }));
  });

  it('refuses a delta whose base is not its stored page, applies nothing and heals by re-snapshot, as the Node replica does', async () => {
    const before = await describeApp();
    const snapshots = [proxy.snapshots, nodeProxy.snapshots];
    const damaged = [proxy.damaged, nodeProxy.damaged];
    proxy.arm('base');
    nodeProxy.arm('base');
    const token = await primaryExec("UPDATE kv SET v = 'after-base' WHERE k = 'd3'");
    const r = await query('SELECT v FROM kv WHERE k = ?', ['d3'], { 'Edgelite-Token': token });
    expect(r.json.results[0].rows).toEqual([['after-base']]);
    expect([proxy.damaged, nodeProxy.damaged]).toEqual([damaged[0]! + 1, damaged[1]! + 1]);
    const d = await describeApp();
    expect(d.rejected).toBe(before.rejected + 1);
    expect(d.lastError).toMatch(/CHECKSUM_MISMATCH: page \d+: the delta's base is not this replica's page/);
    expect(d.apply.changeSets).toBe(before.apply.changeSets); // the refused one was never applied: the snapshot brought its write
    expect(d.snapshots).toBe(before.snapshots + 1);
    expect(d.checksum).toBe(primaryChecksum());
    await waitFor(() => node.store.get('app')?.position?.txid === d.txid, 'the Node replica to catch up');
    expect(formatChecksum(node.store.get('app')!.position!.checksum)).toBe(primaryChecksum());
    expect([proxy.snapshots, nodeProxy.snapshots]).toEqual([snapshots[0]! + 1, snapshots[1]! + 1]);
  });

  it('a drop clears the object\'s copy (404 DATABASE_NOT_FOUND), and a database created again bootstraps afresh', async () => {
    const other = async (sql: string): Promise<void> => {
      const res = await fetch(`${primary.url}/v1/db/other/exec`, { method: 'POST', body: JSON.stringify({ sql }), headers: { 'content-type': 'application/json' } });
      expect(res.status, await res.text()).toBe(200);
    };
    const describeOther = async (): Promise<Json> => (await call('GET', '/v1/db/other', READ)).json;
    expect((await fetch(`${primary.url}/v1/db/other`, { method: 'PUT' })).status).toBe(201);
    await other('CREATE TABLE t (x)');
    await other('INSERT INTO t VALUES (1)');
    const first = primary.store.require('other').position;
    await waitFor(async () => (await describeOther()).txid === first.txid, 'the Worker has other', 30_000);

    expect((await call('DELETE', '/v1/db/other', WRITE)).status).toBe(403);
    const dropped = await call('DELETE', '/v1/db/other', ADMIN);
    expect([dropped.status, dropped.json]).toEqual([200, { name: 'other', dropped: true }]);
    await waitFor(async () => (await describeOther()).txid === null, 'the Worker dropped its copy', 30_000);
    expect(await describeOther()).toMatchObject({ txid: null, checksum: null, pageCount: 0 });
    const gone = await call('POST', '/v1/db/other/query', READ, { sql: 'SELECT count(*) FROM t' });
    expect([gone.status, gone.json.error.code]).toEqual([404, 'DATABASE_NOT_FOUND']);

    expect((await fetch(`${primary.url}/v1/db/other`, { method: 'PUT' })).status).toBe(201);
    await other('CREATE TABLE fresh (y)');
    const again = primary.store.require('other');
    await waitFor(async () => (await describeOther()).checksum === formatChecksum(again.position.checksum), 'the Worker bootstrapped the new other', 30_000);
    const tables = await call('POST', '/v1/db/other/query', READ, { sql: 'SELECT name FROM sqlite_master ORDER BY name' });
    expect(tables.json.results[0].rows).toEqual([['fresh']]);
  });

  it('measures point reads and applies inside the Worker (figures printed, not asserted)', async () => {
    const before = (await describeApp()).apply;
    let token = '';
    for (let i = 0; i < 50; i++) token = await primaryExec('INSERT OR REPLACE INTO kv VALUES (?, ?)', [`m${i % 50}`, 'y'.repeat(100)]);
    const caught = await query('SELECT count(*) FROM kv', [], { 'Edgelite-Token': token });
    expect(caught.status).toBe(200);
    const after = (await describeApp()).apply;
    const point = { sql: 'SELECT v FROM kv WHERE k = ?', params: ['k7'] };
    await call('POST', '/v1/db/app/debug/repeat', ADMIN, { ...point, n: 5000 }); // warm-up: wasm tiers up
    const repeat = await call('POST', '/v1/db/app/debug/repeat', ADMIN, { ...point, n: 20000 });
    expect(repeat.status, JSON.stringify(repeat.json)).toBe(200);
    expect(repeat.json.results[0].rows).toEqual([['v7']]);
    const http: number[] = [];
    for (let i = 0; i < 100; i++) {
      const started = performance.now();
      await query('SELECT v FROM kv WHERE k = ?', [`k${i % 20}`]);
      http.push(performance.now() - started);
    }
    http.sort((a, b) => a - b);
    const applies = after.applies - before.applies;
    console.log(JSON.stringify({
      figure: 'worker-replica',
      pointReadInObjectUs: Math.round(repeat.json.perQueryUs * 10) / 10,
      pointReadHttpMedianMs: Math.round(http[50]! * 100) / 100,
      pointReadHttpP99Ms: Math.round(http[98]! * 100) / 100,
      applies,
      changeSets: after.changeSets - before.changeSets,
      applyMeanMs: Math.round(((after.applyMsTotal - before.applyMsTotal) / Math.max(1, applies)) * 1000) / 1000,
      applyMaxMs: after.applyMsMax,
    }));
  });
});
