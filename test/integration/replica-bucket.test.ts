/**
 * Replicas fed from the bucket (`edgelite replica --source`), all real: s3rver on 127.0.0.1 and file://
 * buckets, the primary and the replica as child processes, the replica's primary behind a FaultProxy
 * that counts the requests it passes (snapshot downloads) and can make the primary unreachable.
 */
import Database from 'better-sqlite3';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FaultProxy } from '../kit/proxy.ts';
import { exec, freePort, http, portOf, query } from '../kit/api.ts';
import { spawnEdgelite, type EdgeliteProcess } from '../kit/spawn.ts';
import { waitFor } from '../kit/wait.ts';
import { S3_BUCKET, startS3, type S3Server } from './backup-kit.ts';

const DB = 'app';
const running: EdgeliteProcess[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const p of running.splice(0)) await p.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'edgelite-replica-bucket-'));
  dirs.push(d);
  return d;
}

async function start(args: string[], env: Record<string, string> = {}): Promise<EdgeliteProcess> {
  const p = await spawnEdgelite(args, env);
  running.push(p);
  return p;
}

async function stop(p: EdgeliteProcess): Promise<void> {
  await p.kill('SIGKILL');
  running.splice(running.indexOf(p), 1);
}

interface BucketStatus {
  changeSets: number;
  snapshots: number;
  refused: number;
  lastFailure: { key: string; code: string; message: string } | null;
}

/** describeDb is the replica's GET /v1/db/{name}, with its bucket figures. */
async function describeDb(url: string): Promise<{ generation: number | null; txid: number | null; checksum: string | null; bucket: BucketStatus }> {
  const r = await http(url, 'GET', `/v1/db/${DB}`);
  return r.status === 200 ? r.json : { generation: null, txid: null, checksum: null, bucket: { changeSets: 0, snapshots: 0, refused: 0, lastFailure: null } };
}

