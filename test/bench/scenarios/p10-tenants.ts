/**
 * P10 ten thousand tenants on one primary (README.md#many-databases; quick: 100). The bench builds N
 * tiny databases (one table, one row) plus 20 tenants of 1 MiB, then, for the primary as shipped
 * (`--idle-close-ms` default) and side by side with the design before it (`--idle-close-ms 0`: every
 * database open from start to stop), measures in separate processes:
 * - idle: RSS, open descriptors and CPU over 10 s with no traffic at all, after a clean restart;
 * - restart: SIGTERM, then a new process to its listening line and a 200 from GET /v1/health;
 * - a fresh replica following every database (`--databases '*'`): time until each is at the primary's txid;
 * - a lazy replica's cold first read of a 1 MiB tenant (p50/p99 over the 20);
 * - a write's latency to a closed tenant (opened by the write) against the same tenants once open.
 * The design before cannot hold 10,000 databases open (about ten descriptors each; this machine allows
 * 20,000), so its column is measured at 1,000 databases and says so.
 */
import Database from 'better-sqlite3';
import { cpSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpuSeconds, freePort, getJson, median, nowMs, percentile, postJson, sleep, spawnEdgelite, tempDir, waitUntil, buildDatabase, type BenchContext, type Row, type ServerProcess } from './common.ts';

/** Sizes: full, and quick (CI runs the harness only, never judging a figure). */
const SIZES = {
  full: { tenants: 10_000, before: 1_000, big: 20, idleSampleMs: 10_000, writes: 50 },
  quick: { tenants: 100, before: 100, big: 4, idleSampleMs: 2_000, writes: 10 },
};
type Sizes = (typeof SIZES)['full'];

interface Figures {
  databases: number;
  rssMb: number;
  fds: number;
  idleCpu: number;
  restartMs: number;
  convergeMs: number | null;
  coldReads: number[];
  closedWrites: number[];
  openWrites: number[];
}

/** buildTenants writes `n` tiny databases `t00000…` and BIG 1 MiB ones `big-0…` into `dir`. */
function buildTenants(dir: string, n: number, big: number): void {
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < n; i++) {
    const db = new Database(join(dir, `t${String(i).padStart(5, '0')}.db`));
    db.pragma('journal_mode = WAL');
    db.exec(`CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL); INSERT INTO kv VALUES (1, 'tenant ${i}')`);
    db.close();
  }
  for (let i = 0; i < big; i++) buildDatabase(join(dir, `big-${i}.db`), 1 << 20);
}

function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

function fds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

async function startPrimary(ctx: BenchContext, dataDir: string, port: number, idle: string[]): Promise<{ p: ServerProcess; ms: number }> {
  const t = nowMs();
  const p = await spawnEdgelite(ctx, ['primary', '--data', dataDir, '--listen', `127.0.0.1:${port}`, ...idle]);
  await getJson(`${p.url}/v1/health`);
  return { p, ms: nowMs() - t };
}

async function timedWrite(url: string, name: string, v: number): Promise<number> {
  const t = nowMs();
  await postJson(`${url}/v1/db/${name}/exec`, { sql: 'INSERT OR REPLACE INTO kv VALUES (2, ?)', params: [`write ${v}`] });
  return nowMs() - t;
}

/** convergeMs starts a fresh replica of every database and times it until each is at the primary's txid. */
async function convergeMs(ctx: BenchContext, primaryUrl: string, dir: string, timeoutMs: number): Promise<number | null> {
  const want = new Map(((await getJson(`${primaryUrl}/v1/db`)).databases as Array<{ name: string; txid: number }>).map((d) => [d.name, d.txid]));
  const t = nowMs();
  const r = await spawnEdgelite(ctx, ['replica', '--primary', primaryUrl, '--data', dir, '--listen', `127.0.0.1:${await freePort()}`, '--databases', '*']);
  try {
    await waitUntil(async () => {
      const got = ((await getJson(`${r.url}/v1/db`)).databases as Array<{ name: string; txid: number | null }>);
      let done = 0;
      for (const d of got) if (d.txid !== null && d.txid >= (want.get(d.name) ?? Infinity)) done++;
      return done >= want.size;
    }, 'the fresh replica to converge', timeoutMs, 500);
    return nowMs() - t;
  } catch (err) {
    ctx.log(`P10 replica did not converge within ${timeoutMs / 1000} s: ${(err as Error).message}`);
    return null;
  } finally {
    await r.stop();
  }
}

