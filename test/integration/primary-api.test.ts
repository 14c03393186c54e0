/**
 * The primary's public HTTP API (README.md#http-api), driven through `app.request()` with no socket, plus a
 * real-socket pass for what only a socket shows (chunked bodies, keep-alive after an error).
 */
import Database from 'better-sqlite3';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AUTH_DISABLED, parseAuthConfig, type AuthConfig } from '../../shared/auth.ts';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { silentLogger } from '../../shared/log.ts';
import { decodeToken } from '../../shared/token.ts';
import { createPrimaryApp } from '../../primary/app.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { PrimaryStore } from '../../primary/store.ts';
import { tempDir } from '../helpers.ts';

const MAX_BODY = 64 * 1024;

type App = ReturnType<typeof createPrimaryApp>;

interface Reply {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

async function call(app: App, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const res = await app.request(path, init);
  const text = await res.text();
  let parsed: unknown = null;
  if (res.headers.get('content-type')?.startsWith('application/json')) parsed = JSON.parse(text);
  return { status: res.status, headers: res.headers, body: parsed, text };
}

function expectError(r: Reply, status: number, code: string): void {
  expect({ status: r.status, code: r.body?.error?.code }, r.text).toEqual({ status, code });
  expect(typeof r.body.error.message).toBe('string');
}

describe('primary HTTP API', () => {
  let t: { dir: string; cleanup: () => void };
  let store: PrimaryStore;
  let app: App;

  function open(auth: AuthConfig = AUTH_DISABLED): void {
    store = new PrimaryStore(t.dir, {
      synchronous: 'normal',
      busyTimeoutMs: 5000,
      compress: false,
      checkpointFrames: 4000,
      pollIntervalMs: 100,
      log: {},
      logger: silentLogger,
    }).open();
    app = createPrimaryApp({ store, auth, maxBodyBytes: MAX_BODY, logger: silentLogger });
  }

  beforeEach(() => {
    t = tempDir('api');
    open();
  });
  afterEach(() => {
    store.close();
    t.cleanup();
  });

  it('creates databases: 201, then 200, and lists them', async () => {
    const a = await call(app, 'PUT', '/v1/db/app-1');
    expect(a.status).toBe(201);
    expect(a.body).toMatchObject({ name: 'app-1', created: true, generation: 1, txid: 0 });
    const b = await call(app, 'PUT', '/v1/db/app-1');
    expect(b.status).toBe(200);
    expect(b.body).toMatchObject({ name: 'app-1', created: false, databaseId: a.body.databaseId });
    await call(app, 'PUT', '/v1/db/other.db2');
    const list = await call(app, 'GET', '/v1/db');
    expect(list.status).toBe(200);
    expect(list.body.databases.map((d: { name: string }) => d.name)).toEqual(['app-1', 'other.db2']);
  });

  it('refuses invalid database names with 400 INVALID_DATABASE_NAME', async () => {
    for (const name of ['a..b', 'a%2Fb', 'x'.repeat(65), 'con', 'CON', 'lpt1', '.hidden', '-dash', 'a%20b', 'ends.', 'x-wal']) {
      for (const [method, path] of [['PUT', ''], ['GET', ''], ['POST', '/query']] as const) {
        const r = await call(app, method, `/v1/db/${name}${path}`, method === 'POST' ? { sql: 'SELECT 1' } : undefined);
        expectError(r, 400, 'INVALID_DATABASE_NAME');
      }
    }
    // "..", however encoded, is resolved by the URL parser before routing: never a file outside DIR.
    for (const name of ['..', '%2E%2E', '%2e.']) {
      const r = await call(app, 'PUT', `/v1/db/${name}`);
      expect([400, 404], r.text).toContain(r.status);
    }
    expect(store.names()).toEqual([]);
  });

  it('runs exec (one statement, atomic batches) and query', async () => {
    await call(app, 'PUT', '/v1/db/d');
    const one = await call(app, 'POST', '/v1/db/d/exec', { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, b BLOB)' });
    expect(one.status).toBe(200);
    expect(one.body.results).toEqual([{ columns: [], rows: [], changes: 0, lastInsertRowid: 0 }]);

    const batch = await call(app, 'POST', '/v1/db/d/exec', {
      statements: [
        { sql: 'INSERT INTO t (name) VALUES (?)', params: ['a'] },
        { sql: 'INSERT INTO t (name) VALUES (:n)', params: { n: 'b' } },
        { sql: 'UPDATE t SET name = upper(name) RETURNING id, name' },
      ],
    });
    expect(batch.status).toBe(200);
    expect(batch.body.results[0]).toMatchObject({ changes: 1, lastInsertRowid: 1 });
    expect(batch.body.results[1]).toMatchObject({ changes: 1, lastInsertRowid: 2 });
    expect(batch.body.results[2]).toMatchObject({ columns: ['id', 'name'], rows: [[1, 'A'], [2, 'B']] });

    const txidBefore = (await call(app, 'GET', '/v1/db/d')).body.txid;
    const failing = await call(app, 'POST', '/v1/db/d/exec', {
      statements: [
        { sql: "INSERT INTO t (name) VALUES ('c')" },
        { sql: "INSERT INTO t (name) VALUES ('d')" },
        { sql: 'INSERT INTO t (id, name) VALUES (1, ?)', params: ['duplicate'] },
      ],
    });
    expectError(failing, 409, 'CONSTRAINT_VIOLATION');
    const syntax = await call(app, 'POST', '/v1/db/d/exec', { statements: [{ sql: "INSERT INTO t (name) VALUES ('e')" }, { sql: 'INSERT INTO nope VALUES (1)' }] });
    expectError(syntax, 400, 'SQL_ERROR');
    expect((await call(app, 'GET', '/v1/db/d')).body.txid).toBe(txidBefore);

    const q = await call(app, 'POST', '/v1/db/d/query', { sql: 'SELECT id, name FROM t ORDER BY id' });
    expect(q.status).toBe(200);
    expect(q.body).toEqual({ results: [{ columns: ['id', 'name'], rows: [[1, 'A'], [2, 'B']] }] });
    const multi = await call(app, 'POST', '/v1/db/d/query', {
      statements: [{ sql: 'SELECT count(*) AS n FROM t' }, { sql: 'SELECT name FROM t WHERE id = ?', params: [2] }],
    });
    expect(multi.body.results).toEqual([
      { columns: ['n'], rows: [[2]] },
      { columns: ['name'], rows: [['B']] },
    ]);
    expect(q.headers.get('edgelite-served-by')).toBe('primary');
    // CORS headers go to browser requests (they carry Origin), and only to them.
    expect(q.headers.get('access-control-expose-headers')).toBeNull();
    const cross = await call(app, 'POST', '/v1/db/d/query', { sql: 'SELECT 1' }, { origin: 'https://app.example' });
    expect(cross.headers.get('access-control-allow-origin')).toBe('*');
    expect(cross.headers.get('access-control-expose-headers')).toContain('Edgelite-Token');
  });

  it('refuses writes on /query, forbidden PRAGMAs, and reports SQL errors', async () => {
    await call(app, 'PUT', '/v1/db/d');
    await call(app, 'POST', '/v1/db/d/exec', { sql: 'CREATE TABLE t (x)' });
    expectError(await call(app, 'POST', '/v1/db/d/query', { sql: 'INSERT INTO t VALUES (1)' }), 400, 'READ_ONLY');
    expectError(await call(app, 'POST', '/v1/db/d/query', { statements: [{ sql: 'SELECT 1' }, { sql: 'DELETE FROM t' }] }), 400, 'READ_ONLY');
    expectError(await call(app, 'POST', '/v1/db/d/query', { sql: 'CREATE TABLE u (x)' }), 400, 'READ_ONLY');
    for (const sql of ['PRAGMA journal_mode = DELETE', 'pragma wal_autocheckpoint=1000', 'PRAGMA main.synchronous = OFF', '  PRAGMA wal_checkpoint(TRUNCATE)', 'PRAGMA writable_schema = 1', '/* x */ PRAGMA journal_mode = OFF', 'PRAGMA foreign_keys = OFF', 'PRAGMA busy_timeout = 0']) {
      expectError(await call(app, 'POST', '/v1/db/d/exec', { sql }), 403, 'FORBIDDEN');
    }
    expect((await call(app, 'POST', '/v1/db/d/query', { sql: 'SELECT count(*) FROM t' })).body.results[0].rows).toEqual([[0]]);
    expectError(await call(app, 'POST', '/v1/db/d/query', { sql: 'SELEKT 1' }), 400, 'SQL_ERROR');
    expect((await call(app, 'GET', '/v1/db/d')).body.generation).toBe(1);
  });

  it('refuses transaction control and file access, so the shared connections stay clean', async () => {
    await call(app, 'PUT', '/v1/db/d');
    await call(app, 'PUT', '/v1/db/other');
    await call(app, 'POST', '/v1/db/other/exec', { sql: "CREATE TABLE secret AS SELECT 'pw' AS s" });
    await call(app, 'POST', '/v1/db/d/exec', { sql: 'CREATE TABLE t (x)' });
    const txid = async () => (await call(app, 'GET', '/v1/db/d')).body.txid as number;
    const count = async () => (await call(app, 'POST', '/v1/db/d/query', { sql: 'SELECT count(*) FROM t' })).body.results[0].rows[0][0] as number;
    const before = await txid();
    for (const sql of ['BEGIN', 'begin immediate', '/* hidden */ BEGIN', '-- hidden\nSAVEPOINT s', 'COMMIT', 'END', 'ROLLBACK', 'RELEASE s']) {
      expectError(await call(app, 'POST', '/v1/db/d/exec', { sql }), 400, 'BAD_REQUEST');
      expectError(await call(app, 'POST', '/v1/db/d/query', { sql }), 400, 'BAD_REQUEST');
    }
    // A COMMIT inside a batch must not commit its first half.
    for (const cut of ['COMMIT', 'ROLLBACK', 'RELEASE x']) {
      const r = await call(app, 'POST', '/v1/db/d/exec', { statements: [{ sql: 'INSERT INTO t VALUES (1)' }, { sql: cut }, { sql: 'INSERT INTO t VALUES (2)' }] });
      expectError(r, 400, 'BAD_REQUEST');
    }
    expect(await txid()).toBe(before);
    expect(await count()).toBe(0);
    // Writes are still committed and acknowledged one transaction each; reads see them at once.
    for (let i = 1; i <= 3; i++) {
      const w = await call(app, 'POST', '/v1/db/d/exec', { sql: 'INSERT INTO t VALUES (?)', params: [i] });
      expect(decodeToken(w.body.token).txid).toBe(before + i);
      expect(await count()).toBe(i);
    }
    const other = join(t.dir, 'other.db');
    const outside = join(t.dir, '..', `${t.dir.split('/').pop()}-outside.db`);
    for (const sql of [`ATTACH '${other}' AS o`, `  attach database '${outside}' as x`, 'DETACH o', `VACUUM INTO '${outside}'`, `VACUUM main INTO '${outside}'`]) {
      expectError(await call(app, 'POST', '/v1/db/d/exec', { sql }), 403, 'FORBIDDEN');
      expectError(await call(app, 'POST', '/v1/db/d/query', { sql }), 403, 'FORBIDDEN');
    }
    expectError(await call(app, 'POST', '/v1/db/d/query', { sql: 'SELECT s FROM o.secret' }), 400, 'SQL_ERROR');
    expect(existsSync(outside)).toBe(false);
    // Data PRAGMAs still work and are captured like any write.
    const uv = await call(app, 'POST', '/v1/db/d/exec', { sql: 'PRAGMA user_version = 7' });
    expect(decodeToken(uv.body.token).txid).toBe(before + 4);
    expect((await call(app, 'POST', '/v1/db/d/query', { sql: 'PRAGMA user_version' })).body.results[0].rows).toEqual([[7]]);
  });

  it('validates request bodies: JSON, content type, size, shape', async () => {
    await call(app, 'PUT', '/v1/db/d');
    expectError(await call(app, 'POST', '/v1/db/d/query', '{"sql": '), 400, 'BAD_REQUEST');
    expectError(await call(app, 'POST', '/v1/db/d/query', 'sql=SELECT 1', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await call(app, 'POST', '/v1/db/d/query', 'SELECT 1', { 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await call(app, 'POST', '/v1/db/d/query'), 400, 'BAD_REQUEST');
    expectError(await call(app, 'POST', '/v1/db/d/exec', ''), 400, 'BAD_REQUEST');
    for (const body of [[], 'x', 42, null, {}, { sql: '' }, { sql: 1 }, { statements: [] }, { statements: {} }, { sql: 'SELECT 1', statements: [] }, { sql: 'SELECT ?', params: [{ nope: 1 }] }, { sql: 'SELECT ?', params: 'x' }]) {
      const r = await call(app, 'POST', '/v1/db/d/query', JSON.stringify(body));
      expectError(r, 400, 'BAD_REQUEST');
    }
    const big = JSON.stringify({ sql: 'SELECT ?', params: ['x'.repeat(MAX_BODY)] });
    expectError(await call(app, 'POST', '/v1/db/d/query', big), 413, 'PAYLOAD_TOO_LARGE');
    // No content-length: the limit holds on the bytes actually received.
    const chunks = new TextEncoder().encode(big);
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < chunks.length; i += 4096) c.enqueue(chunks.slice(i, i + 4096));
        c.close();
      },
    });
    const res = await app.request('/v1/db/d/query', { method: 'POST', body: stream, headers: { 'content-type': 'application/json' }, duplex: 'half' } as RequestInit);
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PAYLOAD_TOO_LARGE');
    // A lying content-length larger than the limit is refused before reading.
    const lying = await app.request('/v1/db/d/query', { method: 'POST', body: '{"sql":"SELECT 1"}', headers: { 'content-type': 'application/json', 'content-length': String(MAX_BODY + 1) } });
    expect(lying.status).toBe(413);
    // Just under the limit is fine.
    const fits = JSON.stringify({ sql: 'SELECT length(?)', params: ['y'.repeat(MAX_BODY - 100)] });
    const ok = await call(app, 'POST', '/v1/db/d/query', fits);
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body.results[0].rows).toEqual([[MAX_BODY - 100]]);
  });

  it('answers unknown routes and databases with typed 404s', async () => {
    expectError(await call(app, 'GET', '/v1/nope'), 404, 'NOT_FOUND');
    expectError(await call(app, 'GET', '/'), 404, 'NOT_FOUND');
    expectError(await call(app, 'PATCH', '/v1/db/x'), 404, 'NOT_FOUND');
    expectError(await call(app, 'DELETE', '/v1/db/x'), 404, 'DATABASE_NOT_FOUND');
    expectError(await call(app, 'GET', '/v1/db/missing'), 404, 'DATABASE_NOT_FOUND');
    expectError(await call(app, 'POST', '/v1/db/missing/query', { sql: 'SELECT 1' }), 404, 'DATABASE_NOT_FOUND');
    expectError(await call(app, 'POST', '/v1/db/missing/exec', { sql: 'SELECT 1' }), 404, 'DATABASE_NOT_FOUND');
    expectError(await call(app, 'GET', '/v1/db/missing/snapshot'), 404, 'DATABASE_NOT_FOUND');
    // A listed database that does not exist yet is not an error for the stream: it joins once created.
  });

  it('round-trips blobs as {"base64"} and answers writes with a token for the current txid', async () => {
    await call(app, 'PUT', '/v1/db/d');
    await call(app, 'POST', '/v1/db/d/exec', { sql: 'CREATE TABLE b (id INTEGER PRIMARY KEY, v BLOB)' });
    const blobs = [new Uint8Array(0), new Uint8Array([0]), new Uint8Array([255, 0, 1]), Uint8Array.from({ length: 70_00 }, (_, i) => (i * 7) & 255)];
    for (const [i, blob] of blobs.entries()) {
      const w = await call(app, 'POST', '/v1/db/d/exec', { sql: 'INSERT INTO b VALUES (?, ?)', params: [i, { base64: Buffer.from(blob).toString('base64') }] });
      expect(w.status, w.text).toBe(200);
      const header = w.headers.get('edgelite-token');
      expect(header).toBe(w.body.token);
      const token = decodeToken(header!);
      const info = (await call(app, 'GET', '/v1/db/d')).body;
      expect(token).toEqual({ db: 'd', databaseId: info.databaseId, generation: info.generation, txid: info.txid });
      expect(w.headers.get('edgelite-txid')).toBe(String(info.txid));
      expect(w.headers.get('edgelite-checksum')).toBe(info.checksum);
    }
    const q = await call(app, 'POST', '/v1/db/d/query', { sql: 'SELECT v, typeof(v) FROM b ORDER BY id' });
    expect(q.body.results[0].rows).toEqual(blobs.map((b) => [{ base64: Buffer.from(b).toString('base64') }, 'blob']));
    const e = await call(app, 'POST', '/v1/db/d/exec', { sql: 'UPDATE b SET v = v WHERE id = 2 RETURNING v' });
    expect(e.body.results[0].rows).toEqual([[{ base64: '/wAB' }]]);
    const back = await call(app, 'POST', '/v1/db/d/query', { sql: 'SELECT id FROM b WHERE v = ?', params: [{ base64: Buffer.from([255, 0, 1]).toString('base64') }] });
    expect(back.body.results[0].rows).toEqual([[2]]);
    expectError(await call(app, 'POST', '/v1/db/d/query', { sql: 'SELECT ?', params: [{ base64: 'not base64!' }] }), 400, 'BAD_REQUEST');
    const scalars = await call(app, 'POST', '/v1/db/d/query', { sql: "SELECT 42 AS n, 1.5 AS f, NULL AS z, 'é' AS s" });
    expect(scalars.body.results[0]).toEqual({ columns: ['n', 'f', 'z', 's'], rows: [[42, 1.5, null, 'é']] });
  });

  it('describes a database, health and metrics', async () => {
    await call(app, 'PUT', '/v1/db/d');
    await call(app, 'POST', '/v1/db/d/exec', { sql: 'CREATE TABLE t (x)' });
    const info = await call(app, 'GET', '/v1/db/d');
    expect(info.status).toBe(200);
    expect(info.body).toEqual({
      name: 'd',
      role: 'primary',
      databaseId: expect.any(Number),
      generation: 1,
      txid: 1,
      checksum: expect.stringMatching(/^[0-9a-f]{16}$/),
      lagMs: 0,
      lagTxids: 0,
      pageSize: 4096,
      pageCount: 2,
      lastCommitTime: expect.any(Number),
      generations: [{ generation: 1, startTxid: 0 }],
    });
    expect(Math.abs(info.body.lastCommitTime - Date.now())).toBeLessThan(60_000);
    const health = await call(app, 'GET', '/v1/health');
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: 'ok', role: 'primary', databases: 1 });
    const metrics = await call(app, 'GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(metrics.text).toContain('edgelite_txid{db="d"} 1\n');
    expect(metrics.text).toContain('edgelite_generation{db="d"} 1\n');
    expect(metrics.text).toContain('edgelite_stream_subscribers 0\n');
    expect(metrics.text).toMatch(/^# TYPE edgelite_log_records gauge$/m);
    for (const line of metrics.text.trim().split('\n')) expect(line).toMatch(/^(# (HELP|TYPE) \w+ .+|\w+(\{(db|state)="[^"]+"\})? \d+)$/);
  });

  it('serves a snapshot any SQLite opens, at the position in its headers', async () => {
    await call(app, 'PUT', '/v1/db/s');
    await call(app, 'POST', '/v1/db/s/exec', { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)' });
    for (let i = 0; i < 30; i++) {
      await call(app, 'POST', '/v1/db/s/exec', { sql: 'INSERT INTO t (v, b) VALUES (?, randomblob(?))', params: [`row ${i}`, i * 300] });
    }
    const info = (await call(app, 'GET', '/v1/db/s')).body;
    const res = await app.request('/v1/db/s/snapshot');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/vnd.sqlite3');
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(res.headers.get('content-length')).toBe(String(bytes.length));
    expect(bytes.length).toBe(info.pageCount * info.pageSize);
    expect(res.headers.get('edgelite-generation')).toBe(String(info.generation));
    expect(res.headers.get('edgelite-txid')).toBe(String(info.txid));
    expect(res.headers.get('edgelite-checksum')).toBe(info.checksum);
    expect(res.headers.get('edgelite-database-id')).toBe(String(info.databaseId));
    expect(res.headers.get('edgelite-page-size')).toBe('4096');
    expect(DatabaseChecksum.fromFile(bytes).value.toString(16).padStart(16, '0')).toBe(info.checksum);

    const file = join(t.dir, 'snapshot-copy.sqlite');
    writeFileSync(file, bytes);
    const copy = new Database(file, { readonly: true });
    try {
      expect(copy.pragma('integrity_check', { simple: true })).toBe('ok');
      const rows = copy.prepare('SELECT id, v, length(b) AS n FROM t ORDER BY id').all();
      const served = (await call(app, 'POST', '/v1/db/s/query', { sql: 'SELECT id, v, length(b) AS n FROM t ORDER BY id' })).body.results[0].rows;
      expect(rows.map((r: any) => [r.id, r.v, r.n])).toEqual(served);
      expect(rows).toHaveLength(30);
    } finally {
      copy.close();
    }
  });

  it('enforces bearer tokens and rights on every route; health stays open', async () => {
    store.close();
    const tokens = { read: 'read-token-000000001', write: 'write-token-00000001', replicate: 'replicate-token-00001', admin: 'admin-token-00000001' };
    open(parseAuthConfig(undefined, `read=${tokens.read}; write=${tokens.write}; replicate=${tokens.replicate}; admin=${tokens.admin}`));
    const as = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });
    expect((await call(app, 'PUT', '/v1/db/d', undefined, as(tokens.admin))).status).toBe(201);
    await call(app, 'POST', '/v1/db/d/exec', { sql: 'CREATE TABLE t (x)' }, as(tokens.admin));

    const routes: Array<{ method: string; path: string; body?: unknown; right: keyof typeof tokens; wrong: keyof typeof tokens }> = [
      { method: 'GET', path: '/metrics', right: 'read', wrong: 'write' },
      { method: 'GET', path: '/v1/db', right: 'read', wrong: 'replicate' },
      { method: 'GET', path: '/v1/db/d', right: 'read', wrong: 'write' },
      { method: 'PUT', path: '/v1/db/d', right: 'write', wrong: 'read' },
      { method: 'POST', path: '/v1/db/d/query', body: { sql: 'SELECT 1' }, right: 'read', wrong: 'replicate' },
      { method: 'POST', path: '/v1/db/d/exec', body: { sql: 'INSERT INTO t VALUES (1)' }, right: 'write', wrong: 'read' },
      { method: 'GET', path: '/v1/db/d/snapshot', right: 'replicate', wrong: 'read' },
      { method: 'POST', path: '/v1/stream', body: { databases: ['d'] }, right: 'replicate', wrong: 'write' },
    ];
    for (const r of routes) {
      const what = `${r.method} ${r.path}`;
      const none = await call(app, r.method, r.path, r.body);
      expect(none.status, `${what} without a token`).toBe(401);
      expect(none.body.error.code).toBe('UNAUTHORIZED');
      const unknown = await call(app, r.method, r.path, r.body, as('not-a-known-token-000'));
      expect(unknown.status, `${what} with an unknown token`).toBe(401);
      const malformed = await call(app, r.method, r.path, r.body, { authorization: tokens[r.right] });
      expect(malformed.status, `${what} without "Bearer"`).toBe(401);
      const wrong = await call(app, r.method, r.path, r.body, as(tokens[r.wrong]));
      expect(wrong.status, `${what} with a ${r.wrong} token`).toBe(403);
      expect(wrong.body.error.code).toBe('FORBIDDEN');
      for (const token of [tokens[r.right], tokens.admin]) {
        const init: RequestInit = { method: r.method, headers: { ...as(token), 'content-type': 'application/json' } };
        if (r.body !== undefined) init.body = JSON.stringify(r.body);
        const res = await app.request(r.path, init);
        expect(res.status, `${what} with the right token`).toBeGreaterThanOrEqual(200);
        expect(res.status, `${what} with the right token`).toBeLessThan(300);
        // The stream never ends: read its first frame and hang up.
        await res.body?.cancel();
      }
    }
    const health = await call(app, 'GET', '/v1/health');
    expect(health.status).toBe(200);
  });
});

describe('primary HTTP API on a socket', () => {
  let t: { dir: string; cleanup: () => void };
  let handle: PrimaryHandle | undefined;
  afterEach(async () => {
    await handle?.close();
    handle = undefined;
    t.cleanup();
  });

  it('serves the API on port 0, refuses a chunked oversized body, and keeps serving', async () => {
    t = tempDir('api-socket');
    const config = parsePrimaryConfig(['--data', t.dir, '--listen', '127.0.0.1:0', '--max-body-bytes', String(MAX_BODY)], {});
    handle = await startPrimary(config, silentLogger);
    const url = handle.url;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await fetch(`${url}/v1/db/net`, { method: 'PUT' })).status).toBe(201);
    const post = (path: string, body: unknown) =>
      fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post('/v1/db/net/exec', { sql: 'CREATE TABLE t (v TEXT)' })).status).toBe(200);

