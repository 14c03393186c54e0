/**
 * Tenant-scoped tokens (README.md#tenant-scoped-tokens): a real primary and a real Node replica, both
 * configured with `rights@pattern=token` entries. A token for tenant-a gets 403 FORBIDDEN on tenant-b on
 * every surface (primary describe/query/exec/snapshot/changes/stream, replica describe/query/exec/snapshot), never
 * with the token in the message, and works on tenant-a; listings show only its databases; /metrics
 * needs an unscoped token; a scoped replicate token's `"*"` stream carries only its databases.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameDecoder, type Frame } from '../../shared/frames.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

const A = 'tenant-a-token-0123456789';
const B = 'tenant-b-token-0123456789';
const ADMIN = 'scoped-admin-token-0123456789';
const READ_ALL = 'scoped-read-all-token-0123456789';
const SPEC = `read+write+replicate@tenant-a=${A}; read+write@tenant-b|global=${B}; admin=${ADMIN}; read=${READ_ALL}`;

let primary: PrimaryHandle;
let replica: ReplicaHandle;
const t = tempDir('scoped-tokens');

async function call(base: string, method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    // a snapshot or a stream is not JSON
  }
  return { status: res.status, json, text };
}

/** streamFrames opens POST /v1/stream and reads frames up to the first heartbeat (sent at once). */
async function streamFrames(token: string, body: unknown): Promise<{ status: number; frames: Frame[]; json: any }> {
  const abort = new AbortController();
  const res = await fetch(`${primary.url}/v1/stream`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body), signal: abort.signal });
  if (res.status !== 200) return { status: res.status, frames: [], json: await res.json() };
  const reader = res.body!.getReader();
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  try {
    while (!frames.some((f) => f.type === 'heartbeat')) {
      const { done, value } = await reader.read();
      if (done) break;
      frames.push(...decoder.push(value));
    }
  } finally {
    abort.abort();
  }
  return { status: 200, frames, json: null };
}

beforeAll(async () => {
  primary = await startPrimary(parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], { EDGELITE_TOKENS: SPEC }), silentLogger);
  for (const db of ['tenant-a', 'tenant-b', 'other']) {
    expect((await call(primary.url, 'PUT', `/v1/db/${db}`, ADMIN)).status).toBe(201);
    expect((await call(primary.url, 'POST', `/v1/db/${db}/exec`, ADMIN, { sql: 'CREATE TABLE t (x)' })).status).toBe(200);
  }
  replica = await startReplica(
    parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0'], { EDGELITE_TOKENS: SPEC, EDGELITE_PRIMARY_TOKEN: ADMIN }),
    silentLogger,
  );
  await waitFor(() => ['tenant-a', 'tenant-b', 'other'].every((n) => replica.store.get(n)?.position?.txid === primary.store.get(n)!.position.txid), 'the databases to replicate', 20_000);
}, 60_000);

afterAll(async () => {
  await replica?.close();
  await primary?.close();
  t.cleanup();
});

function expectForbidden(r: { status: number; json: any; text: string }): void {
  expect(r.status, r.text).toBe(403);
  expect(r.json.error.code).toBe('FORBIDDEN');
  for (const token of [A, B, ADMIN, READ_ALL]) expect(r.text).not.toContain(token);
}