async function coldReads(ctx: BenchContext, primaryUrl: string, dir: string, big: number): Promise<number[]> {
  const r = await spawnEdgelite(ctx, ['replica', '--primary', primaryUrl, '--data', dir, '--listen', `127.0.0.1:${await freePort()}`, '--lazy']);
  const out: number[] = [];
  try {
    for (let i = 0; i < big; i++) {
      const t = nowMs();
      await postJson(`${r.url}/v1/db/big-${i}/query`, { sql: 'SELECT count(*) FROM big' });
      out.push(nowMs() - t);
    }
  } finally {
    await r.stop();
  }
  return out;
}

/** measure runs one primary design over a copy of the template: every figure of one column. */
async function measure(ctx: BenchContext, sz: Sizes, template: string, dir: string, n: number, idle: string[], withReplica: boolean): Promise<Figures> {
  const data = join(dir, 'data');
  cpSync(template, data, { recursive: true });
  const port = await freePort();
  // First start: every database is new to the primary (a first generation each). Then a clean stop, so
  // the start that is measured is a restart.
  const first = await startPrimary(ctx, data, port, idle);
  ctx.log(`P10 [${idle.join(' ') || 'default'}] first start with ${n + sz.big} databases: ${(first.ms / 1000).toFixed(1)} s`);
  await first.p.stop();
  const again = await startPrimary(ctx, data, port, idle);
  const primary = again.p;
  await sleep(2000);
  const cpu0 = cpuSeconds(primary.pid);
  await sleep(sz.idleSampleMs);
  const idleCpu = (cpuSeconds(primary.pid) - cpu0) / (sz.idleSampleMs / 1000);
  const figures: Figures = { databases: n, rssMb: rssMb(primary.pid), fds: fds(primary.pid), idleCpu, restartMs: again.ms, convergeMs: null, coldReads: [], closedWrites: [], openWrites: [] };
  ctx.log(`P10 [${idle.join(' ') || 'default'}] restart ${again.ms.toFixed(0)} ms; idle: ${figures.rssMb.toFixed(0)} MB RSS, ${figures.fds} fds, ${(idleCpu * 100).toFixed(1)}% CPU`);
  // Closed tenants (nothing touched them since the restart) against the same tenants, now open.
  const names = Array.from({ length: sz.writes }, (_, i) => `t${String(Math.floor((i * n) / sz.writes)).padStart(5, '0')}`);
  for (const [i, name] of names.entries()) figures.closedWrites.push(await timedWrite(primary.url, name, i));
  for (const [i, name] of names.entries()) figures.openWrites.push(await timedWrite(primary.url, name, i + sz.writes));
  if (withReplica) {
    figures.coldReads = await coldReads(ctx, primary.url, join(dir, 'lazy'), sz.big);
    figures.convergeMs = await convergeMs(ctx, primary.url, join(dir, 'replica'), ctx.quick ? 60_000 : 300_000);
  }
  await primary.stop();
  return figures;
}

