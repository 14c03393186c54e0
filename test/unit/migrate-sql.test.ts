/** Migration files, the plan and the rebuild's SQL rewriting (README.md#migrations). */
import { describe, expect, it } from 'vitest';
import { parseMigration, sortMigrations } from '../../shared/migrate-sql.ts';
import { planMigrations } from '../../shared/migrate-plan.ts';
import { dependents, temporaryCreate } from '../../shared/migrate-rebuild.ts';
import { rejectedEdgelite } from '../helpers.ts';

const bytes = (s: string) => new TextEncoder().encode(s);

describe('migration files', () => {
  it('splits statements, reads the rebuild directive with or without its table, and checksums the bytes', async () => {
    const f = await parseMigration('0002_x.sql', bytes("INSERT INTO log VALUES ('a;b');\n-- why\n-- edgelite:rebuild t\nCREATE TABLE t (id INTEGER PRIMARY KEY) STRICT;\n-- edgelite:rebuild\nCREATE TABLE main.u (a TEXT);"));
    expect(f.steps.map((s) => s.kind)).toEqual(['sql', 'rebuild', 'rebuild']);
    expect(f.steps[2]).toMatchObject({ kind: 'rebuild', table: 'u' });
    expect(f.checksum).toMatch(/^[0-9a-f]{64}$/);
    expect((await parseMigration('0002_x.sql', bytes('SELECT 1;'))).checksum).not.toBe((await parseMigration('0002_x.sql', bytes('SELECT 1; '))).checksum);
  });

  it('refuses a bad name, a directive not followed by its CREATE TABLE, an unknown directive, BEGIN, and one number twice', async () => {
    expect((await rejectedEdgelite(parseMigration('2_x.sql', bytes('SELECT 1')))).code).toBe('BAD_REQUEST');
    expect((await rejectedEdgelite(parseMigration('0001_x.sql', bytes('-- edgelite:rebuild t\nCREATE TABLE u (a)')))).message).toMatch(/names must match/);
    expect((await rejectedEdgelite(parseMigration('0001_x.sql', bytes('-- edgelite:rebuild\nCREATE TABLE IF NOT EXISTS u (a)')))).message).toMatch(/must be followed by CREATE TABLE/);
    expect((await rejectedEdgelite(parseMigration('0001_x.sql', bytes('-- edgelite:rebuilt t\nSELECT 1')))).message).toMatch(/unknown directive/);
    expect((await rejectedEdgelite(parseMigration('0001_x.sql', bytes('BEGIN; SELECT 1')))).message).toMatch(/transaction control/);
    const a = await parseMigration('0002_a.sql', bytes('SELECT 1'));
    const b = await parseMigration('0002_b.sql', bytes('SELECT 2'));
    expect(() => sortMigrations([a, b])).toThrow(/same number/);
  });

  it('plans the pending files and refuses an applied file whose checksum changed, naming it', async () => {
    const one = await parseMigration('0001_a.sql', bytes('SELECT 1'));
    const two = await parseMigration('0002_b.sql', bytes('SELECT 2'));
    const plan = planMigrations([one, two], [{ name: '0001_a.sql', checksum: one.checksum, appliedTxid: 3, appliedAt: 'x' }, { name: '0000_gone.sql', checksum: 'c', appliedTxid: 1, appliedAt: 'x' }], 'app');
    expect(plan.pending.map((f) => f.name)).toEqual(['0002_b.sql']);
    expect(plan.missing).toEqual(['0000_gone.sql']);
    let err: unknown;
    try {
      planMigrations([one], [{ name: '0001_a.sql', checksum: 'other', appliedTxid: 3, appliedAt: 'x' }], 'app');
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'CHECKSUM_MISMATCH', details: { migration: '0001_a.sql', db: 'app' } });
  });

  it('writes the new table under its temporary name, self-references included, and finds dependent views transitively', () => {
    expect(temporaryCreate('CREATE TABLE main."T" (id INTEGER PRIMARY KEY, p INTEGER REFERENCES t(id), q REFERENCES other(id))', 'T', '_edgelite_rebuild_T'))
      .toBe('CREATE TABLE "_edgelite_rebuild_T" (id INTEGER PRIMARY KEY, p INTEGER REFERENCES "_edgelite_rebuild_T"(id), q REFERENCES other(id))');
    const objects = [
      { type: 'table', name: 't', tblName: 't', sql: 'CREATE TABLE t (a)' },
      { type: 'view', name: 'v2', tblName: 'v2', sql: 'CREATE VIEW v2 AS SELECT * FROM v1' },
      { type: 'view', name: 'v1', tblName: 'v1', sql: 'CREATE VIEW v1 AS SELECT a FROM "t"' },
      { type: 'view', name: 'w', tblName: 'w', sql: 'CREATE VIEW w AS SELECT 1' },
      { type: 'trigger', name: 'tr', tblName: 't', sql: 'CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END' },
    ];
    expect(dependents(objects, 't').map((o) => o.name)).toEqual(['v2', 'v1', 'tr']);
  });
});
