/**
 * Open on use, close when idle (README.md#many-databases, docs/ARCHITECTURE.md#many-databases): a
 * closed database holds no descriptor; it reopens from its closed record without a new generation
 * (restart included); a foreign commit to a closed database (the sqlite3 CLI and Python, each
 * checkpointing its WAL away on exit) is caught up as one change set by page hashes, in the same
 * generation, and reaches a replica without a re-snapshot; a closed database's snapshot is its file,
 * served without opening it.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { decodeChangeSet } from '../../shared/changeset.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary } from '../../primary/server.ts';
import { PrimaryStore, type StoreOptions } from '../../primary/store.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica } from '../../replica/server.ts';
import { stopsAfterEach, tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

const stops = stopsAfterEach();

function openStore(dir: string, events: Array<Record<string, unknown>> = [], extra: Partial<StoreOptions> = {}): PrimaryStore {
  const store = new PrimaryStore(dir, {
    synchronous: 'normal',
    busyTimeoutMs: 5000,
    compress: false,
    checkpointFrames: 4000,
    pollIntervalMs: 100,
    log: {},
    logger: (e) => events.push(e),
    idleCloseMs: 150,
    sweepCycleMs: 1000,
    ...extra,
  }).open();
  stops.push(() => store.close());
  return store;
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** fileChecksum is the checksum of the database file alone (closed and checkpointed: the whole state). */
function fileChecksum(path: string): bigint {
  return DatabaseChecksum.fromFile(readFileSync(path)).value;
}

function seed(store: PrimaryStore, name: string, value: number): void {
  store.create(name).db.exec([{ sql: 'CREATE TABLE t (x INTEGER)', params: [] }, { sql: 'INSERT INTO t VALUES (?)', params: [value] }]);
}

const PY_INSERT = 'import sqlite3, sys\ncon = sqlite3.connect(sys.argv[1])\ncon.execute("INSERT INTO t VALUES (?)", (int(sys.argv[2]),))\ncon.commit()\ncon.close()\n';

describe('the primary closes idle databases', () => {
  it('closes 200 idle databases (descriptors released), reopens one on use, and keeps every position across a restart', async () => {
    const t = tempDir('idle');
    stops.push(t.cleanup);
    const store = openStore(t.dir);
    for (let i = 0; i < 200; i++) seed(store, `t${i}`, i);
    const fdsOpen = openFds();
    expect(store.counts().open).toBeGreaterThan(0);
    await waitFor(() => store.counts().open === 0, 'every database closed');
    // Each open database held a writer, two readers, a query connection, its WAL and its log.
    expect(fdsOpen - openFds()).toBeGreaterThan(200 * 3);
    const positions = new Map(store.names().map((n) => [n, store.info(n)!.position]));
    expect(positions.size).toBe(200);

    const rows = await store.require('t7').query([{ sql: 'SELECT x FROM t', params: [] }]);
    expect(rows[0]!.rows).toEqual([[7]]);
    expect(store.counts().open).toBe(1);
    expect(store.info('t7')!.position).toEqual(positions.get('t7'));

    store.close();
    const events: Array<Record<string, unknown>> = [];
    const again = openStore(t.dir, events);
    expect(again.counts()).toEqual({ databases: 200, open: 0 });
    for (const [name, p] of positions) expect(again.info(name)!.position).toEqual(p);
    for (const name of ['t0', 't7', 't199']) {
      const db = again.require(name);
      expect(db.position).toEqual(positions.get(name));
      // The trusted checksum (from the stored page hashes) is the file's own.
      expect(db.position.checksum).toBe(fileChecksum(db.path));
    }
    expect(events.filter((e) => e.msg === 'new generation')).toEqual([]);
    // Each was opened from its record, without a read of every page.
    expect(events.filter((e) => e.msg === 'opened').map((e) => [e.db, e.how])).toEqual(['t0', 't7', 't199'].map((n) => [n, 'closed record']));
    await again.require('t0').write([{ sql: 'INSERT INTO t VALUES (1000)', params: [] }]);
    expect(again.info('t0')!.position.txid).toBe(positions.get('t0')!.txid + 1);
  });

  it.each([
    ['the sqlite3 CLI', (path: string) => execFileSync('sqlite3', [path, 'INSERT INTO t VALUES (42)'])],
    ['Python', (path: string) => execFileSync('python3', ['-c', PY_INSERT, path, '42'])],
  ])('captures a commit by %s to a closed database as one change set by page hashes, same generation', async (_who, write) => {
    const t = tempDir('idle-foreign');
    stops.push(t.cleanup);
    const events: Array<Record<string, unknown>> = [];
    const store = openStore(t.dir, events);
    seed(store, 'f', 1);
    await waitFor(() => store.counts().open === 0, 'closed');
    const before = store.info('f')!.position;
    const path = join(t.dir, 'f.db');
    write(path); // exits: its connection checkpoints the WAL into the file and deletes it
    await waitFor(() => store.info('f')!.position.txid === before.txid + 1, 'foreign commit captured');
    const after = store.info('f')!.position;
    expect(after.generation).toBe(before.generation);
    expect(events.some((e) => e.msg === 'caught up a foreign change by page hashes')).toBe(true);
    // The foreign commit changed the file: its record was not trusted.
    expect(events.filter((e) => e.msg === 'opened' && e.db === 'f').map((e) => e.how)).toContain('read every page');
    const db = store.require('f');
    const last = db.log.iterateSince(before.generation, before.txid, 1 << 20)!;
    expect(last).toHaveLength(1);
    const cs = decodeChangeSet(last[0]!.payload);
    expect(cs.preChecksum).toBe(before.checksum);
    expect(cs.postChecksum).toBe(after.checksum);
    expect((await db.query([{ sql: 'SELECT x FROM t ORDER BY x', params: [] }]))[0]!.rows).toEqual([[1], [42]]);
  });

  it('catches up a foreign commit made while the primary was stopped, at start, in the same generation', async () => {
    const t = tempDir('idle-stopped');
    stops.push(t.cleanup);
    const first = openStore(t.dir);
    seed(first, 's', 1);
    const before = first.info('s')!.position;
    first.close(); // a shutdown leaves closed records too
    execFileSync('sqlite3', [join(t.dir, 's.db'), 'INSERT INTO t VALUES (2)']);
    const events: Array<Record<string, unknown>> = [];
    const store = openStore(t.dir, events);
    const p = store.info('s')!.position;
    expect(p.generation).toBe(before.generation);
    expect(p.txid).toBe(before.txid + 1);
    expect(p.checksum).toBe(fileChecksum(join(t.dir, 's.db')));
  });
});

