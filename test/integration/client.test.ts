/**
 * The client library (`edgelite/client`) against a real primary and two real replicas in this process,
 * over loopback HTTP: round trips with blobs and batches, typed errors, failover, sessions that never
 * read backwards when they fail over to a lagging replica, the nearest replica chosen by measured RTT
 * (through a delaying TCP proxy written here), and writes never resent once they may have arrived.
 */
import { createServer as createHttpServer } from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { connect, type Client } from '../../shared/client.ts';
import { certainlyNotSent } from '../../shared/client-http.ts';
import { BACKOFF_MIN_MS, ReplicaSet } from '../../shared/client-replicas.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { silentLogger } from '../../shared/log.ts';
import { decodeToken } from '../../shared/token.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { tempDir, stopsAfterEach, rejectedEdgelite } from '../helpers.ts';
import { FaultProxy } from '../kit/proxy.ts';
import { waitFor } from '../kit/wait.ts';

const DB = 'app';
/** READ_WAIT_MS: how long the replicas here hold a read for a token before REPLICA_BEHIND. */
const READ_WAIT_MS = 1500;

const stops = stopsAfterEach();

interface Cluster {
  primary: PrimaryHandle;
  a: ReplicaHandle;
  b: ReplicaHandle;
}

async function cluster(): Promise<Cluster> {
  const t = tempDir('client');
  stops.push(t.cleanup);
  const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
  stops.push(() => primary.close());
  await fetch(`${primary.url}/v1/db/${DB}`, { method: 'PUT' });
  await rawExec(primary.url, 'CREATE TABLE kv (k TEXT PRIMARY KEY, v)');
  const replica = async (name: string) => {
    const argv = ['--primary', primary.url, '--data', join(t.dir, name), '--listen', '127.0.0.1:0', '--read-wait-ms', String(READ_WAIT_MS)];
    const r = await startReplica(parseReplicaConfig(argv, {}), silentLogger);
    let closed = false;
    const close = r.close;
    r.close = async () => {
      if (closed) return;
      closed = true;
      await close();
    };
    stops.push(() => r.close());
    return r;
  };
  const a = await replica('a');
  const b = await replica('b');
  const want = primary.store.get(DB)!.position.txid;
  await waitFor(() => [a, b].every((r) => (r.store.get(DB)?.position?.txid ?? -1) >= want), 'replicas bootstrapped');
  return { primary, a, b };
}

async function rawExec(url: string, sql: string): Promise<void> {
  const res = await fetch(`${url}/v1/db/${DB}/exec`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql }) });
  expect(res.status, await res.clone().text()).toBe(200);
}

