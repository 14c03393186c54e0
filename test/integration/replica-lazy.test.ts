/**
 * Lazy replicas (`--lazy`, docs/ARCHITECTURE.md#many-databases) against a real primary over loopback HTTP: a database is
 * fetched on its first request (one snapshot however many requests ask at once), followed from then
 * on, evicted from disk under --max-databases (least recently used first) and fetched again on its
 * next use; an unknown database is a 404 that leaves nothing behind; a restart resumes what is on disk.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import type { Logger } from '../../shared/log.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { DEFAULT_MAX_DATABASES, parseReplicaConfig } from '../../replica/config.ts';
import { positionFilePath } from '../../replica/position-file.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { postJson, tempDir, stopsAfterEach } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

interface Cluster {
  primary: PrimaryHandle;
  replicaDir: string;
  start(flags?: string[]): Promise<{ replica: ReplicaHandle; logs: Array<Record<string, unknown>> }>;
}

const stops = stopsAfterEach();

/** cluster starts a primary with databases `names` (table kv, one row naming the database). */
async function cluster(names: string[]): Promise<Cluster> {
  const t = tempDir('lazy');
  stops.push(t.cleanup);
  const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
  stops.push(() => primary.close());
  for (const n of names) {
    await fetch(`${primary.url}/v1/db/${n}`, { method: 'PUT' });
    const w = await postJson(`${primary.url}/v1/db/${n}/exec`, { statements: [{ sql: 'CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)' }, { sql: 'INSERT INTO kv VALUES (?, ?)', params: ['name', n] }] });
    expect(w.status).toBe(200);
  }
  const replicaDir = join(t.dir, 'r');
  return {
    primary,
    replicaDir,
    async start(flags = ['--query-timeout-ms', '0']) {
      const logs: Array<Record<string, unknown>> = [];
      const logger: Logger = (e) => logs.push(e);
      const config = parseReplicaConfig(['--primary', primary.url, '--data', replicaDir, '--listen', '127.0.0.1:0', '--lazy', ...flags], {});
      const replica = await startReplica(config, logger);
      let closed = false;
      const close = async () => {
        if (closed) return;
        closed = true;
        await replica.close();
      };
      stops.push(close);
      return { replica: { ...replica, close }, logs };
    },
  };
}

async function rows(url: string, db: string): Promise<{ status: number; json: any }> {
  return postJson(`${url}/v1/db/${db}/query`, { sql: 'SELECT k, v FROM kv ORDER BY k' });
}

function snapshots(logs: Array<Record<string, unknown>>, db: string): number {
  return logs.filter((e) => e.msg === 'snapshot applied' && e.db === db).length;
}

/** caughtUp: the replica's copy of `db` is at the primary's position, checksum included. */
function caughtUp(c: Cluster, replica: ReplicaHandle, db: string): boolean {
  const want = c.primary.store.get(db)!.position;
  const have = replica.store.get(db)?.position;
  return !!have && have.txid === want.txid && have.checksum === want.checksum;
}