async function metric(url: string, name: string, labels: string): Promise<number> {
  const text = (await (await fetch(`${url}/metrics`)).text()).split('\n');
  const line = text.find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

async function health(url: string): Promise<{ source?: string }> {
  return (await http(url, 'GET', '/v1/health')).json;
}

/** write runs one insert on the primary and returns its position. */
async function write(url: string, v: string): Promise<{ txid: number; checksum: string }> {
  const r = await exec(url, DB, { sql: 'INSERT INTO t (v) VALUES (?)', params: [v] });
  return { txid: Number(r.headers.get('edgelite-txid')), checksum: r.headers.get('edgelite-checksum')! };
}

async function uploaded(primaryUrl: string, txid: number): Promise<void> {
  await waitFor(async () => {
    const r = await http(primaryUrl, 'GET', `/v1/db/${DB}`);
    return (r.json.backup?.uploadedTxid as number) >= txid;
  }, `the backup to reach txid ${txid}`);
}

async function replicaAt(url: string, txid: number, what = `the replica to reach txid ${txid}`) {
  return waitFor(async () => {
    const d = await describeDb(url);
    return d.txid === txid ? d : null;
  }, what, 30_000);
}

async function values(url: string): Promise<string[]> {
  return (await query(url, DB, 'SELECT v FROM t ORDER BY id')).map((r) => r[0] as string);
}

describe('replica --source s3:// with a primary', () => {
  let s3: S3Server;
  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(async () => {
    await s3?.close();
  });

  it('bootstraps from the bucket, not the primary; takes the live tail; follows the bucket while the primary is stopped or unreachable; takes the tail again', async () => {
    const dir = tempDir();
    const bucket = `s3://${S3_BUCKET}/live`;
    const primaryArgs = ['primary', '--data', join(dir, 'primary'), '--backup', bucket, '--backup-interval', '100ms', '--query-timeout-ms', '0'];
    let primary = await start([...primaryArgs, '--listen', '127.0.0.1:0'], s3.env);
    const port = portOf(primary.url);
    await http(primary.url, 'PUT', `/v1/db/${DB}`);
    await exec(primary.url, DB, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    let last = { txid: 0, checksum: '' };
    for (let i = 0; i < 20; i++) last = await write(primary.url, `before-${i}`);
    await uploaded(primary.url, last.txid);

    const proxy = await FaultProxy.start({ target: primary.url });
    try {
      const replica = await start(['replica', '--source', bucket, '--primary', proxy.url, '--data', join(dir, 'replica'), '--listen', '127.0.0.1:0', '--source-interval', '100ms'], s3.env);
      const boot = await replicaAt(replica.url, last.txid);
      expect(boot.checksum).toBe(last.checksum);
      expect(boot.bucket.snapshots).toBe(1);
      expect(proxy.count(/^GET \/v1\/db\/app\/snapshot/)).toBe(0);
      expect(await values(replica.url)).toHaveLength(20);

      // The live tail: a write reaches the replica through the primary's stream, not through the bucket.
      await waitFor(async () => (await health(replica.url)).source === 'primary', 'the replica to take the primary stream');
      const fromBucket = (await describeDb(replica.url)).bucket.changeSets;
      const appliedBefore = await metric(replica.url, 'edgelite_changesets_applied_total', `db="${DB}"`);
      last = await write(primary.url, 'live');
      await replicaAt(replica.url, last.txid);
      expect((await describeDb(replica.url)).bucket.changeSets).toBe(fromBucket);
      expect(await metric(replica.url, 'edgelite_changesets_applied_total', `db="${DB}"`)).toBeGreaterThan(appliedBefore);
      expect(await metric(replica.url, 'edgelite_replica_fed_by', 'source="primary"')).toBe(1);

      // The primary stopped: reads go on, from the last state.
      await uploaded(primary.url, last.txid);
      await stop(primary);
      await waitFor(async () => (await health(replica.url)).source === 'bucket', 'the replica to follow the bucket alone');
      expect(await values(replica.url)).toHaveLength(21);

      // The primary back but unreachable from the replica: its new uploads are followed from the bucket.
      proxy.refuse(true);
      primary = await start([...primaryArgs, '--listen', `127.0.0.1:${port}`], s3.env);
      for (let i = 0; i < 5; i++) last = await write(primary.url, `while-unreachable-${i}`);
      const viaBucket = await replicaAt(replica.url, last.txid, 'the replica to follow new uploads from the bucket');
      expect(viaBucket.checksum).toBe(last.checksum);
      expect(viaBucket.bucket.changeSets).toBeGreaterThanOrEqual(fromBucket + 5);
      expect(await health(replica.url)).toMatchObject({ source: 'bucket' });
      expect(await values(replica.url)).toHaveLength(26);

      // Reachable again: the tail comes from the primary once more.
      proxy.refuse(false);
      await waitFor(async () => (await health(replica.url)).source === 'primary', 'the replica to take the primary stream again');
      const bucketNow = (await describeDb(replica.url)).bucket.changeSets;
      last = await write(primary.url, 'live-again');
      const again = await replicaAt(replica.url, last.txid);
      expect(again.bucket.changeSets).toBe(bucketNow);
      expect(again.checksum).toBe(last.checksum);
      expect(proxy.count(/^GET \/v1\/db\/app\/snapshot/)).toBe(0);
      expect(replica.output()).not.toContain('S3RVER'); // the secret key never reaches a log line
    } finally {
      await proxy.close();
    }
  }, 120_000);
});

describe('replica --source --lazy', () => {
  it('fetches a database on its first request from the bucket, not the primary', async () => {
    const dir = tempDir();
    const bucket = join(dir, 'bucket');
    const primary = await start(['primary', '--data', join(dir, 'primary'), '--listen', '127.0.0.1:0', '--backup', `file://${bucket}`, '--backup-interval', '100ms', '--query-timeout-ms', '0']);
    await http(primary.url, 'PUT', `/v1/db/${DB}`);
    await exec(primary.url, DB, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    const last = await write(primary.url, 'lazy');
    await uploaded(primary.url, last.txid);
    const proxy = await FaultProxy.start({ target: primary.url });
    try {
      const replica = await start(['replica', '--source', `file://${bucket}`, '--primary', proxy.url, '--lazy', '--data', join(dir, 'replica'), '--listen', '127.0.0.1:0']);
      // The first request (GET /v1/db/app) fetches it. An eventual read may answer as soon as the snapshot
      // is in, before the bucket's segments after it are applied (seen at load 11), so wait for the txid.
      const d = await replicaAt(replica.url, last.txid);
      expect(await values(replica.url)).toEqual(['lazy']);
      expect(d).toMatchObject({ txid: last.txid, checksum: last.checksum, bucket: { snapshots: 1 } });
      expect(proxy.count(/^GET \/v1\/db\/app\/snapshot/)).toBe(0);
    } finally {
      await proxy.close();
    }
  }, 60_000);
});

describe('replica --source with the bucket unreachable', () => {
  it('bootstraps from the primary instead, and serves', async () => {
    const dir = tempDir();
    const primary = await start(['primary', '--data', join(dir, 'primary'), '--listen', '127.0.0.1:0', '--query-timeout-ms', '0']);
    await http(primary.url, 'PUT', `/v1/db/${DB}`);
    await exec(primary.url, DB, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    const last = await write(primary.url, 'only');
    const proxy = await FaultProxy.start({ target: primary.url });
    try {
      const closed = `http://127.0.0.1:${await freePort()}`; // nothing listens there
      const env = { AWS_ACCESS_KEY_ID: 'id', AWS_SECRET_ACCESS_KEY: 'secret' };
      const replica = await start(['replica', '--source', 's3://nowhere/p', '--s3-endpoint', closed, '--primary', proxy.url, '--data', join(dir, 'replica'), '--listen', '127.0.0.1:0'], env);
      expect((await replicaAt(replica.url, last.txid)).checksum).toBe(last.checksum);
      expect(proxy.count(/^GET \/v1\/db\/app\/snapshot/)).toBe(1);
      expect(await values(replica.url)).toEqual(['only']);
      expect(await health(replica.url)).toMatchObject({ source: 'primary' });
      expect(replica.logs.some((l) => l.msg === 'bucket unreachable; retrying every interval')).toBe(true);
    } finally {
      await proxy.close();
    }
  }, 60_000);
});

describe('replica --source file:// with no primary', () => {
  it('serves reads, follows the bucket, refuses writes with NO_PRIMARY, follows a new generation', async () => {
    const dir = tempDir();
    const bucket = join(dir, 'bucket');
    const primaryArgs = ['primary', '--data', join(dir, 'primary'), '--listen', '127.0.0.1:0', '--backup', `file://${bucket}`, '--backup-interval', '100ms', '--query-timeout-ms', '0'];
    let primary = await start(primaryArgs);
    await http(primary.url, 'PUT', `/v1/db/${DB}`);
    await exec(primary.url, DB, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    let last = await write(primary.url, 'first');
    await uploaded(primary.url, last.txid);

    const replica = await start(['replica', '--source', `file://${bucket}`, '--data', join(dir, 'replica'), '--listen', '127.0.0.1:0', '--source-interval', '100ms']);
    await replicaAt(replica.url, last.txid);
    expect(await values(replica.url)).toEqual(['first']);
    for (let i = 0; i < 3; i++) last = await write(primary.url, `next-${i}`);
    const d = await replicaAt(replica.url, last.txid, 'the replica to follow the bucket');
    expect(d.checksum).toBe(last.checksum);
    expect(d.bucket.changeSets).toBeGreaterThanOrEqual(3);
    expect(await values(replica.url)).toEqual(['first', 'next-0', 'next-1', 'next-2']);
    expect(await health(replica.url)).toMatchObject({ source: 'bucket' });

    const w = await http(replica.url, 'POST', `/v1/db/${DB}/exec`, { sql: 'INSERT INTO t (v) VALUES (?)', params: ['refused'] });
    expect(w.status).toBe(503);
    expect(w.json.error).toMatchObject({ code: 'NO_PRIMARY', details: { outcome: 'not-applied' } });
    const put = await http(replica.url, 'PUT', '/v1/db/other');
    expect(put.json.error.code).toBe('NO_PRIMARY');
    const strong = await http(replica.url, 'POST', `/v1/db/${DB}/query`, { sql: 'SELECT 1' }, { 'edgelite-consistency': 'strong' });
    expect(strong.json.error.code).toBe('NO_PRIMARY');
    expect(await values(primary.url)).toEqual(['first', 'next-0', 'next-1', 'next-2']);

    // A new generation (another process wrote and truncated the WAL while the primary was down) reaches
    // the bucket as a snapshot of the new generation, and the replica follows it there.
    await stop(primary);
    const foreign = new Database(join(dir, 'primary', `${DB}.db`));
    try {
      foreign.exec("INSERT INTO t (v) VALUES ('foreign-1')");
      foreign.pragma('wal_checkpoint(TRUNCATE)');
      foreign.exec("INSERT INTO t (v) VALUES ('foreign-2')");
    } finally {
      foreign.close();
    }
    primary = await start(primaryArgs);
    const next = await http(primary.url, 'GET', `/v1/db/${DB}`);
    expect(next.json.generation).toBeGreaterThan(d.generation!);
    last = await write(primary.url, 'after');
    await uploaded(primary.url, last.txid);
    const moved = await replicaAt(replica.url, last.txid, 'the replica to follow the new generation');
    expect(moved.generation).toBe(next.json.generation);
    expect(moved.checksum).toBe(last.checksum);
    expect(moved.bucket.snapshots).toBe(2);
    expect(await values(replica.url)).toEqual(['first', 'next-0', 'next-1', 'next-2', 'foreign-1', 'foreign-2', 'after']);
  }, 60_000);
});

/**
 * primaryWithSegments starts a primary backing up to `file://<dir>/made` and makes `n` writes, each
 * waiting for its upload (one segment per write); the replica under test reads `<dir>/bucket`, which
 * the test fills from `made`.
 */
async function primaryWithSegments(n: number, value: (i: number) => string) {
  const dir = tempDir();
  const made = join(dir, 'made');
  const bucket = join(dir, 'bucket');
  const primary = await start(['primary', '--data', join(dir, 'primary'), '--listen', '127.0.0.1:0', '--backup', `file://${made}`, '--backup-interval', '50ms', '--query-timeout-ms', '0']);
  await http(primary.url, 'PUT', `/v1/db/${DB}`);
  await exec(primary.url, DB, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
  const at: Array<{ txid: number; checksum: string }> = [];
  for (let i = 0; i < n; i++) {
    at.push(await write(primary.url, value(i)));
    await uploaded(primary.url, at.at(-1)!.txid);
  }
  return { dir, made, bucket, primary, at };
}

describe('replica --source: damaged objects in the bucket', () => {
  it('refuses a flipped byte and a truncated segment, stays at the last good state, and moves on once good objects are there', async () => {
    // One segment per write: each write waits for its upload.
    const { dir, made, bucket, primary, at } = await primaryWithSegments(4, (i) => `row-${i}-${'x'.repeat(3000)}`);
    await stop(primary);
    // The replica reads another directory, which the test fills from the primary's objects.
    const keys = listKeys(made);
    const snapshot = keys.find((k) => k.endsWith('.snapshot'))!;
    const segmentOf = (txid: number) => keys.find((k) => k.endsWith('.changes') && Number.parseInt(k.split('/').at(-1)!.slice(17, 33), 16) === txid)!;
    const put = (key: string, bytes?: Uint8Array) => {
      mkdirSync(dirname(join(bucket, key)), { recursive: true });
      if (bytes) writeFileSync(join(bucket, key), bytes);
      else copyFileSync(join(made, key), join(bucket, key));
    };
    const snapTxid = Number.parseInt(snapshot.split('/').at(-1)!.slice(0, 16), 16);
    put(snapshot);
    for (const k of keys.filter((k) => k.endsWith('.changes') && Number.parseInt(k.split('/').at(-1)!.slice(17, 33), 16) <= at[1]!.txid)) put(k);
    expect(snapTxid).toBeLessThanOrEqual(at[1]!.txid);

    const replica = await start(['replica', '--source', `file://${bucket}`, '--data', join(dir, 'replica'), '--listen', '127.0.0.1:0', '--source-interval', '50ms']);
    expect((await replicaAt(replica.url, at[1]!.txid)).checksum).toBe(at[1]!.checksum);

    // A flipped byte in the next segment: refused, reported, not applied.
    const flippedKey = segmentOf(at[2]!.txid);
    const good = new Uint8Array(readFileSync(join(made, flippedKey)));
    const flipped = good.slice();
    flipped[Math.floor(flipped.length / 2)]! ^= 0x10;
    put(flippedKey, flipped);
    const refused = await waitFor(async () => {
      const d = await describeDb(replica.url);
      return d.bucket.refused > 0 ? d : null;
    }, 'the flipped segment to be refused');
    expect(refused.txid).toBe(at[1]!.txid);
    expect(refused.checksum).toBe(at[1]!.checksum);
    expect(refused.bucket.lastFailure).toMatchObject({ key: flippedKey, code: 'BACKUP_CORRUPT' });
    expect(await metric(replica.url, 'edgelite_bucket_objects_refused_total', `db="${DB}"`)).toBeGreaterThan(0);
    expect(replica.logs.some((l) => l.msg === 'bucket object refused, not applied' && l.key === flippedKey)).toBe(true);
    expect(await values(replica.url)).toHaveLength(2);

    // The good object replaces it: the replica moves on.
    put(flippedKey, good);
    expect((await replicaAt(replica.url, at[2]!.txid)).checksum).toBe(at[2]!.checksum);

    // A truncated segment: refused the same way, then healed.
    const truncatedKey = segmentOf(at[3]!.txid);
    const whole = new Uint8Array(readFileSync(join(made, truncatedKey)));
    const refusedBefore = (await describeDb(replica.url)).bucket.refused;
    put(truncatedKey, whole.subarray(0, whole.length - 100));
    const cut = await waitFor(async () => {
      const d = await describeDb(replica.url);
      return d.bucket.refused > refusedBefore ? d : null;
    }, 'the truncated segment to be refused');
    expect(cut.txid).toBe(at[2]!.txid);
    expect(cut.bucket.lastFailure).toMatchObject({ key: truncatedKey, code: 'BACKUP_CORRUPT' });
    put(truncatedKey, whole);
    expect((await replicaAt(replica.url, at[3]!.txid)).checksum).toBe(at[3]!.checksum);
    expect(await values(replica.url)).toHaveLength(4);
  }, 90_000);
});

describe('replica --source: a damaged object healed by the primary', () => {
  it('stays at the last good state while the primary is unreachable, then takes what follows from the primary', async () => {
    const { dir, made, bucket, primary, at } = await primaryWithSegments(3, (i) => `row-${i}`);
    // The bucket the replica reads: everything up to at[0], then a damaged copy of what follows.
    const maxOf = (k: string) => Number.parseInt(k.split('/').at(-1)!.slice(17, 33), 16);
    for (const key of listKeys(made)) {
      mkdirSync(dirname(join(bucket, key)), { recursive: true });
      const bytes = new Uint8Array(readFileSync(join(made, key)));
      if (key.endsWith('.changes') && maxOf(key) > at[0]!.txid) bytes[bytes.length - 30]! ^= 0x40;
      writeFileSync(join(bucket, key), bytes);
    }
    const proxy = await FaultProxy.start({ target: primary.url });
    try {
      proxy.refuse(true);
      const replica = await start(['replica', '--source', `file://${bucket}`, '--primary', proxy.url, '--data', join(dir, 'replica'), '--listen', '127.0.0.1:0', '--source-interval', '50ms']);
      const stuck = await waitFor(async () => {
        const d = await describeDb(replica.url);
        return d.txid === at[0]!.txid && d.bucket.refused > 0 ? d : null;
      }, 'the replica to stop at the damaged segment');
      expect(stuck.checksum).toBe(at[0]!.checksum);
      await waitFor(async () => (await health(replica.url)).source === 'bucket', 'the replica to find the primary unreachable');
      expect((await describeDb(replica.url)).txid).toBe(at[0]!.txid);

      proxy.refuse(false);
      const healed = await replicaAt(replica.url, at[2]!.txid, 'the primary to heal the replica');
      expect(healed.checksum).toBe(at[2]!.checksum);
      expect(healed.bucket.changeSets).toBe(stuck.bucket.changeSets);
      expect(await health(replica.url)).toMatchObject({ source: 'primary' });
      expect(proxy.count(/^GET \/v1\/db\/app\/snapshot/)).toBe(0);
      expect(await values(replica.url)).toEqual(['row-0', 'row-1', 'row-2']);
    } finally {
      await proxy.close();
    }
  }, 60_000);
});

/** listKeys lists a file:// bucket's keys, relative to its root. */
function listKeys(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
      const k = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) walk(k);
      else out.push(k);
    }
  };
  walk('');
  return out.sort();
}


