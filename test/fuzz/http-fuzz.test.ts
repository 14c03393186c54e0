/**
 * HTTP fuzzing of the primary's and the replica's API (fast-check): random methods, paths, database
 * names, headers (tokens, content types, garbage), bodies (random JSON, random bytes, statement bodies
 * with random and hostile SQL, deeply nested and oversized bodies). Against createPrimaryApp and
 * createReplicaApp through `app.request()` (no socket), and once through real sockets.
 *
 * Every answer must be a documented status (ERROR_STATUS or 200/201); every error body must be
 * `{"error": {"code", "message"}}` with a known code whose status is the one answered; never INTERNAL
 * and never a 500; the process must not crash and its memory must stay bounded.
 *
 * Replay with EDGELITE_SEED=<printed seed>; EDGELITE_LONG=1 runs ten times more requests.
 */
import { join } from 'node:path';
import fc from 'fast-check';
import type { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAuthConfig } from '../../shared/auth.ts';
import { ERROR_STATUS, isErrorCode } from '../../shared/errors.ts';
import { createPrimaryApp } from '../../primary/app.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { createReplicaApp } from '../../replica/app.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { nodePrimaryClient } from '../../replica/primary-fetch.ts';
import type { PrimaryClient } from '../../shared/primary-client.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { Processes } from '../kit/spawn.ts';
import { seedFromEnv, tempDir } from '../helpers.ts';
import { rounds, roundsTimeout } from '../kit/rounds.ts';
import { waitFor } from '../kit/wait.ts';

/** Requests per fuzz test; long mode: ten times more (about 3 ms a request measured, 10 ms allowed). */
const PRIMARY_REQUESTS = rounds(2000, 20_000);
const REPLICA_REQUESTS = rounds(1000, 10_000);
const SOCKET_REQUESTS = rounds(300, 3000);
const PER_REQUEST_MS = 10;
const TOKEN = 'fuzz-all-rights-0123456789abcdef';
const AUTH = parseAuthConfig(TOKEN, undefined);
const MAX_BODY = 64 * 1024;
const DOCUMENTED = new Set<number>([200, 201, ...Object.values(ERROR_STATUS)]);
const DB = 'app';

let primary: PrimaryHandle;
let replica: ReplicaHandle;
let primaryApp: Hono;
let replicaApp: Hono;
let client: PrimaryClient;
const internal: Array<Record<string, unknown>> = [];
const t = tempDir('fuzz');
const logger = (e: Record<string, unknown>) => {
  if (e.msg === 'internal error') internal.push(e);
};

beforeAll(async () => {
  primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0', '--max-body-bytes', String(MAX_BODY)], {}), auth: AUTH }, logger);
  const h = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
  await fetch(`${primary.url}/v1/db/${DB}`, { method: 'PUT', headers: h });
  await fetch(`${primary.url}/v1/db/${DB}/exec`, { method: 'POST', headers: h, body: JSON.stringify({ statements: [{ sql: 'CREATE TABLE items (id INTEGER PRIMARY KEY, tag TEXT, body BLOB)' }, { sql: "INSERT INTO items VALUES (1, 'a', x'00ff')" }] }) });
  const rconfig = parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0', '--max-body-bytes', String(MAX_BODY), '--read-wait-ms', '200', '--write-wait-ms', '500'], { EDGELITE_TOKEN: TOKEN });
  replica = await startReplica(rconfig, logger);
  await waitFor(() => replica.store.get(DB)?.position, 'replica bootstrap');
  primaryApp = createPrimaryApp({ store: primary.store, auth: AUTH, maxBodyBytes: MAX_BODY, logger });
  client = nodePrimaryClient({ url: primary.url, token: TOKEN });
  replicaApp = createReplicaApp({
    store: replica.store,
    follower: replica.follower,
    primary: client,
    auth: AUTH,
    maxBodyBytes: MAX_BODY,
    readWaitMs: 200,
    writeWaitMs: 500,
    onBehind: 'error',
    maxHealthyLagMs: 10_000,
    logger,
  });
});

afterAll(async () => {
  await client?.close();
  await replica?.close();
  await primary?.close();
  t.cleanup();
});

// ---- arbitraries -------------------------------------------------------------------------------