describe('lazy replica', () => {
  it('holds nothing at start, fetches a database on its first query, then follows it', async () => {
    const c = await cluster(['t1', 't2']);
    const { replica } = await c.start();
    expect(replica.store.names()).toEqual([]);
    const list = await (await fetch(`${replica.url}/v1/db`)).json();
    expect(list).toEqual({ databases: [] });
    // Absent lazy databases are not lag: health is green once the (empty) stream is up.
    await waitFor(async () => (await fetch(`${replica.url}/v1/health`)).status === 200, 'healthy with no database');

    const r = await rows(replica.url, 't1');
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json.results[0].rows).toEqual([['name', 't1']]);
    expect(existsSync(join(c.replicaDir, 't1.db'))).toBe(true);
    expect(existsSync(join(c.replicaDir, 't2.db'))).toBe(false);
    expect(replica.store.names()).toEqual(['t1']);

    for (let i = 0; i < 20; i++) await postJson(`${c.primary.url}/v1/db/t1/exec`, { sql: 'INSERT INTO kv VALUES (?, ?)', params: [`k${i}`, String(i)] });
    await waitFor(() => caughtUp(c, replica, 't1'), 't1 follows new writes');
    const after = await rows(replica.url, 't1');
    expect(after.json.results[0].rows).toHaveLength(21);
    expect((await fetch(`${replica.url}/v1/health`)).status).toBe(200);
  });

  it('GET /v1/db/{name} and exec fetch too; a write through the replica is read back with its token', async () => {
    const c = await cluster(['t1', 't2']);
    const { replica } = await c.start();
    const d = await (await fetch(`${replica.url}/v1/db/t1`)).json();
    expect(d).toMatchObject({ name: 't1', role: 'replica', txid: c.primary.store.get('t1')!.position.txid });
    const w = await postJson(`${replica.url}/v1/db/t2/exec`, { sql: "INSERT INTO kv VALUES ('w', '1')" });
    expect(w.status, JSON.stringify(w.json)).toBe(200);
    const res = await fetch(`${replica.url}/v1/db/t2/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'edgelite-token': w.json.token },
      body: JSON.stringify({ sql: "SELECT v FROM kv WHERE k = 'w'" }),
    });
    expect(res.headers.get('edgelite-served-by')).toBe('replica');
    expect((await res.json()).results[0].rows).toEqual([['1']]);
    expect(replica.store.names()).toEqual(['t1', 't2']);
  });

  it('a snapshot fetches the database too, and serves it at the replica\'s position; an unknown one is a 404', async () => {
    const c = await cluster(['t1']);
    const { replica } = await c.start();
    const res = await fetch(`${replica.url}/v1/db/t1/snapshot`);
    expect(res.status).toBe(200);
    const image = new Uint8Array(await res.arrayBuffer());
    const want = c.primary.store.get('t1')!.position;
    expect(res.headers.get('edgelite-txid')).toBe(String(want.txid));
    expect(DatabaseChecksum.fromFile(image).value).toBe(want.checksum);
    expect(replica.store.names()).toEqual(['t1']);
    const missing = await fetch(`${replica.url}/v1/db/nope/snapshot`);
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.code).toBe('DATABASE_NOT_FOUND');
  });

  it('answers 20 concurrent first queries of one database with one snapshot', async () => {
    const c = await cluster(['t1']);
    const { replica, logs } = await c.start();
    const all = await Promise.all(Array.from({ length: 20 }, () => rows(replica.url, 't1')));
    for (const r of all) {
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      expect(r.json.results[0].rows).toEqual([['name', 't1']]);
    }
    expect(snapshots(logs, 't1')).toBe(1);
    expect(logs.filter((e) => e.msg === 'database fetched on first use')).toHaveLength(1);
    expect(replica.lazy!.fetches).toBe(1);
  });

  it('evicts the least recently used database over --max-databases and fetches it again on its next use', async () => {
    const c = await cluster(['t1', 't2', 't3']);
    // The default query pool: eviction must make its processes forget the deleted file.
    const { replica, logs } = await c.start(['--max-databases', '2']);
    for (const db of ['t1', 't2', 't3']) expect((await rows(replica.url, db)).status).toBe(200);
    const t1 = join(c.replicaDir, 't1.db');
    await waitFor(() => !replica.store.get('t1') && !existsSync(t1), 't1 evicted');
    for (const f of [t1, `${t1}-wal`, `${t1}-shm`, positionFilePath(t1)]) expect(existsSync(f), f).toBe(false);
    expect(logs.filter((e) => e.msg === 'database evicted').map((e) => e.db)).toEqual(['t1']);
    expect(replica.store.names()).toEqual(['t2', 't3']);

    for (const db of ['t1', 't2', 't3']) await postJson(`${c.primary.url}/v1/db/${db}/exec`, { sql: "INSERT INTO kv VALUES ('later', ?)", params: [db] });
    await waitFor(() => caughtUp(c, replica, 't2') && caughtUp(c, replica, 't3'), 't2 and t3 follow');
    expect(existsSync(t1)).toBe(false);

    const again = await rows(replica.url, 't1');
    expect(again.status, JSON.stringify(again.json)).toBe(200);
    expect(again.json.results[0].rows).toEqual([['later', 't1'], ['name', 't1']]);
    expect(snapshots(logs, 't1')).toBe(2);
    // t2 is now the least recently used: it goes, t3 and t1 stay and follow.
    await waitFor(() => !replica.store.get('t2') && !existsSync(join(c.replicaDir, 't2.db')), 't2 evicted');
    await postJson(`${c.primary.url}/v1/db/t1/exec`, { sql: "INSERT INTO kv VALUES ('last', 't1')" });
    await waitFor(() => caughtUp(c, replica, 't1') && caughtUp(c, replica, 't3'), 't1 and t3 follow');
    expect(snapshots(logs, 't3')).toBe(1);
    expect(replica.store.names()).toEqual(['t1', 't3']);
  });

  it('with --on-behind primary, serves a first read at once (from the primary while it bootstraps)', async () => {
    const c = await cluster(['t1']);
    const { replica } = await c.start(['--query-timeout-ms', '0', '--on-behind', 'primary']);
    const res = await fetch(`${replica.url}/v1/db/t1/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: 'SELECT v FROM kv' }) });
    expect(res.status).toBe(200);
    expect(['primary', 'replica']).toContain(res.headers.get('edgelite-served-by'));
    expect((await res.json()).results[0].rows).toEqual([['t1']]);
    await waitFor(() => caughtUp(c, replica, 't1'), 't1 bootstrapped');
    const local = await fetch(`${replica.url}/v1/db/t1/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: 'SELECT v FROM kv' }) });
    expect(local.headers.get('edgelite-served-by')).toBe('replica');
  });

  it('answers 404 DATABASE_NOT_FOUND for a database the primary does not have, creating nothing', async () => {
    const c = await cluster(['t1']);
    const { replica } = await c.start();
    const q = await rows(replica.url, 'nope');
    expect(q.status).toBe(404);
    expect(q.json.error.code).toBe('DATABASE_NOT_FOUND');
    const g = await fetch(`${replica.url}/v1/db/nope`);
    expect(g.status).toBe(404);
    expect((await g.json()).error.code).toBe('DATABASE_NOT_FOUND');
    const w = await postJson(`${replica.url}/v1/db/nope/exec`, { sql: 'CREATE TABLE x (a)' });
    expect(w.status).toBe(404);
    expect(w.json.error.code).toBe('DATABASE_NOT_FOUND');
    expect(existsSync(join(c.replicaDir, 'nope.db'))).toBe(false);
    expect(replica.store.names()).toEqual([]);
    expect(replica.follower.databases).toEqual([]);
  });

  it('keeps its local databases across a restart and resumes them without a snapshot', async () => {
    const c = await cluster(['t1', 't2', 't3']);
    const first = await c.start();
    for (const db of ['t1', 't2']) expect((await rows(first.replica.url, db)).status).toBe(200);
    await waitFor(() => caughtUp(c, first.replica, 't1') && caughtUp(c, first.replica, 't2'), 'caught up');
    await first.replica.close();

    await postJson(`${c.primary.url}/v1/db/t1/exec`, { sql: "INSERT INTO kv VALUES ('while-down', 'x')" });
    const second = await c.start();
    expect(second.replica.store.names()).toEqual(['t1', 't2']);
    await waitFor(() => caughtUp(c, second.replica, 't1') && caughtUp(c, second.replica, 't2'), 'resumed');
    const r = await rows(second.replica.url, 't1');
    expect(r.json.results[0].rows).toEqual([['name', 't1'], ['while-down', 'x']]);
    expect(snapshots(second.logs, 't1') + snapshots(second.logs, 't2')).toBe(0);
    expect(existsSync(join(c.replicaDir, 't3.db'))).toBe(false);
  });

  it('evicts the least recently written databases beyond the limit at start', async () => {
    const c = await cluster(['t1', 't2', 't3']);
    const first = await c.start();
    for (const db of ['t1', 't2', 't3']) expect((await rows(first.replica.url, db)).status).toBe(200);
    await first.replica.close();
    const second = await c.start(['--query-timeout-ms', '0', '--max-databases', '1']);
    expect(second.replica.store.names()).toHaveLength(1);
    expect(second.logs.some((e) => e.msg === 'databases evicted at start')).toBe(true);
  });
});

describe('lazy replica config', () => {
  const base = ['--primary', 'http://127.0.0.1:1', '--data', '/tmp/x'];
  it('parses --lazy and --max-databases, and refuses combinations that mean nothing', () => {
    const lazy = parseReplicaConfig([...base, '--lazy'], {});
    expect(lazy).toMatchObject({ lazy: true, databases: [], maxDatabases: DEFAULT_MAX_DATABASES });
    expect(parseReplicaConfig([...base, '--lazy', '--max-databases', '7'], {}).maxDatabases).toBe(7);
    expect(parseReplicaConfig(base, { EDGELITE_LAZY: '1', EDGELITE_MAX_DATABASES: '3' })).toMatchObject({ lazy: true, maxDatabases: 3 });
    expect(parseReplicaConfig([...base, '--databases', 'a,b'], {})).toMatchObject({ lazy: false, databases: ['a', 'b'] });
    expect(parseReplicaConfig([...base, '--lazy', '--databases', 'tenant-*,a'], {})).toMatchObject({ lazy: true, databases: [], lazyLimit: ['tenant-*', 'a'] });
    expect(parseReplicaConfig([...base, '--lazy'], {}).lazyLimit).toBeNull();
    expect(() => parseReplicaConfig([...base, '--lazy', '--databases', 'a/b'], {})).toThrow(/bad database pattern "a\/b"/);
    expect(() => parseReplicaConfig([...base, '--max-databases', '3'], {})).toThrow(/only applies with --lazy/);
    expect(() => parseReplicaConfig([...base, '--lazy', '--max-databases', '0'], {})).toThrow(/--max-databases must be a positive integer/);
    expect(() => parseReplicaConfig(base, { EDGELITE_LAZY: 'yes' })).toThrow(/EDGELITE_LAZY/);
  });
});
