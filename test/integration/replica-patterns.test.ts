/**
 * A replica following database patterns (README.md#database-patterns): a real primary and real replicas.
 * `--databases 'tenant-*,global'` gets tenant-1, tenant-2 and global but not other, and a matching
 * database created later is followed; EDGELITE_DATABASES says the same; with `--lazy` the patterns
 * limit what is fetched (others 404 DATABASE_NOT_FOUND). Bad patterns are MISCONFIGURED naming them.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

let primary: PrimaryHandle;
const replicas: ReplicaHandle[] = [];
const t = tempDir('replica-patterns');

async function post(base: string, path: string, body?: unknown, method = 'POST'): Promise<{ status: number; json: any }> {
  const res = await fetch(`${base}${path}`, { method, headers: { 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  return { status: res.status, json: await res.json() };
}

async function createWithRow(name: string, value: number): Promise<void> {
  expect((await post(primary.url, `/v1/db/${name}`, undefined, 'PUT')).status).toBe(201);
  expect((await post(primary.url, `/v1/db/${name}/exec`, { statements: [{ sql: 'CREATE TABLE t (x)' }, { sql: `INSERT INTO t VALUES (${value})` }] })).status).toBe(200);
}

function caughtUp(r: ReplicaHandle, name: string): boolean {
  const p = primary.store.get(name)?.position;
  return !!p && r.store.get(name)?.position?.txid === p.txid;
}

async function replicaWith(dir: string, args: string[], env: Record<string, string> = {}): Promise<ReplicaHandle> {
  const config = parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, dir), '--listen', '127.0.0.1:0', ...args], env);
  const r = await startReplica({ ...config, auth: AUTH_DISABLED }, silentLogger);
  replicas.push(r);
  return r;
}

beforeAll(async () => {
  primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
  await createWithRow('tenant-1', 1);
  await createWithRow('tenant-2', 2);
  await createWithRow('global', 3);
  await createWithRow('other', 4);
}, 30_000);

afterAll(async () => {
  for (const r of replicas) await r.close();
  await primary?.close();
  t.cleanup();
});

describe('replica --databases with patterns', () => {
  it("follows tenant-1, tenant-2 and global but not other, and a matching database created later", async () => {
    const r = await replicaWith('r1', ['--databases', 'tenant-*,global']);
    await waitFor(() => ['tenant-1', 'tenant-2', 'global'].every((n) => caughtUp(r, n)), 'the databases to replicate', 20_000);
    const q = await post(r.url, '/v1/db/tenant-2/query', { sql: 'SELECT x FROM t' });
    expect(q.json.results[0].rows).toEqual([[2]]);
    expect(r.store.get('other')).toBeUndefined();
    expect((await post(r.url, '/v1/db/other/query', { sql: 'SELECT 1' })).status).toBe(404);

    await createWithRow('tenant-3', 30);
    await createWithRow('other-2', 40);
    await waitFor(() => caughtUp(r, 'tenant-3'), 'the databases to replicate', 20_000);
    expect((await post(r.url, '/v1/db/tenant-3/query', { sql: 'SELECT x FROM t' })).json.results[0].rows).toEqual([[30]]);
    // A later write to a followed database still arrives; the non-matching ones never did.
    expect((await post(primary.url, '/v1/db/tenant-1/exec', { sql: 'INSERT INTO t VALUES (11)' })).status).toBe(200);
    await waitFor(() => caughtUp(r, 'tenant-1'), 'the databases to replicate', 20_000);
    expect(r.store.names().sort()).toEqual(['global', 'tenant-1', 'tenant-2', 'tenant-3']);
  }, 60_000);

  it('a restarted pattern replica resumes its local databases from their positions, without new snapshots', async () => {
    const first = await replicaWith('r4', ['--databases', 'tenant-*']);
    await waitFor(() => ['tenant-1', 'tenant-2'].every((n) => caughtUp(first, n)), 'the databases to replicate', 20_000);
    await first.close();
    replicas.splice(replicas.indexOf(first), 1);
    expect((await post(primary.url, '/v1/db/tenant-2/exec', { sql: 'INSERT INTO t VALUES (22)' })).status).toBe(200);
    const again = await replicaWith('r4', ['--databases', 'tenant-*']);
    await waitFor(() => caughtUp(again, 'tenant-2') && caughtUp(again, 'tenant-1'), 'the restarted replica to catch up', 20_000);
    expect(again.follower.applied('tenant-2')).toMatchObject({ snapshots: 0, changeSets: 1 });
    expect(again.follower.applied('tenant-1').snapshots).toBe(0);
  }, 60_000);

  it('reads the same from EDGELITE_DATABASES, with ? for one character', async () => {
    const r = await replicaWith('r2', [], { EDGELITE_DATABASES: 'tenant-?' });
    await waitFor(() => ['tenant-1', 'tenant-2', 'tenant-3'].every((n) => caughtUp(r, n)), 'the databases to replicate', 20_000);
    expect(r.store.names().sort()).toEqual(['tenant-1', 'tenant-2', 'tenant-3']);
  }, 60_000);

  it('with --lazy, fetches only matching databases; others are 404 DATABASE_NOT_FOUND', async () => {
    const r = await replicaWith('r3', ['--lazy', '--databases', 'tenant-*']);
    const q = await post(r.url, '/v1/db/tenant-1/query', { sql: 'SELECT count(*) AS n FROM t' });
    expect(q.status, JSON.stringify(q.json)).toBe(200);
    const refused = await post(r.url, '/v1/db/global/query', { sql: 'SELECT 1' });
    expect(refused.status).toBe(404);
    expect(refused.json.error.code).toBe('DATABASE_NOT_FOUND');
    expect(r.store.get('global')).toBeUndefined();
  }, 60_000);

  it('refuses bad patterns with MISCONFIGURED naming them', () => {
    const base = ['--primary', 'http://127.0.0.1:1', '--data', '/tmp/x'];
    for (const bad of ['tenant-[1]', 'a/b', '.hidden*', 'x,,y\u0000']) {
      expect(() => parseReplicaConfig([...base, '--databases', bad], {})).toThrow(expect.objectContaining({ code: 'MISCONFIGURED' }));
    }
    expect(() => parseReplicaConfig([...base, '--databases', 'tenant-[1]'], {})).toThrow(/tenant-\[1\]/);
    expect(parseReplicaConfig([...base, '--databases', 'tenant-*, global'], {}).databases).toEqual(['tenant-*', 'global']);
  });
});
