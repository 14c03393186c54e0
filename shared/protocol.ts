/**
 * The wire shapes, written once: the JSON bodies of the public HTTP API (README.md#http-api), validated
 * once on the way in, and the replica→primary protocol (docs/ARCHITECTURE.md#the-stream-protocol): the
 * stream request, the snapshot headers and their digest, the position headers. Same on the primary,
 * the Node replica and the Worker replica.
 */
import { hash64 } from './checksum.ts';
import { isPattern, validatePattern } from './db-pattern.ts';
import { EdgeliteError } from './errors.ts';
import { formatChecksum, parseChecksum, positionFromJSON, validateDatabaseName, type Position, type PositionJSON } from './types.ts';

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
  /** A bigint beyond 2^53 (a string in JSON, as every result integer). */
  lastInsertRowid: number | bigint;
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

/**
 * PARAM_NAME is a named parameter's key: `name` binds `:name`, `@name` and `$name` (as better-sqlite3
 * binds them); the key may also carry its prefix (`":name"`), which is dropped. Numbered parameters
 * (`?1`, `?NNN`) take an array, by position (README.md#http-api).
 */
const PARAM_NAME = /^[:@$]?([A-Za-z_][A-Za-z0-9_]*)$/;

function parseParams(value: unknown, where: string): SqlParams {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value.map((v, i) => parseValue(v, `${where}[${i}]`));
  if (typeof value === 'object' && !(value instanceof Uint8Array)) {
    const out: Record<string, SqlValue> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const m = PARAM_NAME.exec(k);
      if (!m) {
        throw new EdgeliteError('BAD_REQUEST', `${where}: invalid parameter name ${JSON.stringify(k)} (a name, optionally with its :, @ or $ prefix; numbered parameters take an array)`);
      }
      const name = m[1]!;
      if (Object.prototype.hasOwnProperty.call(out, name)) {
        throw new EdgeliteError('BAD_REQUEST', `${where}: parameter ${JSON.stringify(name)} is given twice (keys with and without a prefix name the same parameter)`);
      }
      out[name] = parseValue(v, `${where}.${k}`);
    }
    return out;
  }
  throw new EdgeliteError('BAD_REQUEST', `${where} must be an array or an object`);
}

