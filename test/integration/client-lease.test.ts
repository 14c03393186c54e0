/**
 * The client library's `lease` option (README.md#client-library, README.md#high-availability) against a
 * real etcd and two real primaries, each holding the lease through a real LeaseStore.campaign and
 * LeaseKeeper (test/kit/lease-primaries.ts): writes go to the holder named in the lease record; when the
 * holder resigns and another takes the lease, a write refused with 503 NOT_PRIMARY (not applied) is sent
 * once to the new holder, waiting out a vacant lease; a write whose outcome is unknown is never resent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../../shared/client.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { LeaseStore } from '../../shared/lease.ts';
import { tempDir } from '../helpers.ts';
import { startEtcd, type Etcd } from '../kit/etcd.ts';
import { LeasedPrimary } from '../kit/lease-primaries.ts';
import { FaultProxy } from '../kit/proxy.ts';

const t = tempDir('client-lease');
let etcd: Etcd;
let p1: LeasedPrimary;
let p2: LeasedPrimary;
let leaseUrl: string;

beforeAll(async () => {
  etcd = await startEtcd();
  const store = new LeaseStore({ endpoint: etcd.url, prefix: 'client-lease' });
  leaseUrl = `etcd://${etcd.url.replace('http://', '')}/client-lease`;
  p1 = await LeasedPrimary.start(t.dir, 'p1', store);
  p2 = await LeasedPrimary.start(t.dir, 'p2', store);
}, 60_000);

afterAll(async () => {
  await p1?.close();
  await p2?.close();
  await etcd?.stop();
  t.cleanup();
});

const keys = async (p: LeasedPrimary) => (await p.rows('app', 'SELECT k FROM kv ORDER BY k')).map((r) => r[0]);

describe('client library with lease', () => {
  it('validates the option: an etcd:// URL, and writes go to the holder (not through replicas)', () => {
    const err = (o: Parameters<typeof connect>[0]) => {
      try {
        connect(o).close();
      } catch (e) {
        return e as EdgeliteError;
      }
      throw new Error('no error');
    };
    expect(err({ replicas: [], lease: 'http://127.0.0.1:2379/x' })).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('"lease" must be etcd://HOST:PORT/PREFIX') });
    expect(err({ replicas: ['http://127.0.0.1:1'], lease: 'etcd://127.0.0.1:2379/x', writesTo: 'replica' })).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('"lease" sends writes to the lease holder') });
    expect(err({ replicas: [], leas: 'etcd://h:1/x' } as never)).toMatchObject({ code: 'BAD_REQUEST', message: 'unknown option "leas"; did you mean "lease"?' });
  });

  it('writes to the holder, and after a failover resends a refused (not applied) write once to the new holder', async () => {
    await p1.take();
    const db = connect({ replicas: [], lease: leaseUrl, probeIntervalMs: 0 });
    try {
      expect((await db.createDatabase('app')).created).toBe(true);
      const s = db.session('app');
      await s.exec('CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)');
      const a = await s.exec("INSERT INTO kv VALUES ('a', '1')");
      expect(a.url).toBe(p1.url);
      const r = await s.query("SELECT v FROM kv WHERE k = 'a'"); // no replicas: reads go to the holder
      expect(r).toMatchObject({ rows: [['1']], url: p1.url });

      // The lease moves: p1 refuses with NOT_PRIMARY (not applied); the client reads the record and sends once to p2.
      await p1.resign();
      await p2.take();
      await p2.createDb('app');
      const b = await db.exec('app', "INSERT INTO kv VALUES ('b', '2')");
      expect(b.url).toBe(p2.url);
      expect(await keys(p2)).toEqual(['b']);
      expect(await keys(p1)).toEqual(['a']);

      // A vacant lease: p2 resigns and p1 takes it again only later; the refused write waits for the record
      // to name the next holder (within the request timeout) and goes there.
      await p2.resign();
      const retake = new Promise<void>((resolve, reject) => setTimeout(() => p1.take().then(() => resolve(), reject), 1000));
      const c = await db.exec('app', "INSERT INTO kv VALUES ('c', '3')");
      await retake;
      expect(c.url).toBe(p1.url);
      expect(await keys(p1)).toEqual(['a', 'c']);
      expect(await keys(p2)).toEqual(['b']);
    } finally {
      db.close();
    }
  }, 60_000);

  it('a write with no answer (outcome unknown) is never resent', async () => {
    // The holder (p1 from the test above) is reached through a proxy whose answers never come back.
    await p1.resign();
    const proxy = await FaultProxy.start({ target: p1.url });
    try {
      await p1.take(proxy.url);
      const db = connect({ replicas: [], lease: leaseUrl, probeIntervalMs: 0, requestTimeoutMs: 2000 });
      try {
        proxy.pause('down');
        const err = await db.exec('app', "INSERT INTO kv VALUES ('u', 'unknown')").then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(EdgeliteError);
        expect(err).toMatchObject({ code: 'UNAVAILABLE', details: { outcome: 'unknown', url: proxy.url } });
        // It reached p1 and was applied there, once; nothing was sent anywhere else.
        expect(proxy.count(/^POST \/v1\/db\/app\/exec/)).toBe(1);
        expect(await keys(p1)).toEqual(['a', 'c', 'u']);
        expect(await keys(p2)).toEqual(['b']);
      } finally {
        db.close();
      }
    } finally {
      await proxy.close();
      await p1.resign();
    }
  }, 60_000);

  it('an unreadable lease with no primary URL fails as not applied', async () => {
    const db = connect({ replicas: [], lease: 'etcd://127.0.0.1:1/none', probeIntervalMs: 0 });
    try {
      await expect(db.exec('app', 'SELECT 1')).rejects.toMatchObject({ code: 'UNAVAILABLE', details: { outcome: 'not-applied' }, message: expect.stringContaining('the lease record at etcd://127.0.0.1:1/none cannot be read') });
    } finally {
      db.close();
    }
  }, 30_000);
});