async function rawCount(url: string, table = 'kv'): Promise<number> {
  const res = await fetch(`${url}/v1/db/${DB}/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: `SELECT count(*) FROM ${table}` }) });
  const body = (await res.json()) as { results: Array<{ rows: number[][] }> };
  return body.results[0]!.rows[0]![0]!;
}

function client(replicas: string[], extra: Partial<Parameters<typeof connect>[0]> = {}): Client {
  const c = connect({ replicas, probeIntervalMs: 0, ...extra });
  stops.push(() => c.close());
  return c;
}


/**
 * proxyTo puts the kit's fault proxy in front of `port`: each chunk waits `delayMs` in each direction
 * (a distant replica), or with `dropResponses` the request goes through but the connection is ended as
 * the answer comes back (a network failure after the server has acted).
 */
async function proxyTo(port: number, o: { delayMs?: number; dropResponses?: boolean }): Promise<FaultProxy> {
  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port } });
  stops.push(() => proxy.close());
  if (o.delayMs) for (const d of ['up', 'down'] as const) proxy.setDelay(d, o.delayMs);
  if (o.dropResponses) proxy.addRule({ direction: 'down', truncateAt: 0 });
  return proxy;
}

/** unusedPort is a loopback port nothing listens on (connections are refused). */
async function unusedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

describe('edgelite/client round trips', () => {
  it('writes and reads through replicas: params, blobs, RETURNING, batches in one transaction', async () => {
    const { primary, a, b } = await cluster();
    const c = client([a.url, b.url]);
    const s = c.session(DB);
    const blob = new Uint8Array([0, 1, 2, 250, 255, 128, 7]);
    const w = await s.exec('INSERT INTO kv VALUES (?, ?)', ['blob', blob]);
    expect(w).toMatchObject({ changes: 1, lastInsertRowid: 1, url: a.url });
    expect(decodeToken(w.token)).toMatchObject({ db: DB, txid: primary.store.get(DB)!.position.txid });
    expect(s.token).toBe(w.token);

    const r = await s.query('SELECT k, v, typeof(v) FROM kv WHERE k = :k', { k: 'blob' });
    expect(r.columns).toEqual(['k', 'v', 'typeof(v)']);
    expect(r.rows[0]![1]).toBeInstanceOf(Uint8Array);
    expect(Array.from(r.rows[0]![1] as Uint8Array)).toEqual(Array.from(blob));
    expect(r.rows[0]![2]).toBe('blob');
    expect(r).toMatchObject({ servedBy: 'replica', url: a.url, txid: decodeToken(w.token).txid });

    const ret = await s.exec("INSERT INTO kv VALUES ('n', 42) RETURNING k, v * 2", []);
    expect(ret.rows).toEqual([['n', 84]]);
    const batch = await s.batch(['INSERT INTO kv VALUES (\'x\', 1)', { sql: 'UPDATE kv SET v = v + ? WHERE k = ?', params: [10, 'x'] }, { sql: 'SELECT 1' }]);
    expect(batch.results.map((x) => x.changes)).toEqual([1, 1, 0]);
    expect(decodeToken(batch.token).txid).toBeGreaterThan(decodeToken(ret.token).txid);

    // One transaction: the second statement fails, so the first is not applied either.
    const err = await rejectedEdgelite(s.batch([{ sql: "INSERT INTO kv VALUES ('y', 1)" }, { sql: "INSERT INTO kv VALUES ('x', 2)" }]));
    expect(err.code).toBe('CONSTRAINT_VIOLATION');
    expect(await rawCount(primary.url)).toBe(3);

    const many = await s.queryMany(['SELECT count(*) FROM kv', { sql: 'SELECT v FROM kv WHERE k = ?', params: ['x'] }]);
    expect(many.results.map((x) => x.rows)).toEqual([[[3]], [[11]]]);
    expect(many.txid).toBe(decodeToken(batch.token).txid);
  });

  it('hands a bookmark to another session, which reads the write on another replica', async () => {
    const { a, b } = await cluster();
    const writer = client([a.url]).session(DB);
    const reader = client([b.url]);
    for (let i = 0; i < 20; i++) {
      const w = await writer.exec('INSERT INTO kv VALUES (?, ?)', [`k${i}`, i]);
      const r = await reader.session(DB, { token: w.token }).query('SELECT v FROM kv WHERE k = ?', [`k${i}`]);
      expect(r.rows).toEqual([[i]]);
      expect(r.url).toBe(b.url);
      expect(r.txid).toBeGreaterThanOrEqual(decodeToken(w.token).txid);
    }
    const set = `${writer.token!.replace(`.${DB}`, '.other')},${writer.token!}`;
    expect(reader.session(DB, { token: set }).token).toBe(writer.token);
  });

  it('surfaces typed errors with the server code, and checks its own input', async () => {
    const { a } = await cluster();
    const c = client([a.url]);
    const s = c.session(DB);
    expect((await rejectedEdgelite(s.query('SELEKT 1'))).code).toBe('SQL_ERROR');
    expect((await rejectedEdgelite(s.query("INSERT INTO kv VALUES ('q', 1)"))).code).toBe('READ_ONLY');
    expect((await rejectedEdgelite(s.exec('INSERT INTO nope VALUES (1)'))).code).toBe('SQL_ERROR');
    const missing = await rejectedEdgelite(c.query('missing', 'SELECT 1'));
    expect(missing.code).toBe('DATABASE_NOT_FOUND');
    expect(missing.details).toMatchObject({ url: a.url, status: 404 });
    await s.exec("INSERT INTO kv VALUES ('u', 1)");
    expect((await rejectedEdgelite(s.exec("INSERT INTO kv VALUES ('u', 2)"))).code).toBe('CONSTRAINT_VIOLATION');

    expect(() => c.session('../etc')).toThrow(expect.objectContaining({ code: 'INVALID_DATABASE_NAME' }));
    expect(() => c.session(DB, { token: s.token!.replace(`.${DB}`, '.other') })).toThrow(expect.objectContaining({ code: 'TOKEN_DATABASE_MISMATCH' }));
    expect(() => c.session(DB, { token: 'nonsense' })).toThrow(expect.objectContaining({ code: 'INVALID_TOKEN' }));
    expect(() => c.session(DB, { consistency: { boundedMs: -1 } })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    expect((await s.query('SELECT ?', [2n ** 60n])).rows).toEqual([[String(2n ** 60n)]]); // exact since issue 18 (README.md#http-api)
    expect((await rejectedEdgelite(s.query('SELECT ?', [2n ** 63n]))).code).toBe('BAD_REQUEST');
    expect(() => connect({ replicas: [a.url], replica: 'x' } as never)).toThrow(/unknown option "replica"; did you mean "replicas"/);
    expect(() => connect({ replicas: ['ftp://x'] })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    expect(() => connect({ replicas: [a.url], writesTo: 'primary' })).toThrow(/needs the "primary" URL/);

    const created = await c.createDatabase('tenant-1');
    expect(created.created).toBe(true);
    expect(decodeToken(created.token!).db).toBe('tenant-1');
    expect((await c.createDatabase('tenant-1')).created).toBe(false);

    c.close();
    expect((await rejectedEdgelite(s.query('SELECT 1'))).code).toBe('UNAVAILABLE');
  });
});

describe('edgelite/client failover', () => {
  it('keeps a session reading and writing on the other replica when one stops mid-session', async () => {
    const { a, b } = await cluster();
    const c = client([a.url, b.url]);
    const s = c.session(DB);
    for (let i = 0; i < 5; i++) await s.exec('INSERT INTO kv VALUES (?, ?)', [`before${i}`, i]);
    expect((await s.query('SELECT count(*) FROM kv')).url).toBe(a.url);

    await a.close();
    for (let i = 0; i < 5; i++) {
      const r = await s.query('SELECT count(*) FROM kv');
      expect(r).toMatchObject({ url: b.url, rows: [[5]] });
    }
    const status = c.replicas();
    expect(status[0]).toMatchObject({ url: a.url, healthy: false });
    expect(status[0]!.lastError).toMatch(/ECONNREFUSED|fetch failed/);
    expect(status[1]).toMatchObject({ url: b.url, healthy: true });
    // The refused connection proves the write never left, so it may go to B.
    const w = await s.exec("INSERT INTO kv VALUES ('after', 1)");
    expect(w.url).toBe(b.url);
    expect((await s.query('SELECT count(*) FROM kv')).rows).toEqual([[6]]);
  });

  it('never reads backwards when it fails over to a replica that is behind', async () => {
    const { a, b } = await cluster();
    const c = client([a.url, b.url]);
    const s = c.session(DB);
    await s.exec("INSERT INTO kv VALUES ('seed', 0)");
    await waitFor(() => b.store.get(DB)!.position!.txid === a.store.get(DB)!.position!.txid, 'B caught up');

    await b.follower.stop();
    for (let i = 0; i < 5; i++) await s.exec('INSERT INTO kv VALUES (?, ?)', [`lag${i}`, i]);
    const onA = await s.query('SELECT count(*) FROM kv');
    expect(onA).toMatchObject({ url: a.url, rows: [[6]] });
    const seen = onA.txid!;
    const bTxid = b.store.get(DB)!.position!.txid;
    expect(bTxid).toBeLessThan(seen);

    await a.close();
    // Control: B really is behind, and an eventual read there goes backwards.
    const eventual = await c.session(DB, { consistency: 'eventual' }).query('SELECT count(*) FROM kv');
    expect(eventual).toMatchObject({ url: b.url, txid: bTxid, rows: [[1]] });

    // The session's read waits at B for its position, then fails; it never returns the older state.
    const behind = await rejectedEdgelite(s.query('SELECT count(*) FROM kv'));
    expect(behind.code).toBe('REPLICA_BEHIND');
    // A bounded read is served on lag alone by the replica; the client refuses the older answer.
    const bounded = c.session(DB, { consistency: { boundedMs: 600_000 }, token: s.token });
    const refused = await rejectedEdgelite(bounded.query('SELECT count(*) FROM kv'));
    expect(refused.code).toBe('REPLICA_BEHIND');
    expect(refused.details).toMatchObject({ wantTxid: seen, haveTxid: bTxid });

    // Once B catches up during the wait, the same read returns the newer state.
    const pending = s.query('SELECT count(*) FROM kv');
    await new Promise((r) => setTimeout(r, 100));
    b.follower.start();
    const after = await pending;
    expect(after.url).toBe(b.url);
    expect(after.txid).toBeGreaterThanOrEqual(seen);
    expect(after.rows).toEqual([[6]]);
  });

  it('reads go on to the next replica after a 503, and after a connection cut mid-request', async () => {
    const { a, b } = await cluster();
    const sick = createHttpServer((_req, res) => {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'UNAVAILABLE', message: 'shutting down' } }));
    });
    await new Promise<void>((resolve) => sick.listen(0, '127.0.0.1', resolve));
    stops.push(() => new Promise<void>((resolve) => sick.close(() => resolve())));
    const sickUrl = `http://127.0.0.1:${(sick.address() as net.AddressInfo).port}`;
    const cut = await proxyTo(a.port, { dropResponses: true });

    const c = client([sickUrl, cut.url, b.url]);
    const r = await c.query(DB, 'SELECT count(*) FROM kv');
    expect(r.url).toBe(b.url);
    expect(c.replicas().map((x) => x.healthy)).toEqual([false, false, true]);
    expect(c.replicas()[0]!.lastError).toMatch(/UNAVAILABLE: shutting down/);
  });
});

