/**
 * `npm run bench [-- --quick] [--runs N] [--only P1,P3] [--json FILE] [--markdown]`: edgelite side by
 * side with PostgreSQL streaming replication and bare baselines (docs/BENCHMARKS.md explains every
 * row). One run prints one table; each figure is the median over `--runs` repetitions (default 3, quick
 * 1). `--quick` uses tiny sizes so the whole run takes well under a minute: CI runs it so the harness
 * cannot rot, and never judges the figures.
 *
 * Everything started here (edgelite processes, PostgreSQL, servers, temp dirs) is registered on one
 * cleanup stack that also runs on SIGINT/SIGTERM.
 */
import { writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { startPostgres, type PgCluster } from './postgres.ts';
import { renderMachine, renderMarkdown, renderText, type MachineInfo } from './report.ts';
import { startCluster, type Cluster } from './scenarios/cluster.ts';
import { Cleanup, type BenchContext, type Row } from './scenarios/common.ts';
import { runP1 } from './scenarios/p1-lag.ts';
import { runP2 } from './scenarios/p2-http-reads.ts';
import { runP3 } from './scenarios/p3-embedded.ts';
import { runP4 } from './scenarios/p4-writes.ts';
import { runP5 } from './scenarios/p5-forward.ts';
import { runP6 } from './scenarios/p6-fanout.ts';
import { runP7 } from './scenarios/p7-bootstrap.ts';
import { runP8 } from './scenarios/p8-wire.ts';
import { runP9 } from './scenarios/p9-worker.ts';
import { runP10 } from './scenarios/p10-tenants.ts';
import { runP11 } from './scenarios/p11-restore.ts';
import { runP12 } from './scenarios/p12-sync.ts';

interface Shared {
  cluster(): Promise<Cluster>;
  postgres(): Promise<PgCluster | string>;
}

type Scenario = (ctx: BenchContext, shared: Shared) => Promise<Row[]>;

/** SCENARIOS in the order they run: the cheap, noise-sensitive ones first, the 1 GiB bootstrap last. */
const SCENARIOS: Array<[string, string, Scenario]> = [
  ['P1', 'replication lag', async (ctx, s) => runP1(ctx, await s.cluster(), await s.postgres())],
  ['P2', 'replica HTTP point reads', async (ctx, s) => runP2(ctx, await s.cluster())],
  ['P3', 'embedded replica point read', async (ctx, s) => runP3(ctx, await s.cluster(), await s.postgres())],
  ['P4', 'primary write throughput', async (ctx, s) => runP4(ctx, await s.cluster())],
  ['P5', 'forwarded writes', async (ctx, s) => runP5(ctx, await s.cluster())],
  ['P8', 'bytes on the wire per update', async (ctx, s) => runP8(ctx, await s.cluster(), await s.postgres())],
  ['P6', 'stream fan-out', async (ctx, s) => runP6(ctx, await s.cluster())],
  ['P7', 'bootstrap by snapshot', async (ctx) => runP7(ctx)],
  ['P9', 'Worker replica beside the Node replica', async (ctx) => runP9(ctx)],
  ['P10', 'ten thousand tenants on one primary', async (ctx) => runP10(ctx)],
  ['P11', 'object storage: restore, writes with backup, PUTs', async (ctx) => runP11(ctx)],
  ['P12', 'synchronous replicas (--sync-replicas 1 vs 0)', async (ctx) => runP12(ctx)],
];

export interface BenchResult {
  rows: Row[];
  machine: MachineInfo;
  failed: string[];
}

export async function runBench(opts: { quick: boolean; runs: number; only: string[] | null; log(msg: string): void }, cleanup: Cleanup): Promise<BenchResult> {
  const ctx: BenchContext = { quick: opts.quick, runs: opts.runs, cleanup, log: opts.log };
  const loadBefore = loadavg()[0]!;
  if (loadBefore > 0.5) opts.log(`load average is ${loadBefore.toFixed(2)}: something else is running, figures will be noisy`);
  let cluster: Promise<Cluster> | null = null;
  let postgres: Promise<PgCluster | string> | null = null;
  const shared: Shared = {
    cluster: () => (cluster ??= startCluster(ctx)),
    postgres: () => (postgres ??= startPostgres(ctx)),
  };
  const rows: Row[] = [];
  const failed: string[] = [];
  for (const [id, name, scenario] of SCENARIOS) {
    if (opts.only && !opts.only.includes(id)) continue;
    const started = Date.now();
    opts.log(`${id} ${name}...`);
    try {
      rows.push(...(await scenario(ctx, shared)));
    } catch (err) {
      failed.push(id);
      opts.log(`${id} failed: ${(err as Error)?.stack ?? String(err)}`);
      rows.push({ id, scenario: name, unit: '', edgelite: null, baseline: null, baselineLabel: '', ratio: null, goal: '', met: null, notes: [`scenario failed: ${String(err)}`] });
    }
    opts.log(`${id} done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  const pgc = postgres ? await (postgres as Promise<PgCluster | string>).catch((e: unknown) => String(e)) : 'PostgreSQL not used in this run';
  rows.sort((a, b) => a.id.localeCompare(b.id));
  return { rows, machine: machineInfo(typeof pgc === 'string' ? pgc : pgc.version, `${loadBefore.toFixed(2)} / ${loadavg()[0]!.toFixed(2)}`), failed };
}

function machineInfo(postgres: string, load: string): MachineInfo {
  const db = new Database(':memory:');
  const sqlite = String(db.prepare('SELECT sqlite_version()').pluck().get());
  db.close();
  const c = cpus();
  return {
    cpus: `${c.length} × ${c[0]?.model ?? 'unknown'}`,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    node: process.version,
    sqlite,
    postgres,
    kernel: `Linux ${release()}`,
    load,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      runs: { type: 'string' },
      only: { type: 'string' },
      json: { type: 'string' },
      markdown: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const quick = values.quick ?? false;
  const runs = values.runs ? Number(values.runs) : quick ? 1 : 3;
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs wants a positive integer, got ${values.runs}`);
  const only = values.only ? values.only.split(',').map((s) => s.trim().toUpperCase()) : null;
  const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
  const cleanup = new Cleanup();
  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping everything started`);
    void cleanup.run(log).finally(() => process.exit(130));
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  const started = Date.now();
  let result: BenchResult;
  try {
    result = await runBench({ quick, runs, only, log }, cleanup);
  } finally {
    await cleanup.run(log);
  }
  const header = `edgelite benchmarks (${quick ? 'quick' : 'full'}, ${runs} run${runs > 1 ? 's' : ''}, ${((Date.now() - started) / 1000).toFixed(0)} s)`;
  process.stdout.write(`${header}\n${renderMachine(result.machine)}\n\n${renderText(result.rows)}`);
  if (values.markdown) process.stdout.write(`\n${renderMarkdown(result.rows)}`);
  if (values.json) writeFileSync(values.json, JSON.stringify({ quick, runs, machine: result.machine, rows: result.rows, failed: result.failed }, null, 2));
  if (result.failed.length) {
    log(`scenarios failed: ${result.failed.join(', ')}`);
    process.exitCode = 1;
  }
}

// Run when executed (`node bin/run-ts.mjs test/bench/run.ts`), not when imported.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
