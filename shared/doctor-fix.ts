/**
 * The migrations `edgelite doctor` proposes (README.md#integrity): an index for an unindexed foreign key,
 * and SQLite's table rebuild (new table, copy, drop, rename, recreate indexes, triggers and views) to
 * make a table STRICT or give it a primary key, written as plain SQL that runs in one transaction on the
 * primary's writer (foreign_keys ON). Pure: nothing here touches a database.
 */
import type { SchemaObject, TableFact } from './doctor-facts.ts';
import { isColumnDefinition, parseCreateTable, quoteName, strictType, tokenize, unquoteName, withColumnType } from './doctor-sql.ts';

/** REBUILD_PREFIX names the new table while it is filled: `_edgelite_new_<table>`. */
export const REBUILD_PREFIX = '_edgelite_new_';

export interface RebuildPlan {
  strict: boolean;
  /** A column to add as `INTEGER PRIMARY KEY`, filled from the rowid (so rowids stay), or null. */
  addPrimaryKey: string | null;
}

/** primaryKeyColumnName picks a name for an added key column that the table does not use. */
export function primaryKeyColumnName(table: TableFact): string {
  const used = new Set(table.columns.map((c) => c.name.toLowerCase()));
  for (const name of ['id', 'row_id', '_id']) if (!used.has(name)) return name;
  let n = 2;
  while (used.has(`id${n}`)) n++;
  return `id${n}`;
}

/** rowidAlias: the column that is the rowid (a lone INTEGER PRIMARY KEY of a rowid table), or null. */
export function rowidAlias(table: TableFact): string | null {
  if (table.withoutRowid) return null;
  const pk = table.columns.filter((c) => c.pk > 0);
  return pk.length === 1 && pk[0]!.type.toUpperCase() === 'INTEGER' ? pk[0]!.name : null;
}

/** mentions: does `sql` use `name` as a name (a word or quoted name token, case-insensitively)? */
export function mentions(sql: string, name: string): boolean {
  const lower = name.toLowerCase();
  return tokenize(sql).some((t) => {
    if (t.kind === 'word') return t.text.toLowerCase() === lower;
    if (t.kind === 'name' || t.kind === 'string') return unquoteName(t.text).toLowerCase() === lower;
    return false;
  });
}

/** newTableSql is the CREATE TABLE of the rebuilt table, under `newName`, keeping every constraint as written. */
export function newTableSql(table: TableFact, plan: RebuildPlan, newName: string): string {
  const def = parseCreateTable(table.sql);
  let column = 0;
  const parts = def.parts.map((part) => {
    if (!isColumnDefinition(part)) return part;
    const fact = table.columns.filter((c) => c.hidden !== 1)[column++];
    return plan.strict && fact ? withColumnType(part, strictType(fact.type)) : part;
  });
  if (plan.addPrimaryKey) parts.unshift(`${quoteName(plan.addPrimaryKey)} INTEGER PRIMARY KEY`);
  const options = def.options.split(',').map((o) => o.trim()).filter((o) => o !== '');
  if (plan.strict && !options.some((o) => o.toUpperCase() === 'STRICT')) options.push('STRICT');
  return `CREATE TABLE ${quoteName(newName)} (\n  ${parts.join(',\n  ')}\n)${options.length ? ` ${options.join(', ')}` : ''}`;
}

/**
 * rebuildSql is the whole rebuild of `table` as a migration script. Views and triggers that name the
 * table are dropped first and recreated last (renaming a table checks every view and trigger, and those
 * would name a table that is gone for a moment); the table's own indexes and triggers are recreated from
 * their stored text. The copy keeps rowids. The writer runs with foreign_keys ON, so the copy checks the
 * table's own foreign keys row by row; a table other tables reference is not rebuilt this way (the
 * caller refuses it: see referencedBy), because dropping it would run their ON DELETE actions.
 */
export function rebuildSql(table: TableFact, schema: readonly SchemaObject[], plan: RebuildPlan): string {
  const name = quoteName(table.name);
  const temp = quoteName(`${REBUILD_PREFIX}${table.name}`);
  const copied = table.columns.filter((c) => c.hidden === 0).map((c) => quoteName(c.name));
  const alias = rowidAlias(table);
  const into = [...copied];
  const from = [...copied];
  if (plan.addPrimaryKey) {
    into.unshift(quoteName(plan.addPrimaryKey));
    from.unshift('rowid');
  } else if (!table.withoutRowid && alias === null) {
    into.unshift('rowid');
    from.unshift('rowid');
  }
  const own = schema.filter((o) => o.table === table.name && (o.type === 'index' || o.type === 'trigger') && o.sql !== null);
  const dependent = schema.filter((o) => o.sql !== null && o.table !== table.name && (o.type === 'view' || o.type === 'trigger') && mentions(o.sql, table.name));
  const lines = [
    `-- Rebuild ${name}${plan.strict ? ' as STRICT' : ''}${plan.addPrimaryKey ? ` with ${quoteName(plan.addPrimaryKey)} INTEGER PRIMARY KEY (taken from the rowid)` : ''}: SQLite's table rebuild, in one transaction.`,
    ...[...dependent].reverse().map((o) => `DROP ${o.type.toUpperCase()} ${quoteName(o.name)};`),
    `${newTableSql(table, plan, `${REBUILD_PREFIX}${table.name}`)};`,
    `INSERT INTO ${temp} (${into.join(', ')}) SELECT ${from.join(', ')} FROM ${name};`,
    `DROP TABLE ${name};`,
    `ALTER TABLE ${temp} RENAME TO ${name};`,
    ...own.map((o) => `${o.sql};`),
    ...dependent.map((o) => `${o.sql};`),
  ];
  return `${lines.join('\n')}\n`;
}

/** referencedBy lists the other tables whose foreign keys point at `table`. */
export function referencedBy(table: TableFact, tables: readonly TableFact[]): string[] {
  const lower = table.name.toLowerCase();
  return tables.filter((t) => t.name !== table.name && t.foreignKeys.some((k) => k.parent.toLowerCase() === lower)).map((t) => t.name);
}

/** indexName is the name doctor gives an index on `columns` of `table`. */
export function indexName(table: string, columns: readonly string[]): string {
  return `${table}_${columns.join('_')}_idx`;
}

/** indexSql creates the index a foreign key's child columns need. */
export function indexSql(table: string, columns: readonly string[]): string {
  return `CREATE INDEX IF NOT EXISTS ${quoteName(indexName(table, columns))} ON ${quoteName(table)} (${columns.map(quoteName).join(', ')});\n`;
}
