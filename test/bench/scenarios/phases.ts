/**
 * Per-phase breakdowns (docs/BENCHMARKS.md#per-phase-breakdown): where a request's (or a write's)
 * microseconds go, read from a real CPU profile of the real code under the scenario's load. A server
 * process is started with `--cpu-prof` (it writes the profile when it exits); an in-process run is
 * profiled through node:inspector. Each sample's self time goes to the first category whose rule
 * matches its function (by script URL or name); idle time and module loading are left out; the sum is
 * divided by the requests served. No instrumentation in the product, so nothing measured is changed.
 * A sample's weight is the wall time since the one before, so on a loaded machine the time a process
 * waited for a CPU lands on whatever it was doing when it was preempted (often the socket write, which
 * wakes the load generator): read the shares, and measure CPU per request from /proc when it matters.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { tempDir, type BenchContext, type ServerProcess } from './common.ts';
import type { LoadResult } from './load.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}
export interface CpuProfile {
  /** CLOCK_MONOTONIC, µs (the clock of process.hrtime). */
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** A category and what puts a function in it: a URL part, or a function name (exact). */
export interface PhaseRule {
  phase: string;
  urls?: string[];
  names?: string[];
}

// `dispatch` is the inspector's own message loop (profileInProcess), not the code measured.
const SKIPPED: PhaseRule = { phase: '', names: ['(idle)', '(program)', 'compileSourceTextModule', 'wrapSafe', 'compileForInternalLoader', 'dispatch'], urls: ['esm/', 'cjs/loader', 'bootstrap/', '/tsx/', 'node_modules/tsx'] };

/** HTTP_RULES: the phases of an HTTP request in a server process (node:http, hono, ours, SQLite). */
export const HTTP_RULES: PhaseRule[] = [
  { phase: 'socket write (kernel)', names: ['writev', 'writeBuffer', 'writeUtf8String', 'writeLatin1String'] },
  { phase: 'GC', names: ['(garbage collector)'] },
  { phase: 'SQLite statement (and its time limit)', urls: ['shared/sql.ts', 'better-sqlite3', 'query-limit', 'query-pool'], names: ['runStatement', 'all', 'get', 'run', 'iterate'] },
  { phase: 'body read, JSON parse, validation', urls: ['exact-json', 'lossless-json', 'zod', 'openapi/validate', 'shared/protocol.ts', 'sql-params', 'simple-statement', 'http-body'], names: ['readJsonBody', 'readNodeJsonBody', 'readIncoming', 'parseJson', 'JSON.parse'] },
  { phase: 'auth, statement policy, consistency', urls: ['shared/auth.ts', 'statement-policy', 'consistency', 'shared/token.ts'], names: ['requireRight'] },
  { phase: 'answer encoding', names: ['jsonResponse', 'resultResponse', 'jsonAnswer', 'resultAnswer', 'stringifyResult', 'needsReplacer', 'jsonReplacer', 'positionHeaders', 'JSON.stringify'] },
  { phase: 'hono and its node server', urls: ['/hono/', '@hono/'] },
  { phase: 'node:http parse and respond', urls: ['node:_http', '_http_', 'node:net', 'stream_base_commons', 'streams/', 'node:events', 'node:internal/timers'], names: ['parse', 'parserOnHeadersComplete'] },
  { phase: 'edgelite, other', urls: ['/shared/', '/replica/', '/primary/'] },
  { phase: 'bare handler (JSON parse, statement, stringify)', urls: ['bare-server.ts'] },
  { phase: 'node, other' },
];

/** ENGINE_RULES: the phases of PrimaryDatabase.exec (docs/ARCHITECTURE.md#capture-rules). */
export const ENGINE_RULES: PhaseRule[] = [
  { phase: 'GC', names: ['(garbage collector)'] },
  { phase: 'file writes and syncs (log)', names: ['writeSync', 'writeBuffer', 'writev', 'fsync', 'fdatasync', 'fsyncSync', 'fdatasyncSync'] },
  { phase: 'WAL capture (read the new frames)', urls: ['primary/capture.ts', 'primary/wal-reader.ts', 'primary/wal-format.ts', 'primary/read-lock.ts', 'primary/page-cache.ts'], names: ['read', 'readSync', 'stat', 'fstat'] },
  { phase: 'change-set encode', urls: ['shared/changeset', 'shared/frames.ts', 'shared/hash32.ts'], names: ['crc32'] },
  { phase: 'checksum update', urls: ['shared/checksum.ts', 'hash64'] },
  { phase: 'log append and index', urls: ['primary/log', 'primary/changes.ts'] },
  { phase: 'statement and commit (SQLite)', urls: ['shared/sql.ts', 'better-sqlite3', 'write-batch', 'primary/write-queue.ts', 'primary/sqlite.ts', 'query-limit'], names: ['run', 'all', 'get', 'exec', 'iterate'] },
  { phase: 'edgelite, other', urls: ['/shared/', '/primary/'] },
  { phase: 'node, other' },
];

