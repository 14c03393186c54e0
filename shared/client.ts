/**
 * `edgelite/client`: the fetch-based client for edgelite replicas (docs/ARCHITECTURE.md#tokens-and-consistency). Runs in Node,
 * browsers and Workers (Web APIs only).
 *
 * - Reads go to the nearest healthy replica, measured by periodic `GET /v1/health` probes and by real
 *   requests; when a replica fails (network error, 5xx, or too far behind), the read goes to the next.
 * - Writes go to a replica, which forwards them to the primary and answers once it has applied them
 *   (or straight to the primary with `writesTo: 'primary'`). A write is resent elsewhere only when the
 *   connection was refused; one that may have reached a server is never resent (UNAVAILABLE with
 *   `details.outcome: 'unknown'`). `details.outcome` is the one vocabulary (AppliedOutcome in errors.ts)
 *   on every path, a replica's forwarding error included: `not-applied` (safe to send again) or
 *   `unknown` (it may have committed).
 * - With `lease: 'etcd://host:port/prefix'` (shared/client-lease.ts, README.md#high-availability),
 *   writes go to the failover lease's holder, found in its record; a write the old holder refused as
 *   not applied is sent once to the next holder, never one whose outcome is unknown.
 * - A Session (Cloudflare D1's `withSession` model) keeps the latest position it has seen of its
 *   database, from every write's token and every read's position, and sends it with each read: its
 *   reads never go backwards and always see its writes, on whichever replica serves them, across
 *   failover. `session.token` is a bookmark: hand it to another session, process or browser.
 * - Errors are EdgeliteError with the server's code (SQL_ERROR, REPLICA_BEHIND, ...). Blobs are
 *   Uint8Array both ways.
 *
 * @example
 * ```ts
 * import { connect } from 'edgelite/client';
 *
 * const client = connect({ replicas: ['http://127.0.0.1:7401', 'http://127.0.0.1:7402'], authToken: process.env.EDGELITE_TOKEN });
 * const s = client.session('app');
 * await s.exec('INSERT INTO users (name, avatar) VALUES (?, ?)', ['ada', new Uint8Array([1, 2, 3])]);
 * const { rows, txid } = await s.query('SELECT name, avatar FROM users'); // sees the insert, on any replica
 * const bookmark = s.token;                                               // e.g. in a cookie
 * // elsewhere: client.session('app', { token: bookmark }) reads at least as new as this session
 * client.close();
 * ```
 */
import { EdgeliteError } from './errors.ts';
import { decodeRows, positionOf, statementsBody, type Params, type StatementInput } from './client-http.ts';
import type { ReplicaStatus } from './client-replicas.ts';
import { Transport, type Answer, type ConnectOptions } from './client-transport.ts';
import type { SqlValue } from './protocol.ts';
import { compareTokens, decodeToken, encodeToken, TOKEN_HEADER, TokenSet, type Token } from './token.ts';
import { validateDatabaseName } from './types.ts';

export type { ConnectOptions } from './client-transport.ts';
export { DEFAULT_PROBE_INTERVAL_MS, DEFAULT_REQUEST_TIMEOUT_MS } from './client-transport.ts';
export type { ReplicaStatus } from './client-replicas.ts';
export type { ParamValue, Params, StatementInput } from './client-http.ts';
export type { SqlValue } from './protocol.ts';

/**
 * Consistency of a session's reads:
 * - `read-your-writes` (default): each read waits, on the replica serving it, for the session's
 *   position: monotonic reads, and every write of the session visible;
 * - `eventual`: whatever the replica has (fastest; may go backwards across replicas);
 * - `strong`: the primary's latest position at the time of the read;
 * - `{ boundedMs }`: at most that stale, and never behind the session's position.
 */
export type Consistency = 'eventual' | 'read-your-writes' | 'strong' | { boundedMs: number };

export interface SessionOptions {
  consistency?: Consistency;
  /** A bookmark (`session.token`, a write's token, or a comma-separated token set) to start from. */
  token?: string | null;
}

export interface Rows {
  columns: string[];
  rows: SqlValue[][];
}

/** ReadInfo says who served a read and at which position. */
export interface ReadInfo {
  /** `Edgelite-Served-By`: 'replica', or 'primary' when a replica sent the read on. */
  servedBy: string;
  /** Base URL of the server the client talked to. */
  url: string;
  /** The txid the read saw; null when the server did not say. */
  txid: number | null;
}

export type QueryResult = Rows & ReadInfo;
export type QueryManyResult = { results: Rows[] } & ReadInfo;

