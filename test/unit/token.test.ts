import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EdgeliteError } from '../../shared/errors.ts';
import {
  MAX_TOKENS_PER_SET,
  TOKEN_COOKIE,
  TOKEN_HEADER,
  TokenSet,
  compareTokens,
  decodeToken,
  encodeToken,
  maxToken,
} from '../../shared/token.ts';
import type { Token } from '../../shared/token.ts';
import { validateDatabaseName } from '../../shared/types.ts';

function isValidName(name: string): boolean {
  try {
    validateDatabaseName(name);
    return true;
  } catch {
    return false;
  }
}

const dbName = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/).filter(isValidName);
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const tokenArb: fc.Arbitrary<Token> = fc.record({ db: dbName, databaseId: u32, generation: u32, txid: fc.maxSafeNat() });

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(EdgeliteError);
    return (err as EdgeliteError).code;
  }
  return 'no error';
}

const base: Token = { db: 'app', databaseId: 0xdeadbeef, generation: 2, txid: 255 };

describe('encodeToken / decodeToken', () => {
  it('prints the documented format', () => {
    expect(encodeToken(base)).toBe('1.00000000000000ff.00000002.deadbeef.app');
    expect(encodeToken({ db: 'my.app.v2', databaseId: 1, generation: 0, txid: Number.MAX_SAFE_INTEGER })).toBe(
      '1.001fffffffffffff.00000000.00000001.my.app.v2',
    );
    expect(TOKEN_HEADER).toBe('Edgelite-Token');
    expect(TOKEN_COOKIE).toBe('edgelite_token');
  });

  it('round-trips, using only header- and cookie-safe characters', () => {
    fc.assert(
      fc.property(tokenArb, (t) => {
        const text = encodeToken(t);
        expect(text).toMatch(/^[A-Za-z0-9._-]+$/);
        expect(text.length).toBeLessThanOrEqual(101);
        expect(decodeToken(text)).toEqual(t);
      }),
      { numRuns: 500 },
    );
  });

  it('sorts as strings exactly as compareTokens orders tokens of one database', () => {
    fc.assert(
      fc.property(
        dbName,
        u32,
        fc.array(fc.record({ generation: u32, txid: fc.maxSafeNat() }), { minLength: 2, maxLength: 20 }),
        (db, databaseId, parts) => {
          const tokens = parts.map((p) => ({ db, databaseId, ...p }));
          const byCompare = [...tokens].sort(compareTokens).map(encodeToken);
          const byString = tokens.map(encodeToken).sort();
          expect(byString).toEqual(byCompare);
        },
      ),
      { numRuns: 300 },
    );
  });

  const t = '1.00000000000000ff.00000002.deadbeef';
  const malformed = [
    '',
    '1',
    `${t}`,
    `${t}.`,
    `2.00000000000000ff.00000002.deadbeef.app`,
    `0.00000000000000ff.00000002.deadbeef.app`,
    `v1.00000000000000ff.00000002.deadbeef.app`,
    `1.00000000000000FF.00000002.deadbeef.app`,
    `1.00000000000000ff.00000002.DEADBEEF.app`,
    `1.0000000000000ff.00000002.deadbeef.app`,
    `1.000000000000000ff.00000002.deadbeef.app`,
    `1.00000000000000ff.0000002.deadbeef.app`,
    `1.00000000000000ff.000000002.deadbeef.app`,
    `1.00000000000000ff.00000002.eadbeef.app`,
    `1.00000000000000fg.00000002.deadbeef.app`,
    `1.-0000000000000ff.00000002.deadbeef.app`,
    `1.0020000000000000.00000002.deadbeef.app`,
    `1.ffffffffffffffff.00000002.deadbeef.app`,
    `1.00000000000000ff..00000002.deadbeef.app`,
    `1..00000000000000ff.00000002.deadbeef.app`,
    `${t}.app.`,
    `${t}..app`,
    `${t}.app..v2`,
    `${t}.-app`,
    `${t}._app`,
    `${t}.con`,
    `${t}.app-wal`,
    `${t}.a/b`,
    `${t}.app,${t}.app`,
    `${t}.app `,
    ` ${t}.app`,
    `${t}.app\n`,
    `${t}.app;x`,
    `${t}.ápp`,
    `${t}.${'a'.repeat(65)}`,
    `${t}.${'a'.repeat(200)}`,
    'x'.repeat(201),
    '1.00000000000000ff.00000002.deadbeef.app'.replace(/\./g, '-'),
    '1:00000000000000ff:00000002:deadbeef:app',
  ];

  for (const text of malformed) {
    it(`rejects ${JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}...` : text)} with INVALID_TOKEN`, () => {
      expect(codeOf(() => decodeToken(text))).toBe('INVALID_TOKEN');
    });
  }

  it('rejects non-strings with INVALID_TOKEN', () => {
    for (const value of [undefined, null, 1, {}, ['1.x'], 10n]) {
      expect(codeOf(() => decodeToken(value as unknown as string))).toBe('INVALID_TOKEN');
    }
  });

  it('gives INVALID_TOKEN or a canonical token for any random string, never another error', () => {
    const check = (text: string) => {
      let token: Token;
      try {
        token = decodeToken(text);
      } catch (err) {
        expect(err).toBeInstanceOf(EdgeliteError);
        expect((err as EdgeliteError).code).toBe('INVALID_TOKEN');
        return;
      }
      expect(encodeToken(token)).toBe(text);
    };
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 250 }), check), { numRuns: 2000 });
    const valid = encodeToken(base);
    fc.assert(
      fc.property(fc.nat(), fc.constantFrom(...'0123456789abcdefABCDEF.-_ ,gz\u00e9'), (at, ch) => {
        const i = at % valid.length;
        check(valid.slice(0, i) + ch + valid.slice(i + 1));
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses to encode out-of-range fields with INVALID_TOKEN', () => {
    const bad: Partial<Token>[] = [
      { txid: -1 },
      { txid: 1.5 },
      { txid: 2 ** 53 },
      { txid: Number.NaN },
      { generation: 2 ** 32 },
      { generation: -1 },
      { databaseId: 2 ** 32 },
      { databaseId: -1 },
      { databaseId: 0.5 },
      { db: 'bad name' },
      { db: '' },
      { db: '..' },
      { txid: '1' as unknown as number },
      { db: 5 as unknown as string },
    ];
    for (const patch of bad) {
      expect(codeOf(() => encodeToken({ ...base, ...patch }))).toBe('INVALID_TOKEN');
    }
  });
});

describe('compareTokens / maxToken', () => {
  it('orders by txid, then generation', () => {
    expect(compareTokens(base, { ...base, txid: 256 })).toBeLessThan(0);
    expect(compareTokens({ ...base, txid: 256, generation: 0 }, base)).toBeGreaterThan(0);
    expect(compareTokens(base, { ...base, generation: 3 })).toBeLessThan(0);
    expect(compareTokens(base, { ...base })).toBe(0);
  });

  it('throws TOKEN_DATABASE_MISMATCH across databases and across incarnations of one', () => {
    expect(codeOf(() => compareTokens(base, { ...base, db: 'other' }))).toBe('TOKEN_DATABASE_MISMATCH');
    expect(codeOf(() => compareTokens(base, { ...base, databaseId: 1 }))).toBe('TOKEN_DATABASE_MISMATCH');
    expect(codeOf(() => maxToken(base, { ...base, db: 'other' }))).toBe('TOKEN_DATABASE_MISMATCH');
  });

  it('returns the later token, treating null as none', () => {
    const later = { ...base, txid: 300 };
    expect(maxToken(base, later)).toBe(later);
    expect(maxToken(later, base)).toBe(later);
    expect(maxToken(null, base)).toBe(base);
    expect(maxToken(base, null)).toBe(base);
    expect(maxToken(null, null)).toBeNull();
  });
});

describe('TokenSet', () => {
  it('keeps the latest token per database and round-trips as one header value', () => {
    const set = new TokenSet();
    set.add(base);
    set.add({ ...base, txid: 100 });
    set.add({ ...base, db: 'other', txid: 5 });
    expect(set.size).toBe(2);
    expect(set.get('app')).toEqual(base);
    expect(set.add({ ...base, txid: 400 })).toEqual({ ...base, txid: 400 });
    const text = set.toString();
    expect(text).toBe(`${encodeToken({ ...base, db: 'other', txid: 5 })},${encodeToken({ ...base, txid: 400 })}`);
    const parsed = TokenSet.parse(text);
    expect(parsed.tokens()).toEqual(set.tokens());
    expect(parsed.get('missing')).toBeNull();
  });

  it('lets a recreated database (new databaseId) replace the old token', () => {
    const set = new TokenSet();
    set.add({ ...base, txid: 1000 });
    set.add({ ...base, databaseId: 7, txid: 3 });
    expect(set.get('app')).toEqual({ ...base, databaseId: 7, txid: 3 });
  });

  it('parses joined header lines and empty values', () => {
    const a = encodeToken(base);
    const b = encodeToken({ ...base, db: 'b' });
    expect(TokenSet.parse(`${a}, ${b}`).size).toBe(2);
    expect(TokenSet.parse(` ${a} ,,${b},`).size).toBe(2);
    expect(TokenSet.parse('').size).toBe(0);
    expect(new TokenSet().toString()).toBe('');
  });

  it('rejects a malformed entry or too many tokens with INVALID_TOKEN', () => {
    expect(codeOf(() => TokenSet.parse(`${encodeToken(base)},garbage`))).toBe('INVALID_TOKEN');
    const many = Array.from({ length: MAX_TOKENS_PER_SET + 1 }, (_, i) => encodeToken({ ...base, db: `d${i}` }));
    expect(codeOf(() => TokenSet.parse(many.join(',')))).toBe('INVALID_TOKEN');
    expect(codeOf(() => TokenSet.parse('x'.repeat(100_000)))).toBe('INVALID_TOKEN');
    expect(codeOf(() => new TokenSet().add({ ...base, txid: -1 }))).toBe('INVALID_TOKEN');
  });

  it('forgets the least recently updated database past the limit', () => {
    const set = new TokenSet();
    for (let i = 0; i < MAX_TOKENS_PER_SET; i++) set.add({ ...base, db: `d${i}` });
    set.add({ ...base, db: 'd0', txid: 999 });
    set.add({ ...base, db: 'extra' });
    expect(set.size).toBe(MAX_TOKENS_PER_SET);
    expect(set.get('d1')).toBeNull();
    expect(set.get('d0')?.txid).toBe(999);
    expect(set.get('extra')).not.toBeNull();
  });

  it('hands out copies, so callers cannot change what it holds', () => {
    const set = new TokenSet();
    const t = { ...base };
    set.add(t);
    t.txid = 1;
    set.tokens()[0]!.txid = 2;
    expect(set.get('app')?.txid).toBe(255);
  });
});
