/**
 * P5 forwarded writes: a single-row INSERT sent to the replica (forwarded to the primary and answered
 * once applied on the replica, so the writer's next read there sees it) vs the same INSERT sent
 * straight to the primary, with undici.
 *
 * Latency: one request at a time; added p50 = replica p50 − primary p50, against the budget of one
 * loopback HTTP round trip (p50 of GET /ping on the bare node:http server) + 0.5 ms.
 * Throughput: CONCURRENCY requests in flight for a fixed time through the replica, and the same
 * straight to the primary for reference.
 */
import { Pool } from 'undici';
import type { Cluster } from './cluster.ts';
import { DB } from './cluster.ts';
import { median, nowMs, sleep, spawnBareServer, summarize, type BenchContext, type Row } from './common.ts';

const INSERT = JSON.stringify({ sql: 'INSERT INTO w (v) VALUES (?)', params: ['x'.repeat(100)] });

async function call(pool: Pool, method: 'GET' | 'POST', path: string, body?: string): Promise<void> {
  const res = await pool.request({ method, path, body, headers: body ? { 'content-type': 'application/json' } : {} });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${method} ${path} answered ${res.statusCode}: ${text.slice(0, 200)}`);
}

export async function latencies(url: string, method: 'GET' | 'POST', path: string, n: number, body?: string): Promise<number[]> {
  const pool = new Pool(url, { connections: 1 });
  try {
    for (let i = 0; i < Math.min(200, n); i++) await call(pool, method, path, body);
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = nowMs();
      await call(pool, method, path, body);
      out.push(nowMs() - t);
    }
    return out;
  } finally {
    await pool.close();
  }
}

export async function throughput(url: string, path: string, concurrency: number, durationMs: number): Promise<number> {
  const pool = new Pool(url, { connections: concurrency });
  let done = 0;
  let stop = false;
  const start = nowMs();
  const worker = async () => {
    while (!stop) {
      await call(pool, 'POST', path, INSERT);
      done++;
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  await sleep(durationMs);
  stop = true;
  const elapsed = nowMs() - start;
  const counted = done;
  await Promise.all(workers);
  await pool.close();
  return (counted / elapsed) * 1000;
}

export async function runP5(ctx: BenchContext, cluster: Cluster): Promise<Row[]> {
  const n = ctx.quick ? 300 : 3000;
  const concurrency = ctx.quick ? 16 : 64;
  const durationMs = ctx.quick ? 1000 : 5000;
  const path = `/v1/db/${DB}/exec`;
  const bare = await spawnBareServer(ctx, []);
  const r: Record<'rtt' | 'direct' | 'forwarded' | 'rateReplica' | 'ratePrimary', number[]> = { rtt: [], direct: [], forwarded: [], rateReplica: [], ratePrimary: [] };
  for (let run = 0; run < ctx.runs; run++) {
    r.rtt.push(summarize(await latencies(bare.url, 'GET', '/ping', n)).p50);
    r.direct.push(summarize(await latencies(cluster.primary.url, 'POST', path, n, INSERT)).p50);
    r.forwarded.push(summarize(await latencies(cluster.replica.url, 'POST', path, n, INSERT)).p50);
    r.rateReplica.push(await throughput(cluster.replica.url, path, concurrency, durationMs));
    await cluster.waitForReplica();
    r.ratePrimary.push(await throughput(cluster.primary.url, path, concurrency, durationMs));
    await cluster.waitForReplica();
    ctx.log(`P5 run ${run + 1}: rtt ${r.rtt.at(-1)!.toFixed(3)} ms, direct ${r.direct.at(-1)!.toFixed(3)} ms, forwarded ${r.forwarded.at(-1)!.toFixed(3)} ms; ` +
      `${Math.round(r.rateReplica.at(-1)!)} writes/s via replica, ${Math.round(r.ratePrimary.at(-1)!)} direct`);
  }
  await bare.stop();
  const rtt = median(r.rtt);
  const direct = median(r.direct);
  const forwarded = median(r.forwarded);
  const added = forwarded - direct;
  const budget = rtt + 0.5;
  const viaReplica = median(r.rateReplica);
  const viaPrimary = median(r.ratePrimary);
  return [
    {
      id: 'P5',
      scenario: 'forwarded write, added p50 latency vs straight to primary',
      unit: 'ms',
      edgelite: added,
      baseline: budget,
      baselineLabel: 'budget: loopback RTT + 0.5 ms',
      ratio: budget / Math.max(added, 1e-3),
      goal: '≤ RTT + 0.5 ms',
      met: added <= budget,
      notes: [`p50: loopback HTTP round trip ${rtt.toFixed(3)} ms, write to primary ${direct.toFixed(3)} ms, write through replica ${forwarded.toFixed(3)} ms (${n} sequential writes)`],
    },
    {
      id: 'P5',
      scenario: `forwarded writes/s, ${concurrency} in flight`,
      unit: 'writes/s',
      edgelite: viaReplica,
      baseline: viaPrimary,
      baselineLabel: 'same load straight to the primary',
      ratio: viaReplica / viaPrimary,
      goal: '≥ 5,000/s',
      met: viaReplica >= 5000,
      notes: [],
    },
  ];
}
