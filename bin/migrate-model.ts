/**
 * SchemaModel: an empty in-memory copy of a database's schema, so `edgelite migrate` can plan a table
 * rebuild from the schema as it is at that point of a file (README.md#migrations): the statements
 * before the directive, and earlier rebuilds, have run in the model first. Every statement of the
 * pending files runs here before anything is sent, so a file that cannot run on the schema (a syntax
 * error, a missing column) fails before it reaches the primary. The model holds no rows: what depends
 * on data (a CHECK, a STRICT type, a foreign key) is found on the primary, in the file's transaction.
 */
import Database from 'better-sqlite3';
import { EdgeliteError } from '../shared/errors.ts';
import { firstWords, type MigrationFile } from '../shared/migrate-sql.ts';
import { rebuildStatements, tempNameFor, temporaryCreate, findTable, type ColumnFact, type SchemaObject, type TableShape } from '../shared/migrate-rebuild.ts';

/** SCHEMA_STATEMENTS read what the model is built from, in one query request. */
export const SCHEMA_STATEMENTS = [
  'SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid',
  "SELECT name, type FROM pragma_table_list WHERE schema = 'main'",
];

/** ORDER: tables before what is built on them (views and triggers may name tables created later). */
const ORDER = ['table', 'index', 'view', 'trigger'];

/** ExpandedFile is a file as it is sent: every statement, rebuilds spelt out, and the tables rebuilt. */
export interface ExpandedFile {
  statements: string[];
  rebuilt: string[];
}

export class SchemaModel {
  readonly #db: Database.Database;

  /** SchemaModel builds the model from SCHEMA_STATEMENTS' rows (shadow tables come with their virtual table). */
  constructor(schemaRows: unknown[][], tableList: unknown[][]) {
    this.#db = new Database(':memory:');
    this.#db.pragma('foreign_keys = ON');
    const shadow = new Set(tableList.filter((r) => r[1] === 'shadow').map((r) => String(r[0]).toLowerCase()));
    const objects = schemaRows.map(toObject).filter((o) => o.sql !== null && !/^sqlite_/i.test(o.name) && !shadow.has(o.name.toLowerCase()));
    objects.sort((a, b) => ORDER.indexOf(a.type) - ORDER.indexOf(b.type));
    for (const o of objects) {
      try {
        this.#db.exec(o.sql!);
      } catch (err) {
        this.close();
        throw new EdgeliteError('SQL_ERROR', `cannot model the schema locally to plan a rebuild (${o.type} ${o.name}): ${(err as Error).message}`, { cause: err });
      }
    }
  }

  /** expand runs a file's steps in the model and returns its statements, each rebuild planned here. */
  expand(file: MigrationFile): ExpandedFile {
    const statements: string[] = [];
    const rebuilt: string[] = [];
    for (const step of file.steps) {
      if (step.kind === 'sql') {
        this.#run(file, step.sql);
        statements.push(step.sql);
        continue;
      }
      let plan: { statements: string[] };
      let table: string;
      try {
        const objects = this.objects();
        table = findTable(objects, step.table).name;
        const tempName = tempNameFor(objects, table);
        const next = this.#newShape(file, temporaryCreate(step.createSql, table, tempName), tempName);
        plan = rebuildStatements(table, step.createSql, tempName, { objects, old: this.shape(table), next, referencedBy: this.referencedBy(table) });
      } catch (err) {
        if (!(err instanceof EdgeliteError) || err.details?.migration) throw err;
        throw new EdgeliteError(err.code, `${file.name}: ${err.message}`, { cause: err, details: { ...err.details, migration: file.name } });
      }
      for (const sql of plan.statements) this.#run(file, sql);
      statements.push(...plan.statements);
      rebuilt.push(table);
    }
    return { statements, rebuilt };
  }

  objects(): SchemaObject[] {
    return this.#db.prepare('SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid').raw().all().map((r) => toObject(r as unknown[]));
  }

  shape(table: string): TableShape {
    const columns = this.#db.prepare('SELECT name, type, pk, hidden FROM pragma_table_xinfo(?)').all(table) as ColumnFact[];
    const list = this.#db.prepare("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?").get(table) as { wr: number } | undefined;
    return { columns, withoutRowid: list?.wr === 1 };
  }

  /** referencedBy: the tables whose foreign keys name `table`. */
  referencedBy(table: string): string[] {
    const rows = this.#db
      .prepare(`SELECT DISTINCT l.name FROM pragma_table_list AS l, pragma_foreign_key_list(l.name) AS f WHERE l.schema = 'main' AND l.type = 'table' AND lower(f."table") = lower(?)`)
      .all(table) as Array<{ name: string }>;
    return rows.map((r) => r.name);
  }

  close(): void {
    this.#db.close();
  }

  /** #newShape creates the new definition under its temporary name in a savepoint, reads it, rolls back. */
  #newShape(file: MigrationFile, createSql: string, tempName: string): TableShape {
    this.#db.exec('SAVEPOINT edgelite_shape');
    try {
      this.#run(file, createSql);
      return this.shape(tempName);
    } finally {
      this.#db.exec('ROLLBACK TO edgelite_shape; RELEASE edgelite_shape');
    }
  }

  #run(file: MigrationFile, sql: string): void {
    try {
      this.#db.exec(sql);
    } catch (err) {
      throw new EdgeliteError('SQL_ERROR', `${file.name}: ${(err as Error).message} (checked on the schema before sending: ${firstWords(sql)})`, {
        cause: err,
        details: { migration: file.name },
      });
    }
  }
}

function toObject(r: unknown[]): SchemaObject {
  return { type: String(r[0]), name: String(r[1]), tblName: String(r[2]), sql: r[3] === null || r[3] === undefined ? null : String(r[3]) };
}
