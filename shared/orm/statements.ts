/**
 * What the ORM adapters (`edgelite/drizzle`, `edgelite/kysely`; README.md#drizzle-and-kysely) share:
 * the session an adapter runs on, where each statement goes (a read to a replica's /query, a write to
 * /exec, which the replica forwards to the primary), the refusal of interactive transactions, and the
 * one integer convention of both adapters. Web APIs only: it runs wherever the client runs.
 */
import { Client, Session, type Consistency, type StatementOutcome } from '../client.ts';
import type { Params, SqlValue } from '../client.ts';
import { EdgeliteError } from '../errors.ts';

/** SessionSource is what an adapter is built on: a session, or a client plus the database's name. */
export interface SessionChoice {
  /** The database, when the adapter is given a Client (a Session knows its own). */
  database?: string;
  /** Consistency of the session made for a Client (default read-your-writes). */
  consistency?: Consistency;
  /** A bookmark to start the session made for a Client from (`session.token` of another). */
  token?: string | null;
}

/**
 * sessionOf is the session an adapter runs every statement on. Given a Client, the adapter makes its own
 * session, so it reads its own writes; given a Session, it shares that session's position (and token)
 * with whatever else uses it.
 */
export function sessionOf(source: Client | Session, choice: SessionChoice, adapter: string): Session {
  if (source instanceof Session) {
    if (choice.database !== undefined && choice.database !== source.db) {
      throw new EdgeliteError('BAD_REQUEST', `${adapter}: the session is on database "${source.db}", not "${choice.database}"`);
    }
    if (choice.consistency !== undefined || (choice.token !== undefined && choice.token !== null)) {
      throw new EdgeliteError('BAD_REQUEST', `${adapter}: "consistency" and "token" are for a Client; a Session has its own`);
    }
    return source;
  }
  if (source instanceof Client) {
    if (typeof choice.database !== 'string') throw new EdgeliteError('BAD_REQUEST', `${adapter}: given a Client, "database" names the database`);
    const options: { consistency?: Consistency; token?: string | null } = {};
    if (choice.consistency !== undefined) options.consistency = choice.consistency;
    if (choice.token !== undefined) options.token = choice.token;
    return source.session(choice.database, options);
  }
  throw new EdgeliteError('BAD_REQUEST', `${adapter}: wants a Client (connect()) or a Session (client.session(db))`);
}

/** Route: a read runs on a replica (/query); a write on the primary (/exec, one transaction per call). */
export type Route = 'read' | 'write' | 'unknown';

const LEADING = /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?(?:\*\/|$)|\()*/;
const READ_START = /^(select|values|explain)\b/i;
const WRITE_START = /^(insert|update|delete|replace|create|drop|alter|reindex|analyze|vacuum)\b/i;
const PRAGMA_WRITE = /^pragma\b[^=]*=/i;
const PRAGMA = /^pragma\b/i;
const TRANSACTION_CONTROL = /^(begin|commit|end|rollback|savepoint|release)\b/i;

/**
 * routeOf says where `sql` goes from its first keyword. A SELECT never writes in SQLite; the DML and DDL
 * keywords always write; anything else (a `WITH` that may end in an INSERT, say) is 'unknown': tried as
 * a read first, and sent as a write when the server answers READ_ONLY (runStatement).
 */
export function routeOf(sql: string): Route {
  const text = sql.replace(LEADING, '');
  if (READ_START.test(text)) return 'read';
  if (WRITE_START.test(text) || PRAGMA_WRITE.test(text)) return 'write';
  if (PRAGMA.test(text)) return 'read';
  return 'unknown';
}

/**
 * refuseTransactionControl refuses BEGIN, COMMIT, ROLLBACK and savepoints before they are sent. Each
 * request to edgelite is one transaction on the primary (README.md#http-api) and there is no
 * server-side transaction that outlives a request, so an interactive transaction (reads and writes
 * decided between statements) cannot be kept over HTTP. A batch is the transaction: all or nothing.
 */
export function refuseTransactionControl(sql: string, adapter: string, instead: string): void {
  if (!TRANSACTION_CONTROL.test(sql.replace(LEADING, ''))) return;
  throw new EdgeliteError(
    'BAD_REQUEST',
    `${adapter}: interactive transactions are not possible over edgelite's HTTP API (each request is one transaction on the primary, and none outlives its request); send the writes together with ${instead}, which runs them as one transaction`,
    { details: { sql: sql.slice(0, 200) } },
  );
}

/** Outcome is one statement's answer as both adapters use it. */
export interface Outcome {
  columns: string[];
  rows: SqlValue[][];
  /** Rows changed (0 for a read). */
  changes: number;
  /** The rowid of the last insert (0 for a read); a bigint where the client gives one (beyond 2^53). */
  lastInsertRowid: number | bigint;
  /** It ran on the write path (/exec, on the primary). */
  write: boolean;
}

/**
 * runStatement runs one statement where routeOf sends it. An 'unknown' one is sent as a read first: a
 * server refuses a writing statement on /query with READ_ONLY before running any of it (SQLite's own
 * sqlite3_stmt_readonly, at prepare), so sending it on to /exec cannot apply it twice.
 */
export async function runStatement(session: Session, sql: string, params: Params, route: Route = routeOf(sql)): Promise<Outcome> {
  if (route === 'write') return outcome(await session.exec(sql, params));
  try {
    const r = await session.query(sql, params);
    return { columns: r.columns, rows: r.rows.map(exactRow), changes: 0, lastInsertRowid: 0, write: false };
  } catch (err) {
    if (route === 'unknown' && err instanceof EdgeliteError && err.code === 'READ_ONLY') return outcome(await session.exec(sql, params));
    throw err;
  }
}

/** runBatch runs statements as one exec batch: one transaction on the primary, all applied or none. */
export async function runBatch(session: Session, statements: Array<{ sql: string; params: Params }>): Promise<Outcome[]> {
  if (statements.length === 0) return [];
  const { results } = await session.batch(statements);
  return results.map(outcome);
}

function outcome(r: StatementOutcome): Outcome {
  return { columns: r.columns, rows: r.rows.map(exactRow), changes: r.changes, lastInsertRowid: r.lastInsertRowid, write: true };
}

/**
 * exactCell is the adapters' integer convention, drizzle's and Kysely's SQLite one (their better-sqlite3,
 * D1 and libsql drivers): an INTEGER is a JS number. A bigint the client decoded is made a number when it
 * is within ±(2^53 − 1), where that is exact, and stays a bigint beyond, never rounded. For integers
 * beyond 2^53, drizzle's `blob({ mode: 'bigint' })` and a TEXT column are exact both ways.
 */
export function exactCell(v: SqlValue): SqlValue {
  if (typeof v === 'bigint' && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  return v;
}

function exactRow(row: SqlValue[]): SqlValue[] {
  for (let i = 0; i < row.length; i++) {
    if (typeof row[i] === 'bigint') row[i] = exactCell(row[i]!);
  }
  return row;
}
