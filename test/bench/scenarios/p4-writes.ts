/**
 * P4 primary write throughput with capture on: single-row INSERT transactions, one after another.
 *
 * Engine (the goal): `PrimaryDatabase.exec` in this process (statement, commit, WAL capture, change-set
 * encode, checksum update, log append; default options, so synchronous=NORMAL) against raw
 * better-sqlite3 on its own file with the primary's pragmas (WAL, synchronous=NORMAL, foreign_keys,
 * journal_size_limit; SQLite's default autocheckpoint, since nothing else checkpoints it).
 *
 * HTTP (extra row, no goal): POST /v1/db/bench/exec on the primary process under 16 concurrent
 * connections, against the bare node:http + better-sqlite3 server doing the same INSERT.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { parsePrimaryConfig } from '../../../primary/config.ts';
import { PrimaryStore } from '../../../primary/store.ts';
import { silentLogger } from '../../../shared/log.ts';
import type { Cluster } from './cluster.ts';
import { DB } from './cluster.ts';
import { median, nowMs, postJson, spawnBareServer, spawnEdgelite, tempDir, type BenchContext, type Row } from './common.ts';
import { breakdown, ENGINE_RULES, HTTP_RULES, perOp, profiledServer, profileInProcess } from './phases.ts';
import { loadPost } from './load.ts';

const VALUE = 'x'.repeat(100);
const INSERT = 'INSERT INTO w (v) VALUES (?)';
const CREATE = 'CREATE TABLE IF NOT EXISTS w (id INTEGER PRIMARY KEY, v TEXT NOT NULL)';

/** engineRate commits `n` single-row transactions through PrimaryDatabase.exec; returns txn/s. */
function engineRate(dir: string, n: number): number {
  const c = parsePrimaryConfig(['--data', dir], {});
  const store = new PrimaryStore(dir, { ...c, log: { retention: c.retention }, logger: silentLogger }).open();
  try {
    const db = store.create('w').db;
    db.exec([{ sql: CREATE, params: [] }]);
    const stmt = [{ sql: INSERT, params: [VALUE] }];
    for (let i = 0; i < 200; i++) db.exec(stmt);
    const t = nowMs();
    for (let i = 0; i < n; i++) db.exec(stmt);
    return (n / (nowMs() - t)) * 1000;
  } finally {
    store.close();
  }
}

function rawRate(file: string, n: number): number {
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('journal_size_limit = 4194304');
    db.exec(CREATE);
    const stmt = db.prepare(INSERT);
    for (let i = 0; i < 200; i++) stmt.run(VALUE);
    const t = nowMs();
    for (let i = 0; i < n; i++) stmt.run(VALUE);
    return (n / (nowMs() - t)) * 1000;
  } finally {
    db.close();
  }
}

export async function runP4(ctx: BenchContext, cluster: Cluster): Promise<Row[]> {
  const n = ctx.quick ? 2000 : 30_000;
  const dir = tempDir(ctx, 'writes');
  const engine: number[] = [];
  const raw: number[] = [];
  for (let run = 0; run < ctx.runs; run++) {
    engine.push(engineRate(join(dir, `engine-${run}`), n));
    raw.push(rawRate(join(dir, `raw-${run}.db`), n));
    ctx.log(`P4 run ${run + 1}: PrimaryDatabase.exec ${Math.round(engine.at(-1)!)} txn/s, raw ${Math.round(raw.at(-1)!)} txn/s`);
  }
  const el = median(engine);
  const base = median(raw);

  const connections = 16;
  const durationSec = ctx.quick ? 1 : 5;
  const body = () => JSON.stringify({ sql: INSERT, params: [VALUE] });
  const bare = await spawnBareServer(ctx, ['--write', join(dir, 'bare-http.db')]);
  await postJson(`${bare.url}/exec`, { sql: CREATE });
  const httpEl: number[] = [];
  const httpBare: number[] = [];
  for (let run = 0; run < ctx.runs; run++) {
    httpEl.push((await loadPost({ url: cluster.primary.url, path: `/v1/db/${DB}/exec`, connections, durationSec, body })).perSec);
    httpBare.push((await loadPost({ url: bare.url, path: '/exec', connections, durationSec, body })).perSec);
    ctx.log(`P4 run ${run + 1}: HTTP exec ${Math.round(httpEl.at(-1)!)} txn/s, bare HTTP ${Math.round(httpBare.at(-1)!)} txn/s`);
  }
  await bare.stop();
  await cluster.waitForReplica();
  // Where a write's microseconds go (phases.ts, docs/BENCHMARKS.md#per-phase-breakdown): one engine run
  // under this process's profiler, and the HTTP load once more on a primary started under --cpu-prof.
  const enginePhases = perOp(breakdown(await profileInProcess(() => void engineRate(join(dir, 'engine-profiled'), n)), ENGINE_RULES), n, 'write');
  const httpPhases = await profiledServer(ctx, async (flags) => {
    const s = await spawnEdgelite(ctx, ['primary', '--data', tempDir(ctx, 'profiled-primary'), '--listen', '127.0.0.1:0'], flags);
    await postJson(`${s.url}/v1/db/${DB}`, {}, 'PUT');
    await postJson(`${s.url}/v1/db/${DB}/exec`, { sql: CREATE });
    return s;
  }, (s) => loadPost({ url: s.url, path: `/v1/db/${DB}/exec`, connections, durationSec, body }), HTTP_RULES, 'request');
  const he = median(httpEl);
  const hb = median(httpBare);
  return [
    {
      id: 'P4',
      scenario: 'primary single-row write txns, engine (PrimaryDatabase.exec)',
      unit: 'txn/s',
      edgelite: el,
      baseline: base,
      baselineLabel: 'raw better-sqlite3, WAL, same pragmas',
      ratio: el / base,
      goal: '≥ 0.8×',
      met: el / base >= 0.8,
      notes: [`${n} transactions per run, one at a time, synchronous=NORMAL on both`, `per-phase, engine (sampled CPU profile, µs): ${enginePhases}`],
    },
    {
      id: 'P4',
      scenario: `primary single-row write txns, HTTP exec, ${connections} connections (extra)`,
      unit: 'txn/s',
      edgelite: he,
      baseline: hb,
      baselineLabel: 'bare node:http + better-sqlite3',
      ratio: he / hb,
      goal: '— (no goal)',
      met: null,
      notes: [
        'the primary process also streams every write to the replica process; the bare server replicates nothing',
        `per-phase, HTTP exec on a primary with no replica (sampled CPU profile, µs): ${httpPhases}`,
      ],
    },
  ];
}
