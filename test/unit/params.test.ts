/**
 * Parameters as SQLite defines them (README.md#http-api) through shared/sql.ts on a real better-sqlite3
 * connection, and exact integers through shared/exact-json.ts and the statement validation:
 * every parameter style binds, numbered ones by index, named ones by key with or without the prefix;
 * integers beyond 2^53 arrive exact and read back exact; past int64 they are BAD_REQUEST.
 */
import Database from 'better-sqlite3';
import { Packr } from 'msgpackr';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EdgeliteError } from '../../shared/errors.ts';
import { parseExactJson, parseMsgpackBody, stringifyExactJson, stringifyRequestJson } from '../../shared/exact-json.ts';
import { parseStatementsBody } from '../../shared/protocol.ts';
import { runRead, runWrite } from '../../shared/sql.ts';
import { bindArgs, parameterPlan } from '../../shared/sql-params.ts';

const MAX = 9223372036854775807n;
const MIN = -9223372036854775808n;

function badRequest(fn: () => unknown): EdgeliteError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(EdgeliteError);
    expect((err as EdgeliteError).code).toBe('BAD_REQUEST');
    return err as EdgeliteError;
  }
  throw new Error('expected BAD_REQUEST');
}

describe('parameterPlan', () => {
  it('is null for bare ? only (the fast path)', () => {
    expect(parameterPlan('select ?, ? from t where a = ?')).toBeNull();
    expect(parameterPlan('select 1')).toBeNull();
  });

  it('numbers parameters as SQLite does', () => {
    expect(parameterPlan('select ?1, ?1')!.keys).toEqual(['1']);
    expect(parameterPlan('select ?2, ?1')!.keys).toEqual(['1', '2']);
    expect(parameterPlan('select ?3')!.keys).toEqual([null, null, '3']);
    expect(parameterPlan('select ?2, ?')!.keys).toEqual([null, '2', null]);
    expect(parameterPlan('select :a, ?, :a, @b, $c')!.keys).toEqual(['a', null, 'b', 'c']);
  });

  it('skips literals, quoted identifiers, comments and identifiers holding $', () => {
    const sql = `select ':x ?1', "@y", [$z], \`:w\`, price$usd -- ?9 :q
      /* ?8 @r */, 'it''s :s', ?1`;
    expect(parameterPlan(sql)!.keys).toEqual(['1']);
  });

  it('bindArgs checks the count and shapes values for better-sqlite3', () => {
    const plan = parameterPlan('select ?2, ?')!;
    expect(bindArgs(plan, [1, 2, 3])).toEqual([1, 3, { 2: 2 }]);
    expect(() => bindArgs(plan, [1, 2])).toThrow(/Too few/);
    expect(() => bindArgs(plan, [1, 2, 3, 4])).toThrow(/Too many/);
    expect(() => bindArgs(parameterPlan('select :a, @a')!, [1, 2])).toThrow(/both bind as "a"/);
  });
});

