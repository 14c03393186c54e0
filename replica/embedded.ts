/**
 * openReplica: a replica inside the application's own process. Reads run on local read-only SQLite
 * connections (microseconds, no network); a background follower keeps the files current; writes are
 * forwarded to the primary and answered once applied locally, with a read-your-writes token.
 *
 * ```ts
 * import { openReplica } from 'edgelite';
 * const replica = await openReplica({ primary: 'http://127.0.0.1:7400', dir: './replica-data', databases: ['app'] });
 * await replica.ready('app');
 * const { token } = await replica.exec('app', 'INSERT INTO kv VALUES (?, ?)', ['a', '1']);
 * const rows = await replica.query('app', 'SELECT v FROM kv WHERE k = ?', ['a'], { token });
 * const stmt = replica.prepare('app', 'SELECT v FROM kv WHERE k = ?'); // better-sqlite3, read-only
 * await replica.close();
 * ```
 */
import type Database from 'better-sqlite3';
import { EdgeliteError } from '../shared/errors.ts';
import { silentLogger, type Logger } from '../shared/log.ts';
import type { QueryResult, SqlParams, Statement } from '../shared/protocol.ts';
import { stringifyExactJson } from '../shared/exact-json.ts';
import { parseStatementsBody } from '../shared/protocol.ts';
import { validateDatabaseName, type Position } from '../shared/types.ts';
import { DEFAULT_BUSY_TIMEOUT_MS, DEFAULT_READ_WAIT_MS, DEFAULT_WRITE_WAIT_MS } from './config.ts';
import { parseConsistency, satisfy } from '../shared/consistency.ts';
import { DEFAULT_BACKOFF_MAX_MS, DEFAULT_BACKOFF_MIN_MS, DEFAULT_HEARTBEAT_TIMEOUT_MS, Follower } from './follower.ts';
import { forwardExec } from './forward.ts';
import type { PrimaryClient } from '../shared/primary-client.ts';
import { nodePrimaryClient } from './primary-fetch.ts';
import { QueryPool } from '../shared/node/query-pool.ts';
import { ReplicaStore } from './store.ts';

export interface OpenReplicaOptions {
  /** The primary's base URL. */
  primary: string;
  /** Directory for the local database files (one `<name>.db` each). */
  dir: string;
  /** Databases to follow: names, or '*' for all of the primary's. Default '*'. */
  databases?: string[] | '*';
  /** Bearer token for the primary (replicate + write rights). */
  authToken?: string;
  readWaitMs?: number;
  writeWaitMs?: number;
  /**
   * Time limit (ms) of query()/queryMany(), which then run in child processes that can be killed
   * (~50-100 µs more per read). Default 0: in-process, unlimited (the SQL is the application's own).
   */
  queryTimeoutMs?: number;
  logger?: Logger;
}

const KNOWN_OPTIONS = new Set(['primary', 'dir', 'databases', 'authToken', 'readWaitMs', 'writeWaitMs', 'queryTimeoutMs', 'logger']);

export interface ReadOptions {
  /** A token from a write (this process's or another's): wait until it is applied here. */
  token?: string;
  consistency?: 'eventual' | 'read-your-writes' | 'strong' | `bounded:${number}`;
}

export class EmbeddedReplica {
  readonly #store: ReplicaStore;
  readonly #follower: Follower;
  readonly #primary: PrimaryClient;
  readonly #readWaitMs: number;
  readonly #writeWaitMs: number;
  readonly #queryPool: QueryPool | null;

