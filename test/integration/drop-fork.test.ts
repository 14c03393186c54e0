/**
 * Drop and fork (README.md#http-api): a real primary and a Node replica over loopback HTTP. A fork now
 * and at a past txid equals its source by checksum at that txid (recorded from the write answers);
 * writes to a fork leave the source alone; a drop removes the files and the log, the replica deletes
 * its copy, and a re-created database has a new id that refuses the old incarnation's tokens.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAuthConfig } from '../../shared/auth.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { stateDir } from '../../primary/meta.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import type { PrimaryDatabase } from '../../primary/database.ts';
import { restoreDatabase } from '../../primary/restore.ts';
import { PrimaryStore } from '../../primary/store.ts';
import { formatChecksum, type Position } from '../../shared/types.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { stopsAfterEach, tempDir } from '../helpers.ts';
import { http, type HttpResult } from '../kit/api.ts';
import { waitFor } from '../kit/wait.ts';

const ADMIN = 'drop-fork-admin-token-0123456789';
const WRITER = 'drop-fork-write-token-0123456789';
const TOKENS = `admin=${ADMIN}; read+write=${WRITER}`;
const admin = { authorization: `Bearer ${ADMIN}` };
const writer = { authorization: `Bearer ${WRITER}` };

describe('drop and fork', () => {
  const stops = stopsAfterEach();

  async function setup(withReplica = false): Promise<{ primary: PrimaryHandle; replica: ReplicaHandle | null; dir: string }> {
    const t = tempDir('drop-fork');
    stops.push(t.cleanup);
    const primary = await startPrimary(parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], { EDGELITE_TOKENS: TOKENS }), silentLogger);
    stops.push(() => primary.close());
    expect((await http(primary.url, 'PUT', '/v1/db/src', undefined, writer)).status).toBe(201);
    await write(primary.url, 'src', 'CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)');
    let replica: ReplicaHandle | null = null;
    if (withReplica) {
      replica = await startReplica(parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0'], { EDGELITE_TOKENS: TOKENS, EDGELITE_PRIMARY_TOKEN: ADMIN }), silentLogger);
      stops.push(() => replica!.close());
    }
    return { primary, replica, dir: join(t.dir, 'p') };
  }

  async function write(url: string, db: string, sql: string, params: unknown[] = []): Promise<HttpResult> {
    const r = await http(url, 'POST', `/v1/db/${db}/exec`, { sql, params }, writer);
    if (r.status !== 200) throw new Error(`exec on ${db}: ${r.status} ${JSON.stringify(r.json)}`);
    return r;
  }

  /** Each write's position, as its answer says it: txid → checksum. */
  async function fill(url: string, db: string, from: number, to: number): Promise<Map<number, string>> {
    const seen = new Map<number, string>();
    for (let i = from; i < to; i++) {
      // Rows of ~1 KB so that later writes touch pages earlier ones wrote, and new ones.
      const r = await write(url, db, 'INSERT OR REPLACE INTO kv VALUES (?, ?)', [`k${i % 37}`, `${i}:${'x'.repeat(900 + (i % 7) * 50)}`]);
      seen.set(Number(r.headers.get('edgelite-txid')), r.headers.get('edgelite-checksum')!);
    }
    return seen;
  }

  it('forks now and at past txids, each equal by checksum to the source then, with its own id and history', async () => {
    const { primary } = await setup();
    const checksums = await fill(primary.url, 'src', 0, 120);
    const source = (await http(primary.url, 'GET', '/v1/db/src', undefined, writer)).json;

    const now = await http(primary.url, 'PUT', '/v1/db/copy', { from: 'src' }, writer);
    expect(now.status).toBe(201);
    expect(now.json.checksum).toBe(source.checksum);
    expect(now.json.forkedFrom).toEqual({ name: 'src', txid: source.txid, checksum: source.checksum });
    expect(now.json.databaseId).not.toBe(source.databaseId);
    expect(now.json.generation).toBe(1);

    const txids = [...checksums.keys()];
    for (const txid of [txids[0]!, txids[10]!, txids[57]!, txids.at(-2)!]) {
      const past = await http(primary.url, 'PUT', `/v1/db/at-${txid}`, { from: 'src', txid }, writer);
      expect(past.status, JSON.stringify(past.json)).toBe(201);
      expect(past.json.checksum).toBe(checksums.get(txid));
      expect(past.json.forkedFrom.txid).toBe(txid);
      // The fork reads like the source did then: the write at that txid is the newest row.
      const rows = (await http(primary.url, 'POST', `/v1/db/at-${txid}/query`, { sql: 'SELECT count(*) FROM kv' }, writer)).json.results[0].rows;
      expect(rows[0][0]).toBe(Math.min(37, txids.indexOf(txid) + 1));
    }

    // Writes to a fork do not touch the source.
    await write(primary.url, 'copy', "INSERT INTO kv VALUES ('only-in-copy', 'x')");
    const after = (await http(primary.url, 'GET', '/v1/db/src', undefined, writer)).json;
    expect(after.checksum).toBe(source.checksum);
    expect(after.txid).toBe(source.txid);
    const inSource = await http(primary.url, 'POST', '/v1/db/src/query', { sql: "SELECT count(*) FROM kv WHERE k = 'only-in-copy'" }, writer);
    expect(inSource.json.results[0].rows[0][0]).toBe(0);
  });

  it('refuses bad forks with typed errors', async () => {
    const { primary } = await setup();
    await fill(primary.url, 'src', 0, 5);
    const txid = primary.store.require('src').position.txid;
    const cases: Array<[string, unknown, number, string]> = [
      ['a', { from: 'nope' }, 404, 'DATABASE_NOT_FOUND'],
      ['src', { from: 'src' }, 400, 'BAD_REQUEST'],
      ['a', { from: 'src', txid: txid + 1 }, 409, 'FORK_TXID_UNAVAILABLE'],
      ['a', { from: 'src', txid: -1 }, 400, 'BAD_REQUEST'],
      ['a', { from: 'src', txid: 'one' }, 400, 'BAD_REQUEST'],
      ['a', { from: 'src', extra: 1 }, 400, 'BAD_REQUEST'],
      ['a', { from: '../etc' }, 400, 'INVALID_DATABASE_NAME'],
      ['a', [], 400, 'BAD_REQUEST'],
    ];
    for (const [name, body, status, code] of cases) {
      const r = await http(primary.url, 'PUT', `/v1/db/${name}`, body, writer);
      expect([r.status, r.json.error.code], JSON.stringify(body)).toEqual([status, code]);
      expect(primary.store.get(name === 'src' ? 'none' : name)).toBeUndefined();
    }
    expect((await http(primary.url, 'PUT', '/v1/db/b', { from: 'src' }, writer)).status).toBe(201);
    const again = await http(primary.url, 'PUT', '/v1/db/b', { from: 'src' }, writer);
    expect([again.status, again.json.error.code]).toEqual([409, 'DATABASE_EXISTS']);
    // A plain PUT with an empty object still creates (or finds) a database.
    expect((await http(primary.url, 'PUT', '/v1/db/c', {}, writer)).status).toBe(201);
  });

  function openStore(dir: string, log: ConstructorParameters<typeof PrimaryStore>[1]['log']): PrimaryStore {
    const store = new PrimaryStore(dir, { synchronous: 'normal', busyTimeoutMs: 5000, compress: false, checkpointFrames: 50, pollIntervalMs: 50, log, logger: silentLogger }).open();
    stops.push(() => store.close());
    return store;
  }

  /** grow fills a table with 60 rows of 3 KB, then empties it and VACUUMs: the file ends smaller than it was. */
  function growAndShrink(db: PrimaryDatabase): { early: Position; full: Position; grown: number } {
    db.exec([{ sql: 'CREATE TABLE big (x BLOB)', params: [] }]);
    const early = db.position;
    for (let i = 0; i < 60; i++) db.exec([{ sql: 'INSERT INTO big VALUES (randomblob(3000))', params: [] }]);
    const full = db.position;
    const grown = db.pageCount;
    db.exec([{ sql: 'DELETE FROM big', params: [] }]);
    db.exec([{ sql: 'VACUUM', params: [] }]);
    expect(db.pageCount).toBeLessThan(grown);
    db.checkpoint(); // and prunes the log to its retention
    return { early, full, grown };
  }

  it('forks at a txid before the source shrank (VACUUM): the pages it lost come from the log', async () => {
    const t = tempDir('drop-fork-vacuum');
    stops.push(t.cleanup);
    const store = openStore(t.dir, {});
    const { full, grown } = growAndShrink(store.create('src').db);
    const atFull = await store.fork('at-full', 'src', full.txid);
    expect(atFull.source.checksum).toBe(full.checksum);
    expect(atFull.db.position.checksum).toBe(full.checksum);
    expect(atFull.db.pageCount).toBe(grown);
    expect(await atFull.db.query([{ sql: 'SELECT count(*) AS n FROM big', params: [] }])).toEqual([expect.objectContaining({ rows: [[60]] })]);
  });

  it('refuses a txid the log no longer holds (retention) with FORK_TXID_UNAVAILABLE, leaving nothing behind', async () => {
    const t = tempDir('drop-fork-retention');
    stops.push(t.cleanup);
    const store = openStore(t.dir, { segmentBytes: 32 * 1024, retention: { maxRecords: 20 } });
    const src = store.create('src').db;
    const { early } = growAndShrink(src);
    expect(src.log.firstTxid!).toBeGreaterThan(early.txid + 1);
    for (const txid of [early.txid, src.log.firstTxid! - 1]) {
      const err = await store.fork('old', 'src', txid).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(EdgeliteError);
      expect((err as EdgeliteError).code).toBe('FORK_TXID_UNAVAILABLE');
      expect(store.get('old')).toBeUndefined();
      expect(existsSync(join(t.dir, 'old.db'))).toBe(false);
      expect(existsSync(join(t.dir, 'old.db.fork-tmp'))).toBe(false);
    }
    // The current state forks whatever the log holds.
    expect((await store.fork('now', 'src', null)).db.position.checksum).toBe(src.position.checksum);
  });

  it('drops: files and log gone, the replica deletes its copy, a re-created database refuses old tokens', async () => {
    const { primary, replica, dir } = await setup(true);
    const last = await write(primary.url, 'src', "INSERT INTO kv VALUES ('a', '1')");
    const oldToken = last.json.token as string;
    const oldId = primary.store.require('src').databaseId;
    const copy = join(replica!.store.dataDir, 'src.db');
    await waitFor(() => replica!.store.get('src')?.position?.txid === primary.store.require('src').position.txid, 'replica caught up');

    const writerDelete = await http(primary.url, 'DELETE', '/v1/db/src', undefined, writer);
    expect([writerDelete.status, writerDelete.json.error.code]).toEqual([403, 'FORBIDDEN']);

    const dropped = await http(replica!.url, 'DELETE', '/v1/db/src', undefined, admin); // forwarded
    expect(dropped.status, JSON.stringify(dropped.json)).toBe(200);
    expect(dropped.json).toEqual({ name: 'src', dropped: true });
    for (const f of ['src.db', 'src.db-wal', 'src.db-shm']) expect(existsSync(join(dir, f)), f).toBe(false);
    expect(existsSync(stateDir(dir, 'src'))).toBe(false);
    expect(replica!.store.get('src')).toBeUndefined();
    expect(existsSync(copy)).toBe(false);

    for (const [method, path] of [['GET', '/v1/db/src'], ['POST', '/v1/db/src/query'], ['POST', '/v1/db/src/exec'], ['DELETE', '/v1/db/src']] as const) {
      const r = await http(primary.url, method, path, method === 'POST' ? { sql: 'SELECT 1' } : undefined, admin);
      expect([r.status, r.json.error.code], `${method} ${path}`).toEqual([404, 'DATABASE_NOT_FOUND']);
    }

    expect((await http(primary.url, 'PUT', '/v1/db/src', undefined, writer)).status).toBe(201);
    const reborn = primary.store.require('src');
    expect(reborn.databaseId).not.toBe(oldId);
    const refused = await http(primary.url, 'POST', '/v1/db/src/query', { sql: 'SELECT 1' }, { ...writer, 'edgelite-token': oldToken });
    expect([refused.status, refused.json.error.code]).toEqual([400, 'TOKEN_DATABASE_MISMATCH']);
    // The re-created database is empty and replicated afresh.
    const tables = await http(primary.url, 'POST', '/v1/db/src/query', { sql: 'SELECT count(*) FROM sqlite_master' }, writer);
    expect(tables.json.results[0].rows[0][0]).toBe(0);
    await write(primary.url, 'src', 'CREATE TABLE fresh (x)');
    await waitFor(() => replica!.store.get('src')?.position?.txid === reborn.position.txid, 'replica follows the re-created database');
    expect(replica!.store.get('src')!.position!.checksum).toBe(reborn.position.checksum);
  });

  it('a drop waits for the write in flight: it commits and is answered, the drop follows', async () => {
    const { primary, dir } = await setup();
    const db = primary.store.require('src');
    expect(db.writeStats).not.toBeNull(); // the API writes run in the query processes' write queue
    const slow = http(primary.url, 'POST', '/v1/db/src/exec', { sql: "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 400000) INSERT INTO kv SELECT 'r' || x, 'v' FROM c" }, writer);
    await waitFor(() => db.writeStats!.busy, 'the write is in a query process');
    const dropped = await http(primary.url, 'DELETE', '/v1/db/src', undefined, admin);
    const w = await slow;
    expect(w.status, JSON.stringify(w.json)).toBe(200);
    expect(w.json.results[0].changes).toBe(400000);
    expect(dropped.status, JSON.stringify(dropped.json)).toBe(200);
    expect(existsSync(join(dir, 'src.db'))).toBe(false);
    const late = await http(primary.url, 'POST', '/v1/db/src/exec', { sql: "INSERT INTO kv VALUES ('late', 'x')" }, writer);
    expect([late.status, late.json.error.code]).toEqual([404, 'DATABASE_NOT_FOUND']);
  });

  it('with --backup, a drop keeps the objects (restorable); a re-created name is not backed up over them', async () => {
    const t = tempDir('drop-fork-backup');
    stops.push(t.cleanup);
    const primary = await startPrimary(parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0', '--backup', `file://${join(t.dir, 'b')}`, '--backup-interval', '50ms'], { EDGELITE_TOKENS: TOKENS }), silentLogger);
    stops.push(() => primary.close());
    await http(primary.url, 'PUT', '/v1/db/src', undefined, writer);
    await write(primary.url, 'src', 'CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)');
    await fill(primary.url, 'src', 0, 30);
    const before = primary.store.require('src').position;
    await primary.backup!.flush();
    expect((await http(primary.url, 'DELETE', '/v1/db/src', undefined, admin)).status).toBe(200);
    const restored = await restoreDatabase(primary.backup!.objects, { db: 'src', target: { latest: true }, out: join(t.dir, 'restored.db') });
    expect([restored.txid, restored.checksum]).toEqual([before.txid, formatChecksum(before.checksum)]);

    await http(primary.url, 'PUT', '/v1/db/src', undefined, writer);
    await write(primary.url, 'src', 'CREATE TABLE again (x)');
    const reborn = primary.store.require('src').position;
    expect(reborn.txid).toBeLessThan(before.txid);
    // The bucket still holds the dropped incarnation under the name: the runner refuses to mix them, loudly.
    await expect(primary.backup!.flush()).rejects.toThrow(/ahead of the database/);
    const again = await restoreDatabase(primary.backup!.objects, { db: 'src', target: { latest: true }, out: join(t.dir, 'restored-again.db') });
    expect(again.checksum).toBe(formatChecksum(before.checksum));
  });

  it('a fork through a replica is forwarded and replicated', async () => {
    const { primary, replica } = await setup(true);
    await fill(primary.url, 'src', 0, 10);
    const r = await http(replica!.url, 'PUT', '/v1/db/branch', { from: 'src' }, writer);
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    expect(r.json.checksum).toBe((await http(primary.url, 'GET', '/v1/db/src', undefined, writer)).json.checksum);
    const branch = primary.store.require('branch');
    await waitFor(() => replica!.store.get('branch')?.position?.txid === branch.position.txid && replica!.store.get('branch')?.position, 'replica has the fork');
    expect(replica!.store.get('branch')!.position!.checksum).toBe(branch.position.checksum);
  });
});