export async function runP10(ctx: BenchContext): Promise<Row[]> {
  const sz = ctx.quick ? SIZES.quick : SIZES.full;
  const n = sz.tenants;
  const nBefore = sz.before;
  const dir = tempDir(ctx, 'p10');
  let t = nowMs();
  buildTenants(join(dir, 'template'), n, sz.big);
  buildTenants(join(dir, 'template-before'), nBefore, sz.big);
  ctx.log(`P10 built ${n} + ${nBefore} tenant databases (+${2 * sz.big} of 1 MiB) in ${((nowMs() - t) / 1000).toFixed(1)} s`);
  const runs: Figures[] = [];
  const before: Figures[] = [];
  for (let run = 0; run < ctx.runs; run++) {
    t = nowMs();
    runs.push(await measure(ctx, sz, join(dir, 'template'), join(dir, `now-${run}`), n, [], true));
    before.push(await measure(ctx, sz, join(dir, 'template-before'), join(dir, `before-${run}`), nBefore, ['--idle-close-ms', '0'], run === 0));
    ctx.log(`P10 run ${run + 1} took ${((nowMs() - t) / 1000).toFixed(0)} s`);
  }
  const med = (f: Figures[], pick: (x: Figures) => number | null) => {
    const v = f.map(pick).filter((x): x is number => x !== null);
    return v.length ? median(v) : null;
  };
  const pctl = (f: Figures[], pick: (x: Figures) => number[], p: number) => {
    const v = f.flatMap(pick).sort((a, b) => a - b);
    return v.length ? percentile(v, p) : null;
  };
  const label = `--idle-close-ms 0 (every database open), ${nBefore} databases`;
  const rss = [med(runs, (x) => x.rssMb), med(before, (x) => x.rssMb)] as const;
  const fd = [med(runs, (x) => x.fds), med(before, (x) => x.fds)] as const;
  const cpu = [med(runs, (x) => x.idleCpu * 100), med(before, (x) => x.idleCpu * 100)] as const;
  const restart = [med(runs, (x) => x.restartMs / 1000), med(before, (x) => x.restartMs / 1000)] as const;
  const converge = [med(runs, (x) => (x.convergeMs === null ? null : x.convergeMs / 1000)), med(before, (x) => (x.convergeMs === null ? null : x.convergeMs / 1000))] as const;
  const cold50 = pctl(runs, (x) => x.coldReads, 50);
  const cold99 = pctl(runs, (x) => x.coldReads, 99);
  const closed50 = pctl(runs, (x) => x.closedWrites, 50);
  const open50 = pctl(runs, (x) => x.openWrites, 50);
  const scale = ctx.quick ? `quick: ${n}` : '10,000';
  const atMost = (v: number | null, goal: number) => (v === null ? null : v <= goal);
  const ratio = (a: number | null, b: number | null) => (a === null || b === null || a === 0 ? null : b / a);
  const notes = [`${n} tiny databases + ${sz.big} of 1 MiB; idle figures after a clean restart, CPU over ${sz.idleSampleMs / 1000} s with no traffic`];
  return [
    { id: 'P10', scenario: `primary RSS, ${scale} databases, idle`, unit: 'MB', edgelite: rss[0], baseline: rss[1], baselineLabel: label, ratio: ratio(rss[0], rss[1]), goal: '≤ 500 MB', met: atMost(rss[0], 500), notes },
    { id: 'P10', scenario: `primary open descriptors, ${scale} databases, idle`, unit: 'fds', edgelite: fd[0], baseline: fd[1], baselineLabel: label, ratio: ratio(fd[0], fd[1]), goal: '≤ 2,000', met: atMost(fd[0], 2000), notes: [] },
    { id: 'P10', scenario: `primary idle CPU, ${scale} databases, no traffic`, unit: '% of a core', edgelite: cpu[0], baseline: cpu[1], baselineLabel: label, ratio: ratio(cpu[0], cpu[1]), goal: '≤ 2%', met: atMost(cpu[0], 2), notes: [] },
    { id: 'P10', scenario: `primary restart to healthy, ${scale} databases`, unit: 's', edgelite: restart[0], baseline: restart[1], baselineLabel: label, ratio: ratio(restart[0], restart[1]), goal: '≤ 3 s', met: atMost(restart[0], 3), notes: [] },
    { id: 'P10', scenario: `fresh replica converged on ${scale} databases`, unit: 's', edgelite: converge[0], baseline: converge[1], baselineLabel: label, ratio: ratio(converge[0], converge[1]), goal: '≤ 60 s', met: atMost(converge[0], 60), notes: converge[0] === null ? ['did not converge within the bench timeout'] : [] },
    { id: 'P10', scenario: 'lazy replica cold first read of a 1 MiB tenant, p50', unit: 'ms', edgelite: cold50, baseline: null, baselineLabel: '—', ratio: null, goal: '≤ 20 ms', met: atMost(cold50, 20), notes: [`p99 ${cold99?.toFixed(1) ?? '—'} ms over ${sz.big} tenants`] },
    { id: 'P10', scenario: 'write p50 to a closed tenant (opened by the write)', unit: 'ms', edgelite: closed50, baseline: open50, baselineLabel: 'the same tenants once open', ratio: closed50 !== null && open50 !== null ? closed50 / open50 : null, goal: '≤ 2× an open one', met: closed50 !== null && open50 !== null ? closed50 <= 2 * open50 : null, notes: [`${sz.writes} tenants spread over the ${n}`] },
  ];
}
