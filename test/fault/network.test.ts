/**
 * Network faults between replica and primary (replica → FaultProxy → primary): connections cut and
 * paused for longer than the heartbeat timeout, in the middle of a multi-megabyte change set and in the
 * middle of a snapshot download slowed by the proxy. The replica must resume on its own and converge
 * to the primary's exact position; its health must say when it has lost the primary, and recover.
 *
 * Replay with EDGELITE_SEED=<printed seed>; EDGELITE_LONG=1 runs more rounds.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeFrame } from '../../shared/frames.ts';
import { silentLogger } from '../../shared/log.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica } from '../../replica/server.ts';
import { integrityCheck } from '../kit/api.ts';
import { seedFromEnv, tempDir } from '../helpers.ts';
import { rounds, roundsTimeout } from '../kit/rounds.ts';
import { waitFor } from '../kit/wait.ts';
import { retryBounds } from '../kit/backoff.ts';
import { Cluster, DB } from '../kit/cluster.ts';
import { differingPages, PositionHistory, PositionSampler } from './verify.ts';

/** CUT_ROUNDS: cuts in the middle of a change set (3.6 s a round measured in long mode). */
const CUT_ROUNDS = rounds(3, 20);
const HEARTBEAT_TIMEOUT_MS = 1000;
const MAX_LAG_MS = 1000;
/** BIG_ROW_BYTES makes one change set of ~3 MB (about 750 pages). */
const BIG_ROW_BYTES = 3_000_000;

let cluster: Cluster | null = null;
afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

async function start(seed: number): Promise<Cluster> {
  const c = await Cluster.start({ seed, replicaFlags: ['--heartbeat-timeout-ms', String(HEARTBEAT_TIMEOUT_MS), '--max-lag-ms', String(MAX_LAG_MS)] });
  cluster = c;
  return c;
}

/** exec runs one write on the primary directly and returns its position. */
async function exec(c: Cluster, sql: string, params: unknown[] = []): Promise<{ txid: number; checksum: string }> {
  const res = await fetch(`${c.primary.url}/v1/db/${DB}/exec`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql, params }) });
  if (res.status !== 200) throw new Error(`exec answered ${res.status}: ${await res.text()}`);
  return { txid: Number(res.headers.get('edgelite-txid')), checksum: res.headers.get('edgelite-checksum')! };
}

let nextId = 1;
const bigRow = (c: Cluster) => exec(c, 'INSERT INTO items (id, tag, body) VALUES (?, ?, randomblob(?))', [nextId++, 'big', BIG_ROW_BYTES]);

async function health(url: string): Promise<{ status: number; body: { lastContactMs: number | null; status: string } }> {
  const res = await fetch(`${url}/v1/health`);
  return { status: res.status, body: (await res.json()) as { lastContactMs: number | null; status: string } };
}

/** converged waits until the replica holds the primary's position, then compares the files. */
async function converged(c: Cluster, history: PositionHistory, sampler: PositionSampler): Promise<void> {
  await waitFor(() => c.caughtUp(), 'the replica to resume and converge', 60_000);
  const p = c.primarySample();
  history.record(p.txid, p.checksum);
  expect(history.mismatches(sampler.stop()), 'replica positions the primary never had').toEqual([]);
  expect(integrityCheck(c.replicaFile)).toBe('ok');
  expect(differingPages(c.primaryFile, c.replicaFile)).toEqual([]);
}

/** midChangeSet starts a ~3 MB change set through a throttled proxy and resolves once ~300 KB of it reached the replica. */
async function midChangeSet(c: Cluster, history: PositionHistory): Promise<void> {
  await waitFor(() => c.caughtUp() && c.replica.follower.state === 'streaming', 'a caught-up replica');
  c.proxy.setRate('down', 1_000_000);
  const before = c.proxy.bytes.down;
  const p = await bigRow(c);
  history.record(p.txid, p.checksum);
  await waitFor(() => c.proxy.bytes.down > before + 300_000, 'part of the change set on the wire');
  expect(c.caughtUp()).toBe(false);
}

