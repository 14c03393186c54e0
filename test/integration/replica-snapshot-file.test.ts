/**
 * Snapshot bootstrap through a temp file (replica/snapshot-file.ts): a replica bootstraps a database of
 * tens of MB from a real primary without holding the image in memory, logs its progress and leaves no
 * temp file; a temp file left by a killed process is removed at start; a download that is cut, aborted
 * or fails its checksum (served by a fake primary) leaves no temp file and the old database as it was;
 * a snapshot of another page size still goes into a new local file.
 */
import Database from 'better-sqlite3';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { encodeFrame } from '../../shared/frames.ts';
import { silentLogger } from '../../shared/log.ts';
import { SNAPSHOT_DIGEST_HEADER, snapshotDigest } from '../../shared/protocol.ts';
import { formatChecksum, type Position } from '../../shared/types.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { Follower } from '../../replica/follower.ts';
import { nodePrimaryClient } from '../../replica/primary-fetch.ts';
import type { SnapshotHead } from '../../shared/primary-client.ts';
import { startReplica } from '../../replica/server.ts';
import { downloadSnapshot, PROGRESS_MIN_BYTES, SNAPSHOT_TEMP_SUFFIX, type SnapshotSource } from '../../replica/snapshot-file.ts';
import { ReplicaStore } from '../../replica/store.ts';
import { integrityCheck } from '../kit/api.ts';
import { differingPages } from '../fault/verify.ts';
import { tempDir, stopsAfterEach } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

/** BIG_BYTES: tens of MB of incompressible rows, well above the progress threshold. */
const BIG_BYTES = 48 * 1000 * 1000;
const ROW_BYTES = 1000;

setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;
/**
 * gc collects garbage now, so that a memory sample counts what is live, not socket buffers no GC has
 * reclaimed yet (~30 MB of those come and go during a fast download). Twice: V8 frees array buffers
 * on a concurrent sweeper that memoryUsage() still counts, and the next GC first finishes that sweep.
 */
function gc(): void {
  collect();
  collect();
}

const stops = stopsAfterEach();

/** buildDatabase writes `bytes` of random rows into a new database file in one statement. */
function buildDatabase(file: string, bytes: number, pageSize = 4096): void {
  const db = new Database(file);
  try {
    db.pragma(`page_size = ${pageSize}`);
    db.exec('CREATE TABLE big (id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
    const rows = Math.ceil(bytes / (ROW_BYTES + 30));
    db.prepare(`INSERT INTO big (v) WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) SELECT randomblob(${ROW_BYTES}) FROM c`).run(rows);
  } finally {
    db.close();
  }
}

function tempFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith(SNAPSHOT_TEMP_SUFFIX));
}

