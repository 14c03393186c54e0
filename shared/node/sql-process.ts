/**
 * sql-process is the entry module of one child process of the QueryPool (query-pool.ts): it runs the
 * time-limited API reads of both servers and commits the primary's API writes (savepoints, two steps:
 * ipc-codec.ts). Named for that, a process that runs SQL, not a "worker": it is neither a Worker nor a
 * worker thread. It stays one spawnable module in shared/node/ because the replica spawns it too (reads)
 * and shared/ never imports primary/. A process, not a worker thread, because SQLite cannot be stopped
 * from a thread: better-sqlite3 exposes neither sqlite3_interrupt nor a progress handler, and
 * `worker.terminate()` only takes effect when control returns to JS, never inside `sqlite3_step`
 * (measured: a worker thread in an endless `count(*)` kept burning CPU after terminate). SIGKILL always
 * works, whatever a statement does. Our build has a deadline hook now (query-limit.ts), so reads start
 * on the server's own thread and only those that outlive their slice come here
 * (docs/ARCHITECTURE.md#query-time-limits); the kill stays the limit of last resort.
 *
 * The process runs one request at a time, through the same code as the in-process paths (runRead and
 * runWrite, and sqliteError for every error), so results and errors are the same. Reads go to read-only
 * connections (`query_only`), writes to writer connections opened as the primary opens its own
 * (sqlite-writer.ts), both opened lazily, one per database file. Checks on the SQL text (ATTACH, PRAGMA
 * settings) stay with the caller, in the parent, before a request is sent. The wire: ipc-codec.ts.
 */
