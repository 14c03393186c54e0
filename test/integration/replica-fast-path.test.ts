/**
 * The replica's Node fast path for reads (replica/query-fast-path.ts,
 * docs/BENCHMARKS.md#p2-after-the-read-fast-path) answers every read as the hono route does: the same
 * status, headers and bytes, for answers and for every kind of refusal (auth, body bounds, body type,
 * validation, consistency, statement policy, the time limit). Each request is sent as it is (the fast
 * path takes it) and with a query string (hono serves it); a server built from the same store with the
 * fast path alone shows which requests the fast path takes.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAuthConfig } from '../../shared/auth.ts';
import { readNodeJsonBody } from '../../shared/http.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { createReplicaQuery } from '../../replica/app.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { queryFastPath } from '../../replica/query-fast-path.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { RUNAWAY_SQL, tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

const READ = 'fast-read-token-0123456789';
const ADMIN = 'fast-admin-token-0123456789';
const REPLICATE = 'fast-replicate-token-0123456789';
const SPEC = `read=${READ}; admin=${ADMIN}; replicate=${REPLICATE}`;
const DB = 'app';
const MAX_BODY = 4096;
const TIMEOUT_MS = 300;
/** NOT_TAKEN is what the fast-path-only server answers for a request the fast path leaves to hono. */
const NOT_TAKEN = 599;

const t = tempDir('fast-path');
let primary: PrimaryHandle;
let replica: ReplicaHandle;
let fastOnly: Server;
let fastOnlyUrl: string;

beforeAll(async () => {
  primary = await startPrimary(parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], { EDGELITE_TOKENS: SPEC }), silentLogger);
  const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
  expect((await fetch(`${primary.url}/v1/db/${DB}`, { method: 'PUT', headers: admin })).status).toBe(201);
  const setup = { statements: [{ sql: 'CREATE TABLE t (x INTEGER, b BLOB)' }, { sql: "INSERT INTO t VALUES (1, x'0102'), (9007199254740993, NULL), (3, 'text')" }] };
  expect((await fetch(`${primary.url}/v1/db/${DB}/exec`, { method: 'POST', headers: admin, body: JSON.stringify(setup) })).status).toBe(200);
  const args = ['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0', '--max-body-bytes', String(MAX_BODY), '--query-timeout-ms', String(TIMEOUT_MS)];
  replica = await startReplica(parseReplicaConfig(args, { EDGELITE_TOKENS: SPEC, EDGELITE_PRIMARY_TOKEN: ADMIN }), silentLogger);
  const { txid } = (await (await fetch(`${primary.url}/v1/db/${DB}`, { headers: admin })).json()) as { txid: number };
  await waitFor(() => (replica.store.get(DB)?.position?.txid ?? 0) >= txid, 'the replica to apply the rows');
  const fast = queryFastPath({
    auth: parseAuthConfig(undefined, SPEC),
    maxBodyBytes: MAX_BODY,
    logger: silentLogger,
    query: createReplicaQuery({ store: replica.store, primary: null, readWaitMs: 1000, onBehind: 'error', lazy: null }, (req) => readNodeJsonBody(req, MAX_BODY)),
  });
  fastOnly = createServer((req, res) => {
    if (!fast(req, res)) res.writeHead(NOT_TAKEN).end();
  });
  await new Promise<void>((resolve) => fastOnly.listen(0, '127.0.0.1', resolve));
  fastOnlyUrl = `http://127.0.0.1:${(fastOnly.address() as AddressInfo).port}`;
}, 60_000);

afterAll(async () => {
  await new Promise<void>((resolve) => {
    fastOnly?.close(() => resolve());
    fastOnly?.closeAllConnections();
  });
  await replica?.close();
  await primary?.close();
  t.cleanup();
});

interface Case {
  what: string;
  headers?: Record<string, string>;
  body: string;
  path?: string;
  status: number;
}

const json = { 'content-type': 'application/json' };
const reader = { ...json, authorization: `Bearer ${READ}` };
const q = (sql: string, params?: unknown) => JSON.stringify(params === undefined ? { sql } : { sql, params });

