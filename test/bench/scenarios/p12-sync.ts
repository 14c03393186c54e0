/**
 * P12 `--sync-replicas 1` (README.md#synchronous-replicas): what waiting for one candidate costs, on
 * P1c's commit round trip (one write at a time straight to the primary) and on P5's forwarded writes
 * (one at a time, and 64 in flight, through a replica). Two primaries side by side in one run, each
 * under its own lease in one real etcd (test/kit/etcd.ts) and each with one candidate replica process
 * (`--candidate --lease … --primary URL`, which reports its applied positions): one with
 * `--sync-replicas 0`, one with `--sync-replicas 1`. The same workload alternates between them in
 * each run; the ratios are N=0 / N=1 (1.0: free).
 */
import { join } from 'node:path';
import { startEtcd } from '../../kit/etcd.ts';
import { DB } from './cluster.ts';
import { freePort, getJson, median, postJson, REPO_ROOT, spawnEdgelite, spawnServer, summarize, tempDir, waitUntil, type BenchContext, type Row, type ServerProcess } from './common.ts';
import { latencies, throughput } from './p5-forward.ts';

const INSERT = JSON.stringify({ sql: 'INSERT INTO w (v) VALUES (?)', params: ['x'.repeat(100)] });

interface Pair {
  n: number;
  primary: ServerProcess;
  replica: ServerProcess;
}

async function pair(ctx: BenchContext, etcdHost: string, n: number, dir: string): Promise<Pair> {
  const lease = `etcd://${etcdHost}/p12-${n}`;
  const [pp, rp] = [await freePort(), await freePort()];
  const sync = n > 0 ? ['--sync-replicas', String(n)] : [];
  const primary = await spawnServer(ctx, [join(REPO_ROOT, 'bin', 'run-ts.mjs'), join(REPO_ROOT, 'test', 'bench', 'sync-primary-main.ts'),
    '--data', join(dir, `p${n}`), '--listen', `127.0.0.1:${pp}`, '--lease', lease, '--advertise', `http://127.0.0.1:${pp}`, '--node-id', `p${n}`, ...sync]);
  const replica = await spawnEdgelite(ctx, ['replica', '--primary', primary.url, '--data', join(dir, `c${n}`), '--listen', `127.0.0.1:${rp}`, '--databases', DB,
    '--candidate', '--lease', lease, '--advertise', `http://127.0.0.1:${rp}`, '--node-id', `c${n}`]);
  await waitUntil(async () => ((await getJson(`${primary.url}/v1/replicas`)).nodes as unknown[]).length > 0, 'the candidate to report', 60_000, 20);
  // With N = 1 this waits for the candidate to join the sync set.
  await postJson(`${primary.url}/v1/db/${DB}`, undefined, 'PUT');
  await postJson(`${primary.url}/v1/db/${DB}/exec`, { sql: 'CREATE TABLE w (id INTEGER PRIMARY KEY, v TEXT NOT NULL)' });
  const want = (await getJson(`${primary.url}/v1/db/${DB}`)).txid as number;
  await waitUntil(async () => ((await getJson(`${replica.url}/v1/db/${DB}`).catch(() => ({ txid: 0 }))).txid as number) >= want, 'the candidate to catch up', 60_000, 10);
  return { n, primary, replica };
}

export async function runP12(ctx: BenchContext): Promise<Row[]> {
  const n = ctx.quick ? 200 : 2000;
  const concurrency = ctx.quick ? 16 : 64;
  const durationMs = ctx.quick ? 1000 : 5000;
  const etcd = await startEtcd();
  ctx.cleanup.add('etcd', () => etcd.stop());
  const dir = tempDir(ctx, 'p12');
  const host = new URL(etcd.url).host;
  const pairs = [await pair(ctx, host, 0, dir), await pair(ctx, host, 1, dir)];
  const members = ((await getJson(`${pairs[1]!.primary.url}/v1/replicas`)).members as string[]).join(',');
  if (members !== 'c1') throw new Error(`the --sync-replicas 1 primary's sync set is "${members}", not c1`);
  const path = `/v1/db/${DB}/exec`;
  const fig = [0, 1].map(() => ({ commit: [] as number[], forwarded: [] as number[], rate: [] as number[] }));
  for (let run = 0; run < ctx.runs; run++) {
    for (const p of pairs) {
      const f = fig[p.n]!;
      f.commit.push(summarize(await latencies(p.primary.url, 'POST', path, n, INSERT)).p50);
      f.forwarded.push(summarize(await latencies(p.replica.url, 'POST', path, n, INSERT)).p50);
      f.rate.push(await throughput(p.replica.url, path, concurrency, durationMs));
    }
    ctx.log(`P12 run ${run + 1}: commit p50 ${fig[0]!.commit.at(-1)!.toFixed(3)} / ${fig[1]!.commit.at(-1)!.toFixed(3)} ms, forwarded p50 ${fig[0]!.forwarded.at(-1)!.toFixed(3)} / ${fig[1]!.forwarded.at(-1)!.toFixed(3)} ms, ` +
      `${Math.round(fig[0]!.rate.at(-1)!)} / ${Math.round(fig[1]!.rate.at(-1)!)} forwarded writes/s (--sync-replicas 0 / 1)`);
  }
  const pending = await metric(pairs[1]!.primary.url, 'edgelite_sync_pending_total');
  const waits = await metric(pairs[1]!.primary.url, 'edgelite_sync_wait_seconds_count');
  for (const p of pairs) {
    await p.replica.stop();
    await p.primary.stop();
  }
  const [c0, c1] = [median(fig[0]!.commit), median(fig[1]!.commit)];
  const [f0, f1] = [median(fig[0]!.forwarded), median(fig[1]!.forwarded)];
  const [r0, r1] = [median(fig[0]!.rate), median(fig[1]!.rate)];
  const note = `one candidate replica per primary, one etcd; ${n} sequential writes per latency figure; ${waits} sync waits, ${pending} answered REPLICATION_PENDING`;
  return [
    { id: 'P12', scenario: 'commit round trip p50 (P1c) with --sync-replicas 1', unit: 'ms', edgelite: c1, baseline: c0, baselineLabel: '--sync-replicas 0', ratio: c0 / c1, goal: 'measured (README)', met: null, notes: [note] },
    { id: 'P12', scenario: 'forwarded write p50 (P5) with --sync-replicas 1', unit: 'ms', edgelite: f1, baseline: f0, baselineLabel: '--sync-replicas 0', ratio: f0 / f1, goal: 'measured (README)', met: null, notes: [] },
    { id: 'P12', scenario: `forwarded writes/s (P5), ${concurrency} in flight, --sync-replicas 1`, unit: 'writes/s', edgelite: r1, baseline: r0, baselineLabel: '--sync-replicas 0', ratio: r1 / r0, goal: 'measured (README)', met: null, notes: [] },
  ];
}

async function metric(url: string, name: string): Promise<number | null> {
  const res = await fetch(`${url}/metrics`);
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : null;
}
