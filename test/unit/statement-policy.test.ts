/** The statement policy holds in every spelling SQLite accepts. */
import { describe, expect, it } from 'vitest';
import { EdgeliteError } from '../../shared/errors.ts';
import { checkStatement, parsePragma } from '../../shared/statement-policy.ts';

function code(sql: string, role: 'read' | 'write'): string | null {
  try {
    checkStatement(sql, role);
    return null;
  } catch (err) {
    expect(err).toBeInstanceOf(EdgeliteError);
    return (err as EdgeliteError).code;
  }
}

describe('statement policy', () => {
  const settings = [
    'PRAGMA query_only = 0', 'PRAGMA query_only=0;', 'PRAGMA query_only(0)', 'pragma QUERY_ONLY ( 0 ) -- x',
    'PRAGMA "query_only"=0', "PRAGMA 'query_only'(0)", 'PRAGMA [query_only]=1', 'PRAGMA `query_only` = 1',
    'PRAGMA main.query_only = 0', 'PRAGMA "main"."synchronous"=OFF', '/* c */ PRAGMA synchronous = OFF',
    "PRAGMA 'wal_autocheckpoint'(1)", 'PRAGMA journal_mode=DELETE', 'PRAGMA writable_schema=ON', 'PRAGMA foreign_keys = OFF',
  ];
  it('refuses managed settings on the write path and every setting on read paths', () => {
    for (const sql of settings) {
      expect(code(sql, 'write'), sql).toBe('FORBIDDEN');
      expect(code(sql, 'read'), sql).toBe('FORBIDDEN');
    }
  });

  it('allows reading pragmas, introspection with arguments, and ordinary settings on the primary', () => {
    for (const sql of ['PRAGMA user_version', 'PRAGMA table_info(t)', 'PRAGMA "index_list"("t")', 'PRAGMA integrity_check', 'PRAGMA query_only;']) {
      expect(code(sql, 'read'), sql).toBeNull();
    }
    expect(code('PRAGMA user_version = 7', 'write')).toBeNull();
    expect(code('PRAGMA user_version = 7', 'read')).toBe('FORBIDDEN');
  });

  it('refuses transaction control and file access in any case or after comments', () => {
    for (const sql of ['BEGIN', 'begin immediate', '/* x */ COMMIT', '-- c\nROLLBACK', 'SAVEPOINT a', 'RELEASE a', 'END']) {
      expect(code(sql, 'read'), sql).toBe('BAD_REQUEST');
      expect(code(sql, 'write'), sql).toBe('BAD_REQUEST');
    }
    for (const sql of ["ATTACH 'x.db' AS x", ' detach x', "VACUUM INTO '/tmp/x.db'", "vacuum main into 'y'"]) {
      expect(code(sql, 'read'), sql).toBe('FORBIDDEN');
      expect(code(sql, 'write'), sql).toBe('FORBIDDEN');
    }
    expect(code('VACUUM', 'write')).toBeNull();
    expect(code('SELECT 1', 'read')).toBeNull();
  });

  it('parses pragma names and arguments', () => {
    expect(parsePragma('PRAGMA "a"."b" = 1')).toEqual({ name: 'b', hasArgument: true });
    expect(parsePragma('PRAGMA b;  -- done')).toEqual({ name: 'b', hasArgument: false });
    expect(parsePragma('SELECT 1')).toBeNull();
  });
});