describe('snapshot bootstrap through a temp file', () => {
  it('bootstraps tens of MB with bounded memory, logs progress, and leaves no temp file', async () => {
    const t = tempDir('snapfile');
    stops.push(t.cleanup);
    const primaryDir = join(t.dir, 'p');
    mkdirSync(primaryDir);
    buildDatabase(join(primaryDir, 'big.db'), BIG_BYTES);
    const primary = await startPrimary({ ...parsePrimaryConfig(['--data', primaryDir, '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
    stops.push(() => primary.close());
    const size = primary.store.get('big')!.pageCount * primary.store.get('big')!.pageSize;
    expect(size).toBeGreaterThan(PROGRESS_MIN_BYTES);

    // A download killed with its process left a temp file: the next start removes it.
    const replicaDir = join(t.dir, 'r');
    mkdirSync(replicaDir);
    const leftover = join(replicaDir, `gone.db${SNAPSHOT_TEMP_SUFFIX}`);
    writeFileSync(leftover, new Uint8Array(1 << 20));

    const logs: Array<Record<string, unknown>> = [];
    const samples: Array<{ bytes: number; arrayBuffers: number; tempFileBytes: number }> = [];
    const temp = join(replicaDir, `big.db${SNAPSHOT_TEMP_SUFFIX}`);
    gc();
    const baseline = process.memoryUsage().arrayBuffers;
    const logger = (e: Record<string, unknown>) => {
      logs.push(e);
      // Sampled where the download reports progress (every 10%): no timing involved.
      if (e.msg === 'snapshot download') {
        gc();
        samples.push({ bytes: Number(e.bytes), arrayBuffers: process.memoryUsage().arrayBuffers, tempFileBytes: existsSync(temp) ? statSync(temp).size : -1 });
      }
    };
    const config = parseReplicaConfig(['--primary', primary.url, '--data', replicaDir, '--listen', '127.0.0.1:0', '--databases', 'big', '--query-timeout-ms', '0'], {});
    const replica = await startReplica(config, logger);
    stops.push(() => replica.close());
    expect(existsSync(leftover)).toBe(false);
    expect(logs.find((e) => e.msg === 'removed snapshot temp files left by an earlier run')?.files).toEqual([`gone.db${SNAPSHOT_TEMP_SUFFIX}`]);

    const want = primary.store.get('big')!.position;
    await waitFor(() => replica.store.get('big')?.position?.txid === want.txid, 'the replica to bootstrap', 60_000);
    expect(replica.store.get('big')!.position!.checksum).toBe(want.checksum);
    expect(integrityCheck(replica.store.get('big')!.path)).toBe('ok');
    expect(differingPages(primary.store.get('big')!.path, replica.store.get('big')!.path)).toEqual([]);
    expect(tempFiles(replicaDir)).toEqual([]);

    // Progress: a start line, then lines with bytes / total and a rate, ending at 100%.
    expect(logs.find((e) => e.msg === 'snapshot download started')).toMatchObject({ db: 'big', total: size });
    const progress = logs.filter((e) => e.msg === 'snapshot download');
    expect(progress.length).toBeGreaterThanOrEqual(5);
    for (const p of progress) expect(p).toMatchObject({ db: 'big', total: size, bytes: expect.any(Number), percent: expect.any(Number), elapsedMs: expect.any(Number) });
    expect(progress.map((p) => p.bytes as number)).toEqual([...progress.map((p) => p.bytes as number)].sort((a, b) => a - b));
    expect(progress.at(-1)).toMatchObject({ bytes: size, percent: 100 });
    expect(logs.find((e) => e.msg === 'snapshot applied')).toMatchObject({ db: 'big', bytes: size, downloadMs: expect.any(Number), applyMs: expect.any(Number) });

    // The image went to the file as it arrived, and memory never held it: live array buffers grew by
    // far less than the snapshot (the old in-memory download grew them by all of it).
    const during = samples.filter((s) => s.bytes < size);
    expect(during.length).toBeGreaterThan(0);
    for (const s of during) expect(s.tempFileBytes).toBeGreaterThan(s.bytes - 2 * 2 ** 20);
    const peak = Math.max(...samples.map((s) => s.arrayBuffers)) - baseline;
    console.log(`snapshot of ${(size / 2 ** 20).toFixed(1)} MiB: live arrayBuffers grew by at most ${(peak / 2 ** 20).toFixed(1)} MiB over ${samples.length} samples`);
    expect(peak).toBeLessThan(size / 2);
  });

  it('a store removes every snapshot temp file at start and keeps the databases', () => {
    const t = tempDir('snapfile-store');
    stops.push(t.cleanup);
    buildDatabase(join(t.dir, 'app.db'), 10_000);
    for (const f of [`app.db${SNAPSHOT_TEMP_SUFFIX}`, `other.db${SNAPSHOT_TEMP_SUFFIX}`]) writeFileSync(join(t.dir, f), 'partial');
    const logs: Array<Record<string, unknown>> = [];
    const store = new ReplicaStore(t.dir, { busyTimeoutMs: 1000, logger: (e) => logs.push(e) });
    stops.push(() => store.close());
    expect(tempFiles(t.dir)).toEqual([]);
    expect(store.names()).toEqual(['app']);
    expect(existsSync(join(t.dir, 'app.db'))).toBe(true);
    expect((logs.find((e) => e.msg === 'removed snapshot temp files left by an earlier run')?.files as string[]).sort()).toEqual([
      `app.db${SNAPSHOT_TEMP_SUFFIX}`,
      `other.db${SNAPSHOT_TEMP_SUFFIX}`,
    ]);
  });
});

/** An image a fake primary serves, with the position that goes with it. */
interface Served {
  image: Uint8Array;
  position: Position;
  pageSize: number;
}

function served(dir: string, name: string, bytes: number, txid: number, pageSize = 4096): Served {
  const file = join(dir, name);
  buildDatabase(file, bytes, pageSize);
  const image = new Uint8Array(readFileSync(file));
  return { image, pageSize, position: { generation: 1, txid, checksum: DatabaseChecksum.fromFile(image).value } };
}

type Mode = 'ok' | 'cut' | 'stall' | 'bad-checksum';

/**
 * FakePrimary serves one database: a stream that asks for a snapshot until the replica is at the
 * served position (heartbeats otherwise), and a snapshot that is whole, cut half-way, stalled
 * half-way, or announced with a checksum its pages do not have (its digest still matching).
 */
class FakePrimary {
  readonly server: http.Server;
  snapshots = 0;
  constructor(readonly snap: Served, readonly mode: Mode) {
    this.server = http.createServer((req, res) => this.#handle(req, res));
  }

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      if (req.url === '/v1/stream') return this.#stream(JSON.parse(body) as { positions: Record<string, { txid: number } | null> }, res);
      if (req.url === '/v1/db/app/snapshot') return this.#snapshot(res);
      res.writeHead(404).end();
    });
  }

  #stream(request: { positions: Record<string, { txid: number } | null> }, res: http.ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/vnd.edgelite.stream' });
    if (request.positions.app?.txid !== this.snap.position.txid) {
      res.write(encodeFrame({ type: 'snapshot-needed', db: 'app', reason: 'test' }));
    }
    const beat = setInterval(() => res.write(encodeFrame({ type: 'heartbeat', time: Date.now(), positions: {} })), 200);
    res.on('close', () => clearInterval(beat));
  }

  #snapshot(res: http.ServerResponse): void {
    this.snapshots++;
    const { image, position, pageSize } = this.snap;
    const announced = this.mode === 'bad-checksum' ? formatChecksum(position.checksum ^ 1n) : formatChecksum(position.checksum);
    const fields = { generation: position.generation, txid: position.txid, checksum: announced, databaseId: 7, pageSize, length: image.length };
    res.writeHead(200, {
      'content-type': 'application/vnd.sqlite3',
      'content-length': String(image.length),
      'Edgelite-Generation': String(fields.generation),
      'Edgelite-Txid': String(fields.txid),
      'Edgelite-Checksum': announced,
      'Edgelite-Database-Id': '7',
      'Edgelite-Page-Size': String(pageSize),
      [SNAPSHOT_DIGEST_HEADER]: snapshotDigest(fields),
    });
    if (this.mode === 'ok' || this.mode === 'bad-checksum') {
      res.end(image);
      return;
    }
    res.write(image.subarray(0, image.length >> 1));
    if (this.mode === 'cut') setTimeout(() => res.socket?.destroy(), 50);
  }
}

