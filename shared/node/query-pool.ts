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
 *
 * A read given the caller's own connection (`run`'s `local`) first runs on it, on this thread, for a
 * slice of its limit that SQLite enforces (query-limit-reads.ts); only a read still running at the end
 * of the slice comes here, with the rest of its limit (docs/ARCHITECTURE.md#query-time-limits).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import type Database from 'better-sqlite3';
import type { Socket } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { EdgeliteError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { QueryResult, Statement } from '../protocol.ts';
import { CHANNEL_FD, IpcMessageDecoder, encodeIpcMessage, type QueryRequest, type IpcReply, type WriteRequest, type WriteSync } from './ipc-codec.ts';
import { hasDeadlineHook, queryTimeout } from './query-limit.ts';
import { DEFAULT_SLICE_MS, readInSlice } from './query-limit-reads.ts';
import { checkInt, DEFAULT_QUERY_BUSY_TIMEOUT_MS, DEFAULT_QUERY_POOL_SIZE, DEFAULT_QUERY_QUEUE, errorFromReply, KNOWN_OPTIONS, outcomeFromReply, type BatchOutcome, type QueryPoolOptions, type QueryPoolStats } from './query-pool-options.ts';

export type { SavepointResult, WriteSync } from './ipc-codec.ts';
export { DEFAULT_QUERY_BUSY_TIMEOUT_MS, DEFAULT_QUERY_POOL_SIZE, DEFAULT_QUERY_QUEUE, type BatchOutcome, type QueryPoolOptions, type QueryPoolStats } from './query-pool-options.ts';

interface Job {
  id: number;
  /** The request as sent, without its id. */
  request: Omit<QueryRequest, 'id'> | Omit<WriteRequest, 'id'>;
  /** How many writes of a batch have run (progress replies), for the QUERY_TIMEOUT details. */
  completed: number;
  timeoutMs: number;
  /** The request's whole limit, for QUERY_TIMEOUT (more than timeoutMs when a slice ran in-process). */
  limitMs: number;
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

const SQL_PROCESS_PATH = fileURLToPath(new URL('./sql-process.ts', import.meta.url));
// The processes run sql-process.ts through tsx, the loader the package already runs on.
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

export class QueryPool {
  readonly timeoutMs: number;
  readonly size: number;
  readonly maxQueue: number;
  /** The in-process slice of a read given a local connection (ms); 0 when reads never run in-process. */
  readonly sliceMs: number;
  readonly #busyTimeoutMs: number;
  readonly #logger: Logger;
  readonly #members = new Set<Member>();
  /** Every process not yet exited (members and killed ones), with its exit. */
  readonly #processes = new Map<ChildProcess, Promise<void>>();
  readonly #queue: Job[] = [];
  #nextId = 1;
  #timeouts = 0;
  #refused = 0;
  #inProcess = 0;
  #handedOff = 0;
  #closed = false;

  constructor(o: QueryPoolOptions) {
    for (const k of Object.keys(o)) {
      if (!KNOWN_OPTIONS.has(k)) throw new EdgeliteError('BAD_REQUEST', `QueryPool: unknown option "${k}" (known: ${[...KNOWN_OPTIONS].join(', ')})`);
    }
    this.timeoutMs = checkInt(o.timeoutMs, 'timeoutMs', 1);
    this.size = checkInt(o.size ?? DEFAULT_QUERY_POOL_SIZE, 'size', 1);
    this.maxQueue = checkInt(o.maxQueue ?? DEFAULT_QUERY_QUEUE, 'maxQueue', 0);
    this.#busyTimeoutMs = checkInt(o.busyTimeoutMs ?? DEFAULT_QUERY_BUSY_TIMEOUT_MS, 'busyTimeoutMs', 0);
    const inProcess = o.inProcessReads ?? 'auto';
    if (inProcess !== 'auto' && inProcess !== 'off') {
      throw new EdgeliteError('BAD_REQUEST', `QueryPool: "inProcessReads" must be 'auto' or 'off', got ${String(inProcess)}`);
    }
    const slice = checkInt(o.sliceMs ?? DEFAULT_SLICE_MS, 'sliceMs', 1);
    this.sliceMs = inProcess === 'auto' && hasDeadlineHook() ? slice : 0;
    this.#logger = o.logger ?? silentLogger;
  }

  /**
   * run executes read-only statements on the database file at `path` and resolves with the same
   * results and errors as runRead on an in-process read-only connection, or rejects with QUERY_TIMEOUT
   * once it has run for `timeoutMs`, BUSY when it cannot get a process (queue full, or none free within
   * `timeoutMs`), UNAVAILABLE when its process dies or the pool is closed. Given `local` (the caller's
   * read-only connection to that file) and a slice (`sliceMs`), it first runs them on that connection
   * for up to the slice, and sends only what is still running then to a process, with the rest of the
   * limit (query-limit-reads.ts).
   */
  run(path: string, statements: Statement[], timeoutMs = this.timeoutMs, local?: () => Database.Database): Promise<QueryResult[]> {
    if (!local || this.sliceMs === 0 || this.#closed) return this.#submit({ path, statements }, timeoutMs, timeoutMs) as Promise<QueryResult[]>;
    // Not an async function: a read that ends in its slice (nearly all) costs one settled promise.
    try {
      checkInt(timeoutMs, 'timeoutMs', 1);
      const t0 = performance.now();
      const slice = Math.min(this.sliceMs, timeoutMs);
      const { results, rest } = readInSlice(local(), statements, slice);
      if (rest.length === 0) {
        this.#inProcess++;
        return Promise.resolve(results);
      }
      const left = Math.ceil(timeoutMs - (performance.now() - t0));
      if (slice >= timeoutMs || left < 1) {
        this.#timeouts++;
        this.#logger({ msg: 'query timed out in-process', timeoutMs, sql: rest[0]!.sql.slice(0, 200) });
        throw queryTimeout(timeoutMs, false);
      }
      this.#handedOff++;
      return (this.#submit({ path, statements: rest }, left, timeoutMs) as Promise<QueryResult[]>).then((more) => [...results, ...more]);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /**
   * writeBatch runs a batch of writes (each a list of statements) as one transaction on the database
   * file at `path`, each write in its own savepoint (ipc-codec.ts), on a writer connection set up as
   * the primary's with `synchronous` = `sync`, and resolves once it is committed with one outcome per
   * write: its results (as runWrite's), its error (that write alone was rolled back), or `alone` (it
   * must be sent again in a batch of its own). Rejects as run does, for the whole batch; QUERY_TIMEOUT
   * means nothing of it was committed, and its `details.completed` says how many writes had run. The
   * caller makes sure one batch per file is in flight (another would wait on SQLite's lock in its
   * process). `limitMs` is the limit QUERY_TIMEOUT reports (the whole one, when a slice ran in-process).
   */
  writeBatch(path: string, batch: Statement[][], sync: WriteSync, timeoutMs = this.timeoutMs, limitMs = timeoutMs): Promise<BatchOutcome[]> {
    return this.#submit({ path, batch, sync }, timeoutMs, limitMs) as Promise<BatchOutcome[]>;
  }

  #submit(request: Job['request'], timeoutMs: number, limitMs: number): Promise<QueryResult[] | BatchOutcome[]> {
    if (this.#closed) return Promise.reject(new EdgeliteError('UNAVAILABLE', 'query pool is closed'));
    checkInt(timeoutMs, 'timeoutMs', 1);
    if (this.#queue.length >= this.maxQueue && !this.#idleMember()) {
      this.#refused++;
      return Promise.reject(new EdgeliteError('BUSY', `too many queries waiting (${this.#queue.length}); try again later`, {
        details: { queued: this.#queue.length, processes: this.size },
      }));
    }
    return new Promise<QueryResult[] | BatchOutcome[]>((resolve, reject) => {
      const job: Job = { id: this.#nextId++, request, completed: 0, timeoutMs, limitMs, deadline: 0, member: null, resolve, reject, timer: undefined! };
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
      inProcess: this.#inProcess,
      handedOff: this.#handedOff,
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
    const err = queryTimeout(job.limitMs, write, job.completed);
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