const NASTY_SQL = [
  'SELECT * FROM items', 'SELECT ?', 'SELECT ?1, :a, @b, $c', "INSERT INTO items (tag) VALUES ('x')", 'UPDATE items SET tag = tag || ?',
  'DELETE FROM items WHERE id > 1000', 'SELECT 1; SELECT 2', '', ' ', ';', '--', '/*', 'SELEC', 'SELECT * FROM nope',
  'BEGIN', 'COMMIT', 'ROLLBACK', 'SAVEPOINT s', 'RELEASE s', 'END', "ATTACH 'x.db' AS x", 'DETACH main', "VACUUM INTO '/tmp/edgelite-fuzz.db'",
  'VACUUM', 'PRAGMA journal_mode', 'PRAGMA integrity_check', 'PRAGMA table_info(items)', 'PRAGMA user_version = 7', 'PRAGMA cache_size = 10',
  "SELECT load_extension('x')", 'SELECT zeroblob(100000)', 'SELECT randomblob(-1)', 'SELECT char(0)', "SELECT x'00ff'", 'SELECT 9223372036854775807',
  'SELECT 1e999', 'SELECT -0.0', 'SELECT sqlite_version()', 'CREATE TABLE IF NOT EXISTS extra (x)', 'DROP TABLE IF EXISTS extra',
  'CREATE INDEX IF NOT EXISTS i1 ON items(tag)', 'INSERT INTO items (id) VALUES (1)', 'SELECT * FROM sqlite_dbpage', 'SELECT * FROM pragma_table_info(?)',
  'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) SELECT count(*) FROM c', 'SELECT abs(-9223372036854775808)',
  'INSERT INTO items (id, tag) VALUES (?, ?) RETURNING *', 'SELECT json(?)', 'SELECT printf(?, ?)',
];

const jsonScalar = fc.oneof(fc.constant(null), fc.boolean(), fc.integer(), fc.double(), fc.string({ maxLength: 40 }), fc.constant(Number.MAX_SAFE_INTEGER + 2));
const param = fc.oneof(jsonScalar, fc.record({ base64: fc.string({ maxLength: 20 }) }), fc.array(jsonScalar, { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), jsonScalar, { maxKeys: 3 }));
const sql = fc.oneof(fc.constantFrom(...NASTY_SQL), fc.string({ maxLength: 60 }), fc.constantFrom(...NASTY_SQL).map((s) => `/* c */ ${s}`));
const statement = fc.record({ sql, params: fc.oneof(fc.constant(undefined), fc.array(param, { maxLength: 4 }), fc.dictionary(fc.constantFrom('a', 'b', 'c', '1'), param, { maxKeys: 3 }), param) }, { requiredKeys: ['sql'] });

const body: fc.Arbitrary<string | Uint8Array | undefined> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 4, arbitrary: statement.map((s) => JSON.stringify(s)) },
  { weight: 2, arbitrary: fc.array(statement, { minLength: 0, maxLength: 4 }).map((s) => JSON.stringify({ statements: s })) },
  { weight: 2, arbitrary: fc.json({ maxDepth: 4 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 100 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 20_000 }).map((d) => '['.repeat(d) + ']'.repeat(d)) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 20_000 }).map((d) => `${'{"a":'.repeat(d)}1${'}'.repeat(d)}`) },
  { weight: 1, arbitrary: fc.constantFrom(MAX_BODY - 20, MAX_BODY + 1, 3 * MAX_BODY).map((n) => JSON.stringify({ sql: `SELECT '${'x'.repeat(n)}'` })) },
  { weight: 1, arbitrary: fc.record({ databases: fc.oneof(fc.constant('*'), fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }), jsonScalar), positions: fc.oneof(fc.constant(undefined), fc.dictionary(fc.constantFrom(DB, 'x', '..'), fc.oneof(fc.constant(null), fc.record({ generation: fc.integer(), txid: fc.integer(), checksum: fc.string({ unit: fc.constantFrom(...'0123456789abcdefg'), maxLength: 17 }) }), jsonScalar), { maxKeys: 2 })) }).map((b) => JSON.stringify(b)) },
);

const dbName = fc.oneof(
  { weight: 4, arbitrary: fc.constant(DB) },
  { weight: 1, arbitrary: fc.constantFrom('fuzz', 'nope', 'a-b_c.d', 'con', 'x-wal', '..', '.', '%2e%2e', '%00', 'a'.repeat(65), 'A'.repeat(64), 'ünï', 'a%2Fb', ' ') },
  { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 20 }).map((s) => encodeURIComponent(s)) },
);

const path = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(dbName, fc.constantFrom('', '/query', '/exec', '/snapshot', '/nope', '/query/', '/exec?consistency=strong')).map(([n, r]) => `/v1/db/${n}${r}`) },
  { weight: 2, arbitrary: fc.constantFrom('/v1/health', '/metrics', '/v1/db', '/v1/stream', '/', '/v1', '/v2/db/app', '/v1/db/', '//v1/db/app', '/v1/db/app/query?x=%zz', '/v1/health?verbose=1') },
  { weight: 1, arbitrary: fc.array(fc.string({ maxLength: 8 }).map((s) => encodeURIComponent(s)), { maxLength: 5 }).map((p) => `/${p.join('/')}`) },
);

