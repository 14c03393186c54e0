/**
 * Exact numbers in request bodies (README.md#http-api): an integer literal beyond 2^53 arrives as a
 * bigint (bound as a SQLite INTEGER), never rounded; one outside SQLite's 64-bit range is BAD_REQUEST.
 * JSON.parse rounds such literals to the nearest double (9007199254740993 becomes ...992, and
 * 9223372036854775807 becomes the REAL 2^63), so a body holding a run of 16 or more digits (the
 * shortest unsafe integer has 16) is parsed again losslessly; every other body takes JSON.parse, the
 * fast path of a point read. A literal with a fraction or an exponent is a REAL (an IEEE double, as
 * SQLite stores REALs). msgpack bodies decode int64/uint64 the same way: a number when safe, else a
 * bigint. Worker-safe: no Node imports.
 */
import { parse as losslessParse, stringify as losslessStringify } from 'lossless-json';
import { Unpackr } from 'msgpackr';
import { EdgeliteError } from './errors.ts';
import { bytesToBase64 } from './protocol.ts';

/** INT64_MIN and INT64_MAX bound what SQLite stores as an INTEGER. */
export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

/** UNSAFE_DIGITS finds a digit run long enough to be an integer JSON.parse would round. */
const UNSAFE_DIGITS = /\d{16}/;
const INTEGER_LITERAL = /^-?\d+$/;

/** Bodies that hold a bigint or a blob: stringifyRequestJson must not hand them to JSON.stringify. */
const exactValues = new WeakSet<object>();

/** int64OutOfRange is the BAD_REQUEST for an integer SQLite cannot store. */
export function int64OutOfRange(text: string, where?: string): EdgeliteError {
  return new EdgeliteError(
    'BAD_REQUEST',
    `${where ? `${where}: ` : ''}integer ${text.length > 40 ? `${text.slice(0, 40)}...` : text} is outside SQLite's 64-bit integer range (${INT64_MIN} to ${INT64_MAX}); send it as a string or a REAL (with a fraction or exponent) to store it otherwise`,
  );
}

/** exactNumber turns one JSON number literal into a number, or a bigint when a number would round it. */
function exactNumber(text: string): number | bigint {
  const n = Number(text);
  if (!INTEGER_LITERAL.test(text) || Number.isSafeInteger(n)) return n;
  const b = BigInt(text);
  if (b < INT64_MIN || b > INT64_MAX) throw int64OutOfRange(text);
  return b;
}

/**
 * parseExactJson parses request JSON with integers kept exact (see the file comment). Errors: a
 * SyntaxError for bad JSON (the caller wraps it), BAD_REQUEST for an integer outside int64.
 */
export function parseExactJson(text: string): unknown {
  if (!UNSAFE_DIGITS.test(text)) return JSON.parse(text);
  const value = losslessParse(text, null, {
    parseNumber: exactNumber,
    // As JSON.parse: the last of duplicate keys wins.
    onDuplicateKey: ({ newValue }) => newValue,
  });
  if (value !== null && typeof value === 'object') exactValues.add(value);
  return value;
}

const requestUnpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' } as unknown as ConstructorParameters<typeof Unpackr>[0]);

/**
 * parseMsgpackBody decodes a msgpack request body: maps as objects, bin as Uint8Array, int64/uint64 as
 * a number when safe and a bigint otherwise (a uint64 past INT64_MAX is refused by the statement
 * validation in protocol.ts, with the field's name).
 */
export function parseMsgpackBody(bytes: Uint8Array): unknown {
  const value = requestUnpackr.unpack(bytes) as unknown;
  if (value !== null && typeof value === 'object') exactValues.add(value);
  return value;
}

/**
 * stringifyRequestJson writes a parsed request body back as JSON (a replica forwarding it to the
 * primary): bigints as bare integer literals, blobs (from msgpack) as `{"base64"}`. A body JSON.parse
 * read takes JSON.stringify.
 */
export function stringifyRequestJson(value: unknown): string {
  const exact = typeof value === 'bigint' || (value !== null && typeof value === 'object' && exactValues.has(value));
  return exact ? stringifyExactJson(value) : JSON.stringify(value);
}

/** stringifyExactJson writes any request value as JSON: bigints as bare integer literals, blobs as `{"base64"}`. */
export function stringifyExactJson(value: unknown): string {
  const text = losslessStringify(value, function (_k: string, v: unknown) {
    return v instanceof Uint8Array ? { base64: bytesToBase64(v) } : v;
  });
  if (text === undefined) throw new TypeError('a request body must be a JSON value');
  return text;
}
