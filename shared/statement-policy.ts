/**
 * What a client may run through the API, on the primary, the Node replica and the Worker alike. The
 * connections statements run on are shared by every request, so a statement must not leave state
 * behind (an open transaction, an attached file, a changed setting) and must not reach files outside
 * the data directory. SQLite's own read-only test is not enough: it counts BEGIN, ATTACH and many
 * PRAGMAs as read-only.
 */
import { EdgeliteError } from './errors.ts';

/** Where a statement runs: the primary's write path, or a read path (primary /query, any replica). */
export type StatementRole = 'write' | 'read';

const LEADING_COMMENTS = /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?(?:\*\/|$))*/;
/** A name as SQLite's tokenizer takes it: "x", 'x', [x], `x` or a bare word. */
const NAME = String.raw`(?:"[^"]*"|'[^']*'|\[[^\]]*\]|\x60[^\x60]*\x60|[\w$]+)`;
const PRAGMA = new RegExp(String.raw`^PRAGMA(?![\w$])\s*(?:${NAME}\s*\.\s*)?(${NAME})`, 'i');
const COMMENTS_SPACE_SEMICOLONS = /--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/|[\s;]/g;

/** TRANSACTION_CONTROL: a request is one transaction; a client's BEGIN would pin a shared connection. */
const TRANSACTION_CONTROL = /^(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b/i;
/** FILE_ACCESS: ATTACH and VACUUM INTO read or write any file the process can reach. */
const FILE_ACCESS = /^(ATTACH|DETACH)\b|^VACUUM\b[\s\S]*\bINTO\b/i;

/** PRAGMAs that take an argument and still only read (introspection): allowed everywhere. */
const READING_PRAGMAS = new Set([
  'table_info', 'table_xinfo', 'table_list', 'index_info', 'index_xinfo', 'index_list',
  'foreign_key_list', 'foreign_key_check', 'integrity_check', 'quick_check',
]);

/**
 * MANAGED_PRAGMAS: settings edgelite owns on the primary; setting them would break capture (journal
 * mode, checkpoints) or change a shared connection for every client. Other PRAGMA assignments on the
 * write path (e.g. user_version, application_id) are ordinary database writes and are allowed.
 */
const MANAGED_PRAGMAS = new Set([
  'journal_mode', 'wal_autocheckpoint', 'wal_checkpoint', 'locking_mode', 'synchronous', 'query_only',
  'writable_schema', 'journal_size_limit', 'mmap_size', 'foreign_keys', 'busy_timeout', 'cache_size',
  'temp_store', 'trusted_schema', 'cell_size_check', 'page_size', 'auto_vacuum', 'secure_delete',
  'recursive_triggers', 'defer_foreign_keys', 'ignore_check_constraints', 'legacy_alter_table',
  'reverse_unordered_selects', 'case_sensitive_like', 'automatic_index', 'threads', 'soft_heap_limit',
  'hard_heap_limit', 'analysis_limit', 'shrink_memory', 'temp_store_directory', 'data_store_directory',
  'encoding', 'read_uncommitted', 'count_changes', 'full_column_names', 'short_column_names',
]);

/** parsePragma reads a PRAGMA's name (unquoted, lower case) and whether it has an argument. */
export function parsePragma(sql: string): { name: string; hasArgument: boolean } | null {
  const text = sql.replace(LEADING_COMMENTS, '');
  if (!/^PRAGMA(?![\w$])/i.test(text)) return null;
  const m = PRAGMA.exec(text);
  if (!m) return { name: '', hasArgument: true };
  const raw = m[1]!;
  const name = (/^["'[\x60]/.test(raw) ? raw.slice(1, -1) : raw).toLowerCase();
  return { name, hasArgument: text.slice(m[0].length).replace(COMMENTS_SPACE_SEMICOLONS, '') !== '' };
}

/**
 * ALLOWED remembers, per role, SQL texts checkStatement let through (a pure function of the two), so a
 * hot statement is checked once: up to ALLOWED_SIZE texts of at most ALLOWED_MAX_SQL characters each,
 * forgotten all at once when full. Refusals are not kept (they throw, and are rare).
 */
const ALLOWED: Record<StatementRole, Set<string>> = { read: new Set(), write: new Set() };
const ALLOWED_SIZE = 512;
const ALLOWED_MAX_SQL = 4096;

/** checkStatement refuses what a client may not run in `role`; comments before the keyword do not hide it. */
export function checkStatement(sql: string, role: StatementRole): void {
  const allowed = ALLOWED[role];
  if (allowed.has(sql)) return;
  checkStatementText(sql, role);
  if (sql.length > ALLOWED_MAX_SQL) return;
  if (allowed.size >= ALLOWED_SIZE) allowed.clear();
  allowed.add(sql);
}

function checkStatementText(sql: string, role: StatementRole): void {
  const text = sql.replace(LEADING_COMMENTS, '');
  if (TRANSACTION_CONTROL.test(text)) {
    throw new EdgeliteError('BAD_REQUEST', 'transaction control statements are not allowed: each request runs as one transaction');
  }
  if (FILE_ACCESS.test(text)) throw new EdgeliteError('FORBIDDEN', 'ATTACH, DETACH and VACUUM INTO are not allowed through the API');
  const pragma = parsePragma(text);
  if (!pragma || !pragma.hasArgument || READING_PRAGMAS.has(pragma.name)) return;
  if (role === 'read' || MANAGED_PRAGMAS.has(pragma.name) || pragma.name === '') {
    throw new EdgeliteError('FORBIDDEN', `PRAGMA ${pragma.name || '(unparsed)'} cannot be set through the API`, {
      details: { sql: sql.slice(0, 200) },
    });
  }
}

/** InTransaction is the part of a connection assertNoTransaction needs. */
export interface InTransaction {
  readonly inTransaction: boolean;
  exec(sql: string): unknown;
}

/** assertNoTransaction is the safety net behind checkStatement: a statement left a transaction open. */
export function assertNoTransaction(conn: InTransaction): void {
  if (!conn.inTransaction) return;
  conn.exec('ROLLBACK');
  throw new EdgeliteError('BAD_REQUEST', 'the statement left a transaction open; it was rolled back');
}
