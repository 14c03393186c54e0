/**
 * The snapshot answer written straight to Node's socket (shared/node/snapshot-view.ts snapshotAnswer,
 * docs/ARCHITECTURE.md#bootstrap-by-file), on real SQLite files and real servers on port 0: its head
 * carries every header the app's middleware would add (before the handler, and after it: a lease
 * holder's epoch), the body is the image; the socket's backpressure paces the page reads; a client that
 * goes away ends the read transaction; a read error cuts the body short of its Content-Length. Where the
 * fast path does not apply (an Origin header) the web-stream answer goes out, with the same headers; HEAD
 * gets them without a body, and its view ends at once.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { silentLogger } from '../../shared/log.ts';
import { SNAPSHOT_CHUNK_BYTES, snapshotAnswer, SnapshotView } from '../../shared/node/snapshot-view.ts';
import { EPOCH_HEADER } from '../../shared/primary-locator.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import type { PrimaryHa } from '../../primary/ha.ts';
import { startPrimary } from '../../primary/server.ts';
import { formatChecksum } from '../../shared/types.ts';
import { stopsAfterEach, tempDir } from '../helpers.ts';
import { exec, http } from '../kit/api.ts';
import { waitFor } from '../kit/wait.ts';

const stops = stopsAfterEach();
const PAGE = 4096;

/** Headers a server adds on its own or that depend on framing, left out when two answers are compared. */
const TRANSPORT = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding']);

interface Got {
  res: IncomingMessage;
  body: Buffer;
  /** error: the body ended with an error (the socket was cut) rather than its end. */
  error: Error | null;
}

/** get sends one request and reads the whole answer, or as much as comes before the socket is cut. */
function get(url: string, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let error: Error | null = null;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (e) => (error = e));
      res.on('aborted', () => (error ??= new Error('aborted')));
      res.on('close', () => resolve({ res, body: Buffer.concat(chunks), error: error ?? (res.complete ? null : new Error('incomplete')) }));
    });
    req.on('error', reject);
    req.end();
  });
}

function headersOf(res: IncomingMessage, drop: (k: string) => boolean = () => false): Record<string, string> {
  return Object.fromEntries(Object.entries(res.headers).filter(([k]) => !TRANSPORT.has(k) && !drop(k)).map(([k, v]) => [k, String(v)]));
}

/** fileOf builds a WAL database of about `bytes` of random rows, closed (checkpointed), in `dir`. */
function fileOf(dir: string, bytes: number): string {
  const file = join(dir, 'src.db');
  const db = new Database(file);
  db.pragma(`page_size = ${PAGE}`);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (v BLOB)');
  const insert = db.prepare('INSERT INTO t VALUES (?)');
  db.transaction(() => {
    for (let n = 0; n < bytes; n += 1000) insert.run(randomBytes(1000));
  })();
  db.close();
  return file;
}

/** CountingView is a SnapshotView that counts its page reads and can fail a read (a real SQLite error). */
class CountingView extends SnapshotView {
  reads = 0;
  ended = 0;
  /** failAfter: reads after this many find the connection closed under them. */
  constructor(readonly conn: Database.Database, pageCount: number, private readonly failAfter = Infinity) {
    super(conn, { generation: 1, txid: 1, checksum: 0n }, 7, PAGE, pageCount, { onEnd: () => this.ended++ });
  }

  override readPages(first: number, last: number): Uint8Array {
    if (this.reads++ === this.failAfter) this.conn.close();
    return super.readPages(first, last);
  }
}

/** viewOf pins a read transaction on `file` (as PrimaryDatabase.beginSnapshot does). */
function viewOf(file: string, failAfter?: number): CountingView {
  const conn = new Database(file, { fileMustExist: true });
  conn.pragma('query_only = ON');
  conn.exec('BEGIN');
  const pageCount = Number(conn.pragma('page_count', { simple: true }));
  return new CountingView(conn, pageCount, failAfter);
}

