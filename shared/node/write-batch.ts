/**
 * write-batch runs a batch of API writes (group commit, ipc-codec.ts) on a writer connection: one
 * transaction, each write in its own savepoint so that its error rolls back that write only. Both
 * places that run batches use it: a query process (sql-process.ts, which commits when the parent says
 * so) and the primary's own writer for a slice of the time limit (writeInSlice below,
 * docs/ARCHITECTURE.md#query-time-limits).
 */
import type Database from 'better-sqlite3';
import { EdgeliteError } from '../errors.ts';
import type { Statement } from '../protocol.ts';
import { runWrite, sqliteError } from '../sql.ts';
import { assertNoTransaction } from '../statement-policy.ts';
import type { SavepointResult } from './ipc-codec.ts';
import { armDeadline, disarmDeadline, stoppedByDeadline } from './query-limit.ts';

/** NOT_IN_TRANSACTION: SQLite's message for a statement that must run on its own (VACUUM). */
const NOT_IN_TRANSACTION = /from within a transaction/;

/**
 * BatchRun: one outcome per write, and whether the transaction is open and waiting for its COMMIT
 * (false: it was rolled back, or the batch was one write that ran on its own, already committed).
 */
export interface BatchRun {
  outcomes: SavepointResult[];
  open: boolean;
}

/**
 * runBatch runs the batch inside BEGIN IMMEDIATE and leaves the transaction open for the caller's
 * COMMIT when a write is to be kept. A batch of one that SQLite will not run inside a transaction
 * (VACUUM) runs on its own at once, unless `alone` says it must not (then its outcome is `alone`).
 * `done(i)` is called after write i. An error that ends the transaction as a whole is thrown, rolled back.
 */
export function runBatch(conn: Database.Database, batch: Statement[][], done: (i: number) => void = () => {}, alone = true): BatchRun {
  conn.exec('BEGIN IMMEDIATE');
  let outcomes: SavepointResult[];
  try {
    outcomes = batch.map((statements, i) => {
      const outcome = savepoint(conn, statements);
      done(i);
      return outcome;
    });
    if (!conn.inTransaction) throw new EdgeliteError('BAD_REQUEST', 'a statement ended the write transaction; it was not committed');
  } catch (err) {
    if (conn.inTransaction) conn.exec('ROLLBACK');
    throw err;
  }
  if (batch.length === 1 && 'alone' in outcomes[0]! && alone) {
    conn.exec('ROLLBACK');
    const results = batch[0]!.map((s) => runWrite(conn, s));
    assertNoTransaction(conn);
    return { outcomes: [{ results }], open: false };
  }
  if (!outcomes.some((o) => 'results' in o)) {
    // Nothing to keep: a COMMIT would still write the pages a rolled-back savepoint touched.
    conn.exec('ROLLBACK');
    return { outcomes, open: false };
  }
  return { outcomes, open: true };
}

/**
 * savepoint runs one write of a batch inside its own savepoint: its error rolls back this write only,
 * as its own transaction would have.
 */
function savepoint(conn: Database.Database, statements: Statement[]): SavepointResult {
  conn.exec('SAVEPOINT edgelite_write');
  try {
    const results = statements.map((s) => runWrite(conn, s));
    conn.exec('RELEASE edgelite_write');
    return { results };
  } catch (err) {
    // Some errors end the whole transaction (ON CONFLICT ROLLBACK, a full disk, our deadline): the batch fails.
    if (!conn.inTransaction) throw err;
    if (isInterrupt(err)) throw err; // the deadline stops the batch, not this write alone
    conn.exec('ROLLBACK TO edgelite_write');
    conn.exec('RELEASE edgelite_write');
    const e = sqliteError(err);
    return NOT_IN_TRANSACTION.test(e.message) ? { alone: true } : { error: e.toBody().error };
  }
}

/** sqliteCodeOf: SQLite's code of a raw SqliteError or of one sql.ts mapped (details.sqliteCode). */
function sqliteCodeOf(err: unknown): string {
  const e = err as { code?: unknown; details?: { sqliteCode?: unknown } } | null;
  const code = e?.details?.sqliteCode ?? e?.code;
  return typeof code === 'string' ? code : '';
}

function isInterrupt(err: unknown): boolean {
  return sqliteCodeOf(err) === 'SQLITE_INTERRUPT';
}

/** busyTimeout sets a connection's busy_timeout through statements prepared once per connection and value. */
const busyStatements = new WeakMap<Database.Database, Map<number, Database.Statement>>();
function busyTimeout(conn: Database.Database, ms: number): void {
  let byValue = busyStatements.get(conn);
  if (!byValue) busyStatements.set(conn, (byValue = new Map()));
  let stmt = byValue.get(ms);
  if (!stmt) byValue.set(ms, (stmt = conn.prepare(`PRAGMA busy_timeout = ${ms}`)));
  stmt.run();
}

/**
 * SliceWrite: a batch committed in its slice (its outcomes), or nothing of it committed and why:
 * `stopped` at the end of the slice, `busy` (another connection holds the write lock: this thread never
 * waits for it, busy_timeout is 0 meanwhile), or `alone` (a write of several statements, one of which
 * must run outside a transaction: not here, where a stop midway would leave part of it done).
 */
export type SliceWrite = { outcomes: SavepointResult[] } | { handOff: 'stopped' | 'busy' | 'alone' };

/**
 * writeInSlice runs a batch on the primary's own writer (`conn`) for at most `sliceMs` and commits it,
 * or rolls it all back (SliceWrite). Other errors are thrown as a query process would answer them, the
 * batch rolled back.
 */
export function writeInSlice(conn: Database.Database, batch: Statement[][], sliceMs: number, busyTimeoutMs: number): SliceWrite {
  busyTimeout(conn, 0);
  armDeadline(conn, sliceMs);
  let run: BatchRun;
  try {
    // A lone one-statement write SQLite will not run in a transaction (VACUUM) runs here on its own: a
    // stop rolls that one statement back whole. With more statements, a stop could leave some done.
    run = runBatch(conn, batch, undefined, batch.length === 1 && batch[0]!.length === 1);
  } catch (err) {
    const stopped = stoppedByDeadline(conn, err);
    busyTimeout(conn, busyTimeoutMs);
    if (conn.inTransaction) conn.exec('ROLLBACK');
    if (stopped) return { handOff: 'stopped' };
    if (/^SQLITE_(BUSY|LOCKED)/.test(sqliteCodeOf(err))) return { handOff: 'busy' };
    throw sqliteError(err);
  }
  disarmDeadline(conn);
  busyTimeout(conn, busyTimeoutMs);
  if (run.outcomes.some((o) => 'alone' in o) && batch.length === 1) {
    if (run.open) conn.exec('ROLLBACK');
    return { handOff: 'alone' };
  }
  if (!run.open) return { outcomes: run.outcomes };
  try {
    conn.exec('COMMIT');
  } catch (err) {
    if (conn.inTransaction) conn.exec('ROLLBACK');
    throw sqliteError(err);
  }
  return { outcomes: run.outcomes };
}
