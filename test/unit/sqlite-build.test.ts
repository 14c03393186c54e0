/**
 * The install step (scripts/build-sqlite.mjs) must give better-sqlite3 its usual compile options plus
 * SQLITE_ENABLE_DBPAGE_VTAB, and sqlite_dbpage must be present and writable.
 */
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.ts';

const OURS = 'ENABLE_DBPAGE_VTAB';
/** Options SQLite accepts but no longer reports (features now always on). */
const NOT_REPORTED = new Set(['ENABLE_DESERIALIZE', 'ENABLE_JSON1']);

function packageDefines(): string[] {
  const pkgDir = dirname(createRequire(import.meta.url).resolve('better-sqlite3/package.json'));
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
});
