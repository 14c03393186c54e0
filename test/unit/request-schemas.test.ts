/**
 * Request validation through the zod schemas the OpenAPI document is built from
 * (shared/openapi/requests.ts, README.md#http-api): every refusal keeps the code and the message the
 * hand-written validation gave (the tables below were taken from it), and what passes comes out in
 * the shapes the handlers use (blobs as bytes, booleans as 1/0, safe bigints as numbers, prefixes
 * dropped from named parameters).
 */
import { describe, expect, it } from 'vitest';
import { parseForkBody } from '../../primary/fork.ts';
import { parseAppliedReport } from '../../primary/sync.ts';
import { StatementSchema } from '../../shared/openapi/requests.ts';
import { formatPath, validateBody } from '../../shared/openapi/validate.ts';
import { MAX_SQL_LENGTH, MAX_STATEMENTS, parseStatementsBody } from '../../shared/protocol.ts';
import { thrownEdgelite } from '../helpers.ts';

const STATEMENTS: Array<[unknown, string, string]> = [
  [null, 'BAD_REQUEST', "body must be a JSON object with \"sql\" or \"statements\""],
  [5, 'BAD_REQUEST', "body must be a JSON object with \"sql\" or \"statements\""],
  [[], 'BAD_REQUEST', "body must be a JSON object with \"sql\" or \"statements\""],
  [{}, 'BAD_REQUEST', "body.sql must be a non-empty string"],
  [{ sql: 5 }, 'BAD_REQUEST', "body.sql must be a non-empty string"],
  [{ sql: "  " }, 'BAD_REQUEST', "body.sql must be a non-empty string"],
  [{ sql: "   ", params: 5 }, 'BAD_REQUEST', "body.sql must be a non-empty string"],
  [{ sql: "s", statements: [] }, 'BAD_REQUEST', "give either \"sql\" or \"statements\", not both"],
  [{ statements: 5 }, 'BAD_REQUEST', "\"statements\" must be a non-empty array"],
  [{ statements: [] }, 'BAD_REQUEST', "\"statements\" must be a non-empty array"],
  [{ statements: [{ sql: "a" }, 5] }, 'BAD_REQUEST', "statements[1] must be an object with \"sql\""],
  [{ statements: [{ sql: "a" }, { sql: "" }] }, 'BAD_REQUEST', "statements[1].sql must be a non-empty string"],
  [{ statements: [{ sql: "a" }, { sql: "b", params: 3 }] }, 'BAD_REQUEST', "statements[1].params must be an array or an object"],
  [{ sql: "a", params: "x" }, 'BAD_REQUEST', "body.params must be an array or an object"],
  [{ sql: "a", params: new Uint8Array([1, 2]) }, 'BAD_REQUEST', "body.params must be an array or an object"],
  [{ sql: "a", params: [1, Infinity] }, 'BAD_REQUEST', "body.params[1] must be a finite number"],
  [{ sql: "a", params: [1, NaN] }, 'BAD_REQUEST', "body.params[1] must be a finite number"],
  [{ sql: "a", params: [{}] }, 'BAD_REQUEST', "body.params[0]: unsupported value (use null, number, string, boolean or {\"base64\": ...})"],
  [{ sql: "a", params: [[1]] }, 'BAD_REQUEST', "body.params[0]: unsupported value (use null, number, string, boolean or {\"base64\": ...})"],
  [{ sql: "a", params: [undefined] }, 'BAD_REQUEST', "body.params[0]: unsupported value (use null, number, string, boolean or {\"base64\": ...})"],
  [{ sql: "a", params: [{ base64: "A" }] }, 'BAD_REQUEST', "body.params[0]: invalid base64"],
  [{ sql: "a", params: [{ base64: "!!!!" }] }, 'BAD_REQUEST', "body.params[0]: invalid base64"],
  [{ sql: "a", params: [{ base64: 5 }] }, 'BAD_REQUEST', "body.params[0]: unsupported value (use null, number, string, boolean or {\"base64\": ...})"],
  [{ sql: "a", params: [9223372036854775808n] }, 'BAD_REQUEST', "body.params[0]: integer 9223372036854775808 is outside SQLite's 64-bit integer range (-9223372036854775808 to 9223372036854775807)"],
  [{ sql: "a", params: [-9223372036854775809n] }, 'BAD_REQUEST', "body.params[0]: integer -9223372036854775809 is outside SQLite's 64-bit integer range (-9223372036854775808 to 9223372036854775807)"],
  [{ sql: "a", params: { "a-b": 1 } }, 'BAD_REQUEST', "body.params: invalid parameter name \"a-b\" (a name, optionally with its :, @ or $ prefix; numbered parameters take an array)"],
  [{ sql: "a", params: { "1": 1 } }, 'BAD_REQUEST', "body.params: invalid parameter name \"1\" (a name, optionally with its :, @ or $ prefix; numbered parameters take an array)"],
  [{ sql: "a", params: { a: 1, ":a": 2 } }, 'BAD_REQUEST', "body.params: parameter \"a\" is given twice (keys with and without a prefix name the same parameter)"],
  [{ sql: "a", params: { a: Infinity } }, 'BAD_REQUEST', "body.params.a must be a finite number"],
  [{ sql: "a", params: { a: { base64: "x" } } }, 'BAD_REQUEST', "body.params.a: invalid base64"],
  [{ sql: "a", params: { a: [] } }, 'BAD_REQUEST', "body.params.a: unsupported value (use null, number, string, boolean or {\"base64\": ...})"],
  [{ statements: [{ sql: "a", params: { k: {} } }] }, 'BAD_REQUEST', "statements[0].params.k: unsupported value (use null, number, string, boolean or {\"base64\": ...})"],
  [{ statements: [{ sql: "a", params: [1, 2, { base64: "AAA" }] }] }, 'BAD_REQUEST', "statements[0].params[2]: invalid base64"],
];
const FORKS: Array<[unknown, string, string]> = [
  [null, 'BAD_REQUEST', "the body of PUT /v1/db/{name} is a JSON object: {} or {\"from\": \"other\", \"txid\": N}"],
  [[], 'BAD_REQUEST', "the body of PUT /v1/db/{name} is a JSON object: {} or {\"from\": \"other\", \"txid\": N}"],
  [{ x: 1 }, 'BAD_REQUEST', "unknown field \"x\" in PUT /v1/db/{name} (known: \"from\", \"txid\")"],
  [{ from: 5 }, 'BAD_REQUEST', "\"from\" must be a database name"],
  [{ from: "../x" }, 'INVALID_DATABASE_NAME', "invalid database name \"../x\": use 1-64 letters, digits, \"_\", \"-\" or \".\", starting with a letter or digit"],
  [{ txid: 3 }, 'BAD_REQUEST', "\"txid\" needs \"from\": the database to fork"],
  [{ from: "a", txid: -1 }, 'BAD_REQUEST', "\"txid\" must be a non-negative integer"],
  [{ from: "a", txid: 1.5 }, 'BAD_REQUEST', "\"txid\" must be a non-negative integer"],
  [{ from: "a", txid: "x" }, 'BAD_REQUEST', "\"txid\" must be a non-negative integer"],
];
const REPORTS: Array<[unknown, string, string]> = [
  [null, 'BAD_REQUEST', "an applied report is {\"node\", \"url\", \"positions\": {db: {\"generation\", \"txid\", \"checksum\": 16 hex}}}: the body is not an object"],
  [{ node: "n", url: "http://x", positions: {}, q: 1 }, 'BAD_REQUEST', "an applied report is {\"node\", \"url\", \"positions\": {db: {\"generation\", \"txid\", \"checksum\": 16 hex}}}: unknown field \"q\""],
  [{ node: "", url: "http://x", positions: {} }, 'BAD_REQUEST', "an applied report is {\"node\", \"url\", \"positions\": {db: {\"generation\", \"txid\", \"checksum\": 16 hex}}}: \"node\" must be 1-64 letters, digits, \".\", \"_\" or \"-\""],
  [{ node: "n", url: "ftp://x", positions: {} }, 'BAD_REQUEST', "an applied report is {\"node\", \"url\", \"positions\": {db: {\"generation\", \"txid\", \"checksum\": 16 hex}}}: \"url\" must be an http(s) URL"],
  [{ node: "n", url: "http://", positions: {} }, 'BAD_REQUEST', "an applied report is {\"node\", \"url\", \"positions\": {db: {\"generation\", \"txid\", \"checksum\": 16 hex}}}: \"url\" must be an http(s) URL"],
  [{ node: "n", url: "http://x", positions: [] }, 'BAD_REQUEST', "an applied report is {\"node\", \"url\", \"positions\": {db: {\"generation\", \"txid\", \"checksum\": 16 hex}}}: \"positions\" must be an object"],
  [{ node: "n", url: "http://x", positions: { "../a": { generation: 1, txid: 2, checksum: "0123456789abcdef" } } }, 'INVALID_DATABASE_NAME', "invalid database name \"../a\": use 1-64 letters, digits, \"_\", \"-\" or \".\", starting with a letter or digit"],
  [{ node: "n", url: "http://x", positions: { a: 5 } }, 'BAD_REQUEST', "an applied report is {\"node\", \"url\", \"positions\": {db: {\"generation\", \"txid\", \"checksum\": 16 hex}}}: positions.a is not an object"],
  [{ node: "n", url: "http://x", positions: { a: { generation: -1, txid: 2, checksum: "0123456789abcdef" } } }, 'BAD_REQUEST', "an applied report is {\"node\", \"url\", \"positions\": {db: {\"generation\", \"txid\", \"checksum\": 16 hex}}}: positions.a.generation must be a whole number >= 0"],
  [{ node: "n", url: "http://x", positions: { a: { generation: 1, txid: 1.5, checksum: "0123456789abcdef" } } }, 'BAD_REQUEST', "an applied report is {\"node\", \"url\", \"positions\": {db: {\"generation\", \"txid\", \"checksum\": 16 hex}}}: positions.a.txid must be a whole number >= 0"],
  [{ node: "n", url: "http://x", positions: { a: { generation: 1, txid: 2, checksum: "X" } } }, 'BAD_REQUEST', "an applied report is {\"node\", \"url\", \"positions\": {db: {\"generation\", \"txid\", \"checksum\": 16 hex}}}: positions.a.checksum must be 16 lowercase hex digits"],
];

