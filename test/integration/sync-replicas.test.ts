/**
 * `--sync-replicas N` against a real etcd (test/kit/etcd.ts), a real primary (startPrimary, under a
 * lease won by a real LeaseStore.campaign and kept by a LeaseKeeper) and real candidate replicas over
 * HTTP on loopback: with N = 1 a write is answered only once the candidate applied it; with the
 * candidate gone writes are answered 504 REPLICATION_PENDING (committed: outcome applied, with their
 * token) until a new candidate caught up and joined the sync set, which is published in etcd under the
 * epoch; with N = 0 nothing waits; bad reports are refused with stable codes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseAppliedReport } from '../../primary/sync.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { decodeToken, TOKEN_HEADER } from '../../shared/token.ts';
import { etcdForFile } from '../kit/etcd.ts';
import { exec, freePort, http, info, query } from '../kit/api.ts';
import { holdLease, type HeldLease } from '../kit/held-lease.ts';
import { waitFor } from '../kit/wait.ts';
import { stopsAfterEach, thrownEdgelite } from '../helpers.ts';
import { quietLogger } from './backup-kit.ts';

const DB = 'app';
const etcd = etcdForFile();
const stops = stopsAfterEach();
let prefixes = 0;

function tmp(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `edgelite-sync-${label}-`));
  stops.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** primaryUnderLease starts a primary holding a fresh lease prefix, with `--sync-replicas n`. */
async function primaryUnderLease(n: number, timeout = '1500ms'): Promise<{ p: PrimaryHandle; lease: HeldLease; lines: Array<Record<string, unknown>> }> {
  const prefix = `sync-${process.pid}-${++prefixes}`;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const lease = await holdLease(etcd.url, prefix, 'p', url);
  stops.push(() => lease.keeper.stop());
  const sync = n > 0 ? ['--sync-replicas', String(n), '--sync-timeout', timeout] : [];
  const config = parsePrimaryConfig(['--data', tmp('p'), '--listen', `127.0.0.1:${port}`, '--lease', lease.leaseUrl, '--advertise', url, '--node-id', 'p', ...sync], {});
  const lines: Array<Record<string, unknown>> = [];
  const p = await startPrimary(config, (e) => void lines.push(e), { ha: lease.ha });
  stops.push(() => p.close());
  return { p, lease, lines };
}

/** candidate starts a `--candidate --lease` replica of `primary` named `node`. */
async function candidate(node: string, primary: string, leaseUrl: string): Promise<ReplicaHandle> {
  const port = await freePort();
  const config = parseReplicaConfig(['--data', tmp(node), '--listen', `127.0.0.1:${port}`, '--primary', primary, '--candidate', '--lease', leaseUrl, '--advertise', `http://127.0.0.1:${port}`, '--node-id', node], {});
  const r = await startReplica(config, quietLogger());
  stops.push(() => r.close());
  return r;
}

const insert = (v: string) => ({ sql: 'INSERT INTO t (v) VALUES (?)', params: [v] });
const members = async (url: string): Promise<string[]> => (await http(url, 'GET', '/v1/replicas')).json.members as string[];
const metric = async (url: string, name: string): Promise<number | null> => {
  const res = await fetch(`${url}/metrics`);
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : null;
};

