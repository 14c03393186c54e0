/**
 * The auth walk: a primary and a replica configured with one token per right, and a table of every
 * route (method, path, right needed) walked with no token, a wrong token, each token lacking the right,
 * and the right token. Also: health stays open, a replica holding only a replicate token follows but
 * its forwarded writes come back as a typed FORBIDDEN, constantTimeEqual's semantics, and a server
 * bound beyond loopback without auth refuses to start.
 */
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH_DISABLED, constantTimeEqual, parseAuthConfig, type Right } from '../../shared/auth.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { EDGELITE_BIN, runProcess } from '../kit/spawn.ts';
import { tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

const TOKENS: Record<Right, string> = {
  read: 'walk-read-token-0123456789',
  write: 'walk-write-token-0123456789',
  replicate: 'walk-replicate-token-0123456789',
  admin: 'walk-admin-token-0123456789',
};
const SPEC = (Object.entries(TOKENS) as Array<[Right, string]>).map(([right, token]) => `${right}=${token}`).join('; ');
const WRONG = 'walk-unknown-token-0123456789';
const DB = 'app';

interface Route {
  method: string;
  path: string;
  right: Right | null;
  body?: unknown;
  /** What the right token gets when it is not a 2xx (a catch-up range of the open tail: 409 USE_STREAM). */
  through?: { status: number; code: string };
}

/** Every route of the primary (README.md#http-api and primary/app.ts), with the right it needs. */
const PRIMARY_ROUTES: Route[] = [
  { method: 'GET', path: '/v1/health', right: null },
  { method: 'GET', path: '/metrics', right: 'read' },
  { method: 'GET', path: '/v1/db', right: 'read' },
  { method: 'GET', path: `/v1/db/${DB}`, right: 'read' },
  { method: 'PUT', path: '/v1/db/walk-created', right: 'write' },
  { method: 'DELETE', path: '/v1/db/walk-dropped', right: 'admin' },
  { method: 'POST', path: `/v1/db/${DB}/query`, right: 'read', body: { sql: 'SELECT count(*) FROM t' } },
  { method: 'POST', path: `/v1/db/${DB}/exec`, right: 'write', body: { sql: 'INSERT INTO t VALUES (1)' } },
  { method: 'GET', path: `/v1/db/${DB}/snapshot`, right: 'replicate' },
  { method: 'POST', path: '/v1/stream', right: 'replicate', body: { databases: [DB] } },
  { method: 'GET', path: `/v1/db/${DB}/changes/00000001/0000000000000001`, right: 'replicate', through: { status: 409, code: 'USE_STREAM' } },
  { method: 'POST', path: '/v1/replicas/applied', right: 'replicate', body: { node: 'walk', url: 'http://127.0.0.1:1', positions: {} } },
  { method: 'GET', path: '/v1/replicas', right: 'read' },
  { method: 'GET', path: '/v1/openapi.json', right: 'read' },
];

/** Every route of the replica (replica/app.ts): the same API, minus what only a primary serves (the stream, catch-up ranges). */
const REPLICA_ROUTES: Route[] = [
  { method: 'GET', path: '/v1/health', right: null },
  { method: 'GET', path: '/metrics', right: 'read' },
  { method: 'GET', path: '/v1/db', right: 'read' },
  { method: 'GET', path: `/v1/db/${DB}`, right: 'read' },
  { method: 'PUT', path: '/v1/db/walk-created-by-replica', right: 'write' },
  { method: 'DELETE', path: '/v1/db/walk-dropped-by-replica', right: 'admin' },
  { method: 'POST', path: `/v1/db/${DB}/query`, right: 'read', body: { sql: 'SELECT count(*) FROM t' } },
  { method: 'POST', path: `/v1/db/${DB}/exec`, right: 'write', body: { sql: 'INSERT INTO t VALUES (2)' } },
  // The replica's own copy, for export through a replica: the read right (README.md#http-api).
  { method: 'GET', path: `/v1/db/${DB}/snapshot`, right: 'read' },
  { method: 'GET', path: '/v1/openapi.json', right: 'read' },
];

let primary: PrimaryHandle;
let replica: ReplicaHandle;
let lowReplica: ReplicaHandle;
const t = tempDir('auth-walk');

beforeAll(async () => {
  primary = await startPrimary(parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], { EDGELITE_TOKENS: SPEC }), silentLogger);
  const admin = { authorization: `Bearer ${TOKENS.admin}`, 'content-type': 'application/json' };
  expect((await fetch(`${primary.url}/v1/db/${DB}`, { method: 'PUT', headers: admin })).status).toBe(201);
  expect((await fetch(`${primary.url}/v1/db/${DB}/exec`, { method: 'POST', headers: admin, body: JSON.stringify({ sql: 'CREATE TABLE t (x)' }) })).status).toBe(200);
  for (const name of ['walk-dropped', 'walk-dropped-by-replica']) expect((await fetch(`${primary.url}/v1/db/${name}`, { method: 'PUT', headers: admin })).status).toBe(201);
  replica = await startReplica(
    parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0'], { EDGELITE_TOKENS: SPEC, EDGELITE_PRIMARY_TOKEN: TOKENS.admin }),
    silentLogger,
  );
  // A replica without auth of its own (loopback) that holds only a replicate token for the primary.
  lowReplica = await startReplica(
    parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r2'), '--listen', '127.0.0.1:0'], { EDGELITE_PRIMARY_TOKEN: TOKENS.replicate }),
    silentLogger,
  );
  await waitFor(() => replica.store.get(DB)?.position && lowReplica.store.get(DB)?.position, 'replicas to bootstrap with a replicate token');
});