describe('edgelite/client writes are never sent twice', () => {
  it('moves on after a refused connection, which proves the write never left', async () => {
    const { primary, a } = await cluster();
    const dead = `http://127.0.0.1:${await unusedPort()}`;
    const c = client([dead, a.url]);
    const w = await c.exec(DB, "INSERT INTO kv VALUES ('once', 1)");
    expect(w.url).toBe(a.url);
    expect(c.replicas()[0]).toMatchObject({ healthy: false });
    expect(await rawCount(primary.url)).toBe(1);
  });

  it('does not resend a write whose connection was cut after it was sent', async () => {
    const { primary, a, b } = await cluster();
    // No key: a resent insert would add a second row rather than fail.
    await rawExec(primary.url, 'CREATE TABLE events (n)');
    const cut = await proxyTo(a.port, { dropResponses: true });
    const c = client([cut.url, b.url]);
    const err = await rejectedEdgelite(c.exec(DB, 'INSERT INTO events VALUES (1)'));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.details).toMatchObject({ url: cut.url, outcome: 'unknown' });
    // A applied it (the proxy passed the request on); B was not asked to apply it again.
    expect(await rawCount(primary.url, 'events')).toBe(1);
  });

  it('sends writes straight to the primary with writesTo: primary', async () => {
    const { primary, a } = await cluster();
    const c = client([a.url], { primary: primary.url, writesTo: 'primary' });
    const s = c.session(DB);
    const w = await s.exec("INSERT INTO kv VALUES ('p', 1)");
    expect(w.url).toBe(primary.url);
    expect((await s.query('SELECT v FROM kv WHERE k = ?', ['p'])).rows).toEqual([[1]]);
  });
});

