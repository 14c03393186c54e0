/**
 * doctor's rules and fixes (README.md#integrity) over real SQLite files: the facts are read with the
 * very statements doctor sends through the API (FACT_STATEMENTS), here on a local connection. Each
 * finding kind once (journal mode and a writer's auto-checkpoint included, which no database served by
 * a primary can show through the API), none on a database built to the defaults, and the proposed
 * rebuild's new table (the migrate tool runs the rebuild itself, README.md#integrity) has no findings
 * and keeps every constraint of the old one.
 */
import Database from 'better-sqlite3';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FACT_STATEMENTS, readFacts, type DatabaseFacts } from '../../shared/doctor-facts.ts';
import { diagnose, FINDING_CODES, type Finding } from '../../shared/doctor-rules.ts';
import { parseCreateTable, splitStatements, strictType, withColumnType } from '../../shared/doctor-sql.ts';
import { writeFixes } from '../../bin/doctor-files.ts';
import { decideColumn, textOf, type StorageClass } from '../../bin/export-types.ts';
import { stopsAfterEach, tempDir } from '../helpers.ts';

function facts(db: Database.Database, writerAutoCheckpoint: number | null = null): DatabaseFacts {
  return readFacts(FACT_STATEMENTS.map((sql) => db.prepare(sql).raw().all() as unknown[][]), writerAutoCheckpoint);
}

const codes = (findings: Finding[]) => findings.map((f) => f.code).sort();

/** DEFAULTS: STRICT tables with primary keys, indexed foreign keys, WAL (what doctor finds nothing in). */
const DEFAULTS = `
  CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL) STRICT;
  CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), body TEXT) STRICT;
  CREATE INDEX posts_user ON posts(user_id);
  CREATE TABLE tags (post_id INTEGER REFERENCES posts(id), tag TEXT, PRIMARY KEY (post_id, tag)) WITHOUT ROWID, STRICT;
  INSERT INTO users VALUES (1, 'a');
  INSERT INTO posts VALUES (1, 1, 'x');
  INSERT INTO tags VALUES (1, 't');`;

