/**
 * `edgelite status --lease etcd://...` (README.md#high-availability) run as the real CLI against a real
 * etcd (test/kit/etcd.ts) whose records were written through shared/lease.ts's LeaseStore: it prints the
 * holder (node, url, epoch, since, TTL), each candidate with its positions and record age, and the sync
 * set, in text and with --json; a vacant lease says so; an unreachable etcd is UNAVAILABLE, exit 1.
 */
import { describe, expect, it } from 'vitest';
import { LeaseStore } from '../../shared/lease.ts';
import type { LeaseStatus } from '../../bin/status.ts';
import { freePort } from '../kit/api.ts';
import { etcdForFile } from '../kit/etcd.ts';
import { runEdgelite } from '../kit/spawn.ts';

const etcd = etcdForFile();

describe('edgelite status --lease', () => {
  it('prints the holder, its epoch, the candidates and the sync set read from etcd', async () => {
    const store = new LeaseStore({ endpoint: etcd.url, prefix: 'st/a' });
    const since = Date.now() - 1000;
    const won = await store.campaign({ node: 'p1', url: 'http://127.0.0.1:7001', ttlMs: 60_000, since });
    if (!won.won) throw new Error('p1 should win a vacant lease');
    const lease = await store.etcd.grant(60_000);
    const time = Date.now() - 2500;
    await store.publishCandidate({ node: 'c1', url: 'http://127.0.0.1:7002', role: 'replica', positions: { app: { generation: 2, txid: 41, checksum: '00000000deadbeef' }, other: { generation: 1, txid: 7, checksum: '0000000000000abc' } }, epoch: won.epoch, time }, lease);
    await store.publishCandidate({ node: 'p1', url: 'http://127.0.0.1:7001', role: 'primary', positions: { app: { generation: 2, txid: 42, checksum: '00000000feedface' } }, epoch: won.epoch, time }, lease);
    expect(await store.publishSyncSet({ epoch: won.epoch, nodes: ['c1'], since })).toBe(true);
    const url = `etcd://${etcd.url.replace('http://', '')}/st/a`;

    const json = await runEdgelite(['status', '--lease', url, '--json']);
    expect(json.stderr).toBe('');
    expect(json.status).toBe(0);
    const s = JSON.parse(json.stdout) as LeaseStatus;
    expect(s.lease).toBe(url);
    expect(s.holder).toEqual({ node: 'p1', url: 'http://127.0.0.1:7001', epoch: won.epoch, ttlMs: 60_000, since });
    expect(s.candidates.map((c) => [c.node, c.role, c.url])).toEqual([
      ['c1', 'replica', 'http://127.0.0.1:7002'],
      ['p1', 'primary', 'http://127.0.0.1:7001'],
    ]);
    expect(s.candidates[0]!.positions).toEqual({ app: { generation: 2, txid: 41, checksum: '00000000deadbeef' }, other: { generation: 1, txid: 7, checksum: '0000000000000abc' } });
    expect(s.candidates[0]!.ageMs).toBeGreaterThanOrEqual(2500);
    expect(s.sync).toEqual({ epoch: won.epoch, nodes: ['c1'], since });

    const text = await runEdgelite(['status', '--lease', url]);
    expect(text.status).toBe(0);
    const lines = text.stdout.split('\n');
    expect(lines[0]).toBe(`lease ${url}`);
    expect(lines[1]).toBe(`holder p1  url=http://127.0.0.1:7001  epoch=${won.epoch}  since=${new Date(since).toISOString()}  ttl=60000 ms`);
    expect(lines[2]).toBe(`sync set (epoch ${won.epoch}): c1  since=${new Date(since).toISOString()}`);
    expect(lines[3]).toBe('candidates 2');
    expect(lines[4]).toMatch(/^node\s+url\s+role\s+epoch seen\s+age ms\s+database\s+generation\s+txid\s+checksum$/);
    const rows = lines.slice(5).filter(Boolean).map((l) => l.split(/\s+/));
    expect(rows.map((r) => [r[0], r[2], r[5], r[6], r[7], r[8]])).toEqual([
      ['c1', 'replica', 'app', '2', '41', '00000000deadbeef'],
      ['c1', 'replica', 'other', '1', '7', '0000000000000abc'],
      ['p1', 'primary', 'app', '2', '42', '00000000feedface'],
    ]);
    await store.resign(won.epoch, won.leaseId);
    await store.etcd.revoke(lease);
  }, 60_000);

  it('says the lease is vacant when no node holds it', async () => {
    const url = `etcd://${etcd.url.replace('http://', '')}/st/empty`;
    const text = await runEdgelite(['status', '--lease', url]);
    expect(text.status).toBe(0);
    expect(text.stdout).toBe(`lease ${url}\nholder none (the lease is vacant)\nsync set none\ncandidates 0\n`);
    const json = JSON.parse((await runEdgelite(['status', '--lease', url, '--json'])).stdout) as LeaseStatus;
    expect(json).toMatchObject({ holder: null, candidates: [], sync: null });
  }, 60_000);

  it('an unreachable etcd or a bad lease URL fails with its code, exit 1', async () => {
    const down = await runEdgelite(['status', '--lease', `etcd://127.0.0.1:${await freePort()}/x`]);
    expect(down.status).toBe(1);
    expect(down.stderr).toMatch(/^edgelite status: UNAVAILABLE: etcd http:\/\/127\.0\.0\.1:\d+ unreachable/);
    const bad = await runEdgelite(['status', '--lease', 'http://127.0.0.1:1/x']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/^edgelite status: MISCONFIGURED: --lease must be etcd:\/\/HOST:PORT\/PREFIX/);
  }, 60_000);
});
