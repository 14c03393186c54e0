/**
 * doctor's rules and fixes (README.md#integrity) over real SQLite files: the facts are read with the
 * very statements doctor sends through the API (FACT_STATEMENTS), here on a local connection. Each
 * finding kind once (journal mode and a writer's auto-checkpoint included, which no database served by
 * a primary can show through the API), none on a database built to the defaults, and the proposed
 * rebuild, run on a writer with foreign_keys ON, clears its findings and keeps every row, index,
 * trigger and view.
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
    stops.push(() => void (db.open && db.close()));
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
    stops.push(() => reopened.close());
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

  it('rebuilds a table STRICT with a primary key, keeping rows, rowids, indexes, triggers and views', () => {
    const db = file('rebuild.db');
    db.pragma('journal_mode = WAL');
    db.exec(`
      CREATE TABLE owner (id INTEGER PRIMARY KEY) STRICT;
      CREATE TABLE "odd ""name""" (a INT CHECK (a >= 0), b VARCHAR(10) COLLATE NOCASE DEFAULT 'x', c, d NUMERIC, e DATETIME, o INTEGER REFERENCES owner(id));
      CREATE INDEX odd_b ON "odd ""name"""(b);
      CREATE INDEX odd_o ON "odd ""name"""(o);
      CREATE TABLE log (id INTEGER PRIMARY KEY, msg TEXT) STRICT;
      CREATE TRIGGER odd_ins AFTER INSERT ON "odd ""name""" BEGIN INSERT INTO log (msg) VALUES (CASE WHEN new.a > 1 THEN 'big' ELSE 'small' END); END;
      CREATE VIEW odd_v AS SELECT a, b FROM "odd ""name""";
      CREATE TRIGGER log_ins AFTER INSERT ON log BEGIN SELECT count(*) FROM "odd ""name"""; END;
      INSERT INTO owner VALUES (7);
      INSERT INTO "odd ""name""" VALUES (1, 'B', x'00ff', 1.5, '2026-01-01', 7), (2, 'a', 'text', 3, NULL, NULL);
      DELETE FROM "odd ""name""" WHERE a = 1;
      INSERT INTO "odd ""name""" VALUES (3, 'c', 9, 'n', NULL, 7);`);
    const before = db.prepare('SELECT rowid, * FROM "odd ""name""" ORDER BY rowid').raw().all();
    const found = diagnose(facts(db, 0));
    expect(codes(found)).toEqual(['NOT_STRICT', 'NO_PRIMARY_KEY']);
    const fix = found[0]!.fix as { kind: 'migration'; sql: string };
    expect(fix.kind).toBe('migration');
    // Applied as the migrate tool applies a file: statement by statement, in one transaction, foreign keys ON.
    db.pragma('foreign_keys = ON');
    db.transaction(() => {
      for (const sql of splitStatements(fix.sql)) db.prepare(sql).run();
    })();
    expect(diagnose(facts(db, 0))).toEqual([]);
    expect(db.prepare('SELECT * FROM "odd ""name""" ORDER BY id').raw().all()).toEqual(before);
    const names = db.prepare(`SELECT name FROM sqlite_schema WHERE type IN ('index', 'trigger', 'view') ORDER BY name`).pluck().all();
    expect(names).toEqual(['log_ins', 'odd_b', 'odd_ins', 'odd_o', 'odd_v']);
    expect(() => db.prepare(`INSERT INTO "odd ""name""" (a) VALUES (-1)`).run()).toThrow(/CHECK/);
    expect(() => db.prepare(`INSERT INTO "odd ""name""" (a, o) VALUES (5, 99)`).run()).toThrow(/FOREIGN KEY/);
    expect(() => db.prepare(`INSERT INTO "odd ""name""" (a) VALUES ('not a number')`).run()).toThrow(/cannot store TEXT value in INTEGER column/);
    db.prepare(`INSERT INTO "odd ""name""" (a, b) VALUES (5, 'B')`).run();
    expect(db.prepare(`SELECT count(*) FROM odd_v WHERE b = 'b'`).pluck().get()).toBe(1);
    expect(db.prepare(`SELECT msg FROM log ORDER BY id`).pluck().all()).toEqual(['small', 'big', 'big', 'big']);
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
