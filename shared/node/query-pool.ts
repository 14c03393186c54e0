/**
 * QueryPool runs API reads (replica and primary) and the primary's API writes in a few child processes
 * so that a runaway statement never stalls the event loop (and with it captures, the apply loop, the
 * stream and every other request), and so that it can be stopped: when a request has run for
 * `timeoutMs` the reply is QUERY_TIMEOUT at once, and the process running it is killed with SIGKILL and
 * replaced. A write that times out is never committed (the two steps in ipc-codec.ts). Why processes
 * and not worker threads: sql-process.ts.
 *
 * Each process runs one request at a time; requests wait in a bounded FIFO, and are refused with BUSY
 * when it is full or when no process took them within `timeoutMs` (so a client waits at most about
 * twice the limit, and a queued request never costs a process). The execution limit starts when a
 * process takes the request, so process start-up and queueing never eat a query's own time.
 * Processes start lazily (at most `size`), say they are ready before they get work, and stay until
 * `close()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { availableParallelism } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { EdgeliteError, isErrorCode } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { QueryResult, Statement } from '../protocol.ts';
import { CHANNEL_FD, IpcMessageDecoder, encodeIpcMessage, type QueryRequest, type IpcError, type IpcReply, type SavepointResult, type WriteRequest, type WriteSync } from './ipc-codec.ts';

export type { SavepointResult, WriteSync } from './ipc-codec.ts';

export const DEFAULT_QUERY_POOL_SIZE = Math.max(2, Math.min(4, availableParallelism()));
export const DEFAULT_QUERY_QUEUE = 1000;
export const DEFAULT_QUERY_BUSY_TIMEOUT_MS = 5000;

export interface QueryPoolOptions {
  /** Per-request time limit (ms), queueing included. */
  timeoutMs: number;
  /** Most processes running at once. */
  size?: number;
  /** Most requests waiting for a process; more are refused with BUSY. */
  maxQueue?: number;
  /** SQLite busy_timeout of the processes' connections. */
  busyTimeoutMs?: number;
  logger?: Logger;
}

export interface QueryPoolStats {
  /** Processes alive and usable (starting or ready). */
  live: number;
  /** Processes that said they are ready. */
  ready: number;
  busy: number;
  queued: number;
  /** Killed processes whose exit has not been seen yet. */
  dying: number;
  /** Requests answered with QUERY_TIMEOUT so far (each killed a process). */
  timeouts: number;
  /** Requests refused with BUSY so far (queue full, or waited too long). */
  refused: number;
  pids: number[];
}

/** BatchOutcome: a write's outcome, its error rebuilt (ipc-codec.ts's SavepointResult on this side). */
export type BatchOutcome = { results: QueryResult[] } | { error: EdgeliteError } | { alone: true };

interface Job {
  id: number;
  /** The request as sent, without its id. */
  request: Omit<QueryRequest, 'id'> | Omit<WriteRequest, 'id'>;
  /** How many writes of a batch have run (progress replies), for the QUERY_TIMEOUT details. */
  completed: number;
  timeoutMs: number;
  /** When the running request's time is up (performance.now()). */
  deadline: number;
  timer: ReturnType<typeof setTimeout>;
  member: Member | null;
  resolve: (value: QueryResult[] | BatchOutcome[]) => void;
  reject: (err: EdgeliteError) => void;
}

interface Member {
  child: ChildProcess;
  channel: Socket;
  ready: boolean;
  job: Job | null;
}

const KNOWN_OPTIONS = new Set(['timeoutMs', 'size', 'maxQueue', 'busyTimeoutMs', 'logger']);
const SQL_PROCESS_PATH = fileURLToPath(new URL('./sql-process.ts', import.meta.url));
// The processes run sql-process.ts through tsx, the loader the package already runs on.
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

export class QueryPool {
  readonly timeoutMs: number;
  readonly size: number;
  readonly maxQueue: number;
  readonly #busyTimeoutMs: number;
  readonly #logger: Logger;
  readonly #members = new Set<Member>();
  /** Every process not yet exited (members and killed ones), with its exit. */
  readonly #processes = new Map<ChildProcess, Promise<void>>();
  readonly #queue: Job[] = [];
  #nextId = 1;
  #timeouts = 0;
  #refused = 0;
  #closed = false;

