/**
 * Reading a migration file (README.md#migrations): its name (`NNNN_name.sql`), its checksum (SHA-256 of
 * its bytes, lowercase hex) and its steps: plain statements, and table rebuilds asked for by the
 * directive `-- edgelite:rebuild [TABLE]` in the comments just before a `CREATE TABLE`. Pure and
 * Worker-safe: nothing here touches a database or a file.
 */
import { EdgeliteError } from './errors.ts';
import { splitStatements, tokenize, unquoteName } from './doctor-sql.ts';
import { checkStatement } from './statement-policy.ts';

/** MIGRATION_NAME: a file migrate reads: a number of at least four digits, `_`, a name, `.sql`. */
export const MIGRATION_NAME = /^(\d{4,})_(.+)\.sql$/;

/** REBUILD_DIRECTIVE: the comment line that turns the CREATE TABLE after it into a table rebuild. */
const REBUILD_DIRECTIVE = /^--\s*edgelite:rebuild(?:\s+(\S+))?\s*$/;
/** ANY_DIRECTIVE: any `-- edgelite:` comment line, so a misspelt directive is refused, not ignored. */
const ANY_DIRECTIVE = /^--\s*edgelite:(\S*)/;

/** MigrationStep is one unit of a file: a statement run as written, or a table rebuild. */
export type MigrationStep =
  | { kind: 'sql'; sql: string }
  /** Rebuild `table` (as the CREATE names it) to `createSql`, the new definition under the table's own name. */
  | { kind: 'rebuild'; table: string; createSql: string };

export interface MigrationFile {
  /** The file name, `0001_init.sql`: the key in `_edgelite_migrations`. */
  name: string;
  /** Its number, for ordering (numeric, so 10000 sorts after 9999). */
  number: bigint;
  /** SHA-256 of the file's bytes, 64 lowercase hex digits. */
  checksum: string;
  steps: MigrationStep[];
}

/** migrationError is the one error of a malformed file: BAD_REQUEST naming the file. */
export function migrationError(file: string, message: string, details: Record<string, unknown> = {}): EdgeliteError {
  return new EdgeliteError('BAD_REQUEST', `${file}: ${message}`, { details: { migration: file, ...details } });
}

/** sha256Hex is SHA-256 of `bytes` in lowercase hex (Web Crypto, so the Worker can run it too). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  let out = '';
  for (const b of digest) out += b.toString(16).padStart(2, '0');
  return out;
}

/**
 * parseMigration reads one file. Each statement must pass the API's write policy (no BEGIN/COMMIT:
 * the file is one transaction; no managed PRAGMA); a rebuild directive must be followed by
 * `CREATE TABLE name (...)` whose name matches the directive's TABLE when one is given.
 */
export async function parseMigration(name: string, bytes: Uint8Array): Promise<MigrationFile> {
  const m = MIGRATION_NAME.exec(name);
  if (!m) throw migrationError(name, 'a migration file is named NNNN_name.sql (four or more digits)');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw migrationError(name, 'not UTF-8 text');
  }
  let statements: string[];
  try {
    statements = splitStatements(text);
  } catch (err) {
    throw migrationError(name, (err as Error).message);
  }
  const steps = statements.map((sql) => parseStep(name, sql));
  if (steps.length === 0) throw migrationError(name, 'holds no statement');
  return { name, number: BigInt(m[1]!), checksum: await sha256Hex(bytes), steps };
}

/** parseStep turns one statement (with the comments before it) into a step. */
function parseStep(file: string, sql: string): MigrationStep {
  let rebuild: { table: string | null } | null = null;
  for (const line of leadingCommentLines(sql)) {
    const d = REBUILD_DIRECTIVE.exec(line);
    if (d) {
      rebuild = { table: d[1] === undefined ? null : unquoteName(d[1]) };
      continue;
    }
    const any = ANY_DIRECTIVE.exec(line);
    if (any) throw migrationError(file, `unknown directive "-- edgelite:${any[1]}" (the one directive is "-- edgelite:rebuild [TABLE]")`);
  }
  try {
    checkStatement(sql, 'write');
  } catch (err) {
    throw migrationError(file, `${(err as Error).message}: ${firstWords(sql)}`);
  }
  if (!rebuild) return { kind: 'sql', sql };
  const table = createTableName(sql);
  if (table === null) throw migrationError(file, `"-- edgelite:rebuild" must be followed by CREATE TABLE name (...), not: ${firstWords(sql)}`);
  if (rebuild.table !== null && rebuild.table.toLowerCase() !== table.toLowerCase()) {
    throw migrationError(file, `"-- edgelite:rebuild ${rebuild.table}" is followed by CREATE TABLE ${table}: the names must match`);
  }
  return { kind: 'rebuild', table, createSql: sql };
}

/** leadingCommentLines: the `--` comment lines before a statement's first token. */
function leadingCommentLines(sql: string): string[] {
  const out: string[] = [];
  for (const t of tokenize(sql)) {
    if (t.kind !== 'space') break;
    if (t.text.startsWith('--')) out.push(t.text.trim());
  }
  return out;
}

/**
 * createTableName is the table a `CREATE TABLE name (...)` creates (unquoted; `main.` allowed), or null
 * for anything else (TEMP, IF NOT EXISTS, another schema, AS SELECT, not a CREATE TABLE).
 */
export function createTableName(sql: string): string | null {
  const t = tokenize(sql).filter((x) => x.kind !== 'space');
  const word = (i: number) => (t[i]?.kind === 'word' ? t[i]!.text.toUpperCase() : '');
  if (word(0) !== 'CREATE' || word(1) !== 'TABLE') return null;
  let i = 2;
  let name = t[i];
  if (t[i + 1]?.text === '.') {
    if (!name || unquoteName(name.text).toLowerCase() !== 'main') return null;
    i += 2;
    name = t[i];
  }
  if (!name || (name.kind !== 'word' && name.kind !== 'name') || t[i + 1]?.text !== '(') return null;
  if (name.kind === 'word' && ['IF', 'TEMP', 'TEMPORARY'].includes(name.text.toUpperCase())) return null;
  return unquoteName(name.text);
}

/** firstWords: the start of a statement, for messages. */
export function firstWords(sql: string): string {
  const code = tokenize(sql).map((t) => (t.kind === 'space' ? ' ' : t.text)).join('').replace(/\s+/g, ' ').trim();
  return code.length > 80 ? `${code.slice(0, 77)}...` : code;
}

/**
 * sortMigrations orders files by number; two files with one number (`0002_a.sql`, `0002_b.sql`) are
 * refused, since their order would be a guess.
 */
export function sortMigrations(files: readonly MigrationFile[]): MigrationFile[] {
  const sorted = [...files].sort((a, b) => (a.number < b.number ? -1 : a.number > b.number ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.number === sorted[i - 1]!.number) {
      throw migrationError(sorted[i]!.name, `has the same number as ${sorted[i - 1]!.name}: number each file once`);
    }
  }
  return sorted;
}
