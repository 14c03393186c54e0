/**
 * What `edgelite doctor` reads about one database (README.md#integrity), and the read-only statements
 * that read it. The statements are plain SELECTs over SQLite's pragma table-valued functions plus a few
 * argument-less PRAGMAs and `integrity_check`/`foreign_key_check`, all of which the API's read policy
 * allows (shared/statement-policy.ts; journal_mode is read as the table-valued pragma_journal_mode,
 * since SQLite counts `PRAGMA journal_mode` as a write), so doctor needs no route of its own and runs
 * against a primary or any replica. Pure: the rows come from whoever ran the statements (HTTP, or a local connection).
 */
import { EdgeliteError } from './errors.ts';

export interface ColumnFact {
  name: string;
  /** The declared type as written ('' for none). */
  type: string;
  notNull: boolean;
  /** 1-based place in the primary key, 0 when not in it. */
  pk: number;
  /** table_xinfo's hidden: 0 ordinary, 2 or 3 generated (virtual, stored). */
  hidden: number;
}

export interface ForeignKeyFact {
  id: number;
  parent: string;
  from: string[];
  /** Parent columns; null where the parent's primary key is meant. */
  to: Array<string | null>;
  onUpdate: string;
  onDelete: string;
}

export interface IndexFact {
  name: string;
  unique: boolean;
  /** 'c' CREATE INDEX, 'u' UNIQUE constraint, 'pk' PRIMARY KEY. */
  origin: string;
  partial: boolean;
  /** Key columns in order; null for an expression. */
  columns: Array<string | null>;
}

export interface TableFact {
  name: string;
  strict: boolean;
  withoutRowid: boolean;
  /** The CREATE TABLE text as sqlite_schema stores it. */
  sql: string;
  columns: ColumnFact[];
  foreignKeys: ForeignKeyFact[];
  indexes: IndexFact[];
}

export interface ForeignKeyViolation {
  table: string;
  rowid: number | string | null;
  parent: string;
  fkid: number;
}

export interface DatabaseSettings {
  journalMode: string;
  pageSize: number;
  /** foreign_keys of the connection that answered (a read connection: see README.md#integrity). */
  readerForeignKeys: boolean;
  /** wal_autocheckpoint of a connection that writes, when it could be seen (a local file); null through the API. */
  writerAutoCheckpoint: number | null;
}

export interface DatabaseFacts {
  tables: TableFact[];
  /** integrity_check's rows: ['ok'] when it found nothing. */
  integrity: string[];
  foreignKeyViolations: ForeignKeyViolation[];
  settings: DatabaseSettings;
}

/** INTEGRITY_LIMIT: the most problems integrity_check lists (its own argument); enough to diagnose. */
export const INTEGRITY_LIMIT = 100;

/** USER_TABLES: the database's own tables (not sqlite_*, not the temp schema). */
const USER_TABLES = `t.schema = 'main' AND t.type = 'table' AND t.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'`;

/** FACT_STATEMENTS: what doctor sends, in one read request, in this order (readFacts takes the results in it). */
export const FACT_STATEMENTS: readonly string[] = [
  `SELECT t.name, t.wr, t.strict, s.sql FROM pragma_table_list AS t JOIN sqlite_schema AS s ON s.name = t.name AND s.type = 'table' WHERE ${USER_TABLES} ORDER BY t.name`,
  `SELECT t.name, c.name, c.type, c."notnull", c.pk, c.hidden FROM pragma_table_list AS t, pragma_table_xinfo(t.name) AS c WHERE ${USER_TABLES} ORDER BY t.name, c.cid`,
  `SELECT t.name, k.id, k.seq, k."table", k."from", k."to", k.on_update, k.on_delete FROM pragma_table_list AS t, pragma_foreign_key_list(t.name) AS k WHERE ${USER_TABLES} ORDER BY t.name, k.id, k.seq`,
  `SELECT t.name, i.name, i."unique", i.origin, i.partial, x.seqno, x.name FROM pragma_table_list AS t, pragma_index_list(t.name) AS i, pragma_index_info(i.name) AS x WHERE ${USER_TABLES} ORDER BY t.name, i.name, x.seqno`,
  `PRAGMA integrity_check(${INTEGRITY_LIMIT})`,
  'PRAGMA foreign_key_check',
  'SELECT * FROM pragma_journal_mode',
  'PRAGMA page_size',
  'PRAGMA foreign_keys',
];

type Rows = unknown[][];

const str = (v: unknown): string => (v === null || v === undefined ? '' : String(v));
const num = (v: unknown): number => Number(v);

/** readFacts builds the facts from the rows of FACT_STATEMENTS (one row list per statement, in order). */
export function readFacts(results: Rows[], writerAutoCheckpoint: number | null = null): DatabaseFacts {
  if (results.length !== FACT_STATEMENTS.length) {
    throw new EdgeliteError('INTERNAL', `doctor expected ${FACT_STATEMENTS.length} results, got ${results.length}`);
  }
  const [tables, columns, fks, indexes, integrity, violations, journal, pageSize, foreignKeys] = results as [Rows, Rows, Rows, Rows, Rows, Rows, Rows, Rows, Rows];
  const byName = new Map<string, TableFact>();
  for (const [name, wr, strict, sql] of tables) {
    byName.set(str(name), { name: str(name), withoutRowid: num(wr) === 1, strict: num(strict) === 1, sql: str(sql), columns: [], foreignKeys: [], indexes: [] });
  }
  const table = (name: unknown): TableFact | undefined => byName.get(str(name));
  for (const [t, name, type, notNull, pk, hidden] of columns) {
    table(t)?.columns.push({ name: str(name), type: str(type), notNull: num(notNull) === 1, pk: num(pk), hidden: num(hidden) });
  }
  for (const [t, id, , parent, from, to, onUpdate, onDelete] of fks) {
    const fact = table(t);
    if (!fact) continue;
    let fk = fact.foreignKeys.find((k) => k.id === num(id));
    if (!fk) {
      fk = { id: num(id), parent: str(parent), from: [], to: [], onUpdate: str(onUpdate), onDelete: str(onDelete) };
      fact.foreignKeys.push(fk);
    }
    fk.from.push(str(from));
    fk.to.push(to === null ? null : str(to));
  }
  for (const [t, name, unique, origin, partial, , column] of indexes) {
    const fact = table(t);
    if (!fact) continue;
    let index = fact.indexes.find((i) => i.name === str(name));
    if (!index) {
      index = { name: str(name), unique: num(unique) === 1, origin: str(origin), partial: num(partial) === 1, columns: [] };
      fact.indexes.push(index);
    }
    index.columns.push(column === null ? null : str(column));
  }
  return {
    tables: [...byName.values()],
    integrity: integrity.map((r) => str(r[0])),
    foreignKeyViolations: violations.map(([t, rowid, parent, fkid]) => ({
      table: str(t),
      rowid: rowid === null ? null : (rowid as number | string),
      parent: str(parent),
      fkid: num(fkid),
    })),
    settings: {
      journalMode: str(journal[0]?.[0]).toLowerCase(),
      pageSize: num(pageSize[0]?.[0]),
      readerForeignKeys: num(foreignKeys[0]?.[0]) === 1,
      writerAutoCheckpoint,
    },
  };
}