  constructor(o: QueryPoolOptions) {
    for (const k of Object.keys(o)) {
      if (!KNOWN_OPTIONS.has(k)) throw new EdgeliteError('BAD_REQUEST', `QueryPool: unknown option "${k}" (known: ${[...KNOWN_OPTIONS].join(', ')})`);
    }
    this.timeoutMs = checkInt(o.timeoutMs, 'timeoutMs', 1);
    this.size = checkInt(o.size ?? DEFAULT_QUERY_POOL_SIZE, 'size', 1);
    this.maxQueue = checkInt(o.maxQueue ?? DEFAULT_QUERY_QUEUE, 'maxQueue', 0);
    this.#busyTimeoutMs = checkInt(o.busyTimeoutMs ?? DEFAULT_QUERY_BUSY_TIMEOUT_MS, 'busyTimeoutMs', 0);
    this.#logger = o.logger ?? silentLogger;
  }

  /**
   * run executes read-only statements on the database file at `path` and resolves with the same
   * results and errors as runRead on an in-process read-only connection, or rejects with QUERY_TIMEOUT
   * once it has run for `timeoutMs`, BUSY when it cannot get a process (queue full, or none free within
   * `timeoutMs`), UNAVAILABLE when its process dies or the pool is closed.
   */
  run(path: string, statements: Statement[], timeoutMs = this.timeoutMs): Promise<QueryResult[]> {
    return this.#submit({ path, statements }, timeoutMs) as Promise<QueryResult[]>;
  }

  /**
   * writeBatch runs a batch of writes (each a list of statements) as one transaction on the database
   * file at `path`, each write in its own savepoint (ipc-codec.ts), on a writer connection set up as
   * the primary's with `synchronous` = `sync`, and resolves once it is committed with one outcome per
   * write: its results (as runWrite's), its error (that write alone was rolled back), or `alone` (it
   * must be sent again in a batch of its own). Rejects as run does, for the whole batch; QUERY_TIMEOUT
   * means nothing of it was committed, and its `details.completed` says how many writes had run. The
   * caller makes sure one batch per file is in flight (another would wait on SQLite's lock in its
   * process).
   */
  writeBatch(path: string, batch: Statement[][], sync: WriteSync, timeoutMs = this.timeoutMs): Promise<BatchOutcome[]> {
    return this.#submit({ path, batch, sync }, timeoutMs) as Promise<BatchOutcome[]>;
  }