/** StatementOutcome is one statement of a write: rows count, and rows for RETURNING. */
export interface StatementOutcome extends Rows {
  changes: number;
  /** A bigint beyond 2^53 (the server sends such a rowid as a string, README.md#http-api). */
  lastInsertRowid: number | bigint;
}

export interface WriteInfo {
  /** The write's position, as a bookmark. */
  token: string;
  url: string;
}

export type ExecResult = StatementOutcome & WriteInfo;
export type BatchResult = { results: StatementOutcome[] } & WriteInfo;

/** connect builds a Client; options are validated here (BAD_REQUEST naming the option). */
export function connect(options: ConnectOptions): Client {
  return new Client(new Transport(options));
}

export class Client {
  readonly #t: Transport;

  /** Use connect(). */
  constructor(transport: Transport) {
    this.#t = transport;
  }

  /** session starts a session on `db`: see Session. */
  session(db: string, options: SessionOptions = {}): Session {
    return new Session(this.#t, db, options);
  }

  /** query runs a read at eventual consistency, outside any session. */
  query(db: string, sql: string, params?: Params): Promise<QueryResult> {
    return this.session(db, { consistency: 'eventual' }).query(sql, params);
  }

  /** exec runs a write outside any session; its token is in the result. */
  exec(db: string, sql: string, params?: Params): Promise<ExecResult> {
    return this.session(db, { consistency: 'eventual' }).exec(sql, params);
  }

  /**
   * createDatabase creates `db` on the primary (through a replica unless writesTo is 'primary');
   * `created` is false when it existed. Safe to retry. The token names the database's position now.
   */
  async createDatabase(db: string): Promise<{ created: boolean; token: string | null }> {
    const a = await this.#t.write('PUT', `/v1/db/${encodeURIComponent(validateDatabaseName(db))}`, undefined, true);
    const b = (a.body ?? {}) as { created?: unknown; databaseId?: unknown; generation?: unknown; txid?: unknown };
    const { databaseId, generation, txid } = b;
    const token =
      typeof databaseId === 'number' && typeof generation === 'number' && typeof txid === 'number'
        ? encodeToken({ db, databaseId, generation, txid })
        : null;
    return { created: b.created === true || a.status === 201, token };
  }

  /** replicas is what the chooser sees, in configuration order. */
  replicas(): ReplicaStatus[] {
    return this.#t.replicas.status();
  }

  /** probe measures every replica now (the periodic probes do the same); resolves with the result. */
  probe(): Promise<ReplicaStatus[]> {
    return this.#t.replicas.probe();
  }

  /** close stops the probes; later requests fail with UNAVAILABLE. */
  close(): void {
    this.#t.close();
  }
}

/**
 * Session is a sequence of reads and writes on one database that sees its own writes and never sees
 * time go backwards (sequential consistency per session, as D1's `withSession`). Concurrent calls on
 * one session are allowed; each read is at least as new as everything the session had seen when it
 * was sent.
 */
export class Session {
  readonly db: string;
  readonly consistency: Consistency;
  readonly #t: Transport;
  #token: Token | null;

  /** Use client.session(). */
  constructor(transport: Transport, db: string, options: SessionOptions = {}) {
    this.db = validateDatabaseName(db);
    this.consistency = checkConsistency(options.consistency ?? 'read-your-writes');
    this.#t = transport;
    this.#token = initialToken(this.db, options.token);
  }

  /** token is the latest position this session has seen (its bookmark), or null before any. */
  get token(): string | null {
    return this.#token === null ? null : encodeToken(this.#token);
  }

  async query(sql: string, params?: Params): Promise<QueryResult> {
    const { results, ...info } = await this.queryMany([params === undefined ? { sql } : { sql, params }]);
    return { ...(results[0] ?? { columns: [], rows: [] }), ...info };
  }

  /** queryMany runs read-only statements together, at one position. */
  async queryMany(statements: StatementInput[]): Promise<QueryManyResult> {
    const floor = this.#token;
    const a = await this.#t.read(this.#path('query'), statementsBody(statements, this.#t.config.encoding), this.#readHeaders(floor), (x) => this.#refuse(x, floor));
    const seen = positionOf(this.db, a.headers);
    if (seen) this.#observe(seen);
    const results = resultList(a).map((r) => ({ columns: columnsOf(r), rows: decodeRows(r.rows) }));
    return { results, servedBy: a.headers.get('edgelite-served-by') ?? 'unknown', url: a.url, txid: seen?.txid ?? null };
  }

  async exec(sql: string, params?: Params): Promise<ExecResult> {
    const { results, ...info } = await this.batch([params === undefined ? { sql } : { sql, params }]);
    return { ...results[0]!, ...info };
  }