    const big = new TextEncoder().encode(JSON.stringify({ sql: 'INSERT INTO t VALUES (?)', params: ['z'.repeat(MAX_BODY * 4)] }));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= big.length) return c.close();
        c.enqueue(big.slice(sent, sent + 8192));
        sent += 8192;
      },
    });
    // Without content-length (chunked): the server must stop at the limit, not buffer everything.
    let status: number;
    try {
      const res = await fetch(`${url}/v1/db/net/exec`, { method: 'POST', body, headers: { 'content-type': 'application/json' }, duplex: 'half' } as RequestInit);
      status = res.status;
      expect(res.headers.get('connection')).toBe('close');
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PAYLOAD_TOO_LARGE');
    } catch (err) {
      // The server may answer 413 and close before the client has finished sending.
      status = 413;
      expect(String((err as Error).cause ?? err)).toMatch(/EPIPE|ECONNRESET|closed|terminated|other side/i);
    }
    expect(status).toBe(413);
    const withLength = await fetch(`${url}/v1/db/net/exec`, { method: 'POST', body: big, headers: { 'content-type': 'application/json' } });
    expect(withLength.status).toBe(413);
    await withLength.arrayBuffer();

    // The refused bodies cost their connections, never the next request on the keep-alive pool.
    for (let i = 0; i < 3; i++) expect((await post('/v1/db/net/query', { sql: 'SELECT 1' })).status).toBe(200);
    const w = await post('/v1/db/net/exec', { sql: "INSERT INTO t VALUES ('after')" });
    expect(w.status).toBe(200);
    const token = w.headers.get('edgelite-token')!;
    expect(decodeToken(token).txid).toBe(2);
    const q = await post('/v1/db/net/query', { sql: 'SELECT v FROM t' });
    expect(await q.json()).toEqual({ results: [{ columns: ['v'], rows: [['after']] }] });
    const snap = await fetch(`${url}/v1/db/net/snapshot`);
    const bytes = new Uint8Array(await snap.arrayBuffer());
    expect(DatabaseChecksum.fromFile(bytes).value.toString(16).padStart(16, '0')).toBe(snap.headers.get('edgelite-checksum'));
    expect((await fetch(`${url}/v1/health`)).status).toBe(200);
  });
});
