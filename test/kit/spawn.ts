/**
 * Child-process helpers for end-to-end tests and the benchmarks: run the real `edgelite` CLI
 * (bin/edgelite.mjs), or any Node script that logs the same listening line, as its own process, wait for
 * that line, and stop it by PID (SIGKILL, or SIGTERM with a SIGKILL after a grace period).
 * Everything the child prints is kept, so a failing test can show it (`output()`). `Processes` tracks
 * what a test started, so an afterEach leaves nothing running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const EDGELITE_BIN = join(REPO_ROOT, 'bin', 'edgelite.mjs');

/** DEFAULT_START_TIMEOUT_MS: tsx compiles the sources on first start; a loaded machine needs a while. */
export const DEFAULT_START_TIMEOUT_MS = 30_000;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface EdgeliteProcess {
  /** The URL from the `{"msg": "... listening", "url": ...}` line. */
  url: string;
  pid: number;
  proc: ChildProcess;
  /** Every JSON line the child logged on stdout so far (non-JSON lines are kept in output()). */
  logs: Array<Record<string, unknown>>;
  /** kill sends `signal` (default SIGKILL) to the child's PID and resolves once it has exited. */
  kill(signal?: NodeJS.Signals): Promise<Exit>;
  /** stop asks for a clean shutdown (SIGTERM), sends SIGKILL after `graceMs`, and resolves once it exited. */
  stop(graceMs?: number): Promise<Exit>;
  /** Resolves when the child exits, for whatever reason. */
  stopped: Promise<Exit>;
  /** output is stdout and stderr so far, for failure messages. */
  output(): string;
}

export interface SpawnOptions {
  startTimeoutMs?: number;
  /** Recognises the "I am listening" line; default: a JSON line whose msg ends in "listening" with a url. */
  isReady?: (line: Record<string, unknown>) => boolean;
}

const defaultReady = (line: Record<string, unknown>): boolean =>
  typeof line.msg === 'string' && line.msg.endsWith('listening') && typeof line.url === 'string';

/** DEFAULT_STOP_GRACE_MS: how long `stop()` waits after SIGTERM before it kills. */
export const DEFAULT_STOP_GRACE_MS = 10_000;

/**
 * spawnEdgelite runs `node bin/edgelite.mjs ...args` and resolves once it logs its listening line.
 * `env` is added to this process's environment, minus any EDGELITE_* variable (so a developer's shell
 * cannot leak settings in). Rejects (with the child's output) if the child exits first or the line
 * does not come in time.
 */
export function spawnEdgelite(args: string[], extraEnv: Record<string, string> = {}, options: SpawnOptions = {}): Promise<EdgeliteProcess> {
  return spawnNode([EDGELITE_BIN, ...args], extraEnv, options);
}