describe('network faults', () => {
  it('a connection cut in the middle of a change set resumes and converges', async () => {
    const seed = seedFromEnv();
    console.log(`cut mid-change-set: EDGELITE_SEED=${seed} rounds=${CUT_ROUNDS}`);
    const c = await start(seed);
    const history = new PositionHistory();
    history.record(c.primarySample().txid, c.primarySample().checksum);
    await c.startReplica();
    const sampler = new PositionSampler(() => c.replicaSample());
    for (let round = 0; round < CUT_ROUNDS; round++) {
      const failures = c.failures().length;
      await midChangeSet(c, history);
      expect(c.proxy.cut()).toBeGreaterThan(0);
      c.proxy.setRate('down', null);
      await waitFor(() => c.failures().length > failures, 'the replica to notice the cut');
      await waitFor(() => c.caughtUp(), `convergence after cut ${round}`, 30_000);
    }
    await converged(c, history, sampler);
  }, roundsTimeout(CUT_ROUNDS, 12_000));

  it('a pause longer than the heartbeat timeout in the middle of a change set: the replica reconnects and converges', async () => {
    const c = await start(seedFromEnv());
    const history = new PositionHistory();
    history.record(c.primarySample().txid, c.primarySample().checksum);
    await c.startReplica();
    const sampler = new PositionSampler(() => c.replicaSample());
    const failures = c.failures().length;
    await midChangeSet(c, history);
    c.proxy.pause();
    await waitFor(() => c.failures().some((l, i) => i >= failures && /heartbeat/.test(String(l.error))), 'the heartbeat timeout to end the stalled stream');
    expect(c.caughtUp()).toBe(false);
    c.proxy.resume();
    c.proxy.setRate('down', null);
    await converged(c, history, sampler);
  });

  /** bigDatabase fills the primary with ~9 MB, so a snapshot through a 2 MB/s proxy takes ~4.5 s. */
  async function bigDatabase(c: Cluster): Promise<PositionHistory> {
    const history = new PositionHistory();
    for (let i = 0; i < 3; i++) {
      const p = await bigRow(c);
      history.record(p.txid, p.checksum);
    }
    return history;
  }

  it('a connection cut in the middle of a snapshot: the replica fetches it again and converges', async () => {
    const c = await start(seedFromEnv());
    const history = await bigDatabase(c);
    c.proxy.setRate('down', 2_000_000);
    await c.startReplica();
    const sampler = new PositionSampler(() => c.replicaSample());
    await waitFor(() => c.proxy.live().some((i) => /snapshot$/.test(i.request ?? '') && i.bodyBytes.down > 1_000_000), 'a snapshot download under way');
    const failures = c.failures().length;
    c.proxy.cut();
    await waitFor(() => c.failures().length > failures, 'the replica to notice the cut');
    expect(c.replicaSample()).toBeNull();
    c.proxy.setRate('down', null);
    await converged(c, history, sampler);
  });

  it('a pause longer than the heartbeat timeout in the middle of a snapshot: the replica recovers', async () => {
    const c = await start(seedFromEnv());
    const history = await bigDatabase(c);
    c.proxy.setRate('down', 4_000_000);
    await c.startReplica();
    const sampler = new PositionSampler(() => c.replicaSample());
    await waitFor(() => c.proxy.live().some((i) => /snapshot$/.test(i.request ?? '') && i.bodyBytes.down > 1_000_000), 'a snapshot download under way');
    const failures = c.failures().length;
    c.proxy.pause();
    await waitFor(() => c.failures().length > failures, 'the stalled download to be abandoned');
    c.proxy.resume();
    c.proxy.setRate('down', null);
    await converged(c, history, sampler);
  });

  // Was a bug: the follower's watchdog counted a flowing snapshot download as silence.
  it('a snapshot that takes longer than the heartbeat timeout still completes', async () => {
    const c = await start(seedFromEnv());
    const history = await bigDatabase(c);
    c.proxy.setRate('down', 2_000_000); // ~9 MB at 2 MB/s: ~4.5 s, the heartbeat timeout is 1 s
    await c.startReplica();
    const sampler = new PositionSampler(() => c.replicaSample());
    await waitFor(() => c.caughtUp(), 'a slow bootstrap (~4.5 s of transfer)', 12_000);
    await converged(c, history, sampler);
  });

  it('health is 503 while the primary is unreachable beyond the lag threshold, and 200 again after', async () => {
    const c = await start(seedFromEnv());
    await c.startReplica();
    await waitFor(() => c.caughtUp(), 'bootstrap');
    await waitFor(async () => (await health(c.replica.url)).status === 200, 'a healthy replica');
    c.proxy.pause();
    c.proxy.cut();
    const seen: string[] = [];
    const deadline = Date.now() + MAX_LAG_MS + HEARTBEAT_TIMEOUT_MS + 6000;
    let red = false;
    while (Date.now() < deadline && !red) {
      const h = await health(c.replica.url);
      seen.push(`${h.status}/${h.body.lastContactMs}`);
      red = h.status === 503;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(red, `health while the primary was unreachable: ${seen.join(' ')}`).toBe(true);
    // Red means red for as long as the primary stays unreachable, not a flicker between reconnects.
    for (let i = 0; i < 20; i++) {
      const h = await health(c.replica.url);
      seen.push(`${h.status}/${h.body.lastContactMs}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    console.log(`health while unreachable: ${seen.join(' ')}`);
    expect(seen.slice(seen.findIndex((s) => s.startsWith('503')))).toEqual(expect.not.arrayContaining([expect.stringMatching(/^200/)]));
    c.proxy.resume();
    await waitFor(async () => (await health(c.replica.url)).status === 200, 'health back to 200', 20_000);
  });

  it('while the primary is unreachable the replica retries at its backoff pace: no tight loop, no giving up', async () => {
    const c = await start(seedFromEnv());
    await c.startReplica();
    await waitFor(() => c.caughtUp() && c.replica.follower.state === 'streaming', 'a streaming replica');
    const WINDOW_MS = 4000;
    // Every attempt is a new connection to the proxy, which closes it at once, as a dead primary's port.
    c.proxy.refuse();
    const before = c.proxy.connections;
    c.proxy.cut();
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const attempts = c.proxy.connections - before;
    const { fewest, most } = retryBounds(WINDOW_MS, c.backoff, 100);
    console.log(`backoff ${JSON.stringify(c.backoff)}: ${attempts} attempts in ${WINDOW_MS} ms (allowed ${fewest}..${most})`);
    expect(attempts, 'connection attempts while the primary was unreachable').toBeGreaterThanOrEqual(fewest);
    expect(attempts, 'connection attempts while the primary was unreachable').toBeLessThanOrEqual(most);
    c.proxy.refuse(false);
    await waitFor(() => c.caughtUp() && c.replica.follower.state === 'streaming', 'the replica streaming again');
  });

  // Was a bug: the backoff was reset whenever the primary answered, so a stream failing at once looped.
  it('a stream that fails as soon as it opens is retried with growing backoff, not in a tight loop', async () => {
    let streams = 0;
    const fake = http.createServer((req, res) => {
      req.resume();
      streams++;
      res.writeHead(200, { 'content-type': 'application/vnd.edgelite.stream' });
      res.end(encodeFrame({ type: 'changeset', db: DB, data: new Uint8Array(16) })); // undecodable: the session fails at once
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const t = tempDir('fault-backoff');
    const config = parseReplicaConfig(['--primary', `http://127.0.0.1:${(fake.address() as AddressInfo).port}`, '--data', t.dir, '--listen', '127.0.0.1:0', '--databases', DB], {});
    const replica = await startReplica({ ...config, backoffMinMs: 50, backoffMaxMs: 5000 }, silentLogger);
    try {
      await waitFor(() => streams >= 1, 'the first stream');
      await new Promise((r) => setTimeout(r, 3000));
      // Doubling from 50 ms (with jitter) allows about 7 attempts in 3 s.
      expect(streams, 'stream requests in 3 s').toBeLessThanOrEqual(10);
      // And it keeps retrying: at least what the longest waits allow (each attempt given 400 ms to fail).
      const { fewest } = retryBounds(3000, { minMs: 50, maxMs: 5000 }, 400);
      expect(streams, 'stream requests in 3 s').toBeGreaterThanOrEqual(1 + fewest);
    } finally {
      await replica.close();
      fake.closeAllConnections();
      await new Promise<void>((r) => fake.close(() => r()));
      t.cleanup();
    }
  });
});
