/**
 * SQLite's table rebuild (https://sqlite.org/lang_altertable.html, "Making Other Kinds Of Table Schema
 * Changes"; README.md#migrations): the statements that turn a table into a new definition inside the one
 * transaction of a migration on the primary. Pure and Worker-safe: it plans from facts about the schema
 * (read by the caller) and returns SQL.
 *
 * The documented procedure turns `foreign_keys` off first; through the API it cannot (the writer always
 * runs with it on, and it cannot change inside a transaction, nor can `defer_foreign_keys` be set:
 * shared/statement-policy.ts). So, with foreign keys on:
 * - a table that other tables reference is refused: `DROP TABLE` would run their ON DELETE actions
 *   (or fail on their rows), and renaming the new table does not undo that;
 * - a reference of the table to itself is written against the temporary name, so dropping the old
 *   table touches no row of the new one; the final RENAME points it back at the table's own name;
 * - the copy is one INSERT ... SELECT, whose foreign keys SQLite checks at the end of the statement
 *   (so rows that reference rows copied later pass), and `foreign_key_check` of the table is counted
 *   into the migration's record row, whose CHECK fails the transaction if it finds anything.
 */
import { EdgeliteError } from './errors.ts';
import { quoteName, quoteString, tokenize, unquoteName } from './doctor-sql.ts';

/** SchemaObject is one row of `sqlite_schema`, in rowid order. */
export interface SchemaObject {
  type: string;
  name: string;
  tblName: string;
  sql: string | null;
}

/** ColumnFact is one row of `pragma_table_xinfo` (hidden: 0 normal, 2 and 3 generated). */
export interface ColumnFact {
  name: string;
  type: string;
  pk: number;
  hidden: number;
}

/** TableShape: what the copy needs of a table. */
export interface TableShape {
  columns: ColumnFact[];
  withoutRowid: boolean;
}

export interface RebuildFacts {
  /** `sqlite_schema` before the rebuild, in rowid order. */
  objects: SchemaObject[];
  /** The table as it is. */
  old: TableShape;
  /** The new definition, as SQLite reads it (created under the temporary name). */
  next: TableShape;
  /** Other tables whose foreign keys name this one. */
  referencedBy: string[];
}

export interface RebuildPlan {
  statements: string[];
  /** The columns copied, and whether the rowid was copied with them. */
  copied: string[];
  rowid: boolean;
}

/** TEMP_PREFIX: the new table's name until the RENAME. */
export const TEMP_PREFIX = '_edgelite_rebuild_';

function refuse(table: string, message: string): EdgeliteError {
  return new EdgeliteError('BAD_REQUEST', `cannot rebuild ${quoteName(table)}: ${message}`, { details: { table } });
}

/** findTable is the schema row of ordinary table `table` (names compare ignoring case, as SQLite's do). */
export function findTable(objects: readonly SchemaObject[], table: string): SchemaObject {
  const lower = table.toLowerCase();
  const row = objects.find((o) => o.name.toLowerCase() === lower);
  if (!row) throw refuse(table, 'no such table');
  if (row.type !== 'table') throw refuse(table, `it is a ${row.type}, not a table`);
  if (/^\s*CREATE\s+VIRTUAL\b/i.test(row.sql ?? '')) throw refuse(table, 'it is a virtual table');
  if (/^(sqlite_|_edgelite_)/i.test(row.name)) throw refuse(table, 'it is an internal table');
  return row;
}

/** tempNameFor picks the temporary name: TEMP_PREFIX + the table, numbered on if that is taken. */
export function tempNameFor(objects: readonly SchemaObject[], table: string): string {
  const taken = new Set(objects.map((o) => o.name.toLowerCase()));
  let name = `${TEMP_PREFIX}${table}`;
  for (let n = 2; taken.has(name.toLowerCase()); n++) name = `${TEMP_PREFIX}${table}_${n}`;
  return name;
}

/**
 * temporaryCreate is `createSql` (CREATE TABLE table (...)) under `tempName`, its references to `table`
 * itself pointed at `tempName` too.
 */
export function temporaryCreate(createSql: string, table: string, tempName: string): string {
  const tokens = tokenize(createSql);
  const code = tokens.map((t, i) => ({ t, i })).filter((x) => x.t.kind !== 'space');
  const lower = table.toLowerCase();
  const replace = new Set<number>();
  // CREATE TABLE [main .] name
  const at = code[3]?.t.text === '.' ? 4 : 2;
  if (!code[at]) throw refuse(table, 'the new definition is not CREATE TABLE name (...)');
  replace.add(code[at]!.i);
  for (let k = 0; k + 1 < code.length; k++) {
    if (code[k]!.t.kind !== 'word' || code[k]!.t.text.toUpperCase() !== 'REFERENCES') continue;
    const ref = code[k + 1]!;
    if ((ref.t.kind === 'word' || ref.t.kind === 'name') && unquoteName(ref.t.text).toLowerCase() === lower) replace.add(ref.i);
  }
  // `main.` goes: the temporary table is in the main schema anyway.
  const removed = new Set(at === 4 ? [code[2]!.i, code[3]!.i] : []);
  return tokens.map((t, i) => (replace.has(i) ? quoteName(tempName) : removed.has(i) ? '' : t.text)).join('');
}

