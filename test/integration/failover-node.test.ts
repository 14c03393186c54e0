/**
 * Failover nodes (bin/ha.ts) as real child processes under a real etcd: the primary holds the lease and
 * takes writes; two candidates follow it; after the primary is SIGKILLed the most caught-up candidate
 * takes the lease (a larger epoch), promotes its copies with txids continuing and takes writes; the old
 * primary, restarted, sees the newer epoch, refuses writes naming the new primary, and rejoins as a
 * replica of it; everyone converges by checksum.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaseStore } from '../../shared/lease.ts';
import { exec, freePort, http, info } from '../kit/api.ts';
import { startEtcd, type Etcd } from '../kit/etcd.ts';
import { runEdgelite, spawnEdgelite, type EdgeliteProcess } from '../kit/spawn.ts';
import { waitFor } from '../kit/wait.ts';

const DB = 'app';
const TTL = '2s';

describe('failover nodes (child processes, real etcd)', () => {
  let etcd: Etcd;
  let dir: string;
  let lease: string;
  let store: LeaseStore;
  const procs: EdgeliteProcess[] = [];
  const ports: number[] = [];
  const url = (i: number) => `http://127.0.0.1:${ports[i]}`;

  function node(i: number, role: 'primary' | 'replica'): Promise<EdgeliteProcess> {
    const args = role === 'primary' ? ['primary'] : ['replica', '--candidate'];
    return spawnEdgelite([...args, '--data', join(dir, `n${i}`), '--listen', `127.0.0.1:${ports[i]}`, '--lease', lease, '--lease-ttl', TTL, '--node-id', `n${i}`, '--query-timeout-ms', '0']).then((p) => {
      procs.push(p);
      return p;
    });
  }
  const ha = async (i: number) => (await http(url(i), 'GET', '/v1/ha')).json as { role: string; holding: boolean; epoch: number; holder: { node: string; epoch: number } | null };

  beforeAll(async () => {
    etcd = await startEtcd();
    dir = mkdtempSync(join(tmpdir(), 'edgelite-failover-'));
    lease = `etcd://${etcd.url.replace('http://', '')}/fo`;
    store = new LeaseStore({ endpoint: etcd.url, prefix: 'fo' });
    for (let i = 0; i < 3; i++) ports.push(await freePort());
  }, 30_000);

  afterAll(async () => {
    for (const p of procs) await p.kill('SIGKILL');
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('kill -9 the primary: a candidate takes over with a larger epoch; the old primary comes back as a replica', async () => {
    const p0 = await node(0, 'primary');
    await waitFor(async () => (await ha(0)).holding, 'n0 to hold the lease', 15_000, 50);
    const epoch0 = (await store.primary())!.epoch;
    expect((await http(url(0), 'PUT', `/v1/db/${DB}`)).status).toBe(201);
    await exec(url(0), DB, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    for (let i = 0; i < 20; i++) expect((await exec(url(0), DB, { sql: 'INSERT INTO t (v) VALUES (?)', params: [`a${i}`] })).status).toBe(200);
    const w = await exec(url(0), DB, { sql: 'INSERT INTO t (v) VALUES (?)', params: ['last'] });
    expect(w.headers.get('edgelite-epoch')).toBe(String(epoch0));
    const before = await info(url(0), DB);

    await node(1, 'replica');
    await node(2, 'replica');
    for (const i of [1, 2]) await waitFor(async () => (await info(url(i), DB))?.txid === before!.txid, `n${i} to catch up`, 20_000, 50);
    // A candidate refuses writes it cannot forward? No: it forwards to the holder.
    expect((await exec(url(1), DB, { sql: 'INSERT INTO t (v) VALUES (?)', params: ['via-candidate'] })).status).toBe(200);
    const last = await info(url(0), DB);
    for (const i of [1, 2]) await waitFor(async () => (await info(url(i), DB))?.txid === last!.txid, `n${i} to catch up`, 20_000, 50);

    await p0.kill('SIGKILL');
    const holder = await waitFor(async () => {
      const h = await store.primary();
      return h && h.epoch > epoch0 ? h : null;
    }, 'a candidate to take the lease', 20_000, 50);
    expect(['n1', 'n2']).toContain(holder.node);
    const nu = holder.node === 'n1' ? 1 : 2;
    const after = await waitFor(async () => {
      const r = await exec(url(nu), DB, { sql: 'INSERT INTO t (v) VALUES (?)', params: ['after'] }).catch(() => null); // refused while its role switches
      return r && r.status === 200 ? r : null;
    }, 'the new primary to take a write', 20_000, 50);
    expect(after.headers.get('edgelite-epoch')).toBe(String(holder.epoch));
    expect(Number(after.headers.get('edgelite-txid'))).toBe(last!.txid! + 2); // T + 1 starts the new generation
    expect(Number(after.headers.get('edgelite-generation'))).toBeGreaterThan(last!.generation!);
    const rows = (await http(url(nu), 'POST', `/v1/db/${DB}/query`, { sql: 'SELECT count(*) FROM t' })).json as { results: Array<{ rows: unknown[][] }> };
    expect(rows.results[0]!.rows).toEqual([[23]]);

    // The old primary comes back: newer epoch seen, demoted to a replica of the holder.
    await node(0, 'primary');
    await waitFor(async () => (await ha(0).catch(() => null))?.role === 'replica', 'n0 to demote', 20_000, 50);
    const refused = await exec(url(0), DB, { sql: 'INSERT INTO t (v) VALUES (?)', params: ['x'] });
    // A replica forwards to the holder: the write lands there.
    expect(refused.status).toBe(200);
    expect(readdirSync(join(dir, 'n0', '.discarded')).length).toBe(1);
    const end = await info(url(nu), DB);
    for (const i of [0, 1, 2]) await waitFor(async () => (await info(url(i), DB).catch(() => null))?.checksum === end!.checksum ? true : null, `n${i} to converge`, 20_000, 50);

    // `edgelite promote` by hand: the holder hands over to n0 once n0 has caught up.
    const before2 = (await store.primary())!;
    const promoted = await runEdgelite(['promote', url(0), '--json']);
    expect(promoted.status, promoted.stderr).toBe(0);
    const answer = JSON.parse(promoted.stdout) as { node: string; epoch: number; handedOverBy: string };
    expect(answer).toMatchObject({ node: 'n0', handedOverBy: before2.node });
    expect(answer.epoch).toBeGreaterThan(before2.epoch);
    expect((await store.primary())?.node).toBe('n0');
    const w2 = await waitFor(async () => {
      const r = await exec(url(0), DB, { sql: 'INSERT INTO t (v) VALUES (?)', params: ['after-promote'] }).catch(() => null);
      return r && r.status === 200 ? r : null;
    }, 'n0 to take writes', 20_000, 50);
    expect(w2.headers.get('edgelite-epoch')).toBe(String(answer.epoch));
    const count = (await http(url(0), 'POST', `/v1/db/${DB}/query`, { sql: 'SELECT count(*) FROM t' })).json as { results: Array<{ rows: unknown[][] }> };
    expect(count.results[0]!.rows).toEqual([[25]]);
    // The old holder was caught-up-checked before the hand-over: nothing of it was discarded.
    await waitFor(async () => (await ha(nu).catch(() => null))?.role === 'replica', 'the old holder to demote', 20_000, 50);
    const metrics = await (await fetch(`${url(nu)}/metrics`)).text();
    expect(metrics).toContain('edgelite_ha_holder 0');
    expect(metrics).not.toMatch(/edgelite_failover_discarded_transactions_total\{/);
  }, 120_000);
});
