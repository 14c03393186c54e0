/**
 * What every benchmark scenario shares: the run context (sizes for full and quick runs, a cleanup
 * stack that also runs on SIGINT), per-operation statistics, precise pacing, TypeScript worker threads,
 * child-process CPU from /proc, and small HTTP helpers. Nothing here asserts timing: scenarios measure,
 * the report judges.
 */
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { request } from 'undici';
import { REPO_ROOT, spawnNode } from '../../kit/spawn.ts';

/** Row is one line of the result table. `ratio` is oriented so that higher is better for edgelite. */
export interface Row {
  id: string;
  scenario: string;
  unit: string;
  edgelite: number | null;
  baseline: number | null;
  baselineLabel: string;
  ratio: number | null;
  goal: string;
  met: boolean | null;
  notes: string[];
}

export interface BenchContext {
  quick: boolean;
  /** Repetitions per scenario; figures are medians over them. */
  runs: number;
  cleanup: Cleanup;
  log(msg: string): void;
}

/** Cleanup runs registered stoppers last-in first-out, once, even if one of them throws. */
export class Cleanup {
  #fns: Array<{ what: string; fn: () => Promise<void> | void }> = [];

  add(what: string, fn: () => Promise<void> | void): () => Promise<void> {
    const entry = { what, fn };
    this.#fns.push(entry);
    return async () => {
      const i = this.#fns.indexOf(entry);
      if (i < 0) return;
      this.#fns.splice(i, 1);
      await entry.fn();
    };
  }

  async run(log: (msg: string) => void): Promise<void> {
    while (this.#fns.length > 0) {
      const { what, fn } = this.#fns.pop()!;
      try {
        await fn();
      } catch (err) {
        log(`cleanup of ${what} failed: ${String(err)}`);
      }
    }
  }
}

/** tempDir makes a directory removed by the cleanup stack. */
export function tempDir(ctx: BenchContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `edgelite-bench-${prefix}-`));
  ctx.cleanup.add(`temp dir ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** percentile is the nearest-rank percentile of an ascending array (NaN when empty). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export interface Summary {
  n: number;
  p50: number;
  p99: number;
  mean: number;
  max: number;
}

export function summarize(samples: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    mean: sorted.length ? sum / sorted.length : Number.NaN,
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
  };
}

export function median(values: number[]): number {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (finite.length === 0) return Number.NaN;
  const mid = Math.floor(finite.length / 2);
  return finite.length % 2 ? finite[mid]! : (finite[mid - 1]! + finite[mid]!) / 2;
}

/** nowMs is a monotonic clock in milliseconds with sub-microsecond resolution, shared by all threads. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** sleepSync blocks this thread for `ms` (fractions allowed) without spinning: pacing below setTimeout's 1 ms. */
export function sleepSync(ms: number): void {
  if (ms > 0) Atomics.wait(sleeper, 0, 0, ms);
}

// The tests' one wait helper (test/kit/wait.ts), re-exported for the scenarios.
export { sleep, waitUntil } from '../../kit/wait.ts';

/**
 * startTsWorker runs a TypeScript module in a worker thread. Node 20 does not pass the tsx loader to
 * workers, so the worker registers it itself before importing the module.
 */
export function startTsWorker(module: URL, workerData: unknown): Worker {
  const api = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(module.href)}); });`;
  return new Worker(code, { eval: true, workerData });
}

/**
 * WorkerInbox keeps every message a worker posts (none is lost between two awaits) and hands them out
 * in order; a worker error or early exit rejects the waiting `next()`.
 */
export class WorkerInbox<T> {
  readonly worker: Worker;
  readonly #what: string;
  #queue: T[] = [];
  #failure: Error | null = null;
  #waiter: { resolve: (m: T) => void; reject: (e: Error) => void } | null = null;

  constructor(worker: Worker, what: string) {
    this.worker = worker;
    this.#what = what;
    worker.on('message', (m: T) => {
      if (this.#waiter) {
        this.#waiter.resolve(m);
        this.#waiter = null;
      } else {
        this.#queue.push(m);
      }
    });
    const fail = (err: Error) => {
      this.#failure ??= err;
      this.#waiter?.reject(err);
      this.#waiter = null;
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`${what} exited (${code})`)));
  }

  /** next resolves with the next message, or rejects after `timeoutMs` (and terminates the worker). */
  next(timeoutMs: number): Promise<T> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = null;
        void this.worker.terminate();
        reject(new Error(`${this.#what} posted nothing within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiter = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }
}

let clockTicks: number | null = null;

/** cpuSeconds is the user+system CPU a process has used so far, from /proc/PID/stat. */
export function cpuSeconds(pid: number): number {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

/** freePort asks the kernel for an unused loopback port (bind to 0, read it, release it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** postJson sends one JSON request and returns status and parsed body; throws on a non-2xx answer. */
export async function postJson(url: string, body: unknown, method: 'POST' | 'PUT' = 'POST'): Promise<unknown> {
  const res = await request(url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${method} ${url} answered ${res.statusCode}: ${text.slice(0, 300)}`);
  return text ? (JSON.parse(text) as unknown) : null;
}