interface Served {
  url: string;
  /** What the app's outermost middleware saw as the answer: was it sent already (the fast path)? */
  direct: boolean[];
}

/**
 * serveView serves `view()` at GET /snap through snapshotAnswer under @hono/node-server, behind a
 * middleware that sets a header before the handler and one that sets the `after` headers after it.
 */
async function serveView(view: () => SnapshotView): Promise<Served> {
  const app = new Hono();
  const direct: boolean[] = [];
  app.use('*', async (c, next) => {
    c.res.headers.set('x-before', 'set before the handler');
    await next();
    direct.push(c.res.headers.get('x-hono-already-sent') !== null);
    c.res.headers.set('x-after', 'late');
  });
  app.get('/snap', (c) => snapshotAnswer(c, 'src', view(), { 'x-after': 'late' }));
  let server!: ServerType;
  const port = await new Promise<number>((resolve) => {
    server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, (info: AddressInfo) => resolve(info.port));
  });
  stops.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${port}`, direct };
}

describe('snapshot answer straight to the socket', () => {
  it('under the failover lease: the epoch is on the answer, as on the web-stream answer; the body is the image', async () => {
    const t = tempDir('snapshot-direct-ha');
    stops.push(() => t.cleanup());
    let epoch = 41;
    const ha: PrimaryHa = { node: 'n1', get epoch() { return epoch; }, writable: () => true, holder: () => null, publishSyncSet: async () => true };
    const primary = await startPrimary({ ...parsePrimaryConfig(['--data', t.dir, '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger, { ha });
    stops.push(() => primary.close());
    expect((await http(primary.url, 'PUT', '/v1/db/app')).status).toBe(201);
    await exec(primary.url, 'app', { sql: 'CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)' });
    await exec(primary.url, 'app', { sql: "INSERT INTO kv VALUES (1, 'one')" });
    epoch = 42;

    const direct = await get(primary.url, '/v1/db/app/snapshot');
    expect(direct.error).toBeNull();
    expect(direct.res.statusCode).toBe(200);
    expect(direct.res.headers[EPOCH_HEADER]).toBe('42');
    expect(direct.body.length).toBe(Number(direct.res.headers['content-length']));
    expect(formatChecksum(DatabaseChecksum.fromFile(direct.body).value)).toBe(direct.res.headers['edgelite-checksum']);

    // An Origin header takes the web-stream path (CORS headers on it): every other header is the same.
    const streamed = await get(primary.url, '/v1/db/app/snapshot', { origin: 'http://app.example' });
    expect(streamed.res.headers['access-control-allow-origin']).toBe('*');
    const cors = (k: string) => k.startsWith('access-control-') || k === 'vary';
    expect(headersOf(direct.res)).toEqual(headersOf(streamed.res, cors));
    expect(streamed.body.equals(direct.body)).toBe(true);

    // An error answer carries the epoch too (the middleware, not the route).
    expect((await get(primary.url, '/v1/db/missing/snapshot')).res.headers[EPOCH_HEADER]).toBe('42');
  });

  it('carries the headers middleware sets before and after the handler; Origin takes the web stream, HEAD ends the view at once', async () => {
    const t = tempDir('snapshot-direct-headers');
    stops.push(() => t.cleanup());
    const file = fileOf(t.dir, 2 * 2 ** 20);
    const views: CountingView[] = [];
    const s = await serveView(() => {
      const v = viewOf(file);
      views.push(v);
      return v;
    });
    const direct = await get(s.url, '/snap');
    expect(direct.error).toBeNull();
    expect(s.direct).toEqual([true]);
    expect(direct.res.headers['x-before']).toBe('set before the handler');
    expect(direct.res.headers['x-after']).toBe('late');
    expect(direct.res.headers['content-type']).toBe('application/vnd.sqlite3');
    const image = readFileSync(file);
    expect(direct.body.equals(image)).toBe(true);

    const streamed = await get(s.url, '/snap', { origin: 'http://app.example' });
    expect(s.direct).toEqual([true, false]);
    expect(headersOf(streamed.res)).toEqual(headersOf(direct.res));
    expect(streamed.body.equals(image)).toBe(true);

    const head = await get(s.url, '/snap', {}, 'HEAD');
    expect(s.direct).toEqual([true, false, false]);
    expect(head.res.statusCode).toBe(200);
    expect(head.body.length).toBe(0);
    expect(headersOf(head.res)).toEqual(headersOf(direct.res));
    await waitFor(() => views.every((v) => v.ended === 1 && !v.conn.open), 'every view ended, its connection closed');
  });

  it('reads pages only as fast as the client takes them, and all of them once it does', async () => {
    const t = tempDir('snapshot-direct-backpressure');
    stops.push(() => t.cleanup());
    const file = fileOf(t.dir, 48 * 2 ** 20);
    const view = viewOf(file);
    const chunks = Math.ceil(view.pageCount / (SNAPSHOT_CHUNK_BYTES / PAGE));
    const s = await serveView(() => view);
    const got = await new Promise<{ bytes: number; pausedAt: number }>((resolve, reject) => {
      const req = httpRequest(`${s.url}/snap`, { agent: false }, (res) => {
        res.pause();
        // Paused: the server fills the socket's buffers, then waits for 'drain'; the reads stop short.
        let seen = -1;
        const settle = setInterval(() => {
          if (view.reads === seen) {
            clearInterval(settle);
            const pausedAt = view.reads;
            let bytes = 0;
            res.on('data', (c: Buffer) => (bytes += c.length));
            res.on('end', () => resolve({ bytes, pausedAt }));
            res.resume();
          }
          seen = view.reads;
        }, 100);
      });
      req.on('error', reject);
      req.end();
    });
    expect(got.pausedAt).toBeGreaterThan(0);
    expect(got.pausedAt).toBeLessThan(chunks);
    expect(got.bytes).toBe(view.pageCount * PAGE);
    expect(view.reads).toBe(chunks);
    await waitFor(() => view.ended === 1 && !view.conn.open, 'the view ended');
  });

  it('a client that goes away mid-body ends the read transaction', async () => {
    const t = tempDir('snapshot-direct-abort');
    stops.push(() => t.cleanup());
    const file = fileOf(t.dir, 48 * 2 ** 20);
    const view = viewOf(file);
    const chunks = Math.ceil(view.pageCount / (SNAPSHOT_CHUNK_BYTES / PAGE));
    const s = await serveView(() => view);
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(`${s.url}/snap`, { agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.on('close', () => resolve());
      req.end();
      setTimeout(() => reject(new Error('no body came')), 10_000).unref();
    });
    await waitFor(() => view.ended === 1, 'the view ended once the client went away');
    expect(view.conn.open).toBe(false);
    expect(view.reads).toBeLessThan(chunks);
    // The file takes a writer's checkpoint to the end: no reader is left pinning it.
    const writer = new Database(file);
    writer.exec('INSERT INTO t VALUES (zeroblob(10))');
    expect(writer.pragma('wal_checkpoint(TRUNCATE)')).toMatchObject([{ busy: 0 }]);
    writer.close();
  });

  it('a read error mid-body cuts the answer short of its Content-Length and ends the view', async () => {
    const t = tempDir('snapshot-direct-error');
    stops.push(() => t.cleanup());
    const file = fileOf(t.dir, 4 * 2 ** 20);
    const view = viewOf(file, 2);
    const s = await serveView(() => view);
    const got = await get(s.url, '/snap');
    expect(got.res.statusCode).toBe(200);
    expect(got.error).not.toBeNull();
    expect(got.body.length).toBeLessThan(Number(got.res.headers['content-length']));
    expect(got.body.length).toBeLessThanOrEqual(2 * SNAPSHOT_CHUNK_BYTES);
    expect(view.ended).toBe(1);
  });
});
