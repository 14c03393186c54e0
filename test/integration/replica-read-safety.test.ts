/**
 * A replica is read-only to its users (docs/ARCHITECTURE.md#apply-rules, docs/ARCHITECTURE.md#tokens-and-consistency, docs/ARCHITECTURE.md#security): through its HTTP API no statement may
 * write, attach another file, change the query connection's settings or load an extension; unknown and
 * not-yet-replicated databases answer with typed errors; and health (and bounded-staleness reads) stop
 * vouching for the data once the primary has been silent for longer than the configured lag.
 * A primary and a replica in one process over loopback.
 */
import Database from 'better-sqlite3';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { CONTACT_GRACE_MS, ReplicaDatabase } from '../../replica/database.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { freePort, http } from '../kit/api.ts';
import { tempDir, stopsAfterEach } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

const stops = stopsAfterEach();

async function primaryOn(dir: string, port: number): Promise<PrimaryHandle> {
  const p = await startPrimary({ ...parsePrimaryConfig(['--data', dir, '--listen', `127.0.0.1:${port}`], {}), auth: AUTH_DISABLED }, silentLogger);
  let closed = false;
  const close = p.close;
  p.close = async () => {
    if (closed) return;
    closed = true;
    await close();
  };
  stops.push(() => p.close());
  return p;
}

async function replicaOf(primaryUrl: string, dir: string, flags: string[] = []): Promise<ReplicaHandle> {
  const r = await startReplica(parseReplicaConfig(['--primary', primaryUrl, '--data', dir, '--listen', '127.0.0.1:0', ...flags], {}), silentLogger);
  stops.push(() => r.close());
  return r;
}

/** setup: a primary with database `app` (a table, one row) and a replica caught up with it. */
async function setup(flags: string[] = []): Promise<{ dir: string; port: number; primary: PrimaryHandle; replica: ReplicaHandle }> {
  const t = tempDir('read-safety');
  stops.push(t.cleanup);
  const port = await freePort();
  const primary = await primaryOn(join(t.dir, 'p'), port);
  await http(primary.url, 'PUT', '/v1/db/app');
  await http(primary.url, 'POST', '/v1/db/app/exec', { statements: [{ sql: 'CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)' }, { sql: "INSERT INTO kv VALUES ('a', '1')" }] });
  const replica = await replicaOf(primary.url, join(t.dir, 'r'), flags);
  const want = primary.store.get('app')!.position.txid;
  await waitFor(() => replica.store.get('app')?.position?.txid === want, 'the replica to catch up');
  return { dir: t.dir, port, primary, replica };
}

async function read(url: string, sql: string, headers: Record<string, string> = {}, db = 'app') {
  return http(url, 'POST', `/v1/db/${db}/query`, { sql }, headers);
}

describe('the replica API is read-only', () => {
  it('refuses writes, ATTACH, settings changes and extensions, and stays read-only after trying', async () => {
    const { dir, replica } = await setup();
    const writes = ["INSERT INTO kv VALUES ('b', '2')", "UPDATE kv SET v = 'x'", 'DELETE FROM kv', 'CREATE TABLE t2 (x)', 'DROP TABLE kv', "VACUUM INTO 'copy.db'", 'PRAGMA user_version = 7', 'PRAGMA schema_version(5)'];
    for (const sql of writes) {
      const r = await read(replica.url, sql);
      expect(r.status, `${sql}: ${JSON.stringify(r.json)}`).toBeGreaterThanOrEqual(400);
      expect(['READ_ONLY', 'FORBIDDEN'], `${sql}: ${JSON.stringify(r.json)}`).toContain(r.json.error.code);
    }
    const insert = await read(replica.url, "INSERT INTO kv VALUES ('b', '2')");
    expect([insert.status, insert.json.error.code]).toEqual([400, 'READ_ONLY']);

    for (const sql of ["ATTACH 'x.db' AS x", "attach database ':memory:' as m", "/* hi */ ATTACH DATABASE 'y.db' AS y;", 'DETACH DATABASE main']) {
      const r = await read(replica.url, sql);
      expect([r.status, r.json.error?.code], sql).toEqual([403, 'FORBIDDEN']);
    }
    expect(existsSync('x.db') || existsSync('y.db') || existsSync(join(dir, 'r', 'x.db')), 'ATTACH created no file').toBe(false);

    // Every spelling SQLite accepts for turning query_only (or another connection setting) off.
    const settings = [
      'PRAGMA query_only=0', 'PRAGMA query_only = false', 'PRAGMA main.query_only = 0', 'PRAGMA query_only(0)',
      'PRAGMA query_only(0);', 'PRAGMA query_only(0) -- off', 'PRAGMA "query_only"(0)', "PRAGMA 'query_only' = 0",
      'PRAGMA [query_only]=0', 'pragma\tquery_only\n(0)', 'PRAGMA writable_schema(1);', 'PRAGMA trusted_schema(1);',
      'PRAGMA cache_size(-2000000);', 'PRAGMA mmap_size = 1000000', 'PRAGMA foreign_keys(0)',
    ];
    for (const sql of settings) {
      const r = await read(replica.url, sql);
      expect(r.status, `${JSON.stringify(sql)} was accepted: ${JSON.stringify(r.json)}`).toBe(403);
      expect(r.json.error.code).toBe('FORBIDDEN');
    }
    const qo = await read(replica.url, 'PRAGMA query_only');
    expect(qo.json.results[0].rows).toEqual([[1]]);
    // Reading pragmas and introspection stay available.
    expect((await read(replica.url, 'PRAGMA table_info(kv)')).status).toBe(200);
    expect((await read(replica.url, "PRAGMA index_list('kv');")).status).toBe(200);
    expect((await read(replica.url, 'PRAGMA integrity_check(5)')).json.results[0].rows).toEqual([['ok']]);

    const ext = await read(replica.url, "SELECT load_extension('x')");
    expect(ext.status).toBe(400);
    expect(ext.json.error.code).toBe('SQL_ERROR');
    expect(ext.json.error.message).toMatch(/not authorized/);

    // After all of that the data is unchanged and still the primary's.
    const rows = await read(replica.url, 'SELECT k, v FROM kv');
    expect(rows.json.results[0].rows).toEqual([['a', '1']]);
    expect(replica.store.get('app')!.pageCount).toBeGreaterThan(0);
  });

  it('answers typed errors for unknown and not-yet-replicated databases', async () => {
    const { replica } = await setup();
    const unknown = await read(replica.url, 'SELECT 1', {}, 'nope');
    expect([unknown.status, unknown.json.error.code]).toEqual([404, 'DATABASE_NOT_FOUND']);
    expect((await http(replica.url, 'GET', '/v1/db/nope')).status).toBe(404);
    const bad = await read(replica.url, 'SELECT 1', {}, '..%2Fetc');
    expect(bad.status).toBe(400);

    // A replica whose primary is not there yet: the database it is told to follow is still bootstrapping.
    const t = tempDir('read-safety-boot');
    stops.push(t.cleanup);
    const nobody = `http://127.0.0.1:${await freePort()}`;
    const booting = await replicaOf(nobody, t.dir, ['--databases', 'app', '--read-wait-ms', '200']);
    const r = await read(booting.url, 'SELECT 1');
    expect(r.status, JSON.stringify(r.json)).toBe(504);
    expect(r.json.error.code).toBe('REPLICA_BEHIND');
    const d = await http(booting.url, 'GET', '/v1/db/app');
    expect([d.status, d.json.txid]).toEqual([200, null]);
    expect((await http(booting.url, 'GET', '/v1/health')).status).toBe(503);
  });
});

