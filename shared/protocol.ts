/**
 * The JSON shapes of the public HTTP API (README.md#http-api), validated once on the way in. Same on the
 * primary, the Node replica and the Worker replica.
 */
import { hash64 } from './checksum.ts';
import { EdgeliteError } from './errors.ts';

/** SqlValue is what a parameter or a result cell may hold. Blobs travel as `{"base64": "..."}` in JSON. */
export type SqlValue = null | number | bigint | string | Uint8Array;

export type SqlParams = SqlValue[] | Record<string, SqlValue>;

export interface Statement {
  sql: string;
  params: SqlParams;
}

export interface QueryResult {
  columns: string[];
  rows: SqlValue[][];
}

export interface ExecResult {
  changes: number;
  lastInsertRowid: number;
}

/** MAX_STATEMENTS bounds one request; MAX_SQL_LENGTH one statement's text. */
export const MAX_STATEMENTS = 1000;
export const MAX_SQL_LENGTH = 100_000;

/**
 * parseStatementsBody validates `{"sql", "params"}` or `{"statements": [{"sql", "params"}, ...]}`
 * and returns the statements. Anything else is BAD_REQUEST with a message naming the field.
 */
export function parseStatementsBody(body: unknown): Statement[] {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new EdgeliteError('BAD_REQUEST', 'body must be a JSON object with "sql" or "statements"');
  }
  const b = body as Record<string, unknown>;
  if ('statements' in b) {
    if ('sql' in b) throw new EdgeliteError('BAD_REQUEST', 'give either "sql" or "statements", not both');
    const list = b.statements;
    if (!Array.isArray(list) || list.length === 0) {
      throw new EdgeliteError('BAD_REQUEST', '"statements" must be a non-empty array');
    }
    if (list.length > MAX_STATEMENTS) {
      throw new EdgeliteError('PAYLOAD_TOO_LARGE', `at most ${MAX_STATEMENTS} statements per request`);
    }
    return list.map((s, i) => parseStatement(s, `statements[${i}]`));
  }
  return [parseStatement(b, 'body')];
}

function parseStatement(value: unknown, where: string): Statement {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new EdgeliteError('BAD_REQUEST', `${where} must be an object with "sql"`);
  }
  const s = value as Record<string, unknown>;
  if (typeof s.sql !== 'string' || s.sql.trim() === '') {
    throw new EdgeliteError('BAD_REQUEST', `${where}.sql must be a non-empty string`);
  }
  if (s.sql.length > MAX_SQL_LENGTH) {
    throw new EdgeliteError('PAYLOAD_TOO_LARGE', `${where}.sql is longer than ${MAX_SQL_LENGTH} characters`);
  }
  return { sql: s.sql, params: parseParams(s.params, `${where}.params`) };
}

function parseParams(value: unknown, where: string): SqlParams {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value.map((v, i) => parseValue(v, `${where}[${i}]`));
  if (typeof value === 'object') {
    const out: Record<string, SqlValue> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) {
        throw new EdgeliteError('BAD_REQUEST', `${where}: invalid parameter name ${JSON.stringify(k)}`);
      }
      out[k] = parseValue(v, `${where}.${k}`);
    }
    return out;
  }
  throw new EdgeliteError('BAD_REQUEST', `${where} must be an array or an object`);
}

function parseValue(v: unknown, where: string): SqlValue {
  if (v === null || typeof v === 'string' || typeof v === 'bigint' || v instanceof Uint8Array) return v;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new EdgeliteError('BAD_REQUEST', `${where} must be a finite number`);
    return v;
  }
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'object' && v !== null && typeof (v as { base64?: unknown }).base64 === 'string') {
    return base64ToBytes((v as { base64: string }).base64, where);
  }
  throw new EdgeliteError('BAD_REQUEST', `${where}: unsupported value (use null, number, string, boolean or {"base64": ...})`);
}

/** toJSONValue turns a result cell into something JSON can carry: blobs as {"base64"}, bigints as strings. */
export function toJSONValue(v: unknown): unknown {
  if (v instanceof Uint8Array) return { base64: bytesToBase64(v) };
  if (typeof v === 'bigint') return v.toString();
  return v;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

export function bytesToBase64(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += `${B64[n >> 18]!}${B64[(n >> 12) & 63]!}==`;
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += `${B64[n >> 18]!}${B64[(n >> 12) & 63]!}${B64[(n >> 6) & 63]!}=`;
  }
  return out;
}

export function base64ToBytes(text: string, where = 'base64'): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new EdgeliteError('BAD_REQUEST', `${where}: invalid base64`);
  }
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    const n =
      (B64.indexOf(text[i]!) << 18) |
      (B64.indexOf(text[i + 1]!) << 12) |
      ((B64.indexOf(text[i + 2]!) & 63) << 6) |
      (B64.indexOf(text[i + 3]!) & 63);
    if (o < out.length) out[o++] = n >> 16;
    if (o < out.length) out[o++] = (n >> 8) & 255;
    if (o < out.length) out[o++] = n & 255;
  }
  return out;
}

/** SNAPSHOT_DIGEST_HEADER carries snapshotDigest(...) of a snapshot's position headers. */
export const SNAPSHOT_DIGEST_HEADER = 'Edgelite-Snapshot-Digest';

export interface SnapshotPositionFields {
  generation: number;
  txid: number;
  checksum: string;
  databaseId: number;
  pageSize: number;
  length: number;
}

/**
 * snapshotDigest covers a snapshot's position headers, which nothing else checks: the image's own
 * checksum proves the pages, not the txid they are at. A flipped bit in a header (still a number) would
 * otherwise install the image at a position the primary never had.
 */
export function snapshotDigest(f: SnapshotPositionFields): string {
  const text = `${f.generation}:${f.txid}:${f.checksum}:${f.databaseId}:${f.pageSize}:${f.length}`;
  return hash64(new TextEncoder().encode(text)).toString(16).padStart(16, '0');
}

/** verifySnapshotDigest throws CORRUPT_CHANGESET unless `digest` matches the fields. */
export function verifySnapshotDigest(f: SnapshotPositionFields, digest: string | null | undefined): void {
  if (digest !== snapshotDigest(f)) {
    throw new EdgeliteError('CORRUPT_CHANGESET', 'snapshot position headers do not match their digest', { details: { ...f, digest } });
  }
}
