/**
 * `edgelite/kysely`: a Kysely dialect over the edgelite client (README.md#drizzle-and-kysely): SQLite's
 * query compiler, adapter and introspector, and a driver that runs every query on one client Session
 * (reads on a replica, writes forwarded to the primary, each read seeing the session's writes:
 * docs/ARCHITECTURE.md#tokens-and-consistency). Web APIs only, so it runs in Node, browsers and Workers.
 *
 * Transactions: `batch(db, [...queries])` sends the queries as one exec request, one transaction on the
 * primary (all applied or none). `db.transaction()` and `db.startTransaction()` are refused with
 * BAD_REQUEST: Kysely's transactions are interactive (the callback reads, decides, then writes), which
 * needs a transaction that outlives a request; edgelite has none. Buffering the writes into one batch
 * instead would answer each write inside the callback before it ran (no insertId, no RETURNING rows) and
 * let the callback's reads miss its own writes: a transaction in name only.
 *
 * @example
 * ```ts
 * import { Kysely } from 'kysely';
 * import { connect } from 'edgelite/client';
 * import { EdgeliteDialect, batch } from 'edgelite/kysely';
 *
 * const db = new Kysely<DB>({ dialect: new EdgeliteDialect({ client: connect({ replicas }), database: 'app' }) });
 * await db.insertInto('users').values({ name: 'ada' }).execute();
 * const users = await db.selectFrom('users').selectAll().execute();   // sees the insert
 * await batch(db, [db.insertInto('users').values({ name: 'bob' }), db.deleteFrom('users').where('name', '=', 'ada')]);
 * ```
 */
import {
  SelectQueryNode,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type CompiledQuery,
  type Compilable,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
} from 'kysely';
import type { Client, Params, Session } from '../client.ts';
import { EdgeliteError } from '../errors.ts';
import { refuseTransactionControl, routeOf, runBatch, runStatement, sessionOf, type Outcome, type SessionChoice } from './statements.ts';

const ADAPTER = 'edgelite/kysely';
const INSTEAD = 'batch(db, [...queries]) from edgelite/kysely';

/** EdgeliteDialectConfig: a Session, or a Client with the database (the dialect then makes its own session). */
export type EdgeliteDialectConfig = { session: Session } | ({ client: Client; database: string } & Omit<SessionChoice, 'database'>);

export class EdgeliteDialect implements Dialect {
  /** The session every query of this dialect's Kysely instances runs on (`session.token` is its bookmark). */
  readonly session: Session;

  constructor(config: EdgeliteDialectConfig) {
    if (config === null || typeof config !== 'object') throw new EdgeliteError('BAD_REQUEST', `${ADAPTER}: EdgeliteDialect wants { session } or { client, database }`);
    this.session = 'session' in config ? sessionOf(config.session, {}, ADAPTER) : sessionOf(config.client, config, ADAPTER);
  }

  createAdapter(): DialectAdapter {
    return new SqliteAdapter();
  }

  createDriver(): Driver {
    return new EdgeliteDriver(this.session);
  }

  createQueryCompiler(): QueryCompiler {
    return new SqliteQueryCompiler();
  }

  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new SqliteIntrospector(db);
  }
}

/**
 * EdgeliteDriver hands out one connection for every query: the session keeps no per-connection state
 * (nothing like an open transaction), so queries need not wait for each other as they do on a single
 * SQLite connection.
 */
export class EdgeliteDriver implements Driver {
  readonly #connection: EdgeliteConnection;

  constructor(session: Session) {
    this.#connection = new EdgeliteConnection(session);
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    return this.#connection;
  }

  async beginTransaction(): Promise<void> {
    refuseTransactionControl('BEGIN', ADAPTER, INSTEAD);
  }

  async commitTransaction(): Promise<void> {
    refuseTransactionControl('COMMIT', ADAPTER, INSTEAD);
  }

  async rollbackTransaction(): Promise<void> {
    refuseTransactionControl('ROLLBACK', ADAPTER, INSTEAD);
  }

  async releaseConnection(): Promise<void> {}

  /** destroy leaves the client open: it belongs to the application, which may share it. */
  async destroy(): Promise<void> {}
}

export class EdgeliteConnection implements DatabaseConnection {
  readonly session: Session;

  constructor(session: Session) {
    this.session = session;
  }

  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    refuseTransactionControl(compiled.sql, ADAPTER, INSTEAD);
    const route = SelectQueryNode.is(compiled.query) ? 'read' : routeOf(compiled.sql);
    return result<R>(await runStatement(this.session, compiled.sql, compiled.parameters as Params, route));
  }

  /** streamQuery reads the whole answer (one HTTP response) and yields it in chunks of `chunkSize` rows. */
  async *streamQuery<R>(compiled: CompiledQuery, chunkSize = 100): AsyncIterableIterator<QueryResult<R>> {
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new EdgeliteError('BAD_REQUEST', `${ADAPTER}: chunkSize must be a positive integer, got ${chunkSize}`);
    const { rows } = await this.executeQuery<R>(compiled);
    for (let i = 0; i < rows.length; i += chunkSize) yield { rows: rows.slice(i, i + chunkSize) };
  }

  /** batch runs compiled queries as one exec request: one transaction on the primary. */
  async batch(compiled: readonly CompiledQuery[]): Promise<Array<QueryResult<unknown>>> {
    for (const c of compiled) refuseTransactionControl(c.sql, ADAPTER, INSTEAD);
    const outcomes = await runBatch(this.session, compiled.map((c) => ({ sql: c.sql, params: c.parameters as Params })));
    return outcomes.map((o) => result(o));
  }
}

/**
 * batch runs Kysely queries as one transaction on the primary (one exec request): every query applied,
 * or none. Results come back in order, each as `execute()` would give it (after the instance's plugins'
 * transformResult); reads in a batch run on the primary, inside the transaction.
 */
export async function batch(db: Kysely<any>, queries: ReadonlyArray<Compilable>): Promise<Array<QueryResult<unknown>>> {
  const compiled = queries.map((q) => q.compile());
  const executor = db.getExecutor();
  const raw = await executor.provideConnection(async (c) => {
    if (!(c instanceof EdgeliteConnection)) throw new EdgeliteError('BAD_REQUEST', `${ADAPTER}: batch() needs a Kysely instance built on EdgeliteDialect`);
    return c.batch(compiled);
  });
  const out: Array<QueryResult<unknown>> = [];
  for (const [i, r] of raw.entries()) {
    let transformed = r;
    for (const plugin of executor.plugins) transformed = await plugin.transformResult({ result: transformed as QueryResult<any>, queryId: compiled[i]!.queryId });
    out.push(transformed);
  }
  return out;
}

/**
 * result is a statement's outcome as Kysely's SQLite driver gives it: rows as objects keyed by column
 * (a later column of the same name wins, as in better-sqlite3), and for a write the changed rows and
 * the last rowid as bigints.
 */
function result<R>(o: Outcome): QueryResult<R> {
  const rows = o.rows.map((row) => {
    const obj: Record<string, unknown> = {};
    for (let i = 0; i < o.columns.length; i++) obj[o.columns[i]!] = row[i];
    return obj as R;
  });
  return o.write ? { rows, numAffectedRows: BigInt(o.changes), insertId: BigInt(o.lastInsertRowid) } : { rows };
}
