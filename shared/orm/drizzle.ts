/**
 * `edgelite/drizzle`: drizzle-orm's sqlite-proxy driver over the edgelite client (README.md#drizzle-and-kysely).
 * Reads go to the nearest replica, writes are forwarded to the primary, and every statement runs on one
 * client Session, so a read after a write sees it, on whichever replica serves it (the session's token,
 * docs/ARCHITECTURE.md#tokens-and-consistency). `db.batch([...])` is one exec request: one transaction on
 * the primary, all applied or none. `db.transaction()` is refused (BAD_REQUEST): no transaction outlives
 * an HTTP request. Errors of single statements come as drizzle wraps every driver's, a DrizzleQueryError
 * whose `cause` is the EdgeliteError (code SQL_ERROR, CONSTRAINT_VIOLATION, ...); a batch's error is the
 * EdgeliteError itself (drizzle does not wrap those). Web APIs only: Node, browsers and Workers.
 *
 * @example
 * ```ts
 * import { connect } from 'edgelite/client';
 * import { drizzle } from 'edgelite/drizzle';
 *
 * const client = connect({ replicas: ['http://127.0.0.1:7401', 'http://127.0.0.1:7402'] });
 * const db = drizzle(client, { database: 'app', schema: { users } });
 * await db.insert(users).values({ name: 'ada' });
 * const all = await db.select().from(users);        // sees the insert, on any replica
 * const bookmark = db.$session.token;                // hand it on: client.session('app', { token })
 * ```
 */
import { drizzle as remoteDrizzle, type AsyncBatchRemoteCallback, type AsyncRemoteCallback, type SqliteRemoteDatabase } from 'drizzle-orm/sqlite-proxy';
import type { DrizzleConfig } from 'drizzle-orm';
import type { Client, Params, Session } from '../client.ts';
import { refuseTransactionControl, runBatch, runStatement, sessionOf, type Outcome, type SessionChoice } from './statements.ts';

export type { SqliteRemoteDatabase } from 'drizzle-orm/sqlite-proxy';

const ADAPTER = 'edgelite/drizzle';
const INSTEAD = 'db.batch([...])';

export type EdgeliteDrizzleConfig<TSchema extends Record<string, unknown>> = DrizzleConfig<TSchema> & SessionChoice;

/** EdgeliteDrizzleDatabase is drizzle's sqlite-proxy database, plus the Session it runs on. */
export type EdgeliteDrizzleDatabase<TSchema extends Record<string, unknown> = Record<string, never>> = SqliteRemoteDatabase<TSchema> & {
  /** The session every statement runs on: `$session.token` is the bookmark of what it has seen. */
  readonly $session: Session;
};

/** Method is what drizzle asks of a statement: `run` (no rows wanted), `all`/`values` (rows), `get` (the first row). */
type Method = 'run' | 'all' | 'values' | 'get';

/**
 * drizzle builds a drizzle database over `source`: a Session, or a Client with `database` (the adapter
 * then makes its own read-your-writes session; `consistency` and `token` choose another start).
 */
export function drizzle<TSchema extends Record<string, unknown> = Record<string, never>>(
  source: Client | Session,
  config: EdgeliteDrizzleConfig<TSchema> = {},
): EdgeliteDrizzleDatabase<TSchema> {
  const { database, consistency, token, ...drizzleConfig } = config;
  const session = sessionOf(source, { database, consistency, token }, ADAPTER);
  const one: AsyncRemoteCallback = async (sql, params, method) => {
    refuseTransactionControl(sql, ADAPTER, INSTEAD);
    return answer(await runStatement(session, sql, params as Params), method);
  };
  const many: AsyncBatchRemoteCallback = async (queries) => {
    for (const q of queries) refuseTransactionControl(q.sql, ADAPTER, INSTEAD);
    const outcomes = await runBatch(session, queries.map((q) => ({ sql: q.sql, params: q.params as Params })));
    return outcomes.map((o, i) => answer(o, queries[i]!.method));
  };
  const db = remoteDrizzle<TSchema>(one, many, drizzleConfig);
  Object.defineProperty(db, '$session', { value: session, enumerable: false });
  // Refused here, with our error itself: through the callback it would come wrapped as "Failed query: begin".
  Object.defineProperty(db, 'transaction', { value: async () => refuseTransactionControl('BEGIN', ADAPTER, INSTEAD), enumerable: false });
  return db as EdgeliteDrizzleDatabase<TSchema>;
}

/**
 * answer shapes an outcome the way drizzle's sqlite-proxy reads it: rows as arrays of values, in the
 * statement's column order; for `get` the first row alone (undefined when there is none). `run` also
 * says how many rows changed and the last insert's rowid.
 */
function answer(o: Outcome, method: Method): { rows: unknown[]; changes?: number; lastInsertRowid?: number | bigint } {
  if (method === 'get') return { rows: o.rows[0] as unknown[] };
  if (method === 'run') return { rows: o.rows, changes: o.changes, lastInsertRowid: o.lastInsertRowid };
  return { rows: o.rows };
}
