/**
 * query-limit-reads runs API reads on a connection of this process for a slice of their time limit
 * (query-limit.ts): most reads end well within the slice, at the cost of a function call; a read still
 * running at the end of the slice is stopped by SQLite and what is left of the request (from the
 * stopped statement on) goes to a query process with the rest of the limit (query-pool.ts), so the
 * event loop is never held for more than about one slice while a long read still gets its whole limit
 * (docs/ARCHITECTURE.md#query-time-limits). Each statement of a request reads its own snapshot wherever
 * it runs, so a request split between the two answers as one run in either place would.
 */
import type Database from 'better-sqlite3';
import type { QueryResult, Statement } from '../protocol.ts';
import { runRead, sqliteError } from '../sql.ts';
import { assertNoTransaction } from '../statement-policy.ts';
import { armDeadline, disarmDeadline, stoppedByDeadline } from './query-limit.ts';

/** DEFAULT_SLICE_MS: how long a read may hold the event loop before it moves to a query process. */
export const DEFAULT_SLICE_MS = 10;

/** SliceOutcome: the results of the statements that ran, and those left (none when it all ran). */
export interface SliceOutcome {
  results: QueryResult[];
  rest: Statement[];
}

/**
 * readInSlice runs read-only statements on `conn` (as runRead does, with the same results and errors)
 * until they are done or `sliceMs` has passed: a statement running at that moment is stopped and is the
 * first of `rest`. Any other error is thrown as runRead throws it.
 */
export function readInSlice(conn: Database.Database, statements: Statement[], sliceMs: number): SliceOutcome {
  // The clock is read again only between statements: a single statement (most reads) needs it never.
  const end = statements.length > 1 ? performance.now() + sliceMs : 0;
  const results: QueryResult[] = [];
  armDeadline(conn, sliceMs);
  let i = 0;
  try {
    for (; i < statements.length; i++) {
      if (i > 0 && performance.now() >= end) break;
      results.push(runRead(conn, statements[i]!));
      // The policy refuses transaction control before here; this is the backstop, since a read
      // transaction left open would pin the WAL.
      assertNoTransaction(conn);
    }
  } catch (err) {
    if (stoppedByDeadline(conn, err)) return { results, rest: statements.slice(i) };
    throw sqliteError(err);
  }
  disarmDeadline(conn);
  return { results, rest: i === statements.length ? NONE_LEFT : statements.slice(i) };
}

/** NONE_LEFT is `rest` when every statement ran (frozen: shared by every such outcome). */
const NONE_LEFT: Statement[] = Object.freeze([]) as unknown as Statement[];
