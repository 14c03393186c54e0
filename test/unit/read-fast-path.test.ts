/**
 * The shortcuts of the replica's read path (docs/BENCHMARKS.md#p2-after-the-read-fast-path), each
 * against the full rule it stands in for: simpleStatement against parseStatementsBody, stringifyResult
 * against JSON.stringify with jsonReplacer, the statement policy's memory against a fresh check.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jsonReplacer, stringifyResult } from '../../shared/http.ts';
import { parseExactJson } from '../../shared/exact-json.ts';
import { MAX_SQL_LENGTH } from '../../shared/openapi/requests.ts';
import { parseStatementsBody } from '../../shared/protocol.ts';
import { simpleStatement } from '../../shared/simple-statement.ts';
import { checkStatement } from '../../shared/statement-policy.ts';
import { thrownEdgelite } from '../helpers.ts';

/** Bodies of every shape a client sends, valid or not. */
const BODIES: unknown[] = [
  { sql: 'SELECT 1' },
  { sql: 'SELECT ?', params: [1] },
  { sql: 'SELECT ?, ?, ?', params: ['a', 2.5, null] },
  { sql: 'SELECT 1', params: null },
  { sql: 'SELECT 1', params: [] },
  { sql: 'SELECT :a', params: { a: 1 } },
  { sql: 'SELECT ?', params: [true] },
  { sql: 'SELECT ?', params: [2n ** 60n] },
  { sql: 'SELECT ?', params: [{ base64: 'AQI=' }] },
  { sql: 'SELECT ?', params: [new Uint8Array([1, 2])] },
  { sql: 'SELECT ?', params: [Number.NaN] },
  { sql: 'SELECT ?', params: [Number.POSITIVE_INFINITY] },
  { sql: 'SELECT ?', params: [[1]] },
  { sql: 'SELECT ?', params: 'x' },
  { sql: 'SELECT 1', extra: true },
  { sql: '   ' },
  { sql: '' },
  { sql: 1 },
  { sql: 'x'.repeat(MAX_SQL_LENGTH + 1) },
  { sql: `SELECT '${'x'.repeat(MAX_SQL_LENGTH - 9)}'` },
  { statements: [{ sql: 'SELECT 1' }] },
  { statements: [], sql: 'SELECT 1' },
  { params: [1] },
  {},
  [],
  null,
  'SELECT 1',
  Object.assign(Object.create(null) as object, { sql: 'SELECT 1' }),
  parseExactJson('{"sql": "SELECT ?", "params": [9007199254740993]}'),
  parseExactJson('{"sql": "SELECT ?", "params": [12345678901234567]}'),
];

/** deepList nests `leaf` in `depth` arrays (past stringifyResult's depth limit). */
function deepList(depth: number, leaf: unknown): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

function parsed(body: unknown): unknown {
  try {
    return parseStatementsBody(body);
  } catch (err) {
    return err;
  }
}

describe('simpleStatement', () => {
  it('gives exactly what parseStatementsBody gives, or null', () => {
    let taken = 0;
    for (const body of BODIES) {
      const fast = simpleStatement(body);
      if (fast === null) continue;
      taken++;
      expect(fast, JSON.stringify(body, jsonReplacer)?.slice(0, 80)).toEqual(parsed(body));
    }
    expect(taken).toBe(6);
  });

  it('takes the plain shapes and leaves everything else to the schemas', () => {
    expect(simpleStatement({ sql: 'SELECT ?', params: [1, 'a', null] })).toEqual([{ sql: 'SELECT ?', params: [1, 'a', null] }]);
    expect(simpleStatement({ sql: 'SELECT 1' })).toEqual([{ sql: 'SELECT 1', params: [] }]);
    for (const body of [{ sql: 'SELECT ?', params: [true] }, { sql: ' ' }, { sql: 'SELECT 1', x: 1 }, { statements: [{ sql: 'SELECT 1' }] }]) {
      expect(simpleStatement(body)).toBeNull();
    }
  });

  it('agrees with parseStatementsBody on generated bodies', () => {
    const value = fc.oneof(fc.string(), fc.double(), fc.integer(), fc.constant(null), fc.boolean(), fc.bigInt(), fc.constant(undefined));
    const body = fc.record({ sql: fc.oneof(fc.string(), fc.constant('SELECT ?'), value), params: fc.oneof(fc.array(value, { maxLength: 4 }), value, fc.dictionary(fc.string(), value)) }, { requiredKeys: [] });
    fc.assert(
      fc.property(body, (b) => {
        const fast = simpleStatement(b);
        if (fast !== null) expect(fast).toEqual(parsed(b));
      }),
    );
  });
});

describe('stringifyResult', () => {
  it('writes what JSON.stringify with jsonReplacer writes', () => {
    const values: unknown[] = [
      { results: [{ columns: ['a', 'b'], rows: [[1, 'x'], [null, 2.5]] }] },
      { results: [{ columns: ['n'], rows: [[2n ** 63n - 1n]] }] },
      { results: [{ columns: ['b'], rows: [[new Uint8Array([1, 2, 3])]] }] },
      { results: [{ columns: ['b'], rows: [[Buffer.from('hi')]] }] },
      { at: new Date(0), nested: { deep: deepList(20, 1n) } },
      { a: undefined, b: [undefined, () => 1] },
      'text',
      null,
    ];
    for (const v of values) expect(stringifyResult(v)).toBe(JSON.stringify(v, jsonReplacer));
  });
});

describe('checkStatement with its memory of allowed texts', () => {
  it('still refuses, per role, after the same text passed in another role', () => {
    const sql = 'PRAGMA user_version = 7';
    checkStatement(sql, 'write');
    checkStatement(sql, 'write');
    expect(thrownEdgelite(() => checkStatement(sql, 'read')).code).toBe('FORBIDDEN');
    expect(thrownEdgelite(() => checkStatement('BEGIN', 'read')).code).toBe('BAD_REQUEST');
    expect(thrownEdgelite(() => checkStatement('BEGIN', 'read')).code).toBe('BAD_REQUEST');
  });

  it('keeps refusing after many other texts passed (the memory is bounded, refusals never kept)', () => {
    for (let i = 0; i < 2000; i++) checkStatement(`SELECT ${i}`, 'read');
    expect(thrownEdgelite(() => checkStatement("ATTACH 'x' AS y", 'read')).code).toBe('FORBIDDEN');
  });
});