describe('edgelite/client replica choice', () => {
  it('prefers the replica with the lower measured round-trip time', async () => {
    const { a, b } = await cluster();
    const far = await proxyTo(a.port, { delayMs: 40 });
    // The distant one is listed first: only measurement can move traffic off it.
    const c = client([far.url, b.url]);
    const s = c.session(DB);
    expect((await s.query('SELECT 1')).url).toBe(far.url);
    for (let i = 0; i < 3; i++) await c.probe();
    const [farStatus, nearStatus] = c.replicas();
    expect(farStatus!.rttMs!).toBeGreaterThan(nearStatus!.rttMs!);
    for (let i = 0; i < 10; i++) expect((await s.query('SELECT count(*) FROM kv')).url).toBe(b.url);
  });

  it('probes in the background and marks a stopped replica unhealthy without any request', async () => {
    const { a, b } = await cluster();
    const c = client([a.url, b.url], { probeIntervalMs: 50 });
    await waitFor(() => c.replicas().every((r) => r.rttMs !== null), 'first probes');
    await b.close();
    await waitFor(() => c.replicas()[1]!.healthy === false, 'B marked unhealthy');
    expect(c.replicas()[0]!.healthy).toBe(true);
    expect((await c.query(DB, 'SELECT 1')).url).toBe(a.url);
  });
});

