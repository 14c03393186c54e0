/**
 * The wire shapes, written once: the JSON bodies of the public HTTP API (README.md#http-api), validated
 * once on the way in, and the replica→primary protocol (docs/ARCHITECTURE.md#the-stream-protocol): the
 * stream request, the snapshot headers and their digest, the position headers. Same on the primary,
 * the Node replica and the Worker replica.
 */
import { hash64 } from './checksum.ts';
export { base64ToBytes, bytesToBase64 } from './base64.ts';
import { bytesToBase64 } from './base64.ts';
import { EdgeliteError } from './errors.ts';
import { BatchSchema, SingleStatementSchema, StreamRequestSchema, type SqlParams, type SqlValue } from './openapi/requests.ts';
import { validateBody } from './openapi/validate.ts';
import { formatChecksum, parseChecksum, type Position, type PositionJSON } from './types.ts';

/** SqlValue is what a parameter or a result cell may hold. Blobs travel as `{"base64": "..."}` in JSON. */
export type { SqlParams, SqlValue } from './openapi/requests.ts';
export { MAX_SQL_LENGTH, MAX_STATEMENTS } from './openapi/requests.ts';

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

/**
 * parseStatementsBody validates `{"sql", "params"}` or `{"statements": [{"sql", "params"}, ...]}`
 * against the request schemas (shared/openapi/requests.ts) and returns the statements. Anything else
 * is BAD_REQUEST with a message naming the field (PAYLOAD_TOO_LARGE past MAX_STATEMENTS or
 * MAX_SQL_LENGTH). A body holding "statements" is a batch, any other object one statement.
 */
export function parseStatementsBody(body: unknown): Statement[] {
  if (body === null || typeof body !== 'object' || Array.isArray(body) || body instanceof Uint8Array) {
    throw new EdgeliteError('BAD_REQUEST', 'body must be a JSON object with "sql" or "statements"');
  }
  if ('statements' in body) {
    if ('sql' in body) throw new EdgeliteError('BAD_REQUEST', 'give either "sql" or "statements", not both');
    return validateBody(BatchSchema, body, '').statements;
  }
  return [validateBody(SingleStatementSchema, body, 'body')];
}

/** toJSONValue turns a result cell into something JSON can carry: blobs as {"base64"}, bigints as strings. */
export function toJSONValue(v: unknown): unknown {
  if (v instanceof Uint8Array) return { base64: bytesToBase64(v) };
  if (typeof v === 'bigint') return v.toString();
  return v;
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

/** parseStreamRequest validates a stream request body (the primary's side, StreamRequestSchema); BAD_REQUEST naming the field. */
export function parseStreamRequest(body: unknown): StreamRequest {
  return validateBody(StreamRequestSchema, body, '');
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