/** spawnNode is spawnEdgelite for any script: `node ...argv` (paths in argv as given, cwd the repo). */
export function spawnNode(argv: string[], extraEnv: Record<string, string> = {}, options: SpawnOptions = {}): Promise<EdgeliteProcess> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('EDGELITE_')) env[k] = v;
  Object.assign(env, extraEnv);
  const proc = spawn(process.execPath, argv, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const what = argv.map((a) => a.replace(`${REPO_ROOT}/`, '')).join(' ');
  const isReady = options.isReady ?? defaultReady;
  const logs: Array<Record<string, unknown>> = [];
  let out = '';
  let err = '';
  let partial = '';
  const stopped = new Promise<Exit>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));

  return new Promise<EdgeliteProcess>((resolve, reject) => {
    const timeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    const output = () => `--- stdout ---\n${out}--- stderr ---\n${err}`;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${what} did not start within ${timeoutMs} ms\n${output()}`));
    }, timeoutMs);
    let ready = false;

    proc.stderr!.setEncoding('utf8').on('data', (s: string) => {
      err += s;
    });
    proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      partial += s;
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const text of lines) {
        const line = parseJsonLine(text);
        if (!line) continue;
        logs.push(line);
        if (!ready && isReady(line)) {
          ready = true;
          clearTimeout(timer);
          const kill = (signal: NodeJS.Signals = 'SIGKILL'): Promise<Exit> => {
            if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid!, signal);
            return stopped;
          };
          resolve({
            url: line.url as string,
            pid: proc.pid!,
            proc,
            logs,
            stopped,
            output,
            kill,
            stop: async (graceMs = DEFAULT_STOP_GRACE_MS) => {
              const timer = setTimeout(() => void kill('SIGKILL'), graceMs);
              const exit = await kill('SIGTERM');
              clearTimeout(timer);
              return exit;
            },
          });
        }
      }
    });
    void stopped.then((exit) => {
      if (ready) return;
      clearTimeout(timer);
      reject(new Error(`${what} exited (${exit.code ?? exit.signal}) before listening\n${output()}`));
    });
  });
}

function parseJsonLine(text: string): Record<string, unknown> | null {
  if (!text.startsWith('{')) return null;
  try {
    const v: unknown = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    // A line that merely starts with "{" is ordinary output, kept in output() only.
    return null;
  }
}

/** ProcessResult is a finished child: its exit and everything it printed. */
export interface ProcessResult extends Exit {
  stdout: string;
  stderr: string;
}

/** runProcess runs a command to completion (e.g. the sqlite3 CLI), feeding `input` on stdin; `env` replaces the environment. */
export function runProcess(command: string, args: string[], input = '', timeoutMs = 60_000, env?: NodeJS.ProcessEnv): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], ...(env ? { env } : {}) });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${command} timed out after ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    proc.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    proc.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    // A child that exits without reading all of its input closes the pipe: that is its business (its
    // exit code and output say what happened), not an error of ours.
    proc.stdin.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') reject(e);
    });
    proc.stdin.end(input);
  });
}

/**
 * runEdgelite runs one `edgelite ...` command (restore, backups, ...) to completion, asynchronously (an
 * s3rver in the test process keeps serving), with `env` added to this process's environment.
 */
export async function runEdgelite(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 120_000): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const r = await runProcess(process.execPath, [EDGELITE_BIN, ...args], '', timeoutMs, { ...process.env, ...env });
  return { status: r.code, stdout: r.stdout, stderr: r.stderr };
}

/** Processes is the set of children a test started; `killAll` in afterEach leaves none behind. */
export class Processes {
  readonly #running = new Set<EdgeliteProcess>();

  async primary(dir: string, listen = '127.0.0.1:0', flags: string[] = []): Promise<EdgeliteProcess> {
    return this.#track(await spawnEdgelite(['primary', '--data', dir, '--listen', listen, ...flags]));
  }

  async replica(primaryUrl: string, dir: string, flags: string[] = []): Promise<EdgeliteProcess> {
    return this.#track(await spawnEdgelite(['replica', '--primary', primaryUrl, '--data', dir, '--listen', '127.0.0.1:0', ...flags]));
  }

  /** stop sends `signal` and waits for the exit; it checks a SIGKILL really killed the process. */
  async stop(p: EdgeliteProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const exit = await p.kill(signal);
    this.#running.delete(p);
    if (signal === 'SIGKILL' && exit.signal !== 'SIGKILL') throw new Error(`process ${p.pid} exited with ${JSON.stringify(exit)} instead of being killed`);
    if (signal === 'SIGTERM' && exit.code !== 0) throw new Error(`process ${p.pid} did not stop cleanly: ${JSON.stringify(exit)}\n${p.output()}`);
  }

  async killAll(): Promise<void> {
    for (const p of this.#running) await p.kill('SIGKILL');
    this.#running.clear();
  }

  #track(p: EdgeliteProcess): EdgeliteProcess {
    this.#running.add(p);
    return p;
  }
}

/**
 * processesAfterEach registers an afterEach that SIGKILLs every child `procs` started, then runs the
 * `cleanups` (temp dirs) in order: children first, so no process still writes into a removed directory.
 */
export function processesAfterEach(): { procs: Processes; cleanups: Array<() => void> } {
  const procs = new Processes();
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    await procs.killAll();
    for (const c of cleanups.splice(0)) c();
  });
  return { procs, cleanups };
}