import Database from 'better-sqlite3';
import { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { EdgeliteError, toEdgeliteError } from '../errors.ts';
import { clearStatementCache, runRead, sqliteError } from '../sql.ts';
import { assertNoTransaction } from '../statement-policy.ts';
import { CHANNEL_FD, encodeIpcMessage, IpcMessageDecoder, type IpcReply, type IpcRequest, type SavepointResult, type WriteRequest } from './ipc-codec.ts';
import { openWriter } from './sqlite-writer.ts';
import { runBatch } from './write-batch.ts';

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

/** SqlServer answers requests on its own connections; one per query process. */
export class SqlServer {
  readonly #busyTimeoutMs: number;
  /** Connections by `r:path` (read-only) or `w:sync:path` (writer), least recently used first. */
  readonly #conns = new Map<string, Database.Database>();
  /** The batch waiting for its commit (ipc-codec.ts), if any. */
  #prepared: { id: number; conn: Database.Database; outcomes: SavepointResult[] } | null = null;

  constructor(busyTimeoutMs: number) {
    this.#busyTimeoutMs = busyTimeoutMs;
  }

  /**
   * handle runs one request to its reply; it never throws (errors become error replies). `progress`
   * receives the interim replies of a batch (ipc-codec.ts).
   */
  handle(req: IpcRequest, progress: (reply: IpcReply) => void = () => {}): IpcReply | null {
    if ('forget' in req) {
      this.#close(`r:${req.forget}`);
      for (const sync of ['normal', 'full']) this.#close(`w:${sync}:${req.forget}`);
      return null;
    }
    if ('commit' in req) return this.#commit(req.id);
    this.#abandon();
    try {
      if ('batch' in req) return this.#write(req, progress);
      const conn = this.#connection(`r:${req.path}`, () => {
        const c = new Database(req.path, { readonly: true, fileMustExist: true });
        c.pragma(`busy_timeout = ${this.#busyTimeoutMs}`);
        c.pragma('query_only = ON');
        return c;
      });
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
    this.#abandon();
    for (const key of [...this.#conns.keys()]) this.#close(key);
  }

  /**
   * #write runs a batch of writes in one write transaction, each in its own savepoint, and leaves the
   * transaction open for the commit, so that the parent decides, at the time limit, whether it happens.
   * A batch of one that SQLite will not run inside a transaction (VACUUM) runs on its own, at once.
   */
  #write(req: WriteRequest, progress: (reply: IpcReply) => void): IpcReply {
    const conn = this.#connection(`w:${req.sync}:${req.path}`, () =>
      openWriter(req.path, { synchronous: req.sync, busyTimeoutMs: this.#busyTimeoutMs }, { fileMustExist: true }));
    const run = runBatch(conn, req.batch, (i) => {
      if (req.batch.length > 1) progress({ id: req.id, done: i });
    });
    if (!run.open) return { id: req.id, outcomes: run.outcomes };
    this.#prepared = { id: req.id, conn, outcomes: run.outcomes };
    return { id: req.id, prepared: true };
  }

  #commit(id: number): IpcReply {
    const prepared = this.#prepared;
    this.#prepared = null;
    if (!prepared || prepared.id !== id) {
      this.#abandon();
      return { id, error: new EdgeliteError('INTERNAL', `query process ${process.pid}: commit for request ${id}, which is not prepared`).toBody().error };
    }
    try {
      prepared.conn.exec('COMMIT');
      return { id, outcomes: prepared.outcomes };
    } catch (err) {
      if (prepared.conn.inTransaction) prepared.conn.exec('ROLLBACK');
      return { id, error: sqliteError(err).toBody().error };
    }
  }

  /** #abandon rolls back a prepared write whose commit never came (the parent moved on). */
  #abandon(): void {
    const prepared = this.#prepared;
    this.#prepared = null;
    if (prepared?.conn.inTransaction) prepared.conn.exec('ROLLBACK');
  }

  #connection(key: string, open: () => Database.Database): Database.Database {
    const hit = this.#conns.get(key);
    if (hit) {
      this.#conns.delete(key);
      this.#conns.set(key, hit);
      return hit;
    }
    const conn = open();
    this.#conns.set(key, conn);
    if (this.#conns.size > MAX_OPEN_FILES) this.#close(this.#conns.keys().next().value!);
    return conn;
  }

  #close(key: string): void {
    const conn = this.#conns.get(key);
    if (!conn) return;
    if (this.#prepared?.conn === conn) this.#abandon();
    this.#conns.delete(key);
    clearStatementCache(conn);
    conn.close();
  }
}

/** serve runs the process: read messages from fd 3, answer each in order, exit when the parent goes. */
function serve(busyTimeoutMs: number): void {
  new Worker(WATCHDOG, { eval: true, execArgv: [], workerData: { ppid: process.ppid, everyMs: PARENT_CHECK_MS } }).unref();
  const server = new SqlServer(busyTimeoutMs);
  const channel = new Socket({ fd: CHANNEL_FD, readable: true, writable: true });
  const decoder = new IpcMessageDecoder();
  channel.on('data', (chunk: Buffer) => {
    for (const req of decoder.push(chunk)) {
      const reply = server.handle(req as IpcRequest, (interim) => channel.write(encodeIpcMessage(interim)));
      if (reply) channel.write(encodeIpcMessage(reply));
    }
  });
  // The parent closed the channel (pool closed, or parent died): nothing more will come. Die without
  // closing any connection: if the parent is gone, a writer connection closing last would checkpoint
  // frames the primary never captured into the database and delete the WAL (a new generation on its
  // restart, measured in test/e2e/primary-kill.test.ts); and process.exit would close them too (the
  // driver's cleanup hook). SIGKILL leaves the files as they are, like the parent's own kill -9.
  channel.on('close', () => process.kill(process.pid, 'SIGKILL'));
  channel.on('error', (err) => {
    process.stderr.write(`edgelite query process ${process.pid}: channel error: ${toEdgeliteError(err).message}\n`);
  });
  channel.write(encodeIpcMessage({ id: 0, ready: process.pid }));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const busyTimeoutMs = Number(process.argv[2]);
  if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
    process.stderr.write(`edgelite query process: bad busy timeout argument ${process.argv[2]}\n`);
    process.exit(2);
  }
  serve(busyTimeoutMs);
}