/** mentions: whether `sql` names any of `names` (as a word, a quoted name or a string: over-counting is safe). */
function mentions(sql: string, names: ReadonlySet<string>): boolean {
  for (const t of tokenize(sql)) {
    if ((t.kind === 'word' || t.kind === 'name' || t.kind === 'string') && names.has(unquoteName(t.text).toLowerCase())) return true;
  }
  return false;
}

/**
 * dependents: the views and triggers that name the table, or a view that does, transitively, in
 * `sqlite_schema` order. SQLite's RENAME checks every view and trigger, and one naming the dropped table
 * would fail it, so they are dropped before and created again after.
 */
export function dependents(objects: readonly SchemaObject[], table: string): SchemaObject[] {
  const names = new Set([table.toLowerCase()]);
  const found = new Set<SchemaObject>();
  for (let grew = true; grew; ) {
    grew = false;
    for (const o of objects) {
      if (found.has(o) || (o.type !== 'view' && o.type !== 'trigger') || o.sql === null) continue;
      if (!names.has(o.tblName.toLowerCase()) && !mentions(o.sql, names)) continue;
      found.add(o);
      if (o.type === 'view') names.add(o.name.toLowerCase());
      grew = true;
    }
  }
  return objects.filter((o) => found.has(o));
}

const isGenerated = (c: ColumnFact) => c.hidden === 2 || c.hidden === 3;

/** rowidAliasOf: the INTEGER PRIMARY KEY column of a rowid table, or null. */
function rowidAliasOf(shape: TableShape): string | null {
  if (shape.withoutRowid) return null;
  const pk = shape.columns.filter((c) => c.pk > 0);
  return pk.length === 1 && pk[0]!.type.toUpperCase() === 'INTEGER' ? pk[0]!.name : null;
}

/**
 * rebuildStatements plans the rebuild of `table` to `createSql`: drop its dependent views and triggers,
 * create the new table under `tempName`, copy the columns both have (and the rowid, when both are rowid
 * tables and the new one has no INTEGER PRIMARY KEY of its own to number), drop the old table, rename
 * the new one, create the table's indexes, then the views and triggers again, each from its own SQL.
 */
export function rebuildStatements(table: string, createSql: string, tempName: string, facts: RebuildFacts): RebuildPlan {
  const row = findTable(facts.objects, table);
  const name = row.name;
  const others = facts.referencedBy.filter((t) => t.toLowerCase() !== name.toLowerCase());
  if (others.length > 0) {
    throw refuse(name, `${others.map(quoteName).join(', ')} reference${others.length === 1 ? 's' : ''} it with a foreign key, and with foreign keys on (always, through edgelite) dropping it would run their ON DELETE actions; rebuild those tables' references away first, or rebuild by hand`);
  }
  const oldColumns = new Map(facts.old.columns.filter((c) => !isGenerated(c)).map((c) => [c.name.toLowerCase(), c]));
  const copied = facts.next.columns.filter((c) => !isGenerated(c) && oldColumns.has(c.name.toLowerCase())).map((c) => c.name);
  if (copied.length === 0) throw refuse(name, 'the new definition shares no column with the table: nothing would be copied');
  const newAlias = rowidAliasOf(facts.next);
  const names = new Set([...facts.old.columns, ...facts.next.columns].map((c) => c.name.toLowerCase()));
  const rowidName = ['rowid', 'oid', '_rowid_'].find((n) => !names.has(n));
  const rowid = !facts.old.withoutRowid && !facts.next.withoutRowid && newAlias === null && rowidName !== undefined;
  const cols = [...(rowid ? [rowidName!] : []), ...copied.map(quoteName)].join(', ');
  const deps = dependents(facts.objects, name);
  const indexes = facts.objects.filter((o) => o.type === 'index' && o.tblName.toLowerCase() === name.toLowerCase() && o.sql !== null);
  const drop = (o: SchemaObject) => `DROP ${o.type === 'view' ? 'VIEW' : 'TRIGGER'} ${quoteName(o.name)}`;
  const statements = [
    ...[...deps].reverse().map(drop),
    temporaryCreate(createSql, name, tempName),
    `INSERT INTO ${quoteName(tempName)} (${cols}) SELECT ${cols} FROM ${quoteName(name)}`,
    `DROP TABLE ${quoteName(name)}`,
    `ALTER TABLE ${quoteName(tempName)} RENAME TO ${quoteName(name)}`,
    ...indexes.map((o) => o.sql!),
    ...deps.map((o) => o.sql!),
  ];
  return { statements, copied, rowid };
}

/** foreignKeyViolationsSql counts what `foreign_key_check` finds in `tables` (0 for none). */
export function foreignKeyViolationsSql(tables: readonly string[]): string {
  if (tables.length === 0) return '0';
  return tables.map((t) => `(SELECT count(*) FROM pragma_foreign_key_check(${quoteString(t)}))`).join(' + ');
}
