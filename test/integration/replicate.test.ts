/**
 * A primary and a replica in one process over real loopback HTTP: bootstrap by snapshot, follow the
 * stream, forwarded writes with read-your-writes, and equal checksums at the end.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AUTH_DISABLED, parseAuthConfig } from '../../shared/auth.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { tempDir, stopsAfterEach } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });
  return { status: res.status, json: await res.json(), headers: res.headers };
}

describe('replication in one process', () => {
  const stops = stopsAfterEach();

  async function setup(): Promise<{ primary: PrimaryHandle; replica: ReplicaHandle }> {
    const t = tempDir('replicate');
    stops.push(t.cleanup);
    const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
    stops.push(() => primary.close());
    await fetch(`${primary.url}/v1/db/app`, { method: 'PUT' });
    await post(`${primary.url}/v1/db/app/exec`, { sql: 'CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)' });
    await post(`${primary.url}/v1/db/app/exec`, { sql: "INSERT INTO kv VALUES ('a', '1')" });
    const replica = await startReplica(parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0'], {}), silentLogger);
    stops.push(() => replica.close());
    return { primary, replica };
  }

  it('bootstraps, follows, and converges to the primary checksum', async () => {
    const { primary, replica } = await setup();
    await waitFor(() => replica.store.get('app')?.position?.txid === primary.store.get('app')!.position.txid, 'bootstrap');
    for (let i = 0; i < 200; i++) {
      await post(`${primary.url}/v1/db/app/exec`, { sql: 'INSERT INTO kv VALUES (?, ?)', params: [`k${i}`, 'x'.repeat(i * 10)] });
    }
    const want = primary.store.get('app')!.position;
    await waitFor(() => replica.store.get('app')?.position?.txid === want.txid, 'catch up');
    expect(replica.store.get('app')!.position!.checksum).toBe(want.checksum);
    const r = await post(`${replica.url}/v1/db/app/query`, { sql: 'SELECT count(*) AS n FROM kv' });
    expect(r.status).toBe(200);
    expect(r.json.results[0].rows[0][0]).toBe(201);
    expect(r.headers.get('edgelite-served-by')).toBe('replica');
  });

  it('forwards writes and reads them back with the token', async () => {
    const { replica } = await setup();
    await waitFor(() => replica.store.get('app')?.position, 'bootstrap');
    for (let i = 0; i < 50; i++) {
      const w = await post(`${replica.url}/v1/db/app/exec`, { sql: 'INSERT INTO kv VALUES (?, ?)', params: [`w${i}`, String(i)] });
      expect(w.status, JSON.stringify(w.json)).toBe(200);
      const token = w.headers.get('edgelite-token')!;
      expect(token).toBe(w.json.token);
      const r = await post(`${replica.url}/v1/db/app/query`, { sql: 'SELECT v FROM kv WHERE k = ?', params: [`w${i}`] }, { 'Edgelite-Token': token });
      expect(r.json.results[0].rows).toEqual([[String(i)]]);
    }
  });
});

describe('msgpack results', () => {
  it('answers query and exec in msgpack when asked, blobs binary', async () => {
    const t = tempDir('msgpack');
    const primary = await startPrimary({ ...parsePrimaryConfig(['--data', t.dir, '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
    try {
      await fetch(`${primary.url}/v1/db/m`, { method: 'PUT' });
      await post(`${primary.url}/v1/db/m/exec`, { statements: [{ sql: 'CREATE TABLE b (x BLOB)' }, { sql: 'INSERT INTO b VALUES (?)', params: [{ base64: 'AAEC/w==' }] }] });
      const res = await fetch(`${primary.url}/v1/db/m/query`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/msgpack' },
        body: JSON.stringify({ sql: 'SELECT x FROM b' }),
      });
      expect(res.headers.get('content-type')).toBe('application/msgpack');
      const { unpack } = await import('msgpackr');
      const body = unpack(new Uint8Array(await res.arrayBuffer())) as { results: Array<{ rows: Uint8Array[][] }> };
      expect([...body.results[0]!.rows[0]![0]!]).toEqual([0, 1, 2, 255]);
    } finally {
      await primary.close();
      t.cleanup();
    }
  });
});

describe('replica read safety: transaction control', () => {
  it('refuses BEGIN on a replica so the shared read connection never pins an old snapshot', async () => {
    const t = tempDir('begin');
    const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
    const replica = await startReplica(parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0'], {}), silentLogger);
    try {
      await fetch(`${primary.url}/v1/db/b`, { method: 'PUT' });
      await post(`${primary.url}/v1/db/b/exec`, { sql: 'CREATE TABLE x (v)' });
      await waitFor(() => replica.store.get('b')?.position?.txid === primary.store.get('b')!.position.txid, 'bootstrap');
      for (const sql of ['BEGIN', '/* hi */ begin deferred', 'SAVEPOINT a', 'COMMIT']) {
        const r = await post(`${replica.url}/v1/db/b/query`, { sql });
        expect(r.status, sql).toBe(400);
        expect(r.json.error.code).toBe('BAD_REQUEST');
      }
      const w = await post(`${replica.url}/v1/db/b/exec`, { sql: 'INSERT INTO x VALUES (1)' });
      const r = await post(`${replica.url}/v1/db/b/query`, { sql: 'SELECT count(*) FROM x' }, { 'Edgelite-Token': w.json.token });
      expect(r.json.results[0].rows[0][0]).toBe(1);
    } finally {
      await replica.close();
      await primary.close();
      t.cleanup();
    }
  });
});

