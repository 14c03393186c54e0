/**
 * P2 replica HTTP point reads: `SELECT id, v FROM kv WHERE id = ?` (one row of ~100 bytes, random id)
 * through POST /v1/db/bench/query on the replica process, many concurrent keep-alive connections
 * (autocannon in this process), against the bare node:http + better-sqlite3 server answering the same
 * request on the same file (the replica's). The two servers take turns; each figure is the median of
 * the runs. Both compete with the load generator for the same cores, equally.
 *
 * A second replica process started with `--query-timeout-ms 0` (reads on the main thread instead of
 * the query-process pool that bounds runaway queries) is measured the same way, for the notes: it tells
 * the pool's cost from the rest of the HTTP path.
 */
import { join } from 'node:path';
import type { Cluster } from './cluster.ts';
import { DB, ROWS } from './cluster.ts';
import { median, spawnBareServer, spawnEdgelite, tempDir, type BenchContext, type Row, type ServerProcess } from './common.ts';
import { HTTP_RULES, profiledServer } from './phases.ts';
import { loadPost, type LoadResult } from './load.ts';

const SQL = 'SELECT id, v FROM kv WHERE id = ?';
const body = () => JSON.stringify({ sql: SQL, params: [1 + Math.floor(Math.random() * ROWS)] });

export async function runP2(ctx: BenchContext, cluster: Cluster): Promise<Row[]> {
  const connections = ctx.quick ? 16 : 100;
  const durationSec = ctx.quick ? 1 : 8;
  const bare = await spawnBareServer(ctx, ['--read', cluster.replicaFile]);
  const inline = await spawnEdgelite(ctx, ['replica', '--primary', cluster.primary.url, '--data', join(tempDir(ctx, 'inline'), 'r'), '--listen', '127.0.0.1:0', '--databases', DB, '--query-timeout-ms', '0']);
  await cluster.waitForReplica(60_000, inline.url);
  const targets = {
    replica: { url: cluster.replica.url, path: `/v1/db/${DB}/query` },
    bare: { url: bare.url, path: '/query' },
    inline: { url: inline.url, path: `/v1/db/${DB}/query` },
  };
  // Warm both up (JIT, statement caches, page cache) before measuring.
  for (const t of Object.values(targets)) await loadPost({ ...t, connections, durationSec: 1, body });
  const results: Record<keyof typeof targets, LoadResult[]> = { replica: [], bare: [], inline: [] };
  for (let run = 0; run < ctx.runs; run++) {
    for (const [name, t] of Object.entries(targets) as Array<[keyof typeof targets, { url: string; path: string }]>) {
      const r = await loadPost({ ...t, connections, durationSec, body });
      results[name].push(r);
      ctx.log(`P2 run ${run + 1}: ${name} ${Math.round(r.perSec)} req/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms`);
    }
  }
  await bare.stop();
  await inline.stop();
  // Where a request's microseconds go: the same load once more on a replica and a bare server started
  // under --cpu-prof (phases.ts, docs/BENCHMARKS.md#per-phase-breakdown).
  const loadOn = (path: string) => (s: ServerProcess) => loadPost({ url: s.url, path, connections, durationSec, body });
  const replicaPhases = await profiledServer(ctx, async (flags) => {
    const s = await spawnEdgelite(ctx, ['replica', '--primary', cluster.primary.url, '--data', join(tempDir(ctx, 'profiled'), 'r'), '--listen', '127.0.0.1:0', '--databases', DB], flags);
    await cluster.waitForReplica(60_000, s.url);
    return s;
  }, loadOn(`/v1/db/${DB}/query`), HTTP_RULES, 'request');
  const barePhases = await profiledServer(ctx, (flags) => spawnBareServer(ctx, ['--read', cluster.replicaFile], flags), loadOn('/query'), HTTP_RULES, 'request');
  const rps = (k: keyof typeof targets) => median(results[k].map((r) => r.perSec));
  const lat = (k: keyof typeof targets, f: 'p50Ms' | 'p99Ms') => median(results[k].map((r) => r[f]));
  const el = rps('replica');
  const base = rps('bare');
  return [
    {
      id: 'P2',
      scenario: `replica HTTP point reads, ${connections} connections`,
      unit: 'req/s',
      edgelite: el,
      baseline: base,
      baselineLabel: 'bare node:http + better-sqlite3',
      ratio: el / base,
      goal: '≥ 0.8×',
      met: el / base >= 0.8,
      notes: [
        `latency p50/p99: replica ${lat('replica', 'p50Ms')}/${lat('replica', 'p99Ms')} ms, bare ${lat('bare', 'p50Ms')}/${lat('bare', 'p99Ms')} ms (autocannon, ${durationSec} s per run)`,
        `a replica with --query-timeout-ms 0 (reads on the main thread, no query pool): ${Math.round(rps('inline'))} req/s (${(rps('inline') / base).toFixed(2)}× bare), p50 ${lat('inline', 'p50Ms')} ms`,
        `per-phase, replica (sampled CPU profile, µs): ${replicaPhases}`,
        `per-phase, bare server (µs): ${barePhases}`,
      ],
    },
  ];
}
