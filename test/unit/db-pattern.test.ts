/**
 * Database patterns (shared/db-pattern.ts) and tenant-scoped token entries (shared/auth.ts
 * parseAuthConfig / authorize): what matches, what is refused, and that no message carries a token.
 */
import { describe, expect, it } from 'vitest';
import { authorize, assertEveryDatabase, OPEN_GRANT, parseAuthConfig } from '../../shared/auth.ts';
import { compilePatterns, hasPattern, isPattern, parsePatternList, validatePattern } from '../../shared/db-pattern.ts';
import { parseStreamRequest } from '../../shared/protocol.ts';

describe('database patterns', () => {
  it('matches * as any run of name characters and ? as one, the whole name, nothing else special', () => {
    const m = compilePatterns(['tenant-*', 'global', 'db?.x']);
    for (const yes of ['tenant-', 'tenant-1', 'tenant-a.b_c-d', 'global', 'db1.x']) expect(m(yes), yes).toBe(true);
    for (const no of ['tenant', 'xtenant-1', 'global2', 'db.x', 'db12.x', 'db1Xx', 'other']) expect(m(no), no).toBe(false);
    expect(compilePatterns(['*'])('anything.at-all')).toBe(true);
    expect(isPattern('a*')).toBe(true);
    expect(isPattern('a')).toBe(false);
    expect(hasPattern(['a', 'b?'])).toBe(true);
    expect(hasPattern(['a', 'b'])).toBe(false);
  });

  it('refuses bad entries with the given code, naming them', () => {
    for (const bad of ['a/b', 'tenant-[1]', '.x*', '-*', '', 'a b', '..', 'x'.repeat(65), 'con']) {
      expect(() => validatePattern(bad, '--databases'), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'MISCONFIGURED' }));
    }
    expect(() => validatePattern('a/b', 'here', 'BAD_REQUEST')).toThrow(expect.objectContaining({ code: 'BAD_REQUEST', message: expect.stringContaining('"a/b"') }));
    expect(parsePatternList(' a , b-* ,', 'x')).toEqual(['a', 'b-*']);
    expect(() => parsePatternList(' , ', '--databases')).toThrow(/--databases/);
  });

  it('lets a stream request list patterns and refuses a bad one as INVALID_DATABASE_NAME', () => {
    expect(parseStreamRequest({ databases: ['tenant-*', 'global'] }).databases).toEqual(['tenant-*', 'global']);
    expect(() => parseStreamRequest({ databases: ['ten/ant*'] })).toThrow(expect.objectContaining({ code: 'INVALID_DATABASE_NAME', message: expect.stringContaining('ten/ant*') }));
    expect(() => parseStreamRequest({ databases: ['ten/ant'] })).toThrow(expect.objectContaining({ code: 'INVALID_DATABASE_NAME' }));
  });
});

describe('tenant-scoped tokens', () => {
  const A = 'scoped-unit-token-a-0123456789';
  const ALL = 'scoped-unit-token-all-0123456789';
  const config = parseAuthConfig(undefined, `read+write@acme-*|global=${A}; read=${ALL}`);
  const bearer = (t: string) => `Bearer ${t}`;

  it('parses rights@patterns=token; an entry without @ reaches every database', () => {
    expect(config.grants.map((g) => g.databases)).toEqual([['acme-*', 'global'], null]);
    const g = authorize(config, bearer(A), 'write', 'acme-1');
    expect(g.allows('global')).toBe(true);
    expect(g.allows('other')).toBe(false);
    expect(authorize(config, bearer(ALL), 'read', 'anything').databases).toBeNull();
    expect(authorize(parseAuthConfig(undefined, undefined), undefined, 'admin')).toBe(OPEN_GRANT);
  });

  it('is FORBIDDEN on another database, and on an every-database route, without the token in the message', () => {
    for (const f of [() => authorize(config, bearer(A), 'read', 'tenant-b'), () => assertEveryDatabase(authorize(config, bearer(A), 'read'), 'GET /metrics')]) {
      try {
        f();
        expect.unreachable();
      } catch (err) {
        expect(err).toMatchObject({ code: 'FORBIDDEN' });
        expect((err as Error).message).not.toContain(A);
      }
    }
    expect(() => assertEveryDatabase(authorize(config, bearer(ALL), 'read'), 'GET /metrics')).not.toThrow();
  });

  it('refuses a bad pattern in an entry, without the token in the message', () => {
    try {
      parseAuthConfig(undefined, `read@acme/x=${A}`);
      expect.unreachable();
    } catch (err) {
      expect(err).toMatchObject({ code: 'BAD_REQUEST' });
      expect((err as Error).message).toContain('acme/x');
      expect((err as Error).message).not.toContain(A);
    }
    expect(() => parseAuthConfig(undefined, `bogus@acme-*=${A}`)).toThrow(/unknown right "bogus"/);
  });
});