const header = (values: fc.Arbitrary<string>) => fc.option(values, { nil: undefined });
const headers = fc.record({
  authorization: fc.oneof(
    { weight: 6, arbitrary: fc.constant(`Bearer ${TOKEN}`) },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.constantFrom('Bearer', 'Bearer ', 'Basic abc', `bearer ${TOKEN}`, `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Bearer  ${TOKEN} `, 'Bearer \u00e9\u00e9') },
    { weight: 1, arbitrary: fc.string({ maxLength: 40 }).map((s) => `Bearer ${s.replace(/[^\x21-\x7e]/g, '')}`) },
  ),
  'content-type': header(fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/msgpack', 'APPLICATION/JSON', 'json', '')),
  'edgelite-token': header(fc.oneof(fc.string({ maxLength: 60 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')), fc.constantFrom('1.0000000000000001.00000001.7ff03238.app', '1.ffffffffffffffff.00000001.7ff03238.app', '0.0.0.0.app', '1.0000000000000001.00000001.7ff03238.other', ',,,', 'a,b'))),
  'edgelite-consistency': header(fc.constantFrom('eventual', 'strong', 'ryw', 'read-your-writes', 'bounded:10', 'bounded=0', 'bounded:-1', 'bounded:99999999999999999999', 'nonsense', '')),
  accept: header(fc.constantFrom('application/json', 'application/msgpack', '*/*', 'text/html')),
}, { requiredKeys: [] });

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'];
// Never a DELETE of the shared database itself (a real drop, README.md#http-api): the later checks read it.
const request = fc.record({ method: fc.constantFrom(...METHODS), path, headers, body }).filter((r) => !(r.method === 'DELETE' && r.path === `/v1/db/${DB}`));
type FuzzRequest = typeof request extends fc.Arbitrary<infer T> ? T : never;

// ---- checks ------------------------------------------------------------------------------------

function toRequest(r: FuzzRequest, base: string): Request {
  const h = new Headers();
  for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) h.set(k, v);
  const withBody = r.body !== undefined && r.method !== 'GET' && r.method !== 'HEAD';
  return new Request(`${base}${r.path}`, { method: r.method, headers: h, body: withBody ? (r.body as BodyInit) : undefined });
}

/** check asserts the contract for one answer; returns a description for the failure message. */
async function check(r: FuzzRequest, res: Response): Promise<void> {
  const what = `${r.method} ${r.path} -> ${res.status}`;
  if (res.status === 200 && res.headers.get('content-type') === 'application/vnd.edgelite.stream') {
    await res.body?.cancel(); // a replication stream never ends
    return;
  }
  const text = r.method === 'HEAD' ? '' : await res.text();
  if (r.method === 'OPTIONS' && res.status === 204) return; // a CORS preflight answer
  expect(DOCUMENTED.has(res.status), `${what}: undocumented status; body ${text.slice(0, 200)}`).toBe(true);
  expect(res.status, `${what}: a 500 from a request; body ${text.slice(0, 300)}`).not.toBe(500);
  if (/^\/v1\/health(\?|$)/.test(r.path) && r.method === 'GET' && res.status === 503) {
    // Health's red answer is its own documented body (a replica that is lagging), not an error.
    expect((JSON.parse(text) as { status?: unknown }).status, `${what}: ${text.slice(0, 200)}`).toBe('lagging');
    return;
  }
  if (res.status >= 400 && r.method !== 'HEAD') {
    let parsed: { error?: { code?: unknown; message?: unknown } };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      throw new Error(`${what}: error body is not JSON: ${text.slice(0, 200)}`);
    }
    const code = parsed.error?.code;
    expect(isErrorCode(code), `${what}: unknown error code in ${text.slice(0, 200)}`).toBe(true);
    expect(typeof parsed.error?.message, `${what}: no message`).toBe('string');
    expect(ERROR_STATUS[code as keyof typeof ERROR_STATUS], `${what}: ${String(code)} answered with another status`).toBe(res.status);
  }
}

async function fuzz(app: Hono, name: string, runs: number, seed: number): Promise<void> {
  const before = process.memoryUsage().rss;
  let n = 0;
  await fc.assert(
    fc.asyncProperty(request, async (r) => {
      n++;
      await check(r, await app.request(toRequest(r, 'http://edgelite.test')));
    }),
    { numRuns: runs, seed, endOnFailure: true },
  );
  const grown = (process.memoryUsage().rss - before) / 1024 / 1024;
  console.log(`${name}: ${n} requests, rss grew ${grown.toFixed(1)} MiB`);
  expect(grown, 'rss growth over the run (MiB)').toBeLessThan(400);
  expect(internal, 'internal errors logged').toEqual([]);
}

describe('HTTP fuzz', () => {
  const seed = seedFromEnv();
  console.log(`http fuzz: EDGELITE_SEED=${seed}`);

  it('the primary answers every request with a documented status and a typed error body', async () => {
    await fuzz(primaryApp, 'primary app', PRIMARY_REQUESTS, seed);
  }, roundsTimeout(PRIMARY_REQUESTS, PER_REQUEST_MS));

  it('the replica answers every request with a documented status and a typed error body', async () => {
    await fuzz(replicaApp, 'replica app', REPLICA_REQUESTS, seed + 1);
  }, roundsTimeout(REPLICA_REQUESTS, PER_REQUEST_MS));

  it('through real sockets, primary and replica alike', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(request, fc.boolean(), async (r, toPrimary) => {
        n++;
        const res = await fetch(toRequest(r, toPrimary ? primary.url : replica.url));
        await check(r, res);
      }),
      { numRuns: SOCKET_REQUESTS, seed: seed + 2, endOnFailure: true },
    );
    expect(n).toBeGreaterThan(0);
    expect((await fetch(`${primary.url}/v1/health`)).status).toBe(200);
    const health = await fetch(`${replica.url}/v1/health`);
    expect(health.status, await health.clone().text()).toBe(200);
    expect(internal).toEqual([]);
  }, roundsTimeout(SOCKET_REQUESTS, 2 * PER_REQUEST_MS));

  it('a body past the limit is refused with PAYLOAD_TOO_LARGE, declared or streamed', async () => {
    const big = JSON.stringify({ sql: `SELECT '${'x'.repeat(4 * MAX_BODY)}'` });
    for (const url of [primary.url, replica.url]) {
      const declared = await fetch(`${url}/v1/db/${DB}/query`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: big });
      expect(declared.status).toBe(413);
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 0; i < 8; i++) c.enqueue(new TextEncoder().encode(big.slice(i * MAX_BODY, (i + 1) * MAX_BODY)));
          c.close();
        },
      });
      const chunked = await fetch(`${url}/v1/db/${DB}/query`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: stream, duplex: 'half' } as RequestInit);
      expect(chunked.status).toBe(413);
      expect(((await chunked.json()) as { error: { code: string } }).error.code).toBe('PAYLOAD_TOO_LARGE');
    }
  });
});