describe('snapshots of closed databases', () => {
  it('a closed database is its own snapshot, read without opening it; not once a foreign write changed it', async () => {
    const t = tempDir('idle-image');
    stops.push(t.cleanup);
    const store = openStore(t.dir);
    seed(store, 'c', 5);
    await waitFor(() => store.counts().open === 0, 'closed');
    const path = join(t.dir, 'c.db');
    const image = store.closedImage('c')!;
    expect(image).not.toBeNull();
    expect(Buffer.from(image.bytes).equals(readFileSync(path))).toBe(true);
    expect(image.info.position).toEqual(store.info('c')!.position);
    expect(DatabaseChecksum.fromFile(image.bytes).value).toBe(image.info.position.checksum);
    expect(store.counts().open).toBe(0);
    // A foreign commit changes the file: no image until the primary has caught the write up.
    execFileSync('sqlite3', [path, 'INSERT INTO t VALUES (6)']);
    expect(store.closedImage('c')).toBeNull();
    await waitFor(() => store.info('c')!.position.txid > image.info.position.txid, 'foreign commit captured');
    await waitFor(() => store.counts().open === 0, 'closed again');
    const again = store.closedImage('c')!;
    expect(again.info.position.txid).toBe(image.info.position.txid + 1);
    expect(DatabaseChecksum.fromFile(again.bytes).value).toBe(again.info.position.checksum);
  });

  it('a replica bootstraps 50 closed databases with the primary opening none of them', async () => {
    const t = tempDir('idle-boot');
    stops.push(t.cleanup);
    const first = openStore(join(t.dir, 'p'));
    for (let i = 0; i < 50; i++) seed(first, `b${i}`, i);
    first.close(); // every database closed, with its record
    const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
    stops.push(() => primary.close());
    expect(primary.store.counts()).toEqual({ databases: 50, open: 0 });
    const replica = await startReplica({ ...parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
    stops.push(() => replica.close());
    await waitFor(() => primary.store.names().every((n) => replica.store.get(n)?.position?.txid === primary.store.info(n)!.position.txid), 'replica caught up');
    expect(primary.store.counts().open).toBe(0);
    const r = await fetch(`${replica.url}/v1/db/b7/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: 'SELECT x FROM t' }) });
    expect(((await r.json()) as { results: Array<{ rows: unknown[][] }> }).results[0]!.rows).toEqual([[7]]);
  });
});

describe('idle closing end to end', () => {
  it('a replica gets a foreign commit to a closed database without a re-snapshot', async () => {
    const t = tempDir('idle-e2e');
    stops.push(t.cleanup);
    const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0', '--idle-close-ms', '200'], {}), auth: AUTH_DISABLED }, silentLogger);
    stops.push(() => primary.close());
    for (let i = 0; i < 20; i++) {
      expect((await fetch(`${primary.url}/v1/db/e${i}`, { method: 'PUT' })).status).toBe(201);
      const r = await fetch(`${primary.url}/v1/db/e${i}/exec`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ statements: [{ sql: 'CREATE TABLE t (x INTEGER)' }, { sql: `INSERT INTO t VALUES (${i})` }] }) });
      expect(r.status).toBe(200);
    }
    const replica = await startReplica({ ...parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
    stops.push(() => replica.close());
    await waitFor(() => primary.store.names().every((n) => replica.store.get(n)?.position?.txid === primary.store.info(n)!.position.txid), 'replica caught up');
    await waitFor(() => primary.store.counts().open === 0, 'primary closed every database');
    const snapshotsBefore = replica.follower.applied('e3').snapshots;
    execFileSync('sqlite3', [join(t.dir, 'p', 'e3.db'), 'INSERT INTO t VALUES (333)']);
    await waitFor(async () => {
      const res = await fetch(`${replica.url}/v1/db/e3/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: 'SELECT count(*) FROM t WHERE x = 333' }) });
      const body = (await res.json()) as { results?: Array<{ rows: unknown[][] }> };
      return body.results?.[0]?.rows[0]?.[0] === 1;
    }, 'the foreign row on the replica');
    expect(replica.follower.applied('e3').snapshots).toBe(snapshotsBefore);
    // The streams' heartbeats and caught-up positions never opened the other closed databases.
    expect(primary.store.counts().open).toBeLessThanOrEqual(1);
  });
});
