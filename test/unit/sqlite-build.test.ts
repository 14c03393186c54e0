/**
 * The install step (scripts/build-sqlite.mjs) must give better-sqlite3 its usual compile options plus
 * SQLITE_ENABLE_DBPAGE_VTAB and minus SQLITE_OMIT_PROGRESS_CALLBACK, sqlite_dbpage must be present and
 * writable, and every connection must have the deadline hook of scripts/sqlite-deadline.c.
 */
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.ts';

const OURS = 'ENABLE_DBPAGE_VTAB';
const DROPPED = 'OMIT_PROGRESS_CALLBACK';
const KEY = 'k'.repeat(16);
/** Options SQLite accepts but no longer reports (features now always on). */
const NOT_REPORTED = new Set(['ENABLE_DESERIALIZE', 'ENABLE_JSON1']);

const pkgDir = dirname(createRequire(import.meta.url).resolve('better-sqlite3/package.json'));

function packageDefines(): string[] {
  const gypi = readFileSync(join(pkgDir, 'deps', 'defines.gypi'), 'utf8');
  return [...gypi.matchAll(/'SQLITE_([A-Z0-9_]+)(?:=[^']*)?'/g)].map((m) => m[1]!).filter((d) => d !== OURS);
}

describe('better-sqlite3 build', () => {
  const db = new Database(':memory:');
  const options = (db.pragma('compile_options', { simple: false }) as Array<{ compile_options: string }>).map((r) => r.compile_options);
  const reported = new Set(options.map((o) => o.replace(/=.*/, '')));

  it('has the package usual ENABLE/OMIT options plus ENABLE_DBPAGE_VTAB, and nothing else', () => {
    const usual = packageDefines().filter((d) => /^(ENABLE|OMIT)_/.test(d));
    expect(usual.length).toBeGreaterThan(10);
    for (const d of usual) if (!NOT_REPORTED.has(d)) expect(reported, d).toContain(d);
    const featureFlags = [...reported].filter((o) => /^(ENABLE|OMIT)_/.test(o)).sort();
    expect(featureFlags).toEqual([...usual.filter((d) => !NOT_REPORTED.has(d)), OURS].sort());
    expect(reported).not.toContain(DROPPED);
    expect(packageDefines()).not.toContain(DROPPED);
    expect(options).toContain('EXTRA_INIT=edgelite_deadline_init');
  });

  it('compiles scripts/sqlite-deadline.c as it is now into the sqlite3 library', () => {
    const ours = readFileSync(new URL('../../scripts/sqlite-deadline.c', import.meta.url), 'utf8');
    expect(readFileSync(join(pkgDir, 'deps', 'edgelite-deadline.c'), 'utf8')).toBe(ours);
    expect(readFileSync(join(pkgDir, 'deps', 'sqlite3.gyp'), 'utf8')).toMatch(/'sources': \['<\(SHARED_INTERMEDIATE_DIR\)\/sqlite3\/sqlite3\.c', 'edgelite-deadline\.c'\]/);
  });

  it('keeps the package defaults that change behaviour', () => {
    const opts = options;
    expect(opts).toContain('THREADSAFE=2');
    expect(opts).toContain('DQS=0');
    expect(opts).toContain('DEFAULT_WAL_SYNCHRONOUS=1');
  });

  it('can read and write pages through sqlite_dbpage in unsafe mode', () => {
    const t = tempDir('dbpage');
    try {
      const file = new Database(join(t.dir, 'a.db'));
      file.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
      const page2 = file.prepare('SELECT data FROM sqlite_dbpage WHERE pgno = 2').pluck().get() as Buffer;
      expect(page2.length).toBe(4096);
      expect(() => file.prepare('INSERT INTO sqlite_dbpage (pgno, data) VALUES (2, ?)').run(page2)).toThrow();
      file.unsafeMode(true);
      file.prepare('INSERT INTO sqlite_dbpage (pgno, data) VALUES (2, ?)').run(page2);
      file.unsafeMode(false);
      file.close();
      const again = new Database(join(t.dir, 'a.db'), { readonly: true });
      expect(again.prepare('SELECT x FROM t').pluck().all()).toEqual([1]);
      again.close();
    } finally {
      t.cleanup();
    }
  });

  it('stops a statement past the connection deadline, and only for the key that claimed it', () => {
    const c = new Database(':memory:');
    try {
      expect(c.prepare('SELECT edgelite_deadline_key()').pluck().get()).toBe(0);
      const arm = c.prepare('SELECT edgelite_deadline(?, ?)').pluck();
      expect(() => arm.get('short', 10)).toThrow(/16 to 64 bytes/);
      expect(arm.get(KEY, 30)).toBe(0);
      expect(c.prepare('SELECT edgelite_deadline_key()').pluck().get()).toBe(1);
      const endless = c.prepare('WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n');
      const t = performance.now();
      expect(() => endless.get()).toThrow(expect.objectContaining({ code: 'SQLITE_INTERRUPT' }));
      const took = performance.now() - t;
      expect(took).toBeGreaterThanOrEqual(29);
      expect(took).toBeLessThan(500);
      // Past its deadline the connection stops every long statement until it is disarmed.
      expect(() => endless.get()).toThrow(expect.objectContaining({ code: 'SQLITE_INTERRUPT' }));
      expect(() => arm.get('x'.repeat(16), 0)).toThrow(/not authorized/);
      expect(arm.get(KEY, 0)).toBe(1); // it fired; now disarmed
      expect(arm.get(KEY, 0)).toBe(0);
      expect(c.prepare('WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 200000) SELECT count(*) FROM n').pluck().get()).toBe(200000);
      // Never from a view or trigger (a schema could otherwise call it with a key it read).
      c.exec('CREATE VIEW v AS SELECT edgelite_deadline_key() AS k');
      expect(() => c.prepare('SELECT k FROM v').get()).toThrow(/unsafe use/);
    } finally {
      c.close();
    }
  });

  it('gives every connection its own deadline and key', () => {
    const a = new Database(':memory:');
    const b = new Database(':memory:');
    try {
      a.prepare('SELECT edgelite_deadline(?, ?)').get(KEY, 1);
      expect(b.prepare('SELECT edgelite_deadline_key()').pluck().get()).toBe(0);
      expect(b.prepare('SELECT edgelite_deadline(?, ?)').pluck().get('b'.repeat(20), 0)).toBe(0);
      expect(b.prepare('WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 300000) SELECT count(*) FROM n').pluck().get()).toBe(300000);
    } finally {
      a.close();
      b.close();
    }
  });
});
