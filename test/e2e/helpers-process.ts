/**
 * Child-process helpers for end-to-end tests: run the real `edgelite` CLI (bin/edgelite.mjs) as its own
 * process, wait for the JSON line that says it is listening, and kill it by PID (SIGKILL included).
 * Everything the child prints is kept, so a failing test can show it (`output()`). Also a reader for
 * the replication stream (FrameStream), which primary and replica tests both need.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FrameDecoder, type Frame } from '../../shared/frames.ts';

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

/**
 * spawnEdgelite runs `node bin/edgelite.mjs ...args` and resolves once it logs its listening line.
 * `env` is added to this process's environment, minus any EDGELITE_* variable (so a developer's shell
 * cannot leak settings in). Rejects (with the child's output) if the child exits first or the line
 * does not come in time.
 */
export function spawnEdgelite(args: string[], extraEnv: Record<string, string> = {}, options: SpawnOptions = {}): Promise<EdgeliteProcess> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('EDGELITE_')) env[k] = v;
  Object.assign(env, extraEnv);
  const proc = spawn(process.execPath, [EDGELITE_BIN, ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
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
      reject(new Error(`edgelite ${args.join(' ')} did not start within ${timeoutMs} ms\n${output()}`));
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
          resolve({
            url: line.url as string,
            pid: proc.pid!,
            proc,
            logs,
            stopped,
            output,
            kill: (signal: NodeJS.Signals = 'SIGKILL') => {
              if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid!, signal);
              return stopped;
            },
          });
        }
      }
    });
    void stopped.then((exit) => {
      if (ready) return;
      clearTimeout(timer);
      reject(new Error(`edgelite ${args.join(' ')} exited (${exit.code ?? exit.signal}) before listening\n${output()}`));
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

/** runProcess runs a command to completion (e.g. the sqlite3 CLI), feeding `input` on stdin. */
export function runProcess(command: string, args: string[], input = '', timeoutMs = 60_000): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
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
 * FrameStream reads a replication stream (POST /v1/stream) in the background and keeps every decoded
 * frame. `pause()` stops reading from the socket (so the server sees back-pressure) until `resume()`.
 */
export class FrameStream {
  readonly frames: Frame[] = [];
  readonly status: number;
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #decoder = new FrameDecoder();
  #paused: { promise: Promise<void>; resolve: () => void } | null = null;
  #waiters = new Set<() => void>();
  #ended = false;
  #error: unknown = null;
  readonly #abort: AbortController;

  private constructor(status: number, body: ReadableStream<Uint8Array>, abort: AbortController) {
    this.status = status;
    this.#reader = body.getReader();
    this.#abort = abort;
    void this.#pump();
  }

  /** open posts `body` to `${url}/v1/stream`; rejects with the error body on a non-200 answer. */
  static async open(url: string, body: unknown, headers: Record<string, string> = {}): Promise<FrameStream> {
    const abort = new AbortController();
    const res = await fetch(`${url}/v1/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
      signal: abort.signal,
    });
    if (res.status !== 200 || !res.body) throw new Error(`stream answered ${res.status}: ${await res.text()}`);
    return new FrameStream(res.status, res.body, abort);
  }

  get ended(): boolean {
    return this.#ended;
  }

  async #pump(): Promise<void> {
    try {
      for (;;) {
        if (this.#paused) await this.#paused.promise;
        const { done, value } = await this.#reader.read();
        if (done) break;
        for (const f of this.#decoder.push(value)) this.frames.push(f);
        this.#notify();
      }
    } catch (err) {
      if (!this.#abort.signal.aborted) this.#error = err;
    }
    this.#ended = true;
    this.#notify();
  }

  #notify(): void {
    for (const w of this.#waiters) w();
  }

  /**
   * waitFor resolves with the index of the first frame at or after `from` that matches, reading
   * on until it arrives; rejects on timeout or when the stream ends without one.
   */
  waitFor(match: (f: Frame) => boolean, from = 0, timeoutMs = 15_000): Promise<number> {
    return new Promise((resolve, reject) => {
      let i = from;
      const check = () => {
        for (; i < this.frames.length; i++) {
          if (match(this.frames[i]!)) return finish(() => resolve(i));
        }
        if (this.#ended) finish(() => reject(new Error(`stream ended (${String(this.#error ?? 'cleanly')}) before the frame came`)));
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`no matching frame within ${timeoutMs} ms (${this.frames.length} frames)`))), timeoutMs);
      const finish = (f: () => void) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        f();
      };
      this.#waiters.add(check);
      check();
    });
  }

  pause(): void {
    if (this.#paused) return;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.#paused = { promise, resolve };
  }

  resume(): void {
    const p = this.#paused;
    this.#paused = null;
    p?.resolve();
  }

  close(): void {
    this.resume();
    this.#abort.abort();
  }
}