  #submit(request: Job['request'], timeoutMs: number): Promise<QueryResult[] | BatchOutcome[]> {
    if (this.#closed) return Promise.reject(new EdgeliteError('UNAVAILABLE', 'query pool is closed'));
    checkInt(timeoutMs, 'timeoutMs', 1);
    if (this.#queue.length >= this.maxQueue && !this.#idleMember()) {
      this.#refused++;
      return Promise.reject(new EdgeliteError('BUSY', `too many queries waiting (${this.#queue.length}); try again later`, {
        details: { queued: this.#queue.length, processes: this.size },
      }));
    }
    return new Promise<QueryResult[] | BatchOutcome[]>((resolve, reject) => {
      const job: Job = { id: this.#nextId++, request, completed: 0, timeoutMs, deadline: 0, member: null, resolve, reject, timer: undefined! };
      job.timer = setTimeout(() => this.#giveUp(job), timeoutMs);
      this.#queue.push(job);
      this.#pump();
    });
  }

  /**
   * warm starts processes in the background until `count` are alive, so the first reads do not wait
   * for a process start (~0.3 s idle, over 1 s on a loaded machine: tsx dominates).
   */
  warm(count = this.size): void {
    if (this.#closed) return;
    for (let n = Math.min(count, this.size) - this.#members.size; n > 0; n--) this.#spawn();
  }

  /** forget closes every process's connection to `path` (before the file is deleted or replaced). */
  forget(path: string): void {
    for (const m of this.#members) m.channel.write(encodeIpcMessage({ id: 0, forget: path }));
  }

  stats(): QueryPoolStats {
    const members = [...this.#members];
    return {
      live: members.length,
      ready: members.filter((m) => m.ready).length,
      busy: members.filter((m) => m.job).length,
      queued: this.#queue.length,
      dying: this.#processes.size - members.length,
      timeouts: this.#timeouts,
      refused: this.#refused,
      pids: members.map((m) => m.child.pid).filter((p): p is number => p !== undefined),
    };
  }

  /** close fails whatever is pending with UNAVAILABLE and resolves once every process has exited. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      const closed = new EdgeliteError('UNAVAILABLE', 'query pool is closed');
      for (const job of this.#queue.splice(0)) this.#settle(job, closed);
      for (const m of [...this.#members]) {
        if (m.job) this.#settle(m.job, closed);
        this.#kill(m);
      }
    }
    // Hold the event loop until they have exited (idle processes are unref'd).
    for (const child of this.#processes.keys()) child.ref();
    await Promise.all(this.#processes.values());
  }

  #pump(): void {
    while (this.#queue.length > 0) {
      const m = this.#idleMember();
      if (!m) break;
      const job = this.#queue.shift()!;
      job.member = m;
      m.job = job;
      clearTimeout(job.timer);
      job.deadline = performance.now() + job.timeoutMs;
      job.timer = setTimeout(() => this.#expire(job), job.timeoutMs);
      m.channel.write(encodeIpcMessage({ id: job.id, ...job.request }));
    }
    const starting = [...this.#members].filter((m) => !m.ready).length;
    let wanted = Math.min(this.#queue.length - starting, this.size - this.#members.size);
    for (; wanted > 0; wanted--) this.#spawn();
  }

  #idleMember(): Member | undefined {
    for (const m of this.#members) if (m.ready && !m.job) return m;
    return undefined;
  }

  #spawn(): void {
    const child = spawn(process.execPath, ['--import', TSX_LOADER, SQL_PROCESS_PATH, String(this.#busyTimeoutMs)], {
      stdio: ['ignore', 'ignore', 'inherit', 'pipe'],
      windowsHide: true,
    });
    const channel = child.stdio[CHANNEL_FD] as Socket;
    const member: Member = { child, channel, ready: false, job: null };
    this.#members.add(member);
    const decoder = new IpcMessageDecoder();
    channel.on('data', (chunk: Buffer) => {
      for (const reply of decoder.push(chunk)) this.#onReply(member, reply as IpcReply);
    });
    channel.on('error', (err) => {
      // After our own SIGKILL a reset is expected; its exit is handled below either way.
      if (this.#members.has(member)) this.#logger({ msg: 'query process channel error', pid: child.pid, err: err.message });
    });
    const exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        this.#onExit(member, code, signal);
        resolve();
      });
      child.once('error', (err) => {
        this.#logger({ msg: 'query process failed', pid: child.pid, err: err.message });
        this.#onExit(member, null, null);
        resolve();
      });
    });
    this.#processes.set(child, exited.then(() => void this.#processes.delete(child)));
    // An idle pool must not keep the process alive; a request in flight does, through its timer.
    child.unref();
    channel.unref();
  }

  #onReply(member: Member, reply: IpcReply): void {
    if ('ready' in reply) {
      member.ready = true;
      this.#pump();
      return;
    }
    const job = member.job;
    if (!job || job.id !== reply.id) {
      this.#logger({ msg: 'query process replied out of turn', pid: member.child.pid, id: reply.id });
      return;
    }
    if ('done' in reply) {
      job.completed = reply.done + 1;
      return;
    }
    if ('prepared' in reply) {
      // The statements ran; commit only within the limit (a due timer may not have fired yet).
      if (performance.now() >= job.deadline) {
        this.#expire(job);
        return;
      }
      clearTimeout(job.timer);
      member.channel.write(encodeIpcMessage({ id: job.id, commit: true }));
      return;
    }
    member.job = null;
    if ('results' in reply) this.#settle(job, null, reply.results);
    else if ('outcomes' in reply) this.#settle(job, null, reply.outcomes.map(outcomeFromReply));
    else this.#settle(job, errorFromReply(reply.error));
    this.#pump();
  }

  /**
   * #giveUp ends a request that no process took in time, unless no process is ready yet: waiting for
   * start-up is not contention, and it ends either way (ready, or exit, which fails the queue).
   */
  #giveUp(job: Job): void {
    const members = [...this.#members];
    if (!members.some((m) => m.ready) && members.length > 0) {
      job.timer = setTimeout(() => this.#giveUp(job), job.timeoutMs);
      return;
    }
    const i = this.#queue.indexOf(job);
    if (i >= 0) this.#queue.splice(i, 1);
    this.#refused++;
    this.#settle(job, new EdgeliteError('BUSY', `no query process was free within ${job.timeoutMs} ms; try again later`, {
      details: { timeoutMs: job.timeoutMs, processes: this.size },
    }));
  }

  /** #expire is a running request's deadline: answer now, and kill the process still running it. */
  #expire(job: Job): void {
    const m = job.member!;
    this.#timeouts++;
    const r = job.request;
    const write = 'batch' in r;
    const err = new EdgeliteError('QUERY_TIMEOUT', `${write ? 'write' : 'query'} exceeded the time limit of ${job.timeoutMs} ms${write ? '; nothing of it was committed' : ''}`, {
      details: write ? { timeoutMs: job.timeoutMs, completed: job.completed } : { timeoutMs: job.timeoutMs },
    });
    const sql = write ? r.batch[job.completed]?.[0]?.sql : r.statements[0]?.sql;
    this.#logger({ msg: 'query timed out; killing its process', pid: m.child.pid, timeoutMs: job.timeoutMs, sql: sql?.slice(0, 200) });
    m.job = null;
    this.#settle(job, err);
    this.#kill(m);
    // Keep the pool at strength: the next read should not pay a process start.
    if (!this.#closed) this.#spawn();
  }

  #kill(m: Member): void {
    this.#members.delete(m);
    m.child.kill('SIGKILL');
  }

  #onExit(member: Member, code: number | null, signal: NodeJS.Signals | null): void {
    if (!this.#members.delete(member)) return; // killed by us: already accounted for
    const err = new EdgeliteError('UNAVAILABLE', `query process ${member.child.pid ?? '?'} exited (${signal ?? `code ${code}`})`);
    this.#logger({ msg: 'query process exited', pid: member.child.pid, code, signal, ready: member.ready });
    if (member.job) {
      this.#settle(member.job, err);
      member.job = null;
    }
    if (!member.ready && ![...this.#members].some((m) => m.ready)) {
      // No process could even start: fail what waits instead of respawning in a loop.
      for (const job of this.#queue.splice(0)) this.#settle(job, err);
      return;
    }
    if (!this.#closed) this.#pump();
  }

  #settle(job: Job, err: EdgeliteError | null, results?: QueryResult[] | BatchOutcome[]): void {
    clearTimeout(job.timer);
    job.member = null;
    if (err) job.reject(err);
    else job.resolve(results!);
  }
}

function outcomeFromReply(o: SavepointResult): BatchOutcome {
  return 'error' in o ? { error: errorFromReply(o.error) } : o;
}

/** errorFromReply rebuilds the EdgeliteError the process mapped (sqliteError) on its side. */
function errorFromReply(e: IpcError): EdgeliteError {
  const message = typeof e.message === 'string' ? e.message : 'query failed';
  if (!isErrorCode(e.code)) return new EdgeliteError('INTERNAL', `query process sent an unknown error code: ${message}`);
  return new EdgeliteError(e.code, message, e.details === undefined ? {} : { details: e.details });
}

/** MAX_INT32: timers take at most this many ms (setTimeout treats more as 1). */
const MAX_INT32 = 2 ** 31 - 1;

function checkInt(v: unknown, name: string, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > MAX_INT32) {
    throw new EdgeliteError('BAD_REQUEST', `QueryPool: "${name}" must be an integer from ${min} to ${MAX_INT32}, got ${String(v)}`);
  }
  return v;
}
