/**
 * query-worker is the body of one query process of the QueryPool (query-pool.ts) and the wire both
 * sides speak. A process, not a worker thread, because SQLite cannot be stopped from JS here: the build
 * omits the progress callback, better-sqlite3 exposes no sqlite3_interrupt, and `worker.terminate()`
 * only takes effect when control returns to JS, never inside `sqlite3_step` (measured: a worker in an
 * endless `count(*)` kept burning CPU after terminate). SIGKILL always works.
 *
 * The process runs one request at a time, on read-only connections it opens lazily (one per database
 * file, `query_only`, busy timeout as the replica's), through the same code as the in-process path
 * (runRead, and sqliteError for every error), so results and errors are the same. Checks on the SQL text
 * (ATTACH, PRAGMA settings) stay with the caller, in the parent, before a request is sent.
 *
 * Wire: over the child's fd 3, frames of `u32le length ‖ msgpack body`.
 *   parent → child  {id, path, statements} (a query) | {id: 0, forget: path} (close that file)
 *   child → parent  {id: 0, ready: pid} once, then {id, results} | {id, error: {code, message, details}}
 */
import Database from 'better-sqlite3';
import { Packr, Unpackr } from 'msgpackr';
import { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { toEdgeliteError, type ErrorBody } from '../errors.ts';
import type { QueryResult, Statement } from '../protocol.ts';
import { clearStatementCache, runRead, sqliteError } from '../sql.ts';
import { assertNoTransaction } from '../statement-policy.ts';

export const FRAME_HEADER_BYTES = 4;
/** The child's end of the channel (stdio index in the parent's `spawn`). */
export const CHANNEL_FD = 3;
/** MAX_OPEN_FILES bounds the connections one process keeps (database-per-tenant replicas have many). */
export const MAX_OPEN_FILES = 64;
/** PARENT_CHECK_MS: how often the watchdog thread checks that the parent process is still there. */
export const PARENT_CHECK_MS = 500;

/**
 * WATCHDOG runs on its own thread so that it runs while the main thread is inside SQLite: if the parent
 * dies (even by SIGKILL) during a runaway query, the process is reparented and kills itself rather than
 * burn a core forever. Plain JS, and no tsx (`execArgv: []`), to start in a few milliseconds.
 */
const WATCHDOG = `
const { workerData } = require('node:worker_threads');
setInterval(() => {
  if (process.ppid !== workerData.ppid) process.kill(process.pid, 'SIGKILL');
}, workerData.everyMs);
`;

export interface QueryRequest {
  id: number;
  path: string;
  statements: Statement[];
}

export interface ForgetRequest {
  id: 0;
  forget: string;
}

export type WorkerRequest = QueryRequest | ForgetRequest;

export type WorkerReply =
  | { id: 0; ready: number }
  | { id: number; results: QueryResult[] }
  | { id: number; error: ErrorBody['error'] };

// Records off: every message is a plain object, and both ends must agree without shared state.
const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });

/** encodeFrame packs one message with its length prefix. */
export function encodeFrame(message: WorkerRequest | WorkerReply): Buffer {
  const body = packr.pack(message);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length);
  frame.writeUInt32LE(body.length, 0);
  body.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

/** FrameDecoder reassembles frames from stream chunks (a pipe splits and merges writes freely). */
export class FrameDecoder {
  #pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): unknown[] {
    let buf = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const out: unknown[] = [];
    while (buf.length >= FRAME_HEADER_BYTES) {
      const size = buf.readUInt32LE(0);
      if (buf.length < FRAME_HEADER_BYTES + size) break;
      out.push(unpackr.unpack(buf.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + size)));
      buf = buf.subarray(FRAME_HEADER_BYTES + size);
    }
    // Copy the leftover, so a retained tail does not pin the whole chunk.
    this.#pending = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
    return out;
  }
}

/** QueryServer answers requests on its own read-only connections; one per query process. */
export class QueryServer {
  readonly #busyTimeoutMs: number;
  readonly #conns = new Map<string, Database.Database>();

  constructor(busyTimeoutMs: number) {
    this.#busyTimeoutMs = busyTimeoutMs;
  }

  /** handle runs one request to its reply; it never throws (errors become error replies). */
  handle(req: WorkerRequest): WorkerReply | null {
    if ('forget' in req) {
      this.#close(req.forget);
      return null;
    }
    try {
      const conn = this.#connection(req.path);
      const results = req.statements.map((s) => {
        const result = runRead(conn, s);
        // The policy refuses transaction control before a request is sent; this is the backstop, since
        // a read transaction left open here would pin the WAL for as long as the process lives.
        assertNoTransaction(conn);
        return result;
      });
      return { id: req.id, results };
    } catch (err) {
      return { id: req.id, error: sqliteError(err).toBody().error };
    }
  }

  close(): void {
    for (const path of [...this.#conns.keys()]) this.#close(path);
  }

  #connection(path: string): Database.Database {
    const hit = this.#conns.get(path);
    if (hit) {
      this.#conns.delete(path);
      this.#conns.set(path, hit);
      return hit;
    }
    const conn = new Database(path, { readonly: true, fileMustExist: true });
    conn.pragma(`busy_timeout = ${this.#busyTimeoutMs}`);
    conn.pragma('query_only = ON');
    this.#conns.set(path, conn);
    if (this.#conns.size > MAX_OPEN_FILES) this.#close(this.#conns.keys().next().value!);
    return conn;
  }

  #close(path: string): void {
    const conn = this.#conns.get(path);
    if (!conn) return;
    this.#conns.delete(path);
    clearStatementCache(conn);
    conn.close();
  }
}

/** serve runs the process: read frames from fd 3, answer each in order, exit when the parent goes. */
function serve(busyTimeoutMs: number): void {
  new Worker(WATCHDOG, { eval: true, execArgv: [], workerData: { ppid: process.ppid, everyMs: PARENT_CHECK_MS } }).unref();
  const server = new QueryServer(busyTimeoutMs);
  const channel = new Socket({ fd: CHANNEL_FD, readable: true, writable: true });
  const decoder = new FrameDecoder();
  channel.on('data', (chunk: Buffer) => {
    for (const req of decoder.push(chunk)) {
      const reply = server.handle(req as WorkerRequest);
      if (reply) channel.write(encodeFrame(reply));
    }
  });
  // The parent closed the channel (pool closed, or parent died): nothing more will come.
  channel.on('close', () => {
    server.close();
    process.exit(0);
  });
  channel.on('error', (err) => {
    process.stderr.write(`edgelite query process ${process.pid}: channel error: ${toEdgeliteError(err).message}\n`);
  });
  channel.write(encodeFrame({ id: 0, ready: process.pid }));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const busyTimeoutMs = Number(process.argv[2]);
  if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
    process.stderr.write(`edgelite query process: bad busy timeout argument ${process.argv[2]}\n`);
    process.exit(2);
  }
  serve(busyTimeoutMs);
}