function expectRefusals(parse: (b: unknown) => unknown, table: Array<[unknown, string, string]>): void {
  for (const [body, code, message] of table) {
    const err = thrownEdgelite(() => parse(body));
    expect([err.code, err.message], String(JSON.stringify(body, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)))).toEqual([code, message]);
  }
}

describe('request validation from the zod schemas', () => {
  it('refuses statements bodies with the codes and messages of before', () => expectRefusals(parseStatementsBody, STATEMENTS));
  it('refuses fork bodies with the codes and messages of before', () => expectRefusals(parseForkBody, FORKS));
  it('refuses applied reports with the codes and messages of before', () => expectRefusals(parseAppliedReport, REPORTS));

  it('answers PAYLOAD_TOO_LARGE past the statement count and the SQL length', () => {
    const many = thrownEdgelite(() => parseStatementsBody({ statements: Array.from({ length: MAX_STATEMENTS + 1 }, () => ({ sql: 'select 1' })) }));
    expect([many.code, many.message]).toEqual(['PAYLOAD_TOO_LARGE', `at most ${MAX_STATEMENTS} statements per request`]);
    const long = thrownEdgelite(() => parseStatementsBody({ statements: [{ sql: 'select 1' }, { sql: 'x'.repeat(MAX_SQL_LENGTH + 1) }] }));
    expect([long.code, long.message]).toEqual(['PAYLOAD_TOO_LARGE', `statements[1].sql is longer than ${MAX_SQL_LENGTH} characters`]);
    // All blank is refused as blank first, however long.
    expect(thrownEdgelite(() => parseStatementsBody({ sql: ' '.repeat(MAX_SQL_LENGTH + 1) })).code).toBe('BAD_REQUEST');
    expect(parseStatementsBody({ statements: Array.from({ length: MAX_STATEMENTS }, () => ({ sql: 'select 1' })) })).toHaveLength(MAX_STATEMENTS);
  });

  it('hands the handlers bytes, 1/0, exact integers and bare parameter names', () => {
    const [s] = parseStatementsBody({ sql: 'select ?', params: [true, false, null, 1.5, 2n ** 53n + 1n, 5n, { base64: 'AQID' }, new Uint8Array([9]), 'x', { base64: '' }] });
    expect(s!.params).toEqual([1, 0, null, 1.5, 2n ** 53n + 1n, 5, new Uint8Array([1, 2, 3]), new Uint8Array([9]), 'x', new Uint8Array(0)]);
    expect(parseStatementsBody({ sql: 'select :a', params: { ':a': 1, '@b': 2, $c: 3, d: -(2n ** 63n) } })[0]!.params).toEqual({ a: 1, b: 2, c: 3, d: -(2n ** 63n) });
    expect(parseStatementsBody({ sql: 'select 1', params: null, extra: 1 })).toEqual([{ sql: 'select 1', params: [] }]);
    expect(parseStatementsBody({ statements: [{ sql: 'a', params: [1] }, { sql: 'b' }] })).toEqual([{ sql: 'a', params: [1] }, { sql: 'b', params: [] }]);
    expect(parseForkBody({})).toBeNull();
    expect(parseForkBody({ from: 'src', txid: 7 })).toEqual({ from: 'src', txid: 7 });
    expect(parseAppliedReport({ node: 'n1', url: 'http://h:1//', positions: { a: { generation: 1, txid: 2, checksum: '0123456789abcdef' } } })).toEqual({
      node: 'n1', url: 'http://h:1', positions: { a: { generation: 1, txid: 2, checksum: '0123456789abcdef' } },
    });
  });

  it('names fields by their path from the root the caller gives', () => {
    expect(formatPath(['params', 0], 'body')).toBe('body.params[0]');
    expect(formatPath(['statements', 3, 'sql'], '')).toBe('statements[3].sql');
    expect(formatPath(['positions', 'a'], '')).toBe('positions.a');
    expect(thrownEdgelite(() => validateBody(StatementSchema, { sql: 1 }, 'statement')).message).toBe('statement.sql must be a non-empty string');
  });
});