const CASES: Case[] = [
  { what: 'a point read', headers: reader, body: q('SELECT x FROM t WHERE x = ?', [1]), status: 200 },
  { what: 'blobs, text and an integer past 2^53', headers: reader, body: q('SELECT x, b FROM t ORDER BY rowid'), status: 200 },
  { what: 'mixed parameters', headers: reader, body: q('SELECT ? AS a, ? AS b, ? AS c', [1.5, 's', null]), status: 200 },
  { what: 'named parameters (the schemas path)', headers: reader, body: q('SELECT :a AS a', { a: true }), status: 200 },
  { what: 'an exact integer parameter', headers: reader, body: '{"sql": "SELECT ? AS n", "params": [9007199254740993]}', status: 200 },
  { what: 'a batch', headers: reader, body: JSON.stringify({ statements: [{ sql: 'SELECT 1 AS one' }, { sql: 'SELECT count(*) AS n FROM t' }] }), status: 200 },
  { what: 'msgpack answers', headers: { ...reader, accept: 'application/msgpack' }, body: q('SELECT x, b FROM t ORDER BY rowid'), status: 200 },
  { what: 'the admin token', headers: { ...json, authorization: `Bearer ${ADMIN}` }, body: q('SELECT 1'), status: 200 },
  { what: 'no token', headers: json, body: q('SELECT 1'), status: 401 },
  { what: 'an unknown token', headers: { ...json, authorization: 'Bearer fast-unknown-token-0123456789' }, body: q('SELECT 1'), status: 401 },
  { what: 'a token without the read right', headers: { ...json, authorization: `Bearer ${REPLICATE}` }, body: q('SELECT 1'), status: 403 },
  { what: 'a body past the bound', headers: reader, body: q(`SELECT '${'x'.repeat(MAX_BODY)}'`), status: 413 },
  { what: 'a body of another type', headers: { ...reader, 'content-type': 'text/plain' }, body: q('SELECT 1'), status: 415 },
  { what: 'JSON that does not parse', headers: reader, body: '{"sql": ', status: 400 },
  { what: 'a body the schemas refuse', headers: reader, body: q('SELECT ?', [[1]]), status: 400 },
  { what: 'a write', headers: reader, body: q('INSERT INTO t VALUES (4, NULL)'), status: 400 },
  { what: 'transaction control', headers: reader, body: q('BEGIN'), status: 400 },
  { what: 'a PRAGMA assignment', headers: reader, body: q('PRAGMA cache_size = 5'), status: 403 },
  { what: 'an SQL error', headers: reader, body: q('SELECT * FROM missing'), status: 400 },
  { what: 'an unknown consistency', headers: { ...reader, 'edgelite-consistency': 'sometimes' }, body: q('SELECT 1'), status: 400 },
  { what: 'a token that does not decode', headers: { ...reader, 'edgelite-token': 'not-a-token' }, body: q('SELECT 1'), status: 400 },
  { what: 'bounded staleness', headers: { ...reader, 'edgelite-consistency': 'bounded:60000' }, body: q('SELECT 1'), status: 200 },
  { what: 'a database not replicated here', headers: reader, path: '/v1/db/missing/query', body: q('SELECT 1'), status: 404 },
  { what: 'an invalid database name', headers: reader, path: '/v1/db/-bad/query', body: q('SELECT 1'), status: 400 },
  { what: 'a runaway read, stopped at the limit', headers: reader, body: q(RUNAWAY_SQL), status: 408 },
];

interface Seen {
  status: number;
  headers: Record<string, string>;
  body: string;
}

async function send(base: string, c: Case, suffix = ''): Promise<Seen> {
  const r = await fetch(`${base}${c.path ?? `/v1/db/${DB}/query`}${suffix}`, { method: 'POST', headers: c.headers, body: c.body });
  const headers: Record<string, string> = {};
  r.headers.forEach((v, k) => {
    if (k !== 'date' && k !== 'keep-alive') headers[k] = v;
  });
  return { status: r.status, headers, body: Buffer.from(await r.arrayBuffer()).toString('base64') };
}

describe('the replica read fast path', () => {
  it.each(CASES.map((c) => [c.what, c] as const))('answers %s as the hono route does', async (_, c) => {
    const fast = await send(replica.url, c);
    const hono = await send(replica.url, c, '?via=hono');
    expect(fast.status).toBe(c.status);
    expect(fast).toEqual(hono);
    // The fast path alone (no hono behind it) takes the request and answers the same.
    const alone = await send(fastOnlyUrl, c);
    if (c.status !== 408) expect(alone).toEqual(fast);
    else expect(alone.status).toBe(408);
  });

  it('leaves to hono a request with an Origin, a cookie, a query string or a repeated header', async () => {
    const body = q('SELECT 1');
    for (const headers of [{ ...reader, origin: 'https://app.example' }, { ...reader, cookie: 'a=b' }]) {
      expect((await send(fastOnlyUrl, { what: '', headers, body, status: 200 })).status).toBe(NOT_TAKEN);
    }
    expect((await send(fastOnlyUrl, { what: '', headers: reader, body, status: 200 }, '?consistency=eventual')).status).toBe(NOT_TAKEN);
    const repeated = new Headers(reader);
    repeated.append('accept', 'application/json');
    repeated.append('accept', 'application/msgpack');
    const r = await fetch(`${fastOnlyUrl}/v1/db/${DB}/query`, { method: 'POST', headers: repeated, body });
    expect(r.status).toBe(200); // fetch joins repeats into one header: still one, so taken
    // Through the replica, an Origin gets the CORS headers from hono.
    const cors = await send(replica.url, { what: '', headers: { ...reader, origin: 'https://app.example' }, body, status: 200 });
    expect(cors.status).toBe(200);
    expect(cors.headers['access-control-allow-origin']).toBe('*');
  });

  it('closes the connection after a refused body, and keeps it after a refusal it read', async () => {
    const big = await send(replica.url, CASES.find((c) => c.status === 413)!);
    expect(big.headers.connection).toBe('close');
    const unauth = await send(replica.url, CASES.find((c) => c.status === 401)!);
    expect(unauth.headers.connection).toBe('keep-alive');
  });

  it('serves other requests while a runaway read runs out its limit', async () => {
    const order: string[] = [];
    const runaway = send(replica.url, CASES.find((c) => c.status === 408)!).then((r) => {
      order.push('runaway');
      return r;
    });
    const quick = await send(replica.url, CASES[0]!);
    order.push('quick');
    expect(quick.status).toBe(200);
    expect((await runaway).status).toBe(408);
    expect(order).toEqual(['quick', 'runaway']);
  });
});