describe('doctor rules', () => {
  const stops = stopsAfterEach();
  function file(name: string): Database.Database {
    const t = tempDir('doctor-rules');
    stops.push(t.cleanup);
    const db = new Database(join(t.dir, name));
    stops.push(() => {
      if (db.open) db.close();
    });
    return db;
  }

  it('finds nothing in a database built to the defaults', () => {
    const db = file('good.db');
    db.pragma('journal_mode = WAL');
    db.exec(DEFAULTS);
    expect(diagnose(facts(db, 0))).toEqual([]);
  });

  it('finds each kind once in a crafted database', () => {
    const db = file('bad.db');
    db.pragma('page_size = 1024');
    db.pragma('foreign_keys = OFF');
    db.exec(`
      CREATE TABLE parent (id INTEGER PRIMARY KEY) STRICT;
      CREATE TABLE loose (a INT, b VARCHAR(10));
      CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id)) STRICT;
      CREATE TABLE idx (id INTEGER PRIMARY KEY, b TEXT, c TEXT) STRICT;
      CREATE INDEX idx_b ON idx(b);
      INSERT INTO child VALUES (1, 42);
      INSERT INTO idx VALUES (1, 'x', 'y');`);
    db.unsafeMode(true);
    db.pragma('writable_schema = ON');
    db.prepare(`UPDATE sqlite_schema SET sql = 'CREATE INDEX idx_b ON idx(c)' WHERE name = 'idx_b'`).run();
    db.close();
    const reopened = new Database(db.name);
    stops.push(() => {
      reopened.close();
    });
    const found = diagnose(facts(reopened, 1000));
    expect(codes(found)).toEqual([...FINDING_CODES].sort());
    const by = (code: string) => found.find((f) => f.code === code)!;
    expect(by('JOURNAL_MODE_NOT_WAL').severity).toBe('error');
    expect(by('INTEGRITY_CHECK_FAILED').fix).toMatchObject({ kind: 'migration', sql: expect.stringContaining('REINDEX "idx_b"') });
    expect(by('FOREIGN_KEY_VIOLATION').message).toContain('rowid 1');
    expect(by('FOREIGN_KEY_NOT_INDEXED').fix).toMatchObject({ kind: 'migration', sql: 'CREATE INDEX IF NOT EXISTS "child_parent_id_idx" ON "child" ("parent_id");\n' });
    expect(by('NOT_STRICT').fix).toEqual(by('NO_PRIMARY_KEY').fix);
    expect(by('PAGE_SIZE').message).toContain('1024');
    expect(by('WAL_AUTOCHECKPOINT_ON').message).toContain('1000');
    // The REINDEX it proposes repairs what integrity_check found.
    reopened.exec((by('INTEGRITY_CHECK_FAILED').fix as { sql: string }).sql);
    expect(reopened.pragma('integrity_check', { simple: true })).toBe('ok');
  });

  it('proposes a rebuild in the migrate syntax whose new table is STRICT, keyed, and keeps every constraint', () => {
    const db = file('rebuild.db');
    db.pragma('journal_mode = WAL');
    const odd = `CREATE TABLE "odd ""name""" (a INT CHECK (a >= 0), b VARCHAR(10) COLLATE NOCASE DEFAULT 'x', c, d NUMERIC, e DATETIME, o INTEGER REFERENCES owner(id))`;
    db.exec(`CREATE TABLE owner (id INTEGER PRIMARY KEY) STRICT; ${odd}; CREATE INDEX odd_o ON "odd ""name"""(o);`);
    const found = diagnose(facts(db, 0));
    expect(codes(found)).toEqual(['NOT_STRICT', 'NO_PRIMARY_KEY']);
    const fix = found[0]!.fix as { kind: 'migration'; name: string; sql: string };
    expect(fix).toMatchObject({ kind: 'migration', name: 'rebuild_odd "name"' });
    const [comment, directive, ...create] = fix.sql.trimEnd().split('\n');
    expect(comment).toBe('-- Rebuild "odd ""name""": STRICT, with "id" INTEGER PRIMARY KEY.');
    expect(directive).toBe('-- edgelite:rebuild');
    expect(create.join('\n')).toBe(
      `CREATE TABLE "odd ""name""" (\n  "id" INTEGER PRIMARY KEY,\n  a INTEGER CHECK (a >= 0),\n  b TEXT COLLATE NOCASE DEFAULT 'x',\n  c ANY,\n  d ANY,\n  e ANY,\n  o INTEGER REFERENCES owner(id)\n) STRICT;`,
    );
    // The new definition, built where the old one was, has no findings and keeps the old constraints.
    const fresh = file('fresh.db');
    fresh.pragma('journal_mode = WAL');
    fresh.exec(`CREATE TABLE owner (id INTEGER PRIMARY KEY) STRICT; INSERT INTO owner VALUES (7); ${splitStatements(fix.sql).join(';')}; CREATE INDEX odd_o ON "odd ""name"""(o);`);
    expect(diagnose(facts(fresh, 0))).toEqual([]);
    const ins = fresh.prepare(`INSERT INTO "odd ""name""" (a, b, c, d, o) VALUES (?, ?, ?, ?, ?)`);
    ins.run(1, 'B', Buffer.from([0]), 1.5, 7);
    expect(() => ins.run(-1, 'x', null, null, null)).toThrow(/CHECK/);
    expect(() => ins.run(1, 'x', null, null, 99)).toThrow(/FOREIGN KEY/);
    expect(() => ins.run('not a number', 'x', null, null, null)).toThrow(/cannot store TEXT value in INTEGER column/);
    expect(fresh.prepare(`SELECT id, b FROM "odd ""name""" WHERE b = 'b'`).raw().all()).toEqual([[1, 'B']]);
  });

  it('proposes no rebuild by SQL for a table others reference (their ON DELETE actions would run)', () => {
    const db = file('parent.db');
    db.pragma('journal_mode = WAL');
    db.exec(`CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id) ON DELETE CASCADE) STRICT; CREATE INDEX c_p ON c(p);`);
    const [f] = diagnose(facts(db, 0));
    expect(f).toMatchObject({ code: 'NOT_STRICT', object: 'p', fix: { kind: 'manual', steps: expect.stringContaining('referenced by "c"') } });
  });

  it('--fix numbers files on from the highest in the directory and does not write a fix twice', () => {
    const t = tempDir('doctor-fix');
    stops.push(t.cleanup);
    const dir = join(t.dir, 'migrations');
    mkdirSync(dir);
    writeFileSync(join(dir, '0007_users.sql'), 'CREATE TABLE users (id INTEGER PRIMARY KEY) STRICT;\n');
    const findings: Finding[] = [
      { code: 'FOREIGN_KEY_NOT_INDEXED', severity: 'warning', object: 'b', message: 'm1', fix: { kind: 'migration', name: 'index_b_a_idx', sql: 'CREATE INDEX x ON b(a);\n' } },
      { code: 'NOT_STRICT', severity: 'warning', object: 'T', message: 'm2', fix: { kind: 'migration', name: 'rebuild_T some', sql: 'SELECT 1;\n' } },
      { code: 'NO_PRIMARY_KEY', severity: 'warning', object: 'T', message: 'm3', fix: { kind: 'migration', name: 'rebuild_T some', sql: 'SELECT 1;\n' } },
      { code: 'PAGE_SIZE', severity: 'warning', message: 'm4', fix: { kind: 'manual', steps: 'offline' } },
    ];
    expect(writeFixes(dir, 'app', findings).map((p) => p.slice(dir.length + 1))).toEqual(['0008_index_b_a_idx.sql', '0009_rebuild_t_some.sql']);
    expect(readFileSync(join(dir, '0009_rebuild_t_some.sql'), 'utf8')).toMatch(/NOT_STRICT T: m2\n.*NO_PRIMARY_KEY T: m3\nSELECT 1;\n$/s);
    expect(writeFixes(dir, 'app', findings)).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual(['0007_users.sql', '0008_index_b_a_idx.sql', '0009_rebuild_t_some.sql']);
  });
});