function parseValue(v: unknown, where: string): SqlValue {
  if (v === null || typeof v === 'string' || v instanceof Uint8Array) return v;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new EdgeliteError('BAD_REQUEST', `${where} must be a finite number`);
    return v;
  }
  if (typeof v === 'bigint') {
    // From an exact JSON literal (already range-checked) or a msgpack uint64 (not yet).
    if (v < -(2n ** 63n) || v > 2n ** 63n - 1n) {
      throw new EdgeliteError('BAD_REQUEST', `${where}: integer ${v} is outside SQLite's 64-bit integer range (${-(2n ** 63n)} to ${2n ** 63n - 1n})`);
    }
    return Number.isSafeInteger(Number(v)) ? Number(v) : v;
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

// ---- The replica→primary protocol (docs/ARCHITECTURE.md#the-stream-protocol) ----

/** STREAM_PATH is where a replica posts its stream request. */
export const STREAM_PATH = '/v1/stream';

/**
 * StreamRequest is the body of `POST /v1/stream`, as JSON:
 *
 *   {"databases": ["a", "b"] | "*",          which databases ("*": all, and any created later); an
 *                                            entry may be a pattern ("tenant-*", shared/db-pattern.ts):
 *                                            every matching database, and any created later
 *    "deltas": true,                          the replica holds base pages: live frames may be deltas
 *    "positions": {"a": {"generation": 3, "txid": 41, "checksum": "<16 hex>"} | null},
 *    "ranges": true}                          optional: the replica can GET sealed catch-up ranges
 *
 * With `"ranges": true`, a request any of whose positions is at least one sealed range behind is answered
 * 409 USE_RANGES with `details.databases` (those names) instead of the stream: the replica fetches the
 * ranges by GET (shared/changes.ts), through any cache, and posts again from where they took it.
 * A database with no position (null or absent) starts with `snapshot-needed`. The answer is a
 * never-ending body of frames (frames.ts): change sets, events, and a `heartbeat` frame every second,
 * `{"type": "heartbeat", "time": ms, "positions": {name: {generation, txid, timestamp}}}`, the
 * primary's position and last commit time per database (StreamPosition in frames.ts).
 */
export interface StreamRequest {
  databases: string[] | '*';
  positions: Record<string, Position | null>;
  deltas: boolean;
  /** The replica can catch up by GETs of sealed ranges: answer USE_RANGES when that is worth it. */
  ranges: boolean;
}

/**
 * streamRequestBody builds the stream request a replica sends (both replicas rebuild deltas, so `deltas:
 * true`); `ranges` asks for USE_RANGES when a position is a sealed range or more behind.
 */
export function streamRequestBody(databases: string[] | '*', positions: Record<string, Position | null>, ranges = false): string {
  const json: Record<string, PositionJSON | null> = {};
  for (const [name, p] of Object.entries(positions)) {
    json[name] = p && { generation: p.generation, txid: p.txid, checksum: formatChecksum(p.checksum) };
  }
  return JSON.stringify(ranges ? { databases, deltas: true, ranges: true, positions: json } : { databases, deltas: true, positions: json });
}

/** parseStreamRequest validates a stream request body (the primary's side); BAD_REQUEST naming the field. */
export function parseStreamRequest(body: unknown): StreamRequest {
  const b = body as { databases?: unknown; positions?: unknown; deltas?: unknown; ranges?: unknown } | null;
  if (!b || typeof b !== 'object') throw new EdgeliteError('BAD_REQUEST', 'stream body must be an object');
  let databases: string[] | '*';
  if (b.databases === '*' || b.databases === undefined) databases = '*';
  else if (Array.isArray(b.databases)) databases = b.databases.map((n) => (typeof n === 'string' && isPattern(n) ? validatePattern(n, '"databases"', 'INVALID_DATABASE_NAME') : validateDatabaseName(n)));
  else throw new EdgeliteError('BAD_REQUEST', '"databases" must be "*" or an array of names and patterns');
  const positions: Record<string, Position | null> = {};
  if (b.positions !== undefined) {
    if (!b.positions || typeof b.positions !== 'object') throw new EdgeliteError('BAD_REQUEST', '"positions" must be an object');
    for (const [name, p] of Object.entries(b.positions as Record<string, unknown>)) {
      validateDatabaseName(name);
      positions[name] = p === null ? null : parseStreamPosition(p, name);
    }
  }
  if (b.deltas !== undefined && typeof b.deltas !== 'boolean') throw new EdgeliteError('BAD_REQUEST', '"deltas" must be a boolean');
  if (b.ranges !== undefined && typeof b.ranges !== 'boolean') throw new EdgeliteError('BAD_REQUEST', '"ranges" must be a boolean');
  return { databases, positions, deltas: b.deltas === true, ranges: b.ranges === true };
}

function parseStreamPosition(p: unknown, name: string): Position {
  const j = p as Partial<PositionJSON>;
  if (!j || !Number.isSafeInteger(j.generation) || !Number.isSafeInteger(j.txid) || typeof j.checksum !== 'string') {
    throw new EdgeliteError('BAD_REQUEST', `positions.${name} must be {generation, txid, checksum}`);
  }
  return positionFromJSON(j as PositionJSON);
}

/**
 * POSITION_HEADERS name the headers that say where an answer was read or written. Every query and exec
 * answer carries them (README.md#http-api); the snapshot carries the first four and PAGE_SIZE.
 */
export const POSITION_HEADERS = {
  generation: 'Edgelite-Generation',
  txid: 'Edgelite-Txid',
  checksum: 'Edgelite-Checksum',
  databaseId: 'Edgelite-Database-Id',
  servedBy: 'Edgelite-Served-By',
  pageSize: 'Edgelite-Page-Size',
} as const;

/** positionHeaders are an answer's position headers; an unknown database id (a replica not yet bootstrapped) is empty. */
export function positionHeaders(p: Position, databaseId: number | null, servedBy: 'primary' | 'replica'): Record<string, string> {
  return {
    [POSITION_HEADERS.generation]: String(p.generation),
    [POSITION_HEADERS.txid]: String(p.txid),
    [POSITION_HEADERS.checksum]: formatChecksum(p.checksum),
    [POSITION_HEADERS.databaseId]: databaseId === null ? '' : String(databaseId),
    [POSITION_HEADERS.servedBy]: servedBy,
  };
}

/** SNAPSHOT_DIGEST_HEADER carries snapshotDigest(...) of a snapshot's position headers. */
export const SNAPSHOT_DIGEST_HEADER = 'Edgelite-Snapshot-Digest';

/** SnapshotHead is what a snapshot's headers say, checked against their digest. */
export interface SnapshotHead {
  position: Position;
  databaseId: number;
  pageSize: number;
  /** The image's length in bytes (Content-Length, covered by the digest). */
  length: number;
}

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

/** snapshotHeaders are the headers the primary sends with a snapshot: position, page size, length and their digest. */
export function snapshotHeaders(head: SnapshotHead): Record<string, string> {
  const checksum = formatChecksum(head.position.checksum);
  const { generation, txid } = head.position;
  return {
    'content-length': String(head.length),
    [POSITION_HEADERS.generation]: String(generation),
    [POSITION_HEADERS.txid]: String(txid),
    [POSITION_HEADERS.checksum]: checksum,
    [POSITION_HEADERS.databaseId]: String(head.databaseId),
    [POSITION_HEADERS.pageSize]: String(head.pageSize),
    [SNAPSHOT_DIGEST_HEADER]: snapshotDigest({ generation, txid, checksum, databaseId: head.databaseId, pageSize: head.pageSize, length: head.length }),
  };
}

/**
 * readSnapshotHead reads a snapshot's headers (the replica's side) and verifies them against their
 * digest before anything of the body is used: CORRUPT_CHANGESET when one is missing, is not an integer,
 * or does not match.
 */
export function readSnapshotHead(headers: { get(name: string): string | null }): SnapshotHead {
  const int = (name: string): number => {
    const text = headers.get(name);
    const n = text === null || text.trim() === '' ? NaN : Number(text);
    if (!Number.isSafeInteger(n) || n < 0) throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot header ${name} is ${text === null ? 'missing' : `"${text}", not an integer`}`);
    return n;
  };
  const f: SnapshotPositionFields = {
    generation: int(POSITION_HEADERS.generation),
    txid: int(POSITION_HEADERS.txid),
    checksum: headers.get(POSITION_HEADERS.checksum) ?? '',
    databaseId: int(POSITION_HEADERS.databaseId),
    pageSize: int(POSITION_HEADERS.pageSize),
    length: int('content-length'),
  };
  verifySnapshotDigest(f, headers.get(SNAPSHOT_DIGEST_HEADER));
  return { position: { generation: f.generation, txid: f.txid, checksum: parseChecksum(f.checksum) }, databaseId: f.databaseId, pageSize: f.pageSize, length: f.length };
}