export async function getJson(url: string): Promise<Record<string, unknown>> {
  const res = await request(url);
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET ${url} answered ${res.statusCode}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/** fmt prints a figure with sensible precision for the table. */
export function fmt(n: number | null, digits = 3): string {
  if (n === null || !Number.isFinite(n)) return '—';
  const abs = Math.abs(n);
  if (abs >= 1000) return Math.round(n).toLocaleString('en-US');
  if (abs >= 100) return n.toFixed(0);
  return Number(n.toPrecision(digits)).toString();
}

export { REPO_ROOT } from '../../kit/spawn.ts';

export interface ServerProcess {
  url: string;
  pid: number;
  /** stop asks for a clean shutdown (SIGTERM), kills by PID after 10 s, and resolves once it exited. */
  stop(): Promise<void>;
}

/**
 * spawnServer runs `node ARGV...` with the tests' spawn helper (test/kit/spawn.ts) and resolves once it
 * logs its listening line (what `edgelite primary|replica` and bare-server.ts print); from then on the
 * cleanup stack stops it by PID. Rejects with its output if it exits first or does not listen within
 * `startTimeoutMs` (the helper kills it then).
 */
export async function spawnServer(ctx: BenchContext, argv: string[], startTimeoutMs = 120_000): Promise<ServerProcess> {
  const p = await spawnNode(argv, {}, { startTimeoutMs });
  const what = `${argv.map((a) => a.replace(`${REPO_ROOT}/`, '')).slice(0, 3).join(' ')} (pid ${p.pid})`;
  const stop = ctx.cleanup.add(what, async () => void (await p.stop()));
  return { url: p.url, pid: p.pid, stop };
}

/** spawnBareServer runs bare-server.ts (through bin/run-ts.mjs) in its own process; `nodeFlags` go to node (e.g. --cpu-prof). */
export function spawnBareServer(ctx: BenchContext, args: string[], nodeFlags: string[] = []): Promise<ServerProcess> {
  return spawnServer(ctx, [...nodeFlags, join(REPO_ROOT, 'bin', 'run-ts.mjs'), join(REPO_ROOT, 'test', 'bench', 'scenarios', 'bare-server.ts'), ...args]);
}

/** spawnEdgelite runs the real CLI, `node [nodeFlags] bin/edgelite.mjs ROLE ...`. */
export function spawnEdgelite(ctx: BenchContext, args: string[], nodeFlags: string[] = []): Promise<ServerProcess> {
  return spawnServer(ctx, [...nodeFlags, join(REPO_ROOT, 'bin', 'edgelite.mjs'), ...args]);
}

/** BUILD_ROW_BYTES is the size of one random row buildDatabase writes (P7, P11). */
const BUILD_ROW_BYTES = 1000;

/**
 * buildDatabase writes rows of random bytes until the file reaches `bytes`, without passing it: the
 * last batch is sized to what is missing, so a 1 GiB target stops at exactly 262,144 pages (4 KiB).
 */
export function buildDatabase(file: string, bytes: number): void {
  const db = new Database(file);
  try {
    db.pragma('journal_mode = OFF');
    db.pragma('synchronous = OFF');
    db.exec('CREATE TABLE big (id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
    const batch = 10_000;
    const insert = db.prepare(`INSERT INTO big (v) WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) SELECT randomblob(${BUILD_ROW_BYTES}) FROM c`);
    while (statSync(file).size < bytes) {
      const pages = Number(db.pragma('page_count', { simple: true }));
      const pageSize = Number(db.pragma('page_size', { simple: true }));
      const missingRows = Math.ceil((bytes - pages * pageSize) / (BUILD_ROW_BYTES + 30));
      insert.run(Math.max(1, Math.min(batch, missingRows)));
    }
    db.pragma('journal_mode = WAL');
  } finally {
    db.close();
  }
}