describe('every parameter style on better-sqlite3 (shared/sql.ts)', () => {
  let db: Database.Database;
  beforeEach(() => {
    db = new Database(':memory:');
    db.exec('CREATE TABLE t (k, v)');
  });
  afterEach(() => db.close());

  const read = (body: unknown) => runRead(db, parseStatementsBody(body)[0]!).rows;

  it('binds ?, ?1, ?NNN, :a, @a and $a', () => {
    expect(read({ sql: 'select ?, ?', params: [1, 2] })).toEqual([[1, 2]]);
    expect(read({ sql: 'select ?1, ?1', params: [5] })).toEqual([[5, 5]]);
    expect(read({ sql: 'select ?2, ?1, ?2', params: ['a', 'b'] })).toEqual([['b', 'a', 'b']]);
    expect(read({ sql: 'select ?12', params: Array.from({ length: 12 }, (_, i) => i) })).toEqual([[11]]);
    for (const p of [':', '@', '$']) {
      expect(read({ sql: `select ${p}a, ${p}b, ${p}a`, params: { a: 1, b: 'x' } })).toEqual([[1, 'x', 1]]);
      expect(read({ sql: `select ${p}a`, params: { [`${p}a`]: 7 } })).toEqual([[7]]);
      expect(read({ sql: `select ${p}a, ${p}b`, params: [3, 4] })).toEqual([[3, 4]]);
    }
  });

  it('writes with every style', () => {
    const write = (sql: string, params: unknown) => runWrite(db, parseStatementsBody({ sql, params })[0]!);
    write('INSERT INTO t VALUES (?, ?)', ['q', 1]);
    write('INSERT INTO t VALUES (?2, ?1)', [2, 'n']);
    write('INSERT INTO t VALUES (?1, ?1)', ['same']);
    write('INSERT INTO t VALUES (:k, :v)', { k: 'colon', v: 3 });
    write('INSERT INTO t VALUES (@k, @v)', { '@k': 'at', v: 4 });
    write('INSERT INTO t VALUES ($k, $v)', { $k: 'dollar', $v: 5 });
    expect(db.prepare('SELECT k, v FROM t ORDER BY rowid').raw(true).all()).toEqual([
      ['q', 1], ['n', 2], ['same', 'same'], ['colon', 3], ['at', 4], ['dollar', 5],
    ]);
  });

  it('binds integer-valued numbers as INTEGER, others as REAL', () => {
    expect(read({ sql: 'select typeof(?), typeof(?), ? / 2', params: [5, 5.5, 5] })).toEqual([['integer', 'real', 2]]);
  });

  it('refuses wrong counts and ambiguous keys', () => {
    expect(() => read({ sql: 'select ?1, ?2', params: [1] })).toThrow(/Too few/);
    expect(() => read({ sql: 'select ?1', params: [1, 2] })).toThrow(/Too many/);
    expect(() => read({ sql: 'select :a', params: { b: 1 } })).toThrow(/Missing named parameter/);
    expect(badRequest(() => parseStatementsBody({ sql: 'select :a', params: { a: 1, ':a': 2 } })).message).toMatch(/given twice/);
    expect(badRequest(() => parseStatementsBody({ sql: 'select ?1', params: { 1: 1 } })).message).toMatch(/numbered parameters take an array/);
  });

  it('keeps 64-bit integers exact both ways', () => {
    for (const v of [2n ** 53n + 1n, MIN, MAX]) {
      const [row] = read({ sql: 'select ?, typeof(?1), ?1 = ' + v, params: [v] }) as unknown[][];
      expect(row).toEqual([v, 'integer', 1]);
    }
    expect(read({ sql: 'select 9007199254740993, 9007199254740991' })).toEqual([[9007199254740993n, 9007199254740991]]);
    const r = runWrite(db, { sql: 'INSERT INTO t (rowid, k) VALUES (?, 1)', params: [MAX] });
    expect(r.lastInsertRowid).toBe(MAX);
  });
});

describe('exact request JSON and msgpack', () => {
  it('takes JSON.parse unless a 16-digit run appears, and keeps integers exact', () => {
    expect(parseExactJson('{"params":[1,2.5,-3,"x"]}')).toEqual({ params: [1, 2.5, -3, 'x'] });
    expect(parseExactJson('[9007199254740993, -9223372036854775808, 9223372036854775807, 9007199254740991, 1.5e300, 12345678901234567.5]')).toEqual([
      9007199254740993n, MIN, MAX, 9007199254740991, 1.5e300, 12345678901234567.5,
    ]);
    // A long digit run in a string changes nothing but the parser.
    expect(parseExactJson('{"sql":"select 1234567890123456","params":[1],"a":1,"a":2}')).toEqual({ sql: 'select 1234567890123456', params: [1], a: 2 });
  });

  it('refuses integers outside int64 with BAD_REQUEST', () => {
    expect(badRequest(() => parseExactJson('[9223372036854775808]')).message).toMatch(/outside SQLite's 64-bit integer range/);
    badRequest(() => parseExactJson('[-9223372036854775809]'));
    badRequest(() => parseExactJson('{"params":[18446744073709551616]}'));
  });

  it('decodes msgpack int64 and uint64 exactly; a uint64 past int64 fails validation', () => {
    const packr = new Packr({ useRecords: false });
    const body = parseMsgpackBody(packr.pack({ sql: 'select ?, ?, ?, ?', params: [2n ** 53n + 1n, MIN, MAX, 5n] })) as { params: unknown[] };
    expect(body.params).toEqual([2n ** 53n + 1n, MIN, MAX, 5]);
    expect(parseStatementsBody(body)[0]!.params).toEqual([2n ** 53n + 1n, MIN, MAX, 5]);
    const big = parseMsgpackBody(packr.pack({ sql: 'select ?', params: [2n ** 63n] }));
    expect(badRequest(() => parseStatementsBody(big)).message).toMatch(/params\[0\]: integer 9223372036854775808 is outside/);
  });

  it('writes bodies back exactly for forwarding', () => {
    const text = '{"sql":"select ?","params":[9223372036854775807]}';
    expect(stringifyRequestJson(parseExactJson(text))).toBe(text);
    expect(stringifyRequestJson(parseExactJson('{"a":1}'))).toBe('{"a":1}');
    const packed = parseMsgpackBody(new Packr({ useRecords: false }).pack({ params: [new Uint8Array([1, 2, 3]), MIN] }));
    expect(stringifyRequestJson(packed)).toBe('{"params":[{"base64":"AQID"},-9223372036854775808]}');
    expect(stringifyExactJson({ params: [2n ** 53n + 1n] })).toBe('{"params":[9007199254740993]}');
  });
});