describe('delta change sets on the stream', () => {
  it('ships a single-row update in far less than a page, and replicas rebuild it exactly', async () => {
    const t = tempDir('delta');
    const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
    const replica = await startReplica(parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0'], {}), silentLogger);
    const { FrameDecoder } = await import('../../shared/frames.ts');
    const { isDeltaChangeSet } = await import('../../shared/changeset-delta.ts');
    const abort = new AbortController();
    try {
      await fetch(`${primary.url}/v1/db/d`, { method: 'PUT' });
      await post(`${primary.url}/v1/db/d/exec`, { sql: 'CREATE TABLE kv (id INTEGER PRIMARY KEY, v TEXT)' });
      await post(`${primary.url}/v1/db/d/exec`, { sql: "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) INSERT INTO kv SELECT i, 'value-' || i FROM n" });
      const db = primary.store.get('d')!;
      const p = db.position;
      const res = await fetch(`${primary.url}/v1/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ databases: ['d'], deltas: true, positions: { d: { generation: p.generation, txid: p.txid, checksum: p.checksum.toString(16).padStart(16, '0') } } }),
        signal: abort.signal,
      });
      const reader = res.body!.getReader();
      const decoder = new FrameDecoder();
      const sizes: number[] = [];
      let deltas = 0;
      const collect = (async () => {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return;
          for (const f of decoder.push(value)) {
            if (f.type !== 'changeset') continue;
            sizes.push(f.data.length);
            if (isDeltaChangeSet(f.data)) deltas++;
          }
          if (sizes.length >= 20) return;
        }
      })();
      for (let i = 0; i < 20; i++) await post(`${primary.url}/v1/db/d/exec`, { sql: 'UPDATE kv SET v = ? WHERE id = ?', params: [`new-${i}`, 1 + i * 499] });
      await collect;
      const median = [...sizes].sort((a, b) => a - b)[10]!;
      expect(deltas).toBe(20);
      expect(median).toBeLessThan(db.pageSize * 0.25);
      console.log(`single-row update: median ${median} bytes per change set (page size ${db.pageSize})`);
      const want = db.position;
      await waitFor(() => replica.store.get('d')?.position?.txid === want.txid, 'replica catches up');
      expect(replica.store.get('d')!.position!.checksum).toBe(want.checksum);
    } finally {
      abort.abort();
      await replica.close();
      await primary.close();
      t.cleanup();
    }
  });
});

describe('HTTP details', () => {
  it('answers CORS preflights without auth and exposes position headers', async () => {
    const t = tempDir('cors');
    const primary = await startPrimary({ ...parsePrimaryConfig(['--data', t.dir, '--listen', '127.0.0.1:0'], {}), auth: parseAuthConfig('a-very-long-secret-token', undefined) }, silentLogger);
    try {
      const pre = await fetch(`${primary.url}/v1/db/x/query`, {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, edgelite-token, content-type' },
      });
      expect(pre.status).toBeLessThan(300);
      expect(pre.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('edgelite-token');
      const health = await fetch(`${primary.url}/v1/health`, { headers: { origin: 'https://app.example' } });
      expect(health.headers.get('access-control-allow-origin')).toBe('*');
      expect(health.headers.get('access-control-expose-headers')).toContain('Edgelite-Token');
    } finally {
      await primary.close();
      t.cleanup();
    }
  });

  it('follows a listed database that is created after the replica started, and a token read waits for it', async () => {
    const t = tempDir('later');
    const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
    await fetch(`${primary.url}/v1/db/a`, { method: 'PUT' });
    const replica = await startReplica(parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0', '--databases', 'a,b'], {}), silentLogger);
    try {
      await waitFor(() => replica.store.get('a')?.position, 'a bootstraps although b does not exist');
      await fetch(`${primary.url}/v1/db/b`, { method: 'PUT' });
      const w = await post(`${primary.url}/v1/db/b/exec`, { sql: 'CREATE TABLE t (x)' });
      const r = await post(`${replica.url}/v1/db/b/query`, { sql: "SELECT name FROM sqlite_schema WHERE type = 'table'" }, { 'Edgelite-Token': w.json.token });
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      expect(r.json.results[0].rows).toEqual([['t']]);
    } finally {
      await replica.close();
      await primary.close();
      t.cleanup();
    }
  });
});