afterAll(async () => {
  await lowReplica?.close();
  await replica?.close();
  await primary?.close();
  t.cleanup();
});

/** call sends one request; a stream's never-ending body is cancelled after the status. */
async function call(url: string, route: Route, authorization: string | undefined): Promise<{ status: number; code: string | null }> {
  const headers: Record<string, string> = {};
  if (authorization !== undefined) headers.authorization = authorization;
  if (route.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${url}${route.path}`, { method: route.method, headers, body: route.body === undefined ? undefined : JSON.stringify(route.body) });
  if (res.headers.get('content-type')?.startsWith('application/json')) {
    const body = (await res.json()) as { error?: { code?: string } };
    return { status: res.status, code: body.error?.code ?? null };
  }
  await res.body?.cancel();
  return { status: res.status, code: null };
}

function walk(server: () => string, routes: Route[]): void {
  for (const route of routes) {
    const name = `${route.method} ${route.path}`;
    if (route.right === null) {
      it(`${name} is open: no token, a wrong token and any right all get 200`, async () => {
        for (const auth of [undefined, `Bearer ${WRONG}`, 'garbage', ...Object.values(TOKENS).map((tk) => `Bearer ${tk}`)]) {
          expect((await call(server(), route, auth)).status, String(auth)).toBe(200);
        }
      });
      continue;
    }
    it(`${name} needs ${route.right}: 401 without or with a wrong token, 403 without the right, through with it`, async () => {
      const url = server();
      for (const auth of [undefined, `Bearer ${WRONG}`, `Bearer ${TOKENS.read}x`, `Basic ${TOKENS.admin}`, `Bearer`, TOKENS.admin]) {
        expect(await call(url, route, auth), `${name} with ${String(auth)}`).toEqual({ status: 401, code: 'UNAUTHORIZED' });
      }
      for (const right of Object.keys(TOKENS) as Right[]) {
        const r = await call(url, route, `Bearer ${TOKENS[right]}`);
        if (right === route.right || right === 'admin') {
          expect([401, 403], `${name} with the ${right} token: ${JSON.stringify(r)}`).not.toContain(r.status);
          if (route.through) expect(r, `${name} with the ${right} token`).toEqual(route.through);
          else expect(r.status, `${name} with the ${right} token: ${JSON.stringify(r)}`).toBeLessThan(300);
        } else {
          expect(r, `${name} with the ${right} token`).toEqual({ status: 403, code: 'FORBIDDEN' });
        }
      }
    });
  }
}

describe('auth walk: primary', () => walk(() => primary.url, PRIMARY_ROUTES));
describe('auth walk: replica', () => walk(() => replica.url, REPLICA_ROUTES));

describe('auth: a replica that holds only a replicate token', () => {
  it('follows the primary', async () => {
    const admin = { authorization: `Bearer ${TOKENS.admin}`, 'content-type': 'application/json' };
    const w = await fetch(`${primary.url}/v1/db/${DB}/exec`, { method: 'POST', headers: admin, body: JSON.stringify({ sql: 'INSERT INTO t VALUES (42)' }) });
    const txid = Number(w.headers.get('edgelite-txid'));
    await waitFor(() => (lowReplica.store.get(DB)?.position?.txid ?? 0) >= txid, 'the replicate-only replica to follow');
  });

  it('has its forwarded writes and database creation refused with a typed FORBIDDEN', async () => {
    const h = { 'content-type': 'application/json' };
    const w = await fetch(`${lowReplica.url}/v1/db/${DB}/exec`, { method: 'POST', headers: h, body: JSON.stringify({ sql: 'INSERT INTO t VALUES (7)' }) });
    expect(w.status).toBe(403);
    expect(((await w.json()) as { error: { code: string } }).error.code).toBe('FORBIDDEN');
    const put = await fetch(`${lowReplica.url}/v1/db/nope`, { method: 'PUT' });
    expect(put.status).toBe(403);
    expect(((await put.json()) as { error: { code: string } }).error.code).toBe('FORBIDDEN');
    // Reads are its own business: served locally.
    const r = await fetch(`${lowReplica.url}/v1/db/${DB}/query`, { method: 'POST', headers: h, body: JSON.stringify({ sql: 'SELECT count(*) FROM t' }) });
    expect(r.status).toBe(200);
  });

  // Was a bug: the replica overwrote the client's forwarded Authorization with its own token.
  it("forwards a client's own token: a client holding the write right can write through it", async () => {
    const w = await fetch(`${lowReplica.url}/v1/db/${DB}/exec`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKENS.write}` },
      body: JSON.stringify({ sql: 'INSERT INTO t VALUES (8)' }),
    });
    expect(w.status, await w.text()).toBe(200);
  });
});