  constructor(o: OpenReplicaOptions) {
    for (const k of Object.keys(o)) {
      if (!KNOWN_OPTIONS.has(k)) throw new EdgeliteError('BAD_REQUEST', `openReplica: unknown option "${k}" (known: ${[...KNOWN_OPTIONS].join(', ')})`);
    }
    if (typeof o.primary !== 'string' || typeof o.dir !== 'string') {
      throw new EdgeliteError('BAD_REQUEST', 'openReplica: "primary" (URL) and "dir" (directory) are required');
    }
    const databases = o.databases ?? '*';
    if (databases !== '*') databases.forEach((n) => validateDatabaseName(n));
    const logger = o.logger ?? silentLogger;
    this.#readWaitMs = o.readWaitMs ?? DEFAULT_READ_WAIT_MS;
    this.#writeWaitMs = o.writeWaitMs ?? DEFAULT_WRITE_WAIT_MS;
    this.#queryPool = o.queryTimeoutMs ? new QueryPool({ timeoutMs: o.queryTimeoutMs, busyTimeoutMs: DEFAULT_BUSY_TIMEOUT_MS, logger }) : null;
    this.#store = new ReplicaStore(o.dir, { busyTimeoutMs: DEFAULT_BUSY_TIMEOUT_MS, logger, queryPool: this.#queryPool });
    if (databases !== '*') for (const n of databases) this.#store.ensure(n);
    this.#primary = nodePrimaryClient({ url: o.primary, token: o.authToken });
    this.#follower = new Follower({
      client: this.#primary,
      store: this.#store,
      databases,
      heartbeatTimeoutMs: DEFAULT_HEARTBEAT_TIMEOUT_MS,
      backoffMinMs: DEFAULT_BACKOFF_MIN_MS,
      backoffMaxMs: DEFAULT_BACKOFF_MAX_MS,
      logger,
    });
    this.#follower.start();
  }

  /** ready resolves once `db` is bootstrapped and has caught up with the primary once. */
  async ready(db: string, timeoutMs = 30_000): Promise<void> {
    const isReady = (): boolean => {
      const d = this.#store.get(db);
      return !!(d?.ready && d.position);
    };
    if (await this.#store.until(isReady, timeoutMs)) return;
    throw new EdgeliteError('REPLICA_BEHIND', `database ${db} not ready after ${timeoutMs} ms (${this.#follower.lastError ?? this.#follower.state})`);
  }

  position(db: string): Position | null {
    return this.#store.get(db)?.position ?? null;
  }

  /** query reads locally, at the consistency asked for (eventual by default; a token implies read-your-writes). */
  async query(db: string, sql: string, params: SqlParams = [], opts: ReadOptions = {}): Promise<QueryResult> {
    return (await this.queryMany(db, [{ sql, params }], opts))[0]!;
  }

  async queryMany(db: string, statements: Statement[], opts: ReadOptions = {}): Promise<QueryResult[]> {
    const local = this.#store.require(db);
    await satisfy(local, parseConsistency(db, opts.consistency, opts.token), this.#readWaitMs, () => this.#primary.position(db));
    return local.query(statements);
  }

  /** prepare gives a better-sqlite3 statement on the local read-only connection: the fastest read path. */
  prepare(db: string, sql: string): Database.Statement {
    return this.#store.require(db).prepare(sql);
  }

  /** exec forwards a write (one statement) to the primary and waits until it is applied here. */
  async exec(db: string, sql: string, params: SqlParams = []): Promise<{ results: unknown[]; token: string | null; applied: boolean }> {
    return this.batch(db, [{ sql, params }]);
  }

  /** batch forwards statements run as one transaction on the primary. */
  async batch(db: string, statements: Statement[]): Promise<{ results: unknown[]; token: string | null; applied: boolean }> {
    validateDatabaseName(db);
    const parsed = parseStatementsBody({ statements }).map((s) => ({ sql: s.sql, params: s.params }));
    const body = stringifyExactJson({ statements: parsed });
    const w = await forwardExec(this.#primary, this.#store, db, body, this.#writeWaitMs);
    return { results: (w.body as { results: unknown[] }).results, token: w.token, applied: w.applied };
  }

  async close(): Promise<void> {
    await this.#follower.stop();
    await this.#primary.close();
    await this.#queryPool?.close();
    this.#store.close();
  }
}

export async function openReplica(o: OpenReplicaOptions): Promise<EmbeddedReplica> {
  return new EmbeddedReplica(o);
}