describe('a snapshot that fails leaves no temp file and the old database as it was', () => {
  /** setup bootstraps a local copy of `app` from `old`, then follows a fake primary serving `next`. */
  async function setup(next: (dir: string) => Served, mode: Mode) {
    const t = tempDir('snapfile-fail');
    stops.push(t.cleanup);
    const old = served(t.dir, 'old.db', 300_000, 3);
    const dir = join(t.dir, 'r');
    const logs: Array<Record<string, unknown>> = [];
    const store = new ReplicaStore(dir, { busyTimeoutMs: 1000, logger: (e) => logs.push(e) });
    stops.push(() => store.close());
    store.ensure('app').restore(old.image, old.position, 7, Date.now());
    const fake = new FakePrimary(next(t.dir), mode);
    const client = nodePrimaryClient({ url: await fake.listen() });
    stops.push(() => fake.close());
    stops.push(() => client.close());
    const follower = new Follower({ client, store, databases: ['app'], heartbeatTimeoutMs: 10_000, backoffMinMs: 50, backoffMaxMs: 200, logger: (e) => logs.push(e) });
    stops.push(() => follower.stop());
    follower.start();
    const failure = (pattern: RegExp) => waitFor(() => logs.find((e) => e.msg === 'stream ended' && pattern.test(String(e.error))), `a failure matching ${pattern}`);
    return { dir, old, store, follower, fake, logs, failure, temp: join(dir, `app.db${SNAPSHOT_TEMP_SUFFIX}`) };
  }

  async function expectOldDatabase(s: Awaited<ReturnType<typeof setup>>): Promise<void> {
    await s.follower.stop();
    expect(tempFiles(s.dir)).toEqual([]);
    const db = s.store.get('app')!;
    expect(db.position).toEqual(s.old.position);
    expect(integrityCheck(db.path)).toBe('ok');
    const rows = (await db.query([{ sql: 'SELECT count(*) FROM big', params: [] }]))[0]!.rows;
    expect(rows).toEqual([[Math.ceil(300_000 / (ROW_BYTES + 30))]]);
  }

  it('a connection cut mid-download', async () => {
    const s = await setup((dir) => served(dir, 'next.db', 4_000_000, 9), 'cut');
    await s.failure(/snapshot of app failed at \d+ of \d+ bytes/);
    await expectOldDatabase(s);
  });

  it('a download aborted while under way (the follower stops)', async () => {
    const s = await setup((dir) => served(dir, 'next.db', 4_000_000, 9), 'stall');
    await waitFor(() => existsSync(s.temp) && statSync(s.temp).size > 0, 'part of the snapshot in its temp file');
    await expectOldDatabase(s);
  });

  it('an image whose checksum is not the announced one', async () => {
    const s = await setup((dir) => served(dir, 'next.db', 1_000_000, 9), 'bad-checksum');
    await s.failure(/snapshot of app has checksum [0-9a-f]+, position says/);
    await expectOldDatabase(s);
  });

  it('a snapshot of another page size goes into a new local file, from the same temp file', async () => {
    const s = await setup((dir) => served(dir, 'next.db', 1_000_000, 9, 1024), 'ok');
    await waitFor(() => s.store.get('app')?.position?.txid === 9, 'the new snapshot applied');
    expect(s.logs.some((e) => e.msg === 'local copy dropped to take a snapshot it cannot hold')).toBe(true);
    const db = s.store.get('app')!;
    expect(db.position).toEqual(s.fake.snap.position);
    expect(s.fake.snapshots).toBe(1);
    expect(tempFiles(s.dir)).toEqual([]);
    expect(integrityCheck(db.path)).toBe('ok');
    const conn = new Database(db.path, { readonly: true });
    expect(conn.pragma('page_size', { simple: true })).toBe(1024);
    conn.close();
  });
});

