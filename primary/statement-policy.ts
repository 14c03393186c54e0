/**
 * What a client may run through the API on the primary's shared connections. The connections are
 * shared by every request, so a statement must not leave state behind (an open transaction, an
 * attached file, a changed setting), and must not reach files outside the data directory.
 */
import { EdgeliteError } from '../shared/errors.ts';
import type { Connection } from './sqlite.ts';

/**
 * PRAGMAs a client may not run through the API: they would break capture or change the shared
 * connection's settings for every other client.
 */
const FORBIDDEN_PRAGMA = /^PRAGMA\s+(?:\w+\.)?(journal_mode|wal_autocheckpoint|wal_checkpoint|locking_mode|synchronous|query_only|writable_schema|journal_size_limit|mmap_size|foreign_keys|busy_timeout)\b/i;
/**
 * TRANSACTION_CONTROL: a request is one transaction. A client's BEGIN would leave the shared
 * connection inside a transaction (later acknowledged writes never commit; reads stay on an old
 * snapshot), and a COMMIT inside a batch would commit half of it.
 */
const TRANSACTION_CONTROL = /^(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b/i;
/** FILE_ACCESS: ATTACH and VACUUM INTO read or write any file the process can reach. */
const FILE_ACCESS = /^(ATTACH|DETACH)\b|^VACUUM\b[\s\S]*\bINTO\b/i;
const LEADING_COMMENTS = /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?(?:\*\/|$))*/;

/** checkStatement refuses what a client may not run (see above); comments before the keyword do not hide it. */
export function checkStatement(sql: string, write: boolean): void {
  const text = sql.replace(LEADING_COMMENTS, '');
  if (TRANSACTION_CONTROL.test(text)) {
    throw new EdgeliteError('BAD_REQUEST', 'transaction control statements are not allowed: each request runs as one transaction');
  }
  if (FILE_ACCESS.test(text)) throw new EdgeliteError('FORBIDDEN', 'ATTACH, DETACH and VACUUM INTO are not allowed through the API');
  if (write && FORBIDDEN_PRAGMA.test(text)) {
    throw new EdgeliteError('FORBIDDEN', 'this PRAGMA is managed by edgelite and cannot be changed through the API');
  }
}

/** assertNoTransaction is the safety net behind checkStatement: a statement left a transaction open. */
export function assertNoTransaction(conn: Connection): void {
  if (!conn.inTransaction) return;
  conn.exec('ROLLBACK');
  throw new EdgeliteError('BAD_REQUEST', 'the statement left a transaction open; it was rolled back');
}