function matches(rule: PhaseRule, f: ProfileNode['callFrame']): boolean {
  return (rule.names?.includes(f.functionName) ?? false) || (rule.urls?.some((u) => f.url.includes(u)) ?? false) || (!rule.names && !rule.urls);
}

/** A span of CLOCK_MONOTONIC in µs (monotonicUs()), to count only the samples taken under load. */
export interface Window {
  fromUs: number;
  toUs: number;
}

/** monotonicUs reads the clock CPU profiles stamp their samples with. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/**
 * breakdown sums the profile's self time per phase (milliseconds), idle and module loading left out,
 * and, given a window, only the samples taken within it.
 */
export function breakdown(profile: CpuProfile, rules: PhaseRule[], window?: Window): Map<string, number> {
  const phaseOf = new Map<number, string>();
  for (const n of profile.nodes) {
    phaseOf.set(n.id, matches(SKIPPED, n.callFrame) ? '' : (rules.find((r) => matches(r, n.callFrame))?.phase ?? 'node, other'));
  }
  const out = new Map<string, number>(rules.map((r) => [r.phase, 0]));
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (window && (at < window.fromUs || at > window.toUs)) return;
    const phase = phaseOf.get(id) ?? '';
    if (phase) out.set(phase, (out.get(phase) ?? 0) + delta / 1000);
  });
  return out;
}

/** perOp renders a breakdown as "phase N µs, …; total N µs per <what>" over `ops` operations. */
export function perOp(phases: Map<string, number>, ops: number, what: string): string {
  const us = (ms: number) => (ms * 1000) / ops;
  const parts = [...phases].filter(([, ms]) => us(ms) >= 0.05).sort((a, b) => b[1] - a[1]);
  const total = parts.reduce((s, [, ms]) => s + ms, 0);
  return `${parts.map(([p, ms]) => `${p} ${us(ms).toFixed(1)}`).join(', ')}; total ${us(total).toFixed(1)} µs CPU per ${what}`;
}

/**
 * readProfile reads the profile of process `pid`'s main thread from `dir` (--cpu-prof-dir names each
 * CPU.<date>.<time>.<pid>.<thread>.<n>.cpuprofile; its query processes, forked with the same flags,
 * write theirs there too).
 */
export function readProfile(dir: string, pid: number): CpuProfile {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile') && f.split('.')[3] === String(pid) && f.split('.')[4] === '0');
  if (!file) throw new Error(`no main-thread .cpuprofile of pid ${pid} in ${dir}`);
  return JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
}

/** profileInProcess runs `fn` under this process's sampling profiler and returns the profile. */
export async function profileInProcess(fn: () => void): Promise<CpuProfile> {
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))));
  try {
    await post('Profiler.enable');
    await post('Profiler.setSamplingInterval', { interval: 100 });
    await post('Profiler.start');
    fn();
    const { profile } = (await post('Profiler.stop')) as { profile: CpuProfile };
    return profile;
  } finally {
    session.disconnect();
  }
}

/**
 * profiledServer starts a server with `--cpu-prof` (start gets the node flags), puts `load` on it once,
 * stops it (the profile is written as it exits) and returns the breakdown per request answered.
 */
export async function profiledServer(ctx: BenchContext, start: (nodeFlags: string[]) => Promise<ServerProcess>, load: (server: ServerProcess) => Promise<LoadResult>, rules: PhaseRule[], what: string): Promise<string> {
  const dir = tempDir(ctx, 'cpu-prof');
  const server = await start(['--cpu-prof', '--cpu-prof-dir', dir]);
  const fromUs = monotonicUs();
  const result = await load(server);
  const toUs = monotonicUs();
  await server.stop();
  return perOp(breakdown(readProfile(dir, server.pid), rules, { fromUs, toUs }), result.requests, what);
}