describe('--sync-replicas 1', () => {
  it('answers a write only after the candidate applied it; publishes the sync set in etcd under the epoch', async () => {
    const { p, lease } = await primaryUnderLease(1, '5s');
    const c1 = await candidate('c1', p.url, lease.leaseUrl);
    await waitFor(async () => (await members(p.url)).includes('c1') || null, 'c1 to join the sync set');
    expect(await lease.store.syncSet()).toMatchObject({ epoch: lease.ha.epoch, nodes: ['c1'] });

    // Creating the database waits for the candidate too.
    expect((await http(p.url, 'PUT', `/v1/db/${DB}`)).status).toBe(201);
    expect((await info(c1.url, DB))?.txid).toBe(p.store.require(DB).position.txid);
    await exec(p.url, DB, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    for (let i = 0; i < 20; i++) {
      const r = await exec(p.url, DB, insert(`v${i}`));
      const txid = Number(decodeToken(r.headers.get(TOKEN_HEADER)!).txid);
      // The candidate's own API, right after the answer: it already has the write.
      const at = await info(c1.url, DB);
      expect(at?.txid).toBeGreaterThanOrEqual(txid);
    }
    expect(await query(c1.url, DB, 'SELECT count(*) FROM t')).toEqual([[20]]);
    // Forwarded through the candidate itself, more at once than it has connections to the primary (64):
    // its reports must not queue behind the forwarded writes that wait for them.
    let done = 0;
    const writer = async (w: number): Promise<number[]> => {
      const statuses: number[] = [];
      while (done < 1000) {
        done++;
        statuses.push((await http(c1.url, 'POST', `/v1/db/${DB}/exec`, insert(`f${w}`))).status);
      }
      return statuses;
    };
    const statuses = (await Promise.all(Array.from({ length: 80 }, (_, w) => writer(w)))).flat();
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(await query(c1.url, DB, 'SELECT count(*) FROM t')).toEqual([[20 + statuses.length]]);
    const listed = (await http(p.url, 'GET', '/v1/replicas')).json;
    expect(listed).toMatchObject({ syncReplicas: 1, members: ['c1'], nodes: [{ node: 'c1', url: c1.url, alive: true, member: true }] });
    expect(listed.nodes[0].positions[DB].txid).toBe(p.store.require(DB).position.txid);
    expect(await metric(p.url, 'edgelite_sync_replicas_members')).toBe(1);
    expect(await metric(p.url, 'edgelite_sync_wait_seconds_count')).toBeGreaterThanOrEqual(22);
    expect(await metric(p.url, 'edgelite_sync_pending_total')).toBe(0);
  }, 60_000);

  it('with the candidate gone: 504 REPLICATION_PENDING (applied, with its token); a new candidate catches up, joins, and writes succeed again', async () => {
    const { p, lease } = await primaryUnderLease(1, '1500ms');
    const c1 = await candidate('c1', p.url, lease.leaseUrl);
    await waitFor(async () => (await members(p.url)).includes('c1') || null, 'c1 to join the sync set');
    expect((await http(p.url, 'PUT', `/v1/db/${DB}`)).status).toBe(201);
    await exec(p.url, DB, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    await exec(p.url, DB, insert('before'));
    await c1.close();

    const r = await http(p.url, 'POST', `/v1/db/${DB}/exec`, insert('pending'));
    expect(r.status).toBe(504);
    expect(r.json.error.code).toBe('REPLICATION_PENDING');
    expect(r.json.error.details).toMatchObject({ outcome: 'applied', members: ['c1'], applied: [] });
    const token = r.headers.get(TOKEN_HEADER);
    expect(token).toBe(r.json.error.details.token);
    expect(Number(decodeToken(token!).txid)).toBe(r.json.error.details.txid);
    // Committed on the primary: not to be sent again.
    expect(await query(p.url, DB, 'SELECT v FROM t ORDER BY id')).toEqual([['before'], ['pending']]);
    expect(await metric(p.url, 'edgelite_sync_pending_total')).toBe(1);

    // A node behind the acknowledged writes is listed but does not take c1's place, even once c1 is gone.
    const behind = { node: 'x', url: 'http://127.0.0.1:1', positions: { [DB]: { generation: 1, txid: 1, checksum: '0000000000000000' } } };
    await waitFor(async () => (await http(p.url, 'GET', '/v1/replicas')).json.nodes.find((n: { node: string; alive: boolean }) => n.node === 'c1' && !n.alive), 'c1 to be gone');
    expect((await http(p.url, 'POST', '/v1/replicas/applied', behind)).status).toBe(200);
    expect((await http(p.url, 'GET', '/v1/replicas')).json).toMatchObject({ members: ['c1'], nodes: [{ node: 'c1', alive: false, member: true }, { node: 'x', alive: true, member: false }] });

    // A new candidate: it is caught up with every acknowledged write once it took its snapshot, and
    // replaces c1 (gone) in the sync set, published in etcd.
    const c2 = await candidate('c2', p.url, lease.leaseUrl);
    await waitFor(async () => ((await members(p.url))[0] === 'c2') || null, 'c2 to replace c1 in the sync set');
    expect(await lease.store.syncSet()).toMatchObject({ epoch: lease.ha.epoch, nodes: ['c2'] });
    const ok = await exec(p.url, DB, insert('after'));
    expect((await info(c2.url, DB))?.txid).toBeGreaterThanOrEqual(Number(decodeToken(ok.headers.get(TOKEN_HEADER)!).txid));
    expect(await query(c2.url, DB, 'SELECT v FROM t ORDER BY id')).toEqual([['before'], ['pending'], ['after']]);
    const listed = (await http(p.url, 'GET', '/v1/replicas')).json;
    expect(listed.nodes.map((n: { node: string; member: boolean }) => [n.node, n.member])).toEqual([['c1', false], ['c2', true], ['x', false]]);
  }, 60_000);

  it('with no member a database creation is answered REPLICATION_PENDING; a set etcd refuses (the lease lost) is not used', async () => {
    const { p, lease, lines } = await primaryUnderLease(1, '1500ms');
    const created = await http(p.url, 'PUT', `/v1/db/${DB}`);
    expect([created.status, created.json.error.code, created.json.error.details.outcome]).toEqual([504, 'REPLICATION_PENDING', 'applied']);
    expect(p.store.get(DB)).toBeDefined();
    lease.keeper.stop();
    await lease.store.resign(lease.ha.epoch, lease.keeper.leaseId);
    // A newer record names the same URL (candidates follow the record under --lease), so p hears the
    // candidate's reports, but p's own epoch no longer holds the lease: etcd refuses its sync set.
    const other = await lease.store.campaign({ node: 'other', url: p.url, ttlMs: 5000, since: Date.now() });
    if (other.won) stops.push(() => lease.store.etcd.revoke(other.leaseId));
    const c1 = await candidate('c1', p.url, lease.leaseUrl);
    await waitFor(() => lines.find((l) => l.msg === 'sync set not published; the old one stays'), 'the refused publish');
    expect(await members(p.url)).toEqual([]);
    expect(await lease.store.syncSet()).toBeNull();
    expect(c1.reporter!.sent).toBeGreaterThanOrEqual(1);
  }, 60_000);
});

describe('--sync-replicas 0 (the default)', () => {
  it('waits for nothing: writes are answered with no candidate at all, reports are only listed', async () => {
    const { p, lease } = await primaryUnderLease(0);
    expect((await http(p.url, 'PUT', `/v1/db/${DB}`)).status).toBe(201);
    await exec(p.url, DB, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    await exec(p.url, DB, insert('a'));
    const c1 = await candidate('c1', p.url, lease.leaseUrl);
    // Nothing changes from here on: the reports still come, as heartbeats.
    await waitFor(() => c1.reporter!.sent >= 3 || null, 'heartbeat reports from an idle c1', 20_000);
    expect((await http(p.url, 'GET', '/v1/replicas')).json).toMatchObject({ syncReplicas: 0, members: [], nodes: [{ node: 'c1', member: false }] });
    expect(await lease.store.syncSet()).toBeNull();
    expect(await metric(p.url, 'edgelite_sync_replicas_members')).toBeNull();
  }, 60_000);
});

describe('POST /v1/replicas/applied', () => {
  it('refuses bad bodies with 400 and a stable code, and changes nothing', async () => {
    const { p } = await primaryUnderLease(1);
    const pos = { generation: 1, txid: 3, checksum: '00000000000000ab' };
    for (const [body, code] of [
      [[], 'BAD_REQUEST'],
      [{ node: 'a', url: 'http://h:1' }, 'BAD_REQUEST'],
      [{ node: '../a', url: 'http://h:1', positions: {} }, 'BAD_REQUEST'],
      [{ node: 'a', url: 'ftp://h', positions: {} }, 'BAD_REQUEST'],
      [{ node: 'a', url: 'http://h:1', positions: { app: { ...pos, txid: -1 } } }, 'BAD_REQUEST'],
      [{ node: 'a', url: 'http://h:1', positions: { app: { ...pos, checksum: 'xyz' } } }, 'BAD_REQUEST'],
      [{ node: 'a', url: 'http://h:1', positions: { app: pos }, extra: 1 }, 'BAD_REQUEST'],
      [{ node: 'a', url: 'http://h:1', positions: { '../x': pos } }, 'INVALID_DATABASE_NAME'],
    ] as const) {
      const r = await http(p.url, 'POST', '/v1/replicas/applied', body);
      expect([r.status, r.json.error.code]).toEqual([400, code]);
    }
    const raw = await fetch(`${p.url}/v1/replicas/applied`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"node":' });
    expect(raw.status).toBe(400);
    expect((await http(p.url, 'GET', '/v1/replicas')).json.nodes).toEqual([]);
    expect(parseAppliedReport({ node: 'a', url: 'http://h:1/', positions: { app: pos } })).toEqual({ node: 'a', url: 'http://h:1', positions: { app: pos } });
    expect(thrownEdgelite(() => parseAppliedReport(null)).code).toBe('BAD_REQUEST');
  }, 30_000);
});
