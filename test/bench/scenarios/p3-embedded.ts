/**
 * P3 embedded replica point read vs PostgreSQL on loopback: the same one-row primary-key lookup
 * (`SELECT id, v FROM kv WHERE id = ?`, random id of 10,000 rows of ~100 bytes), one at a time, timed
 * per operation. edgelite: `openReplica` (replica/embedded.ts) following the primary process, read with
 * its `query()` (the library API: consistency check, then a local read); its `prepare().get()` (the
 * raw better-sqlite3 path it also offers) is in the notes. PostgreSQL: `pg` with a named prepared
 * statement against the hot standby.
 */
import pg from 'pg';
import { openReplica } from '../../../replica/embedded.ts';
import type { PgCluster } from '../postgres.ts';
import type { Cluster } from './cluster.ts';
import { DB, ROWS } from './cluster.ts';
import { median, nowMs, summarize, tempDir, waitUntil, type BenchContext, type Row } from './common.ts';

const SQL = 'SELECT id, v FROM kv WHERE id = ?';
const randomId = () => 1 + Math.floor(Math.random() * ROWS);

async function timeEach(n: number, op: (id: number) => Promise<unknown> | unknown): Promise<number[]> {
  const samples: number[] = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const id = randomId();
    const t = nowMs();
    await op(id);
    samples[i] = (nowMs() - t) * 1000;
  }
  return samples;
}

/** preparePgKv copies the edgelite kv table into PostgreSQL (same ids, same values). */
async function preparePgKv(pgc: PgCluster, rows: Array<[number, string]>): Promise<void> {
  const c = new pg.Client(pgc.primary);
  await c.connect();
  try {
    await c.query('DROP TABLE IF EXISTS kv');
    await c.query('CREATE TABLE kv (id bigint PRIMARY KEY, v text NOT NULL)');
    for (let i = 0; i < rows.length; i += 1000) {
      const chunk = rows.slice(i, i + 1000);
      await c.query('INSERT INTO kv (id, v) SELECT * FROM unnest($1::bigint[], $2::text[])', [chunk.map((r) => r[0]), chunk.map((r) => r[1])]);
    }
    await c.query('ANALYZE kv');
  } finally {
    await c.end();
  }
  const s = new pg.Client(pgc.standby);
  await s.connect();
  try {
    await waitUntil(async () => Number(((await s.query('SELECT count(*) AS n FROM pg_class WHERE relname = $1', ['kv'])).rows[0] as { n: string }).n) > 0 &&
      Number(((await s.query('SELECT count(*) AS n FROM kv')).rows[0] as { n: string }).n) === rows.length, 'kv on the PostgreSQL standby');
  } finally {
    await s.end();
  }
}

export async function runP3(ctx: BenchContext, cluster: Cluster, pgc: PgCluster | string): Promise<Row[]> {
  const n = ctx.quick ? 2000 : 50_000;
  const replica = await openReplica({ primary: cluster.primary.url, dir: tempDir(ctx, 'embedded'), databases: [DB] });
  const closeReplica = ctx.cleanup.add('embedded replica', () => replica.close());
  let pgClient: pg.Client | null = null;
  try {
    await replica.ready(DB, 60_000);
    const rows = (await replica.query(DB, 'SELECT id, v FROM kv ORDER BY id')).rows as Array<[number, string]>;
    if (typeof pgc !== 'string') {
      await preparePgKv(pgc, rows);
      pgClient = new pg.Client(pgc.standby);
      await pgClient.connect();
    }
    const stmt = replica.prepare(DB, SQL);
    const query = (id: number) => replica.query(DB, SQL, [id]);
    const direct = (id: number) => stmt.get(id);
    const client = pgClient;
    const pgRead = client ? (id: number) => client.query({ name: 'kv-get', text: 'SELECT id, v FROM kv WHERE id = $1', values: [id] }) : null;
    // Warm up every path, then alternate them run by run.
    await timeEach(Math.min(n, 2000), query);
    await timeEach(Math.min(n, 2000), direct);
    if (pgRead) await timeEach(Math.min(n, 2000), pgRead);
    const runs = { query: [] as ReturnType<typeof summarize>[], direct: [] as ReturnType<typeof summarize>[], pg: [] as ReturnType<typeof summarize>[] };
    for (let run = 0; run < ctx.runs; run++) {
      runs.query.push(summarize(await timeEach(n, query)));
      runs.direct.push(summarize(await timeEach(n, direct)));
      if (pgRead) runs.pg.push(summarize(await timeEach(n, pgRead)));
      ctx.log(`P3 run ${run + 1}: query() p50 ${runs.query.at(-1)!.p50.toFixed(2)} µs, prepare().get() ${runs.direct.at(-1)!.p50.toFixed(2)} µs` +
        (pgRead ? `, pg ${runs.pg.at(-1)!.p50.toFixed(1)} µs` : ''));
    }
    const m = (k: keyof typeof runs, f: 'p50' | 'p99') => (runs[k].length ? median(runs[k].map((s) => s[f])) : null);
    const el = m('query', 'p50')!;
    const base = m('pg', 'p50');
    const notes = [
      `${n} reads per run; p99: query() ${m('query', 'p99')!.toFixed(1)} µs, prepare().get() ${m('direct', 'p99')!.toFixed(1)} µs` +
        (base === null ? '' : `, pg ${m('pg', 'p99')!.toFixed(1)} µs`),
      `prepare().get() p50 ${m('direct', 'p50')!.toFixed(2)} µs` + (base === null ? '' : ` (${(base / m('direct', 'p50')!).toFixed(0)}× faster than pg)`),
    ];
    if (typeof pgc === 'string') notes.push(pgc);
    return [
      {
        id: 'P3',
        scenario: 'embedded replica point read p50 (query())',
        unit: 'µs',
        edgelite: el,
        baseline: base,
        baselineLabel: 'pg → PostgreSQL standby, loopback',
        ratio: base === null ? null : base / el,
        goal: '≥ 20× faster',
        met: base === null ? null : base / el >= 20,
        notes,
      },
    ];
  } finally {
    await pgClient?.end();
    await closeReplica();
  }
}
