/**
 * The contracts of a bucket source's parts: what a database needs from a listing (BucketFeed.step),
 * reading segments and snapshots from a real directory store with every check (size, damage, a change
 * set straddling the position), what is counted and reported, and the replicas' source options (the
 * Node replica's --source, the Worker's SOURCE_URL).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { catalog, segmentKey, snapshotKey } from '../../shared/backup-layout.ts';
import { encodeSegment, encodeSnapshot } from '../../shared/backup-objects.ts';
import { BucketFeed, DEFAULT_SOURCE_INTERVAL_MS, isStoreFailure } from '../../shared/bucket-feed.ts';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { encodeChangeSet } from '../../shared/changeset.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { FileObjectStore } from '../../shared/node/file-object-store.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { parseWorkerConfig, type Env } from '../../deploy/worker/src/config.ts';

const T0 = Date.parse('2026-12-01T00:00:00Z');
const root = mkdtempSync(join(tmpdir(), 'edgelite-bucket-feed-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const logged: Array<Record<string, unknown>> = [];
const feed = new BucketFeed(new FileObjectStore(root), (e) => void logged.push(e));

function put(key: string, bytes: Uint8Array): void {
  mkdirSync(dirname(join(root, key)), { recursive: true });
  writeFileSync(join(root, key), bytes);
}

async function failure(p: Promise<unknown>): Promise<EdgeliteError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(EdgeliteError);
  return err as EdgeliteError;
}

describe('BucketFeed.step: what a database needs from a listing', () => {
  const pos = (generation: number, txid: number) => ({ generation, txid, checksum: 1n });
  const gens = catalog(
    [snapshotKey('a', 1, 0, T0), segmentKey('a', 1, 1, 5, T0), segmentKey('a', 1, 6, 9, T0), snapshotKey('a', 1, 20, T0), segmentKey('a', 1, 21, 25, T0), snapshotKey('a', 3, 30, T0), segmentKey('a', 3, 31, 32, T0), segmentKey('b', 1, 1, 2, T0)].map((key) => ({ key, size: 1 })),
  );
  const a = gens.get('a');
  const step = (p: ReturnType<typeof pos> | null, ...g: [Parameters<BucketFeed['step']>[0]] | []) => {
    const s = feed.step(g.length === 0 ? a : g[0], p);
    return s.kind === 'snapshot' ? ['snapshot', s.snapshot.generation, s.snapshot.txid] : s.kind === 'segments' ? ['segments', ...s.segments.map((x) => x.minTxid)] : ['none'];
  };

  it('no copy, or an older generation: the newest snapshot of the newest generation', () => {
    expect(step(null)).toEqual(['snapshot', 3, 30]);
    expect(step(pos(1, 9))).toEqual(['snapshot', 3, 30]);
    expect(step(pos(2, 31))).toEqual(['snapshot', 3, 30]);
  });

  it('the same generation: the chain continuing it, even from inside a segment', () => {
    expect(step(pos(3, 30))).toEqual(['segments', 31]);
    expect(step(pos(3, 31))).toEqual(['segments', 31]);
    expect(step(pos(3, 32))).toEqual(['none']);
  });

  it('a newer generation than the bucket, or a bucket with no snapshot: nothing', () => {
    expect(step(pos(4, 40))).toEqual(['none']);
    expect(step(null, gens.get('b'))).toEqual(['none']);
    expect(step(null, undefined)).toEqual(['none']);
  });

  it('no segment continues the copy: the newest snapshot if it is ahead, else nothing', () => {
    const older = catalog([snapshotKey('a', 1, 0, T0), segmentKey('a', 1, 1, 5, T0), snapshotKey('a', 1, 20, T0)].map((key) => ({ key, size: 1 }))).get('a');
    expect(step(pos(1, 7), older)).toEqual(['snapshot', 1, 20]);
    expect(step(pos(1, 20), older)).toEqual(['none']);
    expect(step(pos(1, 3), older)).toEqual(['segments', 1]);
  });
});

describe('BucketFeed reads objects and verifies them', () => {
  const pageSize = 1024;
  const image = new Uint8Array(pageSize * 2);
  image.set([0x53, 0x51, 0x4c], 0);
  new DataView(image.buffer).setUint16(16, pageSize);
  image.fill(7, pageSize);
  const sum = DatabaseChecksum.fromFile(image);
  const snapHead = { pageSize, databaseId: 42, generation: 3, txid: 10, pageCount: 2, timestamp: T0, checksum: sum.value };
  const snapshot = encodeSnapshot(snapHead, image);
  const changeSets = [
    [11, 11],
    [12, 13],
    [14, 14],
  ].map(([min, max]) => {
    const pre = sum.value;
    const page = new Uint8Array(pageSize).fill(max!);
    const post = sum.apply([{ pgno: 2, data: page }], 2);
    return encodeChangeSet({ databaseId: 42, pageSize, generation: 3, minTxid: min!, maxTxid: max!, commit: 2, timestamp: T0 + max!, preChecksum: pre, postChecksum: post, pages: [{ pgno: 2, data: page }] });
  });
  const segment = encodeSegment(changeSets);

  it('a segment: the change sets after the position, each with its own bytes', async () => {
    put(segmentKey('r', 3, 11, 14, T0), segment);
    const seg = [...(await feed.list(['r'])).get('r')![0]!.segments.values()][0]!;
    const all = await feed.segment(seg, 10);
    expect(all.map((c) => [c.changeSet.minTxid, c.changeSet.maxTxid])).toEqual([[11, 11], [12, 13], [14, 14]]);
    expect(all.map((c) => c.bytes)).toEqual(changeSets);
    expect((await feed.segment(seg, 13)).map((c) => c.changeSet.minTxid)).toEqual([14]);
    expect((await failure(feed.segment(seg, 12))).code).toBe('BACKUP_CORRUPT'); // straddles 12..13
  });

  it('a segment damaged, truncated, not its listed size or missing: BACKUP_CORRUPT naming it', async () => {
    const key = segmentKey('d', 3, 11, 14, T0);
    const bad = segment.slice();
    bad[segment.length - 9]! ^= 0x01;
    put(key, bad);
    let seg = [...(await feed.list(['d'])).get('d')![0]!.segments.values()][0]!;
    const flipped = await failure(feed.segment(seg, 10));
    expect(flipped).toMatchObject({ code: 'BACKUP_CORRUPT', details: { key } });
    expect(isStoreFailure(flipped)).toBe(false);
    put(key, segment.subarray(0, segment.length - 1));
    seg = [...(await feed.list(['d'])).get('d')![0]!.segments.values()][0]!;
    expect((await failure(feed.segment(seg, 10))).code).toBe('BACKUP_CORRUPT');
    expect((await failure(feed.segment({ ...seg, size: seg.size + 1 }, 10))).message).toContain('listed as');
    expect((await failure(feed.segment({ ...seg, key: segmentKey('d', 3, 11, 15, T0) }, 10))).message).toContain('listed but missing');
  });

  it('a snapshot: verified whole, and its name must match what it holds', async () => {
    put(snapshotKey('s', 3, 10, T0), snapshot);
    const snap = feed.newestSnapshot((await feed.list(['s'])).get('s'))!;
    const got = await feed.snapshot(snap);
    expect(got.head).toEqual(snapHead);
    expect(got.image).toEqual(image);
    expect((await failure(feed.snapshot({ ...snap, txid: 11 }))).code).toBe('BACKUP_CORRUPT');
    const bad = snapshot.slice();
    bad[100]! ^= 0x04;
    put(snap.key, bad);
    expect((await failure(feed.snapshot(snap))).code).toBe('BACKUP_CORRUPT');
  });

  it('counts what it gave and refused per database, and logs each refusal', () => {
    feed.noteApplied('x', 3);
    feed.noteSnapshot('x');
    feed.noteRefused('x', 'x/00000001/k.changes', new EdgeliteError('BACKUP_CORRUPT', 'flipped'));
    expect(feed.status('x')).toMatchObject({ changeSets: 3, snapshots: 1, refused: 1, lastFailure: { key: 'x/00000001/k.changes', code: 'BACKUP_CORRUPT', message: 'flipped' } });
    expect(feed.status('never')).toEqual({ changeSets: 0, snapshots: 0, refused: 0, lastFailure: null });
    expect(logged.at(-1)).toMatchObject({ msg: 'bucket object refused, not applied', db: 'x', key: 'x/00000001/k.changes' });
    const lines = logged.length;
    feed.noteRefused('x', 'x/00000001/k.changes', new EdgeliteError('BACKUP_CORRUPT', 'flipped'));
    expect(feed.status('x').refused).toBe(2);
    expect(logged).toHaveLength(lines); // the same object refused again: counted, not logged again
    expect(isStoreFailure(new EdgeliteError('UNAVAILABLE', 'down'))).toBe(true);
  });
});

describe('replica --source options', () => {
  const env = { AWS_ACCESS_KEY_ID: 'id', AWS_SECRET_ACCESS_KEY: 'secret' };
  const parse = (argv: string[], e: Record<string, string> = env) => parseReplicaConfig(['--data', '/tmp/x', ...argv], e);
  const refused = (argv: string[], e?: Record<string, string>) => {
    try {
      parse(argv, e);
      return null;
    } catch (err) {
      expect(err).toMatchObject({ code: 'MISCONFIGURED' });
      return (err as Error).message;
    }
  };

  it('--source with or without --primary; the interval and endpoint as for --backup', () => {
    const alone = parse(['--source', 'file:///backups']);
    expect(alone.primaryUrl).toBeNull();
    expect(alone.source).toEqual({ target: { kind: 'file', url: 'file:///backups', dir: '/backups' }, intervalMs: DEFAULT_SOURCE_INTERVAL_MS, keyring: null });
    const s3 = parse(['--source', 's3://b/p', '--primary', 'http://127.0.0.1:7400', '--source-interval', '250ms', '--s3-endpoint', 'http://127.0.0.1:9000']);
    expect(s3.primaryUrl).toBe('http://127.0.0.1:7400');
    expect(s3.source).toMatchObject({ intervalMs: 250, target: { kind: 's3', s3: { bucket: 'b', prefix: 'p', endpoint: 'http://127.0.0.1:9000' } } });
    expect(parse(['--primary', 'http://127.0.0.1:7400']).source).toBeNull();
  });

  it('refuses what cannot work, naming the flag', () => {
    expect(refused([])).toMatch(/--primary is required/);
    expect(refused(['--source', 's3://b/p'], {})).toMatch(/AWS_ACCESS_KEY_ID/);
    expect(refused(['--source', 'ftp://x'])).toMatch(/scheme/);
    expect(refused(['--source', 'file:///b', '--source-interval', 'soon'])).toMatch(/--source-interval/);
    expect(refused(['--primary', 'http://127.0.0.1:7400', '--source-interval', '1s'])).toMatch(/need --source/);
    expect(refused(['--source', 'file:///b', '--lazy'])).toMatch(/--lazy .* needs --primary/);
    expect(refused(['--source', 'file:///b', '--on-behind', 'primary'])).toMatch(/--on-behind primary needs --primary/);
  });
});

describe('Worker SOURCE_URL', () => {
  const base: Env = { REPLICA: {} as DurableObjectNamespace, PRIMARY_URL: 'http://127.0.0.1:7400', EDGELITE_TOKENS: 'read=read-token-0123456789' };
  const creds = { AWS_ACCESS_KEY_ID: 'id', AWS_SECRET_ACCESS_KEY: 'secret' };

  it('reads the bucket, its credentials and endpoint as the Node replica does; empty vars are unset', () => {
    expect(parseWorkerConfig(base).source).toBeNull();
    expect(parseWorkerConfig({ ...base, SOURCE_URL: '' }).source).toBeNull();
    const c = parseWorkerConfig({ ...base, ...creds, SOURCE_URL: 's3://b/p', S3_ENDPOINT: 'http://127.0.0.1:9000', AWS_REGION: '' });
    expect(c.source).toEqual({ intervalMs: DEFAULT_SOURCE_INTERVAL_MS, s3: { bucket: 'b', prefix: 'p', region: 'us-east-1', endpoint: 'http://127.0.0.1:9000', accessKeyId: 'id', secretAccessKey: 'secret' }, keyring: null });
    expect(parseWorkerConfig({ ...base, ...creds, SOURCE_URL: 's3://b', AWS_ENDPOINT_URL_S3: 'https://r2.example', SOURCE_INTERVAL_MS: '250' }).source).toMatchObject({ intervalMs: 250, s3: { endpoint: 'https://r2.example', prefix: '' } });
  });

  it('refuses a directory, missing credentials and a bad interval: MISCONFIGURED naming them', () => {
    const refused = (env: Partial<Env>): string => {
      try {
        parseWorkerConfig({ ...base, ...env });
      } catch (err) {
        expect(err).toMatchObject({ code: 'MISCONFIGURED' });
        return (err as Error).message;
      }
      return 'accepted';
    };
    expect(refused({ ...creds, SOURCE_URL: 'file:///backups' })).toMatch(/not a directory/);
    expect(refused({ SOURCE_URL: 's3://b/p' })).toMatch(/AWS_ACCESS_KEY_ID/);
    expect(refused({ ...creds, SOURCE_URL: 's3://b/p', SOURCE_INTERVAL_MS: '0' })).toMatch(/SOURCE_INTERVAL_MS/);
  });
});
