/**
 * Backup to `file:///dir`: restores equal the primary's past states; the directory store's contract
 * (atomic puts, listing by prefix, missing keys); the log keeps every change set not uploaded yet even
 * when retention says drop it; backup URLs and flags are parsed with precise errors.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EdgeliteError } from '../../shared/errors.ts';
import { FileObjectStore } from '../../shared/node/file-object-store.ts';
import { parseBackupTarget } from '../../shared/object-store.ts';
import { formatChecksum } from '../../shared/types.ts';
import { BackupRunner } from '../../primary/backup.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { listBackups, restoreDatabase } from '../../primary/restore.ts';
import type { PrimaryHandle } from '../../primary/server.ts';
import { PrimaryStore } from '../../primary/store.ts';
import { integrityCheck } from '../kit/api.ts';
import { sleep, waitFor } from '../kit/wait.ts';
import { fileChecksum, pick, quietLogger, randomWorkload, startBackedUpPrimary, waitUploaded, type Written } from './backup-kit.ts';

const DB = 'app';
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'edgelite-backup-file-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function walk(d: string): string[] {
  return readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [e.name]));
}

describe('backup to file://', () => {
  let primary: PrimaryHandle;
  let written: Written[];
  const bucket = () => join(dir, 'bucket');

  beforeAll(async () => {
    primary = await startBackedUpPrimary(join(dir, 'data'), `file://${bucket()}`, {}, 4);
    written = await randomWorkload(primary.url, DB, 80, 3);
    await waitUploaded(primary.url, DB);
  }, 60_000);
  afterAll(() => primary?.close());

  it('restores 20 random past txids, each equal to the primary at that txid', async () => {
    const objects = new FileObjectStore(bucket());
    const [summary] = await listBackups(objects, DB);
    const range = summary!.generations.at(-1)!.ranges[0]!;
    expect(range.toTxid).toBe(written.at(-1)!.txid);
    const restorable = written.filter((w) => w.txid >= range.fromTxid);
    for (const [i, w] of pick(restorable, 20, 5).entries()) {
      const out = join(dir, `r${i}.db`);
      const result = await restoreDatabase(objects, { db: DB, target: { txid: w.txid }, out });
      expect([result.txid, fileChecksum(out)]).toEqual([w.txid, w.checksum]);
      expect(integrityCheck(out)).toBe('ok');
    }
    expect(walk(bucket()).filter((f) => !/\.(changes|snapshot)$/.test(f))).toEqual([]); // no temp files left
  });

  it('refuses to continue a backup of another history under the same name and generation', async () => {
    const objects = new FileObjectStore(bucket());
    const before = await objects.list('');
    const other = await startBackedUpPrimary(join(dir, 'data-other'), `file://${bucket()}`, {});
    try {
      await randomWorkload(other.url, DB, 3, 9);
      await waitFor(() => other.backup!.status(DB).errors >= 1, 'the backup to refuse');
      expect(other.backup!.status(DB).uploadedTxid).toBe(0);
      expect(await objects.list('')).toEqual(before);
    } finally {
      await other.close();
    }
  });
});

describe('FileObjectStore', () => {
  it('puts, gets, lists by prefix and deletes; a missing key is null; a bad key is refused', async () => {
    const s = new FileObjectStore(join(dir, 'store'));
    await s.put('a/b/one', new Uint8Array([1, 2, 3]));
    await s.put('a/b/two', new Uint8Array([4]));
    await s.put('a/c', new Uint8Array(0));
    await s.put('a/b/one', new Uint8Array([9])); // replaces
    expect(await s.get('a/b/one')).toEqual(new Uint8Array([9]));
    expect(await s.get('a/b/none')).toBeNull();
    expect(await s.list('a/b/')).toEqual([{ key: 'a/b/one', size: 1 }, { key: 'a/b/two', size: 1 }]);
    expect((await s.list('a/')).map((o) => o.key)).toEqual(['a/b/one', 'a/b/two', 'a/c']);
    expect(await s.list('zzz/')).toEqual([]);
    await s.delete('a/b/one');
    await s.delete('a/b/one');
    expect((await s.list('')).map((o) => o.key)).toEqual(['a/b/two', 'a/c']);
    for (const key of ['', '../x', 'a//b', 'a/./b']) await expect(s.put(key, new Uint8Array(1))).rejects.toMatchObject({ code: 'BAD_REQUEST' });
  });
});

describe('log retention and the backup', () => {
  function openStore(data: string, hold?: (name: string) => () => number): PrimaryStore {
    return new PrimaryStore(data, {
      synchronous: 'normal',
      busyTimeoutMs: 5000,
      compress: false,
      checkpointFrames: 100_000,
      pollIntervalMs: 100,
      // Retention that would drop every segment but the newest, and segments of one record each.
      log: { retention: { maxRecords: 1 }, segmentBytes: 1024 },
      queryPool: null,
      logger: quietLogger(),
      ...(hold ? { logHold: hold } : {}),
    }).open();
  }
  async function writeRows(store: PrimaryStore, n: number): Promise<void> {
    const { db } = store.create(DB);
    await db.write([{ sql: 'CREATE TABLE IF NOT EXISTS t (v TEXT)', params: [] }]);
    for (let i = 0; i < n; i++) await db.write([{ sql: 'INSERT INTO t VALUES (?)', params: ['row'.repeat(50) + i] }]);
  }

  it('keeps every change set not uploaded yet, and lets retention act once they are', async () => {
    const blocker = join(dir, 'blocker');
    writeFileSync(blocker, 'a file where the bucket directory should be: every put fails');
    const runner = new BackupRunner(new FileObjectStore(join(blocker, 'bucket')), { intervalMs: 20, logger: quietLogger() });
    const store = openStore(join(dir, 'pinned'), (name) => runner.holdFor(name));
    runner.start(store);
    try {
      await writeRows(store, 30);
      const db = store.require(DB);
      await waitFor(() => runner.status(DB).errors >= 2, 'failed uploads');
      db.checkpoint();
      expect(db.log.stats().firstTxid).toBe(1);
      expect(runner.status(DB).uploadedTxid).toBe(0);
      expect(runner.status(DB).lagMs).toBeGreaterThan(0);

      rmSync(blocker);
      await runner.flush();
      expect(runner.status(DB)).toMatchObject({ uploadedTxid: db.position.txid, lagMs: 0 });
      await writeRows(store, 5);
      await runner.flush();
      db.checkpoint();
      expect(db.log.stats().firstTxid).toBeGreaterThan(1);
      const out = join(dir, 'pinned.db');
      const result = await restoreDatabase(new FileObjectStore(join(blocker, 'bucket')), { db: DB, target: { latest: true }, out });
      expect(result.checksum).toBe(formatChecksum(db.position.checksum));
      expect(fileChecksum(out)).toBe(formatChecksum(db.position.checksum));
    } finally {
      await runner.close();
      store.close();
    }
  });

  it('(control) without the backup pin the same retention drops those change sets', async () => {
    const store = openStore(join(dir, 'unpinned'));
    try {
      await writeRows(store, 30);
      const db = store.require(DB);
      db.checkpoint();
      expect(db.log.stats().firstTxid).toBeGreaterThan(1);
    } finally {
      store.close();
    }
  });
});

describe('PUTs grow with the databases that changed', () => {
  it('20 databases, 2 written: after the first snapshots only those 2 upload', async () => {
    const files = new FileObjectStore(join(dir, 'many-bucket'));
    const puts: string[] = [];
    const counting = { ...files, description: files.description, get: files.get.bind(files), list: files.list.bind(files), delete: files.delete.bind(files), put: (key: string, bytes: Uint8Array) => (puts.push(key), files.put(key, bytes)) };
    const runner = new BackupRunner(counting, { intervalMs: 20, logger: quietLogger() });
    const store = new PrimaryStore(join(dir, 'many'), { synchronous: 'normal', busyTimeoutMs: 5000, compress: false, checkpointFrames: 4000, pollIntervalMs: 100, log: {}, queryPool: null, logger: quietLogger(), logHold: (n) => runner.holdFor(n) }).open();
    runner.start(store);
    try {
      const names = Array.from({ length: 20 }, (_, i) => `db${i}`);
      for (const n of names) store.create(n);
      await runner.flush();
      expect(new Set(puts.map((k) => k.split('/')[0])).size).toBe(20);
      puts.length = 0;
      for (let i = 0; i < 10; i++) {
        for (const n of ['db3', 'db17']) await store.require(n).write([{ sql: 'CREATE TABLE IF NOT EXISTS t (v)', params: [] }, { sql: 'INSERT INTO t VALUES (?)', params: [i] }]);
        await sleep(25);
      }
      await runner.flush();
      expect([...new Set(puts.map((k) => k.split('/')[0]))].sort()).toEqual(['db17', 'db3']);
      expect(puts.length).toBeGreaterThanOrEqual(2);
    } finally {
      await runner.close();
      store.close();
    }
  });
});

describe('backup lag', () => {
  it('is the age of the oldest change not uploaded: counted from its commit, not from when someone first asked; a failing flush says why', async () => {
    const files = new FileObjectStore(join(dir, 'lag-bucket'));
    let failPuts = false;
    const flaky = { description: files.description, get: files.get.bind(files), list: files.list.bind(files), delete: files.delete.bind(files), put: (key: string, bytes: Uint8Array) => (failPuts ? Promise.reject(new Error('bucket down (test)')) : files.put(key, bytes)) };
    const runner = new BackupRunner(flaky, { intervalMs: 20, logger: quietLogger() });
    const store = new PrimaryStore(join(dir, 'lag'), { synchronous: 'normal', busyTimeoutMs: 5000, compress: false, checkpointFrames: 4000, pollIntervalMs: 100, log: {}, queryPool: null, logger: quietLogger(), logHold: (n) => runner.holdFor(n) }).open();
    runner.start(store);
    try {
      store.create(DB);
      await store.require(DB).write([{ sql: 'CREATE TABLE t (v)', params: [] }]);
      await runner.flush();
      expect(runner.status(DB).lagMs).toBe(0);
      failPuts = true;
      await store.require(DB).write([{ sql: 'INSERT INTO t VALUES (1)', params: [] }]);
      const committed = store.require(DB).lastCommitTime;
      await sleep(300);
      await store.require(DB).write([{ sql: 'INSERT INTO t VALUES (2)', params: [] }]);
      // Asked for the first time now: the lag still counts from the first write's commit.
      const { lagMs } = runner.status(DB);
      expect(lagMs).toBeGreaterThanOrEqual(Date.now() - committed - 50);
      expect(lagMs).toBeGreaterThanOrEqual(250);
      // A flush that cannot upload says which database and why.
      await expect(runner.flush()).rejects.toThrow(`backup flush failed for ${DB} (bucket down (test))`);
      failPuts = false;
      await runner.flush();
      expect(runner.status(DB)).toMatchObject({ lagMs: 0, uploadedTxid: store.require(DB).position.txid });
    } finally {
      await runner.close();
      store.close();
    }
  });
});

describe('backup configuration', () => {
  const creds = { AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's' };
  it('reads s3:// the way the AWS SDKs do: endpoint flag, then AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL', () => {
    const t = parseBackupTarget('s3://bucket/some/prefix/', { ...creds, AWS_REGION: 'eu-west-1', AWS_ENDPOINT_URL: 'http://b:2', AWS_ENDPOINT_URL_S3: 'http://a:1/' });
    expect(t).toMatchObject({ kind: 's3', s3: { bucket: 'bucket', prefix: 'some/prefix', region: 'eu-west-1', endpoint: 'http://a:1' } });
    expect(parseBackupTarget('s3://b', { ...creds, AWS_ENDPOINT_URL: 'http://b:2' }, 'http://c:3')).toMatchObject({ s3: { endpoint: 'http://c:3', prefix: '', region: 'us-east-1' } });
    expect(parseBackupTarget('s3://b/p', creds)).toMatchObject({ s3: { endpoint: null } });
    expect(parseBackupTarget('file:///var/backups/', {})).toEqual({ kind: 'file', url: 'file:///var/backups/', dir: '/var/backups' });
  });

  it('refuses bad URLs, missing credentials and bad intervals as MISCONFIGURED', () => {
    for (const [url, env] of [['http://x/y', creds], ['s3://bucket/p', {}], ['file://host/dir', {}], ['nonsense', {}]] as const) {
      expect(() => parseBackupTarget(url, env), url).toThrow(EdgeliteError);
    }
    const parse = (...flags: string[]) => () => parsePrimaryConfig(['--data', dir, ...flags], {});
    expect(parse('--backup', 'file:///tmp/b', '--backup-interval', 'soon')).toThrow(/--backup-interval wants a duration/);
    expect(parse('--backup-interval', '1s')).toThrow(/need --backup/);
    expect(parsePrimaryConfig(['--data', dir, '--backup', 'file:///tmp/b', '--backup-interval', '250ms'], {}).backup).toMatchObject({ intervalMs: 250 });
    expect(parsePrimaryConfig(['--data', dir, '--backup', 'file:///tmp/b'], {}).backup).toMatchObject({ intervalMs: 1000 });
    expect(parsePrimaryConfig(['--data', dir], {}).backup).toBeNull();
  });
});
