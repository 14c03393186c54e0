/**
 * The migrations `edgelite doctor` proposes (README.md#integrity): an index for an unindexed foreign key,
 * and a table rebuild to make a table STRICT or give it a primary key, in the migrate tool's rebuild
 * syntax (README.md#integrity, "--fix DIR"). Pure: nothing here touches a database.
 */
import type { TableFact } from './doctor-facts.ts';
import { isColumnDefinition, parseCreateTable, quoteName, strictType, withColumnType } from './doctor-sql.ts';

export interface RebuildPlan {
  strict: boolean;
  /** A column to add as `INTEGER PRIMARY KEY`, or null. */
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
 * rebuildMigration is a table rebuild in the migrate tool's syntax (README.md#integrity, "--fix DIR"): the
 * directive `-- edgelite:rebuild`, then the table's new CREATE TABLE under its own name. The migrate
 * tool plans SQLite's rebuild from the schema as it is when the file runs (drop and recreate views and
 * triggers, new table, copy the columns both have, drop, rename, indexes, foreign_key_check), so a
 * schema changed since doctor looked is rebuilt as it then is. An added key column is numbered anew
 * by SQLite as the rows are copied (in rowid order).
 */
export function rebuildMigration(table: TableFact, plan: RebuildPlan): string {
  const what = [plan.strict ? 'STRICT' : '', plan.addPrimaryKey ? `with ${quoteName(plan.addPrimaryKey)} INTEGER PRIMARY KEY` : ''].filter(Boolean).join(', ');
  return `-- Rebuild ${quoteName(table.name)}: ${what}.\n-- edgelite:rebuild\n${newTableSql(table, plan, table.name)};\n`;
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
