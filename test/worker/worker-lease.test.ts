/**
 * The Worker replica under LEASE_URL (README.md#high-availability) in wrangler's local runtime
 * (workerd), against a real etcd on 127.0.0.1 and two real primaries, each holding the lease through a
 * real LeaseStore.campaign and LeaseKeeper (test/kit/lease-primaries.ts). The Worker follows the first
 * holder; when it resigns and the second takes the lease, the same Worker, not restarted, follows the
 * second (its stream, its snapshot) and forwards writes there. A stream answered with an epoch older
 * than one the Worker has seen is refused: a stale primary at the URL the record names is not followed.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unstable_dev, type Unstable_DevWorker } from 'wrangler';
import { parseWorkerConfig } from '../../deploy/worker/src/config.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { LeaseStore } from '../../shared/lease.ts';
import { tempDir } from '../helpers.ts';
import { startEtcd, type Etcd } from '../kit/etcd.ts';
import { LeasedPrimary, TEST_LEASE_TTL_MS } from '../kit/lease-primaries.ts';
import { waitFor } from '../kit/wait.ts';

const WORKER_DIR = fileURLToPath(new URL('../../deploy/worker/', import.meta.url));
type Json = any; // response bodies of many shapes

describe('LEASE_URL', () => {
  const base = { REPLICA: {} as DurableObjectNamespace, ALLOW_NO_AUTH: 'true' };
  it('is parsed with the lease URL rules; PRIMARY_URL becomes optional (the fallback until a holder is read)', () => {
    expect(parseWorkerConfig({ ...base, LEASE_URL: 'etcd://127.0.0.1:2379/prod' })).toMatchObject({ lease: { endpoint: 'http://127.0.0.1:2379', prefix: 'prod' }, primaryUrl: null });
    expect(parseWorkerConfig({ ...base, LEASE_URL: 'etcd://e:2379', PRIMARY_URL: 'http://p:7400/x' })).toMatchObject({ lease: { prefix: 'edgelite' }, primaryUrl: 'http://p:7400' });
    expect(parseWorkerConfig({ ...base, PRIMARY_URL: 'http://p:7400' })).toMatchObject({ lease: null });
  });
  it('a bad LEASE_URL, or neither variable, is MISCONFIGURED naming it', () => {
    const err = (env: Record<string, string>) => {
      try {
        parseWorkerConfig({ ...base, ...env });
      } catch (e) {
        return e as EdgeliteError;
      }
      throw new Error('no error');
    };
    expect(err({ LEASE_URL: 'http://127.0.0.1:2379/x' })).toMatchObject({ code: 'MISCONFIGURED', message: expect.stringContaining('LEASE_URL must be etcd://HOST:PORT/PREFIX') });
    expect(err({})).toMatchObject({ code: 'MISCONFIGURED', message: expect.stringContaining('PRIMARY_URL is not set') });
  });
});

describe('Worker replica following the failover lease (workerd, real etcd)', () => {
  const t = tempDir('worker-lease');
  let etcd: Etcd;
  let store: LeaseStore;
  let p1: LeasedPrimary;
  let p2: LeasedPrimary;
  let worker: Unstable_DevWorker;

  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Json; headers: Headers }> => {
    const res = await worker.fetch(path, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    return { status: res.status, json: await res.json(), headers: res.headers as unknown as Headers };
  };
  const describeApp = async (): Promise<Json> => (await call('GET', '/v1/db/app')).json;
  const keys = async (): Promise<string[]> => {
    const r = await call('POST', '/v1/db/app/query', { sql: 'SELECT k FROM kv ORDER BY k' });
    return r.status === 200 ? (r.json.results[0].rows as string[][]).map((row) => row[0]!) : [];
  };

  function startWorker(vars: Record<string, string> = {}): Promise<Unstable_DevWorker> {
    return unstable_dev(join(WORKER_DIR, 'src/index.ts'), {
      config: join(WORKER_DIR, 'wrangler.toml'),
      persistTo: join(t.dir, 'worker-state'),
      logLevel: 'none',
      vars: {
        LEASE_URL: `etcd://${etcd.url.replace('http://', '')}/worker-lease`,
        PRIMARY_URL: '', // wrangler.toml's default is unset: only the lease names the primary
        ...vars,
        DATABASES: 'app',
        ALLOW_NO_AUTH: 'true',
        READ_WAIT_MS: '2000',
        WRITE_WAIT_MS: '15000',
        HEARTBEAT_TIMEOUT_MS: '3000',
        // The alarm re-reads the lease record: how a holder change is seen while the old primary still streams.
        ALARM_INTERVAL_MS: '1000',
      },
      experimental: { disableExperimentalWarning: true },
    });
  }

  beforeAll(async () => {
    etcd = await startEtcd();
    store = new LeaseStore({ endpoint: etcd.url, prefix: 'worker-lease' });
    p1 = await LeasedPrimary.start(t.dir, 'p1', store);
    p2 = await LeasedPrimary.start(t.dir, 'p2', store);
    worker = await startWorker();
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    await p1?.close();
    await p2?.close();
    await etcd?.stop();
    t.cleanup();
  });

  it('follows the first holder: its data, its URL and epoch in /describe, writes forwarded to it', async () => {
    const e1 = await p1.take();
    await p1.createDb('app');
    expect((await p1.exec('app', "INSERT INTO kv VALUES ('a', 'from-p1')")).status).toBe(200);
    await waitFor(async () => (await keys()).includes('a'), 'the Worker to replicate p1', 30_000, 200);
    expect(await describeApp()).toMatchObject({ primary: p1.url, epoch: e1, lease: { highestEpoch: e1, lastError: null } });
    const w = await call('POST', '/v1/db/app/exec', { sql: "INSERT INTO kv VALUES ('w1', 'via-worker')" });
    expect(w.status, JSON.stringify(w.json)).toBe(200);
    expect(w.headers.get('edgelite-applied')).toBe('true');
    expect(await p1.rows('app', "SELECT v FROM kv WHERE k = 'w1'")).toEqual([['via-worker']]);
  }, 60_000);

  it('follows the second holder without a restart once the first resigns, and forwards writes there', async () => {
    await p1.resign();
    const e2 = await p2.take();
    expect(e2).toBeGreaterThan(p1.epoch);
    await p2.createDb('app');
    expect((await p2.exec('app', "INSERT INTO kv VALUES ('b', 'from-p2')")).status).toBe(200);
    // A write now goes to p2, whether the Worker already re-read the lease or p1 refuses it first
    // (503 NOT_PRIMARY, not applied: re-read, then sent once to the new holder).
    const w = await call('POST', '/v1/db/app/exec', { sql: "INSERT INTO kv VALUES ('w2', 'via-worker')" });
    expect(w.status, JSON.stringify(w.json)).toBe(200);
    expect(w.headers.get('edgelite-applied')).toBe('true');
    expect(await p2.rows('app', "SELECT k FROM kv ORDER BY k")).toEqual([['b'], ['w2']]);
    expect(await p1.rows('app', "SELECT k FROM kv ORDER BY k")).toEqual([['a'], ['w1']]);
    // The Worker serves p2's database now (p2's is a database of its own: a snapshot of it replaced p1's).
    await waitFor(async () => JSON.stringify(await keys()) === JSON.stringify(['b', 'w2']), "the Worker to serve p2's data", 30_000, 200);
    const d = await describeApp();
    expect(d).toMatchObject({ primary: p2.url, epoch: e2, stream: 'streaming', lease: { highestEpoch: e2 } });
    expect(d.lease.switches).toBeGreaterThanOrEqual(1);
    // And it keeps following p2's stream.
    expect((await p2.exec('app', "INSERT INTO kv VALUES ('c', 'from-p2')")).status).toBe(200);
    await waitFor(async () => (await keys()).includes('c'), "the Worker to stream p2's next write", 30_000, 200);
  }, 90_000);

  it("refuses a stream whose epoch is older than one it has seen, and keeps the newer holder's data", async () => {
    const e2 = p2.epoch;
    await p2.resign();
    // A record naming p1's URL under a new epoch: p1 still serves as epoch e1 (it never learned), so its
    // stream says e1, older than the epochs the Worker has seen.
    const r = await store.campaign({ node: 'p1-again', url: p1.url, ttlMs: TEST_LEASE_TTL_MS, since: Date.now() });
    if (!r.won) throw new Error('the lease should be vacant');
    try {
      const d = await waitFor(async () => {
        const x = await describeApp();
        return x.primary === p1.url && /STALE_PRIMARY: refused the stream/.test(String(x.lastError)) ? x : null;
      }, "the Worker to refuse p1's stale stream", 30_000, 200);
      expect(d.lastError).toContain(`its epoch ${p1.epoch} is older than epoch ${r.epoch} already seen`);
      expect(d).toMatchObject({ epoch: r.epoch, lease: { highestEpoch: r.epoch } });
      expect(r.epoch).toBeGreaterThan(e2);
      // Nothing of p1's database was applied: the Worker still serves what it had from p2.
      expect(await keys()).toEqual(['b', 'c', 'w2']);
      // A write is refused by the stale primary with its NOT_PRIMARY (not applied, nowhere else to send it).
      const w = await call('POST', '/v1/db/app/exec', { sql: "INSERT INTO kv VALUES ('w3', 'x')" });
      expect(w.status).toBe(503);
      expect(w.json.error).toMatchObject({ code: 'NOT_PRIMARY', details: { outcome: 'not-applied' } });
      expect(await p1.rows('app', "SELECT k FROM kv ORDER BY k")).toEqual([['a'], ['w1']]);
    } finally {
      await store.resign(r.epoch, r.leaseId);
    }
  }, 60_000);

  it('remembers the highest epoch across a restart: the stale primary at PRIMARY_URL is refused before the lease is read', async () => {
    const highest = (await describeApp()).lease.highestEpoch as number;
    expect(highest).toBeGreaterThan(p2.epoch);
    // Restarted from its stored pages, with the lease vacant and PRIMARY_URL naming p1 (still epoch e1).
    await worker.stop();
    worker = await startWorker({ PRIMARY_URL: p1.url });
    const d = await waitFor(async () => {
      const x = await describeApp();
      return /STALE_PRIMARY: refused the stream/.test(String(x.lastError)) ? x : null;
    }, "the restarted Worker to refuse p1's stale stream", 30_000, 200);
    expect(d).toMatchObject({ primary: p1.url, epoch: null, bootedFrom: 'storage', lease: { highestEpoch: highest } });
    expect(d.lastError).toContain(`its epoch ${p1.epoch} is older than epoch ${highest} already seen`);
    expect(await keys()).toEqual(['b', 'c', 'w2']);
  }, 60_000);
});
