/**
 * Request body parse cost (README.md#http-api, exact numbers): a point read's body through the old
 * path (JSON.parse) and the new one (parseExactJson: a 16-digit scan, then JSON.parse), and a body that
 * holds an integer beyond 2^53 (the lossless fallback). Run: npx vitest bench --run test/bench/exact-json.bench.ts
 */
import { bench, describe } from 'vitest';
import { parseExactJson } from '../../shared/exact-json.ts';
import { parseStatementsBody } from '../../shared/protocol.ts';

const decoder = new TextDecoder('utf-8', { fatal: true });
const POINT = new TextEncoder().encode('{"sql":"SELECT v FROM kv WHERE k = ?","params":[4217]}');
const BIG = new TextEncoder().encode('{"sql":"SELECT v FROM kv WHERE k = ?","params":[9223372036854775807]}');

describe('point-read body: decode + parse + validate', () => {
  bench('JSON.parse (before)', () => {
    parseStatementsBody(JSON.parse(decoder.decode(POINT)));
  });
  bench('parseExactJson (after)', () => {
    parseStatementsBody(parseExactJson(decoder.decode(POINT)));
  });
  bench('parseExactJson, an integer beyond 2^53 (lossless fallback)', () => {
    parseStatementsBody(parseExactJson(decoder.decode(BIG)));
  });
});