describe('statement policy and time limits on the primary', () => {
  it('no spelling of a managed PRAGMA gets through exec: writes keep working afterwards', async () => {
    const h = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    const spellings = ['PRAGMA query_only = 1', 'PRAGMA "query_only" = 1', "PRAGMA 'query_only' = 1", 'PRAGMA [query_only] = 1', 'PRAGMA/**/query_only = 1', 'PRAGMA main . query_only = 1', 'PRAGMA query_only(1)'];
    const outcomes: string[] = [];
    for (const s of spellings) {
      const set = await fetch(`${primary.url}/v1/db/${DB}/exec`, { method: 'POST', headers: h, body: JSON.stringify({ sql: s }) });
      const write = await fetch(`${primary.url}/v1/db/${DB}/exec`, { method: 'POST', headers: h, body: JSON.stringify({ sql: "INSERT INTO items (tag) VALUES ('after')" }) });
      outcomes.push(`${s}: ${set.status}, then a write: ${write.status}`);
      if (write.status !== 200) {
        // Put the shared connection back for the other tests.
        await fetch(`${primary.url}/v1/db/${DB}/exec`, { method: 'POST', headers: h, body: JSON.stringify({ sql: 'PRAGMA "query_only" = 0' }) });
      }
    }
    expect(outcomes.filter((o) => !o.endsWith('a write: 200'))).toEqual([]);
  });

  it('a runaway query on the primary is stopped (QUERY_TIMEOUT) and does not stall other requests', async () => {
    const procs = new Processes();
    const d = tempDir('fuzz-runaway');
    try {
      const p = await procs.primary(join(d.dir, 'p'));
      await fetch(`${p.url}/v1/db/${DB}`, { method: 'PUT' });
      const runaway = fetch(`${p.url}/v1/db/${DB}/query`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ sql: 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c' }),
      }).then((r) => r.status, (e: unknown) => String(e));
      await new Promise((r) => setTimeout(r, 300));
      const health = await fetch(`${p.url}/v1/health`, { signal: AbortSignal.timeout(3000) }).then((r) => r.status, (e: unknown) => String(e));
      expect(health).toBe(200);
      expect(await Promise.race([runaway, new Promise((r) => setTimeout(() => r('still running after 30 s'), 30_000))])).toBe(408);
    } finally {
      await procs.killAll();
      d.cleanup();
    }
  });
});
