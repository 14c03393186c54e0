/**
 * P6 fan-out: SUBSCRIBERS live stream readers (StreamSubscriber: the network side of a replica, frames
 * decoded and verified, nothing applied) on one primary process while a paced writer commits
 * single-row transactions at 1,000 txn/s (open loop, up to 32 in flight). Lag per change set per subscriber = arrival time − the
 * primary's commit timestamp in the change-set header (same machine clock; the header has millisecond
 * resolution). The primary's CPU comes from /proc/PID/stat over the write window.
 *
 * The subscribers run in this process, on the same two cores as the primary: on this machine the
 * figure is an upper bound of what the primary alone would show.
 */
import { getJson, median, nowMs, startTsWorker, summarize, WorkerInbox, cpuSeconds, waitUntil, type BenchContext, type Row } from './common.ts';
import type { Cluster } from './cluster.ts';
import { DB } from './cluster.ts';
import { StreamSubscriber } from './subscriber.ts';
import type { WriterInput, WriterOutput } from './paced-writer.ts';
import type { PositionJSON } from '../../../shared/types.ts';

const RATE = 1000;

interface FanoutRun {
  p50: number;
  p99: number;
  primaryCpu: number;
  benchCpu: number;
  rate: number;
  lagging: number;
}

async function fanoutOnce(ctx: BenchContext, cluster: Cluster, subscribers: number, seconds: number): Promise<FanoutRun> {
  const base = cluster.primary.url;
  const info = await getJson(`${base}/v1/db/${DB}`);
  const position = { generation: info.generation, txid: info.txid, checksum: info.checksum } as PositionJSON;
  const lags: number[] = [];
  const subs: StreamSubscriber[] = [];
  const closeAll = ctx.cleanup.add('P6 subscribers', () => subs.forEach((s) => s.close()));
  try {
    for (let i = 0; i < subscribers; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, subscribers - i) }, () => StreamSubscriber.open(base, DB, position, (a) => lags.push(a.lagMs), true)),
      );
      subs.push(...batch);
    }
    const first = await nextLagId(base);
    const count = Math.round(seconds * RATE);
    const cpu0 = cpuSeconds(cluster.primary.pid);
    const self0 = process.cpuUsage();
    const t0 = nowMs();
    const writer = new WorkerInbox<WriterOutput>(
      startTsWorker(new URL('./paced-writer.ts', import.meta.url), {
        target: { kind: 'edgelite', url: base, db: DB },
        table: 'lag',
        firstId: first,
        count,
        ratePerSec: RATE,
        maxInFlight: 32,
        maxDurationMs: seconds * 1000 * 3,
      } satisfies WriterInput),
      'paced writer',
    );
    const w = await writer.next(seconds * 3000 + 60_000);
    const wall = nowMs() - t0;
    const primaryCpu = (cpuSeconds(cluster.primary.pid) - cpu0) / (wall / 1000);
    const self = process.cpuUsage(self0);
    const target = (await getJson(`${base}/v1/db/${DB}`)).txid as number;
    await waitUntil(() => subs.every((s) => s.lastTxid >= target || s.failure !== null), 'every subscriber to receive the last write', 60_000, 5).catch(() => undefined);
    const lagging = subs.filter((s) => s.lastTxid < target).length;
    const failed = subs.find((s) => s.failure !== null);
    if (failed) throw failed.failure!;
    const s = summarize(lags);
    return {
      p50: s.p50,
      p99: s.p99,
      primaryCpu,
      benchCpu: (self.user + self.system) / 1000 / wall,
      rate: (w.issued / w.elapsedMs) * 1000,
      lagging,
    };
  } finally {
    await closeAll();
  }
}

async function nextLagId(base: string): Promise<number> {
  const res = await fetch(`${base}/v1/db/${DB}/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ sql: 'SELECT coalesce(max(id), 0) FROM lag' }),
  });
  const body = (await res.json()) as { results: Array<{ rows: number[][] }> };
  return body.results[0]!.rows[0]![0]! + 1;
}

export async function runP6(ctx: BenchContext, cluster: Cluster): Promise<Row[]> {
  const subscribers = ctx.quick ? 20 : 500;
  const seconds = ctx.quick ? 1.5 : 10;
  const runs: FanoutRun[] = [];
  for (let run = 0; run < ctx.runs; run++) {
    runs.push(await fanoutOnce(ctx, cluster, subscribers, seconds));
    const r = runs.at(-1)!;
    ctx.log(`P6 run ${run + 1}: lag p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms, primary CPU ${(r.primaryCpu * 100).toFixed(0)}%, ${Math.round(r.rate)} txn/s`);
  }
  await cluster.waitForReplica();
  const m = (k: keyof FanoutRun) => median(runs.map((r) => r[k]));
  const p99 = m('p99');
  const notes = [
    `${subscribers} subscribers, ${seconds} s at a target of ${RATE} txn/s (achieved ${Math.round(m('rate'))}); lag p50 ${m('p50').toFixed(2)} ms`,
    `primary process CPU ${(m('primaryCpu') * 100).toFixed(0)}% of one core; the subscribers (this process) ${(m('benchCpu') * 100).toFixed(0)}%`,
  ];
  const lagging = Math.max(...runs.map((r) => r.lagging));
  if (lagging) notes.push(`${lagging} subscribers had not received the last write 60 s after it`);
  return [
    {
      id: 'P6',
      scenario: `fan-out lag p99, ${subscribers} stream subscribers at ${RATE} txn/s`,
      unit: 'ms',
      edgelite: p99,
      baseline: null,
      baselineLabel: '',
      ratio: null,
      goal: '≤ 50 ms',
      met: p99 <= 50,
      notes,
    },
  ];
}