describe('auth: constantTimeEqual', () => {
  it('is string equality', () => {
    const cases: Array<[string, string, boolean]> = [
      ['', '', true],
      ['a', 'a', true],
      ['', 'a', false],
      ['a', '', false],
      ['abc', 'abd', false],
      ['abc', 'ab', false],
      ['ab', 'abab', false],
      ['abab', 'ab', false],
      ['\u0000', '', false],
      ['é', 'e', false],
      ['\u{1f600}', '\u{1f600}', true],
      [TOKENS.admin, TOKENS.admin.slice(0, -1), false],
    ];
    for (const [a, b, want] of cases) expect(constantTimeEqual(a, b), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`).toBe(want);
    fc.assert(fc.property(fc.string(), fc.string(), (a, b) => constantTimeEqual(a, b) === (a === b)), { numRuns: 2000 });
    fc.assert(fc.property(fc.string({ minLength: 1 }), fc.nat(), (a, i) => {
      const at = i % a.length;
      const b = a.slice(0, at) + String.fromCharCode(a.charCodeAt(at) ^ 1) + a.slice(at + 1);
      return !constantTimeEqual(a, b) && constantTimeEqual(a, a.slice());
    }));
  });
});

describe('auth: configuration', () => {
  it('a server bound beyond loopback without auth refuses to start (FORBIDDEN), with auth it starts', async () => {
    const d = tempDir('auth-bind');
    try {
      const open = { ...parsePrimaryConfig(['--data', join(d.dir, 'p'), '--listen', '0.0.0.0:0'], {}), auth: AUTH_DISABLED };
      await expect(startPrimary(open, silentLogger)).rejects.toMatchObject({ code: 'FORBIDDEN' });
      const replicaOpen = { ...parseReplicaConfig(['--primary', primary.url, '--data', join(d.dir, 'r'), '--listen', '0.0.0.0:0'], {}), auth: AUTH_DISABLED };
      await expect(startReplica(replicaOpen, silentLogger)).rejects.toBeInstanceOf(EdgeliteError);
      await expect(startReplica(replicaOpen, silentLogger)).rejects.toMatchObject({ code: 'FORBIDDEN' });
      const guarded = await startPrimary(parsePrimaryConfig(['--data', join(d.dir, 'p2'), '--listen', '0.0.0.0:0'], { EDGELITE_TOKEN: TOKENS.admin }), silentLogger);
      await guarded.close();
    } finally {
      d.cleanup();
    }
  });

  it('the CLI refuses too, with a message and a non-zero exit', async () => {
    const d = tempDir('auth-cli');
    try {
      const env = { ...process.env };
      for (const k of Object.keys(env)) if (k.startsWith('EDGELITE_')) delete env[k];
      const r = await runProcess(process.execPath, [EDGELITE_BIN, 'primary', '--data', join(d.dir, 'p'), '--listen', '0.0.0.0:0'], '', 30_000);
      expect(r.code).not.toBe(0);
      expect(`${r.stdout}${r.stderr}`).toMatch(/FORBIDDEN|without auth/);
    } finally {
      d.cleanup();
    }
  });

  it('rejects weak or malformed token configuration', () => {
    expect(() => parseAuthConfig('short', undefined)).toThrow(/at least 16/);
    expect(() => parseAuthConfig(undefined, 'read=short')).toThrow(/at least 16/);
    expect(() => parseAuthConfig(undefined, 'root=walk-admin-token-0123456789')).toThrow(/unknown right/);
    expect(() => parseAuthConfig(undefined, 'walk-admin-token-0123456789')).toThrow(/rights=token/);
    expect(() => parseAuthConfig(undefined, 'read=has space in it 0123456789')).toThrow(EdgeliteError);
  });
});