describe('downloadSnapshot', () => {
  /** source serves `image` in `chunk`-byte chunks (64 KiB) under `head` (default: the image's true head), as PrimaryClient would. */
  function source(image: Uint8Array, head: Partial<SnapshotHead> = {}, chunk = 65536): SnapshotSource {
    return {
      async snapshot(_db, sink) {
        const full: SnapshotHead = {
          position: { generation: 1, txid: 4, checksum: DatabaseChecksum.fromFile(image).value },
          databaseId: 7,
          pageSize: 4096,
          length: image.length,
          ...head,
        };
        await sink.open(full);
        for (let at = 0; at < image.length; at += chunk) await sink.write(image.subarray(at, at + chunk));
        return full;
      },
    };
  }

  async function failure(run: () => Promise<unknown>): Promise<EdgeliteError> {
    const err = await run().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(EdgeliteError);
    return err as EdgeliteError;
  }

  it('returns the verified file, whose pages read back as the image; remove() deletes it', async () => {
    const t = tempDir('snapfile-dl');
    stops.push(t.cleanup);
    const { image, position } = served(t.dir, 'src.db', 3_000_000, 4);
    const path = join(t.dir, `app.db${SNAPSHOT_TEMP_SUFFIX}`);
    const file = await downloadSnapshot(source(image), 'app', path, { logger: silentLogger });
    expect(file.head.position).toEqual(position);
    expect(readFileSync(path).equals(image)).toBe(true);
    let n = 0;
    for (const page of file.pages()) {
      n++;
      expect(Buffer.from(page.data).equals(image.subarray((page.pgno - 1) * 4096, page.pgno * 4096))).toBe(true);
    }
    expect(n).toBe(image.length / 4096);
    file.remove();
    expect(existsSync(path)).toBe(false);
    // Chunks that split pages (pages are hashed as they complete, across chunks): the same verified file.
    const split = await downloadSnapshot(source(image, {}, 10_007), 'app', path, { logger: silentLogger });
    expect(split.checksum.value).toBe(position.checksum);
    expect(readFileSync(path).equals(image)).toBe(true);
    split.remove();
    const bad = source(image, { position: { ...position, checksum: position.checksum ^ 1n } }, 10_007);
    expect((await failure(() => downloadSnapshot(bad, 'app', path, { logger: silentLogger }))).code).toBe('CHECKSUM_MISMATCH');
  });

  it('refuses a body that is not whole pages, a short one, and a checksum that differs, leaving no file', async () => {
    const t = tempDir('snapfile-dl');
    stops.push(t.cleanup);
    const { image } = served(t.dir, 'src.db', 500_000, 4);
    const path = join(t.dir, `app.db${SNAPSHOT_TEMP_SUFFIX}`);
    const options = { logger: silentLogger };
    expect((await failure(() => downloadSnapshot(source(image, { length: image.length - 100 }), 'app', path, options))).code).toBe('CORRUPT_CHANGESET');
    expect((await failure(() => downloadSnapshot(source(image.subarray(0, 8192), { length: image.length }), 'app', path, options))).code).toBe('CORRUPT_CHANGESET');
    const bad = source(image, { position: { generation: 1, txid: 4, checksum: 1n } });
    const mismatch = await failure(() => downloadSnapshot(bad, 'app', path, options));
    expect([mismatch.code, mismatch.details?.reason]).toEqual(['CHECKSUM_MISMATCH', 'snapshot-checksum']);
    expect(existsSync(path)).toBe(false);
    // A temp file that cannot be created: the download fails IO_ERROR before it reads the body.
    const err = await failure(() => downloadSnapshot(source(image), 'app', join(t.dir, 'missing', 'x'), options));
    expect(err.code).toBe('IO_ERROR');
  });
});