  /** batch runs write statements as one transaction: all applied, or none. */
  async batch(statements: StatementInput[]): Promise<BatchResult> {
    const a = await this.#t.write('POST', this.#path('exec'), statementsBody(statements, this.#t.config.encoding)).catch((err: unknown) => {
      // 504 BACKUP_PENDING (`--backup-ack`): the write is committed, only not in the bucket yet. The
      // session takes its token, so its next reads see the write; the error still says what happened.
      const token = err instanceof EdgeliteError && err.code === 'BACKUP_PENDING' ? err.details?.token : undefined;
      if (typeof token === 'string') this.#observe(decodeToken(token));
      throw err;
    });
    const text = a.headers.get(TOKEN_HEADER) ?? (a.body as { token?: unknown } | null)?.token;
    if (typeof text !== 'string') throw new EdgeliteError('INTERNAL', `${a.url} answered a write without a token`);
    const token = decodeToken(text);
    this.#observe(token);
    const results = resultList(a).map((r) => ({
      columns: columnsOf(r),
      rows: decodeRows(r.rows),
      changes: typeof r.changes === 'number' ? r.changes : 0,
      lastInsertRowid: rowidOf(r.lastInsertRowid),
    }));
    return { results, token: text, url: a.url };
  }

  #path(op: 'query' | 'exec'): string {
    return `/v1/db/${encodeURIComponent(this.db)}/${op}`;
  }

  #readHeaders(floor: Token | null): Record<string, string> {
    const c = this.consistency;
    if (c === 'eventual') return {};
    const h: Record<string, string> = floor === null ? {} : { [TOKEN_HEADER]: encodeToken(floor) };
    if (c === 'strong') h['Edgelite-Consistency'] = 'strong';
    else if (typeof c === 'object') h['Edgelite-Consistency'] = `bounded:${c.boundedMs}`;
    return h;
  }

  /**
   * #refuse rejects an answer from a position behind what the session had seen when it sent the read.
   * Replicas wait for the token at read-your-writes; this also covers levels where they do not (a
   * bounded read is served on lag alone) and a server that got it wrong.
   */
  #refuse(a: Answer, floor: Token | null): EdgeliteError | null {
    if (this.consistency === 'eventual' || floor === null) return null;
    const seen = positionOf(this.db, a.headers);
    if (seen === null || seen.databaseId !== floor.databaseId || compareTokens(seen, floor) >= 0) return null;
    return new EdgeliteError('REPLICA_BEHIND', `${a.url} answered from txid ${seen.txid}, behind this session's txid ${floor.txid}`, {
      details: { db: this.db, wantTxid: floor.txid, haveTxid: seen.txid, url: a.url },
    });
  }

  /** #observe keeps the later position; one of another incarnation of the database replaces it. */
  #observe(t: Token): void {
    const cur = this.#token;
    if (cur === null || cur.databaseId !== t.databaseId || compareTokens(t, cur) > 0) this.#token = t;
  }
}

function checkConsistency(c: unknown): Consistency {
  if (c === 'eventual' || c === 'read-your-writes' || c === 'strong') return c;
  const ms = (c as { boundedMs?: unknown } | null)?.boundedMs;
  if (typeof ms === 'number' && Number.isSafeInteger(ms) && ms >= 0) return { boundedMs: ms };
  throw new EdgeliteError('BAD_REQUEST', `consistency must be "eventual", "read-your-writes", "strong" or { boundedMs: <integer ≥ 0> }, got ${JSON.stringify(c)}`);
}

function initialToken(db: string, text: string | null | undefined): Token | null {
  if (text === undefined || text === null || text === '') return null;
  const set = TokenSet.parse(text);
  const t = set.get(db);
  if (t === null) {
    throw new EdgeliteError('TOKEN_DATABASE_MISMATCH', `the token holds no position for database ${db} (it has ${set.tokens().map((x) => x.db).join(', ')})`);
  }
  return t;
}

interface RawResult {
  columns?: unknown;
  rows?: unknown;
  changes?: unknown;
  lastInsertRowid?: unknown;
}

function resultList(a: Answer): RawResult[] {
  const results = (a.body as { results?: unknown } | null)?.results;
  if (!Array.isArray(results)) throw new EdgeliteError('INTERNAL', `${a.url} answered without "results"`);
  return results as RawResult[];
}

function rowidOf(v: unknown): number | bigint {
  if (typeof v === 'number' || typeof v === 'bigint') return v;
  return typeof v === 'string' && /^-?\d+$/.test(v) ? BigInt(v) : 0;
}

function columnsOf(r: RawResult): string[] {
  return Array.isArray(r.columns) ? r.columns.map(String) : [];
}
