/**
 * P1 replication lag: single-row transactions committed at ~1,000 txn/s on the primary; for each, the
 * time from the writer receiving its commit acknowledgement to the row being visible on the replica.
 * A row that became visible before the acknowledgement reached the writer (the replica applied it while
 * the primary's answer was still in flight) counts as 0 ms: the figure is the window in which a client
 * that just wrote could read stale data elsewhere.
 *
 * edgelite: writes by HTTP exec to the primary process; visibility polled every 50 µs on a read-only
 * connection to the replica process's database file. PostgreSQL: INSERTs through `pg` to the primary,
 * visibility polled back to back with SELECT on the hot standby.
 */
import Database from 'better-sqlite3';
import pg from 'pg';
import type { PgCluster } from '../postgres.ts';
import type { Cluster } from './cluster.ts';
import { DB } from './cluster.ts';
import { median, startTsWorker, summarize, WorkerInbox, type BenchContext, type Row } from './common.ts';
import type { PollerInput, PollerMessage, PollSource } from './lag-poller.ts';
import type { WriterInput, WriterOutput, WriteTarget } from './paced-writer.ts';

const RATE = 1000;
const POLL_EVERY_MS = 0.05;

interface LagRun {
  p50: number;
  p99: number;
  visibleBeforeAck: number;
  ratePerSec: number;
  ackP50: number;
  missing: number;
}

/** measureLag runs one paced write burst against `target` while a poller watches `source`. */
async function measureLag(target: WriteTarget, source: PollSource, firstId: number, count: number): Promise<LagRun> {
  const poller = new WorkerInbox<PollerMessage>(
    startTsWorker(new URL('./lag-poller.ts', import.meta.url), {
      source,
      table: 'lag',
      firstId,
      lastId: firstId + count - 1,
      timeoutMs: count + 30_000,
    } satisfies PollerInput),
    'lag poller',
  );
  try {
    await poller.next(30_000);
    const writer = new WorkerInbox<WriterOutput>(
      startTsWorker(new URL('./paced-writer.ts', import.meta.url), { target, table: 'lag', firstId, count, ratePerSec: RATE } satisfies WriterInput),
      'paced writer',
    );
    const w = await writer.next(count * 10 + 30_000);
    const done = await poller.next(60_000);
    if (done.type !== 'done') throw new Error('poller sent an unexpected message');
    const lags: number[] = [];
    let early = 0;
    let missing = 0;
    for (let i = 0; i < count; i++) {
      const v = done.visibleMs[i]!;
      if (Number.isNaN(v)) {
        missing++;
        continue;
      }
      const lag = v - w.ackMs[i]!;
      if (lag < 0) early++;
      lags.push(Math.max(0, lag));
    }
    const s = summarize(lags);
    const acks = summarize(Array.from(w.ackMs, (a, i) => a - w.sentMs[i]!));
    return { p50: s.p50, p99: s.p99, visibleBeforeAck: early / count, ratePerSec: (w.issued / w.elapsedMs) * 1000, ackP50: acks.p50, missing };
  } finally {
    await poller.worker.terminate();
  }
}

function maxIdInFile(path: string): number {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return Number(db.prepare('SELECT coalesce(max(id), 0) FROM lag').pluck().get());
  } finally {
    db.close();
  }
}

async function preparePgLagTable(pgc: PgCluster): Promise<void> {
  const c = new pg.Client(pgc.primary);
  await c.connect();
  await c.query('CREATE TABLE IF NOT EXISTS lag (id bigint PRIMARY KEY, t double precision NOT NULL)');
  await c.end();
}

async function pgMaxId(pgc: PgCluster): Promise<number> {
  const c = new pg.Client(pgc.primary);
  await c.connect();
  const r = await c.query('SELECT coalesce(max(id), 0)::bigint AS m FROM lag');
  await c.end();
  return Number((r.rows[0] as { m: string }).m);
}

export async function runP1(ctx: BenchContext, cluster: Cluster, pgc: PgCluster | string): Promise<Row[]> {
  const count = ctx.quick ? 400 : 10_000;
  const el: LagRun[] = [];
  const pgRuns: LagRun[] = [];
  if (typeof pgc !== 'string') await preparePgLagTable(pgc);
  await cluster.waitForReplica();
  for (let run = 0; run < ctx.runs; run++) {
    const first = maxIdInFile(cluster.replicaFile) + 1;
    el.push(
      await measureLag({ kind: 'edgelite', url: cluster.primary.url, db: DB }, { kind: 'sqlite', path: cluster.replicaFile, pollEveryMs: POLL_EVERY_MS }, first, count),
    );
    ctx.log(`P1 run ${run + 1}: edgelite p50 ${el.at(-1)!.p50.toFixed(3)} ms p99 ${el.at(-1)!.p99.toFixed(3)} ms`);
    if (typeof pgc !== 'string') {
      pgRuns.push(await measureLag({ kind: 'pg', endpoint: pgc.primary }, { kind: 'pg', endpoint: pgc.standby }, (await pgMaxId(pgc)) + 1, count));
      ctx.log(`P1 run ${run + 1}: PostgreSQL p50 ${pgRuns.at(-1)!.p50.toFixed(3)} ms p99 ${pgRuns.at(-1)!.p99.toFixed(3)} ms`);
    }
  }
  const m = (runs: LagRun[], k: keyof LagRun) => (runs.length ? median(runs.map((r) => r[k])) : null);
  const elP50 = m(el, 'p50')!;
  const elP99 = m(el, 'p99')!;
  const pgP50 = m(pgRuns, 'p50');
  const pgP99 = m(pgRuns, 'p99');
  const notes = [
    `${count} commits per run × ${ctx.runs} run(s); achieved ${Math.round(m(el, 'ratePerSec')!)} txn/s (edgelite)` +
      (pgRuns.length ? `, ${Math.round(m(pgRuns, 'ratePerSec')!)} txn/s (PostgreSQL)` : ''),
    `commit round trip p50: edgelite HTTP exec ${m(el, 'ackP50')!.toFixed(3)} ms` + (pgRuns.length ? `, PostgreSQL INSERT ${m(pgRuns, 'ackP50')!.toFixed(3)} ms` : ''),
    `visible on the replica before the writer got its ack: edgelite ${(m(el, 'visibleBeforeAck')! * 100).toFixed(1)}%` +
      (pgRuns.length ? `, PostgreSQL ${(m(pgRuns, 'visibleBeforeAck')! * 100).toFixed(1)}%` : ''),
  ];
  const missing = el.reduce((a, r) => a + r.missing, 0) + pgRuns.reduce((a, r) => a + r.missing, 0);
  if (missing) notes.push(`${missing} commits never became visible before the deadline (left out)`);
  if (typeof pgc === 'string') notes.push(pgc);
  return [
    {
      id: 'P1',
      scenario: 'replication lag p50, commit ack → visible on replica',
      unit: 'ms',
      edgelite: elP50,
      baseline: pgP50,
      baselineLabel: 'PostgreSQL hot standby',
      ratio: pgP50 === null ? null : pgP50 / elP50,
      goal: '≤ 1 ms',
      met: elP50 <= 1,
      notes,
    },
    {
      id: 'P1',
      scenario: 'replication lag p99',
      unit: 'ms',
      edgelite: elP99,
      baseline: pgP99,
      baselineLabel: 'PostgreSQL hot standby',
      ratio: pgP99 === null ? null : pgP99 / elP99,
      goal: '≤ 5 ms and ≤ PostgreSQL',
      met: elP99 > 5 ? false : pgP99 === null ? null : elP99 <= pgP99,
      notes: [],
    },
  ];
}