describe('tenant-scoped tokens on the primary', () => {
  it("refuses tenant-a's token on tenant-b on every per-database route, and serves it on tenant-a", async () => {
    const routes: Array<[string, string, unknown?]> = [
      ['GET', ''],
      ['POST', '/query', { sql: 'SELECT count(*) AS n FROM t' }],
      ['POST', '/exec', { sql: 'INSERT INTO t VALUES (1)' }],
      ['GET', '/snapshot'],
      ['GET', '/changes/00000001/0000000000000001'],
    ];
    for (const [method, suffix, body] of routes) {
      expectForbidden(await call(primary.url, method, `/v1/db/tenant-b${suffix}`, A, body));
      const ok = await call(primary.url, method, `/v1/db/tenant-a${suffix}`, A, body);
      expect(ok.status === 200 || (suffix.startsWith('/changes') && ok.status === 409), `${method} ${suffix}: ${ok.status} ${ok.text.slice(0, 200)}`).toBe(true);
    }
    // Creating a database outside the token's pattern is refused too; B's second pattern lets it create global.
    expectForbidden(await call(primary.url, 'PUT', '/v1/db/tenant-c', A));
    expect((await call(primary.url, 'PUT', '/v1/db/global', B)).status).toBe(201);
    expectForbidden(await call(primary.url, 'POST', '/v1/db/tenant-a/query', B, { sql: 'SELECT 1' }));
  });

  it("a fork needs the token to reach its source too: tenant-b's token cannot copy tenant-a into a name it owns", async () => {
    // `global` exists (the test above created it): drop it first, then fork into the free name.
    expect((await call(primary.url, 'DELETE', '/v1/db/global', ADMIN)).status).toBe(200);
    const refused = await call(primary.url, 'PUT', '/v1/db/global', B, { from: 'tenant-a' });
    expect([refused.status, refused.json.error.code]).toEqual([403, 'FORBIDDEN']);
    expect(refused.text).not.toContain(B);
    expect(primary.store.get('global')).toBeUndefined();
    const viaReplica = await call(replica.url, 'PUT', '/v1/db/global', B, { from: 'other' });
    expect([viaReplica.status, primary.store.get('global')]).toEqual([403, undefined]);
    const forked = await call(primary.url, 'PUT', '/v1/db/global', B, { from: 'tenant-b' });
    expect([forked.status, forked.json.forkedFrom?.name]).toEqual([201, 'tenant-b']);
  });

  it('lists only the databases a scoped token reaches; /metrics needs an unscoped token', async () => {
    const names = (r: { json: any }) => (r.json.databases as Array<{ name: string }>).map((d) => d.name).sort();
    expect(names(await call(primary.url, 'GET', '/v1/db', A))).toEqual(['tenant-a']);
    expect(names(await call(primary.url, 'GET', '/v1/db', READ_ALL))).toEqual(expect.arrayContaining(['other', 'tenant-a', 'tenant-b']));
    expectForbidden(await call(primary.url, 'GET', '/metrics', A));
    expect((await call(primary.url, 'GET', '/metrics', READ_ALL)).status).toBe(200);
  });

  it('streams a scoped replicate token only its databases, and refuses a list naming another', async () => {
    const all = await streamFrames(A, { databases: '*', deltas: true });
    expect(all.status).toBe(200);
    const named = new Set(all.frames.flatMap((f) => ('db' in f ? [f.db] : [])));
    expect([...named]).toEqual(['tenant-a']);
    const heartbeat = all.frames.find((f) => f.type === 'heartbeat') as Extract<Frame, { type: 'heartbeat' }>;
    expect(Object.keys(heartbeat.positions)).toEqual(['tenant-a']);
    // A pattern wider than the token is narrowed to it; naming another database is refused.
    const wide = await streamFrames(A, { databases: ['tenant-*'], deltas: true });
    expect(Object.keys((wide.frames.find((f) => f.type === 'heartbeat') as Extract<Frame, { type: 'heartbeat' }>).positions)).toEqual(['tenant-a']);
    const refused = await streamFrames(A, { databases: ['tenant-a', 'tenant-b'], deltas: true });
    expect(refused.status).toBe(403);
    expect(refused.json.error.code).toBe('FORBIDDEN');
    // B has no replicate right at all.
    expect((await streamFrames(B, { databases: ['tenant-b'] })).status).toBe(403);
  });
});

describe('tenant-scoped tokens on the Node replica', () => {
  it("refuses tenant-a's token on tenant-b for describe, query, exec and snapshot, and serves (and forwards) it on tenant-a", async () => {
    expectForbidden(await call(replica.url, 'GET', '/v1/db/tenant-b', A));
    expectForbidden(await call(replica.url, 'GET', '/v1/db/tenant-b/snapshot', A));
    expect((await call(replica.url, 'GET', '/v1/db/tenant-a/snapshot', A)).status).toBe(200);
    expectForbidden(await call(replica.url, 'POST', '/v1/db/tenant-b/query', A, { sql: 'SELECT count(*) AS n FROM t' }));
    expectForbidden(await call(replica.url, 'POST', '/v1/db/tenant-b/exec', A, { sql: 'INSERT INTO t VALUES (2)' }));
    expect((await call(replica.url, 'GET', '/v1/db/tenant-a', A)).status).toBe(200);
    expect((await call(replica.url, 'POST', '/v1/db/tenant-a/query', A, { sql: 'SELECT count(*) AS n FROM t' })).status).toBe(200);
    // The forwarded write carries A's own Authorization: the primary checks it again and accepts it for tenant-a.
    const w = await call(replica.url, 'POST', '/v1/db/tenant-a/exec', A, { sql: 'INSERT INTO t VALUES (3)' });
    expect(w.status, w.text).toBe(200);
    expect((await call(replica.url, 'GET', '/v1/db', A)).json.databases.map((d: { name: string }) => d.name)).toEqual(['tenant-a']);
    expectForbidden(await call(replica.url, 'GET', '/metrics', A));
  });

  it('a write forwarded by a replica that does not scope the token is refused by the primary', async () => {
    // This replica's own configuration grants A everywhere; the primary's does not.
    const loose = await startReplica(
      parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r2'), '--listen', '127.0.0.1:0', '--databases', 'tenant-b'], { EDGELITE_TOKENS: `read+write=${A}`, EDGELITE_PRIMARY_TOKEN: ADMIN }),
      silentLogger,
    );
    try {
      const r = await call(loose.url, 'POST', '/v1/db/tenant-b/exec', A, { sql: 'INSERT INTO t VALUES (4)' });
      expectForbidden(r);
    } finally {
      await loose.close();
    }
  });
});