describe('staleness', () => {
  it('health turns 503 while the primary is gone past --max-lag-ms, and 200 when it is back', async () => {
    const { dir, port, primary, replica } = await setup(['--max-lag-ms', '300', '--read-wait-ms', '300']);
    await waitFor(async () => (await http(replica.url, 'GET', '/v1/health')).status === 200, 'health 200 while connected');
    expect((await read(replica.url, 'SELECT v FROM kv', { 'Edgelite-Consistency': 'bounded:300' })).status).toBe(200);

    await primary.close();
    const gone = Date.now();
    const h = await waitFor(async () => {
      const r = await http(replica.url, 'GET', '/v1/health');
      return r.status === 503 ? r : null;
    }, 'health 503 after the primary went away', 15_000);
    const after = Date.now() - gone;
    expect(h.json.status).toBe('lagging');
    expect(h.json.lagging).toEqual(['app']);
    // Eventual reads are still served from the last good state; bounded ones cannot promise freshness.
    expect((await read(replica.url, 'SELECT v FROM kv')).json.results[0].rows).toEqual([['1']]);
    const bounded = await read(replica.url, 'SELECT v FROM kv', { 'Edgelite-Consistency': 'bounded:300' });
    expect([bounded.status, bounded.json.error?.code], 'a bounded read while the primary is silent').toEqual([504, 'REPLICA_BEHIND']);

    const back = await primaryOn(join(dir, 'p'), port);
    const t0 = Date.now();
    await waitFor(async () => (await http(replica.url, 'GET', '/v1/health')).status === 200, 'health 200 after the primary returned', 15_000);
    console.log(`[read-safety] health 503 ${after} ms after the primary stopped (max-lag-ms 300), 200 again ${Date.now() - t0} ms after it returned`);
    await http(back.url, 'POST', '/v1/db/app/exec', { sql: "INSERT INTO kv VALUES ('c', '3')" });
    await waitFor(() => replica.store.get('app')!.position!.txid === back.store.get('app')!.position.txid, 'the replica to follow again');
  });

  it('lag counts the time since the replica was last known current, even while heartbeats arrive', () => {
    const t = tempDir('lag');
    stops.push(t.cleanup);
    const src = new Database(join(t.dir, 'src.db'));
    src.exec('CREATE TABLE x (a)');
    src.close();
    const image = readFileSync(join(t.dir, 'src.db'));
    const db = new ReplicaDatabase('lag', join(t.dir, 'lag.db'), 1000);
    stops.push(() => db.close());
    vi.useFakeTimers({ toFake: ['Date'] });
    stops.push(() => void vi.useRealTimers());
    let now = 1_800_000_000_000;
    vi.setSystemTime(now);
    db.restore(image, { generation: 1, txid: 10, checksum: DatabaseChecksum.fromFile(image).value }, 7, now);
    db.notePrimary({ generation: 1, txid: 10, timestamp: now, heardAt: now });
    expect(db.lagMs).toBe(0);

    // Silent primary: lag 0 within the heartbeat grace, then the silence itself.
    vi.setSystemTime((now += CONTACT_GRACE_MS));
    expect(db.lagMs).toBe(0);
    vi.setSystemTime((now += 3000));
    expect(db.lagMs).toBe(CONTACT_GRACE_MS + 3000);

    // The primary moves to txid 11 and keeps saying so every second; nothing is applied for 10 s.
    const behindFrom = now;
    db.notePrimary({ generation: 1, txid: 10, timestamp: now, heardAt: now });
    for (let s = 0; s < 10; s++) {
      vi.setSystemTime((now += 1000));
      db.notePrimary({ generation: 1, txid: 11, timestamp: behindFrom + 1, heardAt: now });
    }
    expect(db.lagMs).toBe(now - behindFrom);
    expect(db.lagTxids).toBe(1);
  });
});
