/**
 * query-limit runs SQL on a connection of this process under a deadline that SQLite itself enforces:
 * our build (scripts/sqlite-deadline.c, compiled by scripts/build-sqlite.mjs) gives every connection a
 * progress handler that stops a statement with SQLITE_INTERRUPT once the connection's deadline has
 * passed, armed and disarmed with `edgelite_deadline(key, ms)` (docs/ARCHITECTURE.md#query-time-limits).
 * The key is this process's own random one: the first arm claims the connection for it, so a client's
 * SQL on that connection can neither disarm nor move the deadline.
 *
 * SQLite checks the clock every thousand VM steps; a single long step (sorting rows already collected,
 * a busy wait on a lock) finishes before the check, so the limit holds to within that step.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { EdgeliteError } from '../errors.ts';

/** DEADLINE_KEY: this process's key for edgelite_deadline (never sent anywhere). */
const DEADLINE_KEY = randomBytes(24).toString('base64');

type Conn = Database.Database;

const arms = new WeakMap<Conn, Database.Statement>();
let available: boolean | null = null;

/**
 * hasDeadlineHook says whether this process's SQLite has the hook (a better-sqlite3 not built by
 * scripts/build-sqlite.mjs has not): without it nothing can stop a statement in-process.
 */
export function hasDeadlineHook(): boolean {
  if (available === null) {
    const probe = new Database(':memory:');
    try {
      probe.prepare('SELECT edgelite_deadline_key()').get();
      available = true;
    } catch {
      available = false;
    } finally {
      probe.close();
    }
  }
  return available;
}

function armStatement(conn: Conn): Database.Statement {
  let stmt = arms.get(conn);
  if (!stmt) {
    stmt = conn.prepare('SELECT edgelite_deadline(?, ?)').pluck();
    arms.set(conn, stmt);
  }
  return stmt;
}

/**
 * armDeadline makes SQLite stop any statement of `conn` still running `ms` milliseconds from now (a
 * fraction is kept), until disarmDeadline; the first call claims the connection for this process's key.
 */
export function armDeadline(conn: Conn, ms: number): void {
  if (!(ms > 0)) throw new EdgeliteError('INTERNAL', `armDeadline: ms must be positive, got ${ms}`);
  armStatement(conn).get(DEADLINE_KEY, ms);
}

/** disarmDeadline lifts the deadline and says whether it stopped a statement since it was armed. */
export function disarmDeadline(conn: Conn): boolean {
  return armStatement(conn).get(DEADLINE_KEY, 0) === 1;
}

/**
 * queryTimeout is the QUERY_TIMEOUT every path answers (in-process or in a query process), so a client
 * cannot tell where its request ran: `limitMs` is the request's whole limit, `completed` the writes of
 * a batch that had run (writes only).
 */
export function queryTimeout(limitMs: number, write: boolean, completed = 0): EdgeliteError {
  return new EdgeliteError('QUERY_TIMEOUT', `${write ? 'write' : 'query'} exceeded the time limit of ${limitMs} ms${write ? '; nothing of it was committed' : ''}`, {
    details: write ? { timeoutMs: limitMs, completed } : { timeoutMs: limitMs },
  });
}

/**
 * stoppedByDeadline says whether `err`, thrown by a statement on `conn` while its deadline was armed, is the
 * deadline's stop (SQLITE_INTERRUPT, which sql.ts maps to QUERY_TIMEOUT) rather than the statement's
 * own error. It disarms the deadline either way.
 */
export function stoppedByDeadline(conn: Conn, err: unknown): boolean {
  const fired = disarmDeadline(conn);
  if (!fired) return false;
  const e = err as { code?: unknown; details?: { sqliteCode?: unknown } } | null;
  return e?.code === 'SQLITE_INTERRUPT' || e?.details?.sqliteCode === 'SQLITE_INTERRUPT';
}