describe('doctor SQL', () => {
  it('splits a CREATE TABLE and swaps column types, keeping constraints as written', () => {
    const def = parseCreateTable(`CREATE TABLE t (a VARCHAR(10, 2) NOT NULL, "b c" DEFAULT (1, 2), d, CHECK (a <> ','), PRIMARY KEY (a)) WITHOUT ROWID`);
    expect(def.parts).toEqual(['a VARCHAR(10, 2) NOT NULL', '"b c" DEFAULT (1, 2)', 'd', "CHECK (a <> ',')", 'PRIMARY KEY (a)']);
    expect(def.options).toBe('WITHOUT ROWID');
    expect(withColumnType(def.parts[0]!, 'TEXT')).toBe('a TEXT NOT NULL');
    expect(withColumnType(def.parts[1]!, 'ANY')).toBe('"b c" ANY DEFAULT (1, 2)');
    expect(withColumnType('x unsigned big int', 'INTEGER')).toBe('x INTEGER');
    expect(['INT', 'VARCHAR(3)', 'BLOB', '', 'DOUBLE PRECISION', 'NUMERIC', 'DATETIME'].map(strictType)).toEqual(['INTEGER', 'TEXT', 'BLOB', 'ANY', 'REAL', 'ANY', 'ANY']);
  });

  it('splits a script at semicolons, keeping trigger bodies whole', () => {
    const script = `-- a; comment\nCREATE TABLE a (x TEXT DEFAULT ';');\nCREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT CASE WHEN 1 THEN 2 END; SELECT 3; END;\n/* ; */ SELECT 'x;y'`;
    expect(splitStatements(script)).toEqual([
      `-- a; comment\nCREATE TABLE a (x TEXT DEFAULT ';')`,
      'CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT CASE WHEN 1 THEN 2 END; SELECT 3; END',
      `/* ; */ SELECT 'x;y'`,
    ]);
  });
});

describe('export types', () => {
  const stats = (classes: StorageClass[], minInt: bigint | null = null, maxInt: bigint | null = null, declared = '') => ({ name: 'c', declared, classes: new Set(classes), minInt, maxInt });
  it('types a column by the classes its values hold', () => {
    expect(decideColumn(stats(['integer'], 0n, 2n ** 63n - 1n)).type).toBe('BIGINT');
    expect(decideColumn(stats(['real'])).type).toBe('DOUBLE');
    expect(decideColumn(stats(['integer', 'real'], -(2n ** 53n), 2n ** 53n))).toMatchObject({ type: 'DOUBLE', mixed: false });
    expect(decideColumn(stats(['integer', 'real'], 0n, 2n ** 53n + 1n))).toMatchObject({ type: 'VARCHAR', mixed: true, classColumn: 'c__sqlite_type' });
    expect(decideColumn(stats(['text', 'blob']))).toMatchObject({ type: 'VARCHAR', mixed: true });
    expect(decideColumn(stats(['blob'])).type).toBe('BLOB');
    expect(decideColumn(stats([], null, null, 'BIGINT')).type).toBe('BIGINT');
    expect(decideColumn(stats([], null, null, 'FLOAT')).type).toBe('DOUBLE');
    expect(decideColumn(stats([], null, null, '')).type).toBe('VARCHAR');
    expect([2n ** 63n - 1n, 0.1, -0, 'x', new Uint8Array([0, 171])].map(textOf)).toEqual(['9223372036854775807', '0.1', '-0', 'x', '00ab']);
  });
});