describe('ReplicaSet (the chooser)', () => {
  const noFetch = () => Promise.reject(new Error('no network in this test'));

  it('orders healthy replicas by RTT, unmeasured ones after, unhealthy ones last (soonest back first)', () => {
    const set = new ReplicaSet(['http://a', 'http://b', 'http://c', 'http://d'], noFetch);
    expect(set.order(0)).toEqual(['http://a', 'http://b', 'http://c', 'http://d']);
    set.succeeded('http://c', 5, false);
    set.succeeded('http://b', 1, false);
    expect(set.order(0)).toEqual(['http://b', 'http://c', 'http://a', 'http://d']);
    set.failed('http://b', 'boom', 0);
    set.failed('http://a', 'boom', 0);
    set.failed('http://a', 'boom again', 0);
    expect(set.order(1)).toEqual(['http://c', 'http://d', 'http://b', 'http://a']);
    expect(set.status().map((s) => s.healthy)).toEqual([false, false, true, true]);
    expect(set.status()[0]!.lastError).toBe('boom again');
    // Back-off doubles: b is back after BACKOFF_MIN_MS, a (two failures) only after twice that.
    expect(set.order(BACKOFF_MIN_MS)).toEqual(['http://b', 'http://c', 'http://d', 'http://a']);
    expect(set.order(2 * BACKOFF_MIN_MS)[3]).toBe('http://d');
    // Tried again after its back-off, b is reported healthy only once it answers.
    expect(set.status()[1]!.healthy).toBe(false);
    set.succeeded('http://b', 1);
    expect(set.status()[1]).toMatchObject({ healthy: true, rttMs: 1 });
  });

  it('keeps the replica in use unless another is clearly nearer', () => {
    const set = new ReplicaSet(['http://a', 'http://b'], noFetch);
    set.succeeded('http://b', 1.0, false);
    set.succeeded('http://a', 1.5);
    expect(set.order(0)[0]).toBe('http://a');
    for (let i = 0; i < 20; i++) set.succeeded('http://a', 50, false);
    expect(set.order(0)[0]).toBe('http://b');
  });

  it('calls a failure unsent only when the runtime names a connection error', () => {
    const fetchFailed = (cause: unknown) => Object.assign(new TypeError('fetch failed'), { cause });
    expect(certainlyNotSent(fetchFailed(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })))).toBe(true);
    expect(certainlyNotSent(fetchFailed(new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })])))).toBe(true);
    expect(certainlyNotSent(fetchFailed(Object.assign(new Error('x'), { code: 'UND_ERR_SOCKET' })))).toBe(false);
    expect(certainlyNotSent(fetchFailed(Object.assign(new Error('x'), { code: 'ECONNRESET' })))).toBe(false);
    expect(certainlyNotSent(new TypeError('Failed to fetch'))).toBe(false);
  });
});
