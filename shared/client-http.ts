/**
 * The client library's wire layer (see client.ts for the public surface): one HTTP exchange that never
 * throws but says what happened, including whether a failed request may have reached a server; the
 * JSON encoding of parameters and the decoding of result cells; and the session position a response
 * reports. Web APIs only, so it runs in Node, browsers and Workers. Bodies are JSON, or msgpack with
 * the `encoding: 'msgpack'` option: there 64-bit integers travel as int64 both ways and blobs as bin
 * (README.md#http-api).
 */
import { Packr, Unpackr } from 'msgpackr';
import { EdgeliteError, errorFromBody } from './errors.ts';
import { INT64_MAX, INT64_MIN, stringifyExactJson } from './exact-json.ts';
import { base64ToBytes, bytesToBase64, type SqlValue } from './protocol.ts';
import type { Token } from './token.ts';

/** ParamValue is what a client may bind: SqlValue, plus booleans (sent as 1/0). */
export type ParamValue = SqlValue | boolean;
export type Params = ParamValue[] | Record<string, ParamValue>;

/** StatementInput is one statement: its SQL alone, or SQL with parameters. */
export type StatementInput = string | { sql: string; params?: Params };

export type FetchFn = (input: string, init: RequestInit) => Promise<Response>;

/** Encoding of request and result bodies: JSON (default) or msgpack. */
export type Encoding = 'json' | 'msgpack';

/** MEDIA_TYPES are the content types of each encoding. */
export const MEDIA_TYPES: Record<Encoding, string> = { json: 'application/json', msgpack: 'application/msgpack' };

const packr = new Packr({ useRecords: false });
// 'auto': int64 as a number when safe, else a bigint (never rounded).
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' } as unknown as ConstructorParameters<typeof Unpackr>[0]);

/** Exchange is the outcome of one request: an HTTP answer, or a failure that says whether it was sent. */
export type Exchange =
  | { kind: 'response'; status: number; body: unknown; headers: Headers; ms: number }
  | { kind: 'failed'; error: unknown; message: string; mayHaveBeenSent: boolean };

export interface SendOptions {
  method: 'GET' | 'POST' | 'PUT';
  headers: Record<string, string>;
  body?: string | Uint8Array;
  timeoutMs: number;
}

/**
 * NOT_SENT_CODES are connection errors that happen before a single byte of the request leaves: the
 * only failures after which a write may be sent elsewhere without risking it being applied twice.
 */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/** send performs one exchange, bounded by `timeoutMs`, and reads the whole body (JSON, or null). */
export async function send(fetchFn: FetchFn, url: string, o: SendOptions): Promise<Exchange> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), o.timeoutMs);
  const started = Date.now();
  try {
    const init: RequestInit = { method: o.method, headers: o.headers, signal: abort.signal };
    if (o.body !== undefined) init.body = o.body as BodyInit;
    const res = await fetchFn(url, init);
    const ms = Date.now() - started;
    if (/^application\/(x-)?msgpack/i.test(res.headers.get('content-type') ?? '')) {
      const bytes = new Uint8Array(await res.arrayBuffer());
      return { kind: 'response', status: res.status, body: parseMsgpack(bytes), headers: res.headers, ms };
    }
    const text = await res.text();
    return { kind: 'response', status: res.status, body: parseJson(text), headers: res.headers, ms };
  } catch (error) {
    const timedOut = abort.signal.aborted;
    const message = timedOut ? `no answer within ${o.timeoutMs} ms` : describeFailure(error);
    return { kind: 'failed', error, message, mayHaveBeenSent: timedOut || !certainlyNotSent(error) };
  } finally {
    clearTimeout(timer);
  }
}

function parseMsgpack(bytes: Uint8Array): unknown {
  if (bytes.length === 0) return null;
  try {
    return unpackr.unpack(bytes) as unknown;
  } catch (err) {
    return { unparsable: `${bytes.length} bytes of msgpack`, error: String(err) };
  }
}

function parseJson(text: string): unknown {
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    // Not ours (a proxy's HTML error page, say): the status alone will have to speak.
    return { unparsable: text.slice(0, 200), error: String(err) };
  }
}

/**
 * certainlyNotSent is true only when the runtime says the connection itself failed (undici puts the
 * socket error's code on `cause`; an AggregateError when every address of a host refused). Browsers and
 * Workers say nothing so precise, so there every failure counts as possibly sent.
 */
export function certainlyNotSent(error: unknown): boolean {
  const cause = (error as { cause?: unknown } | null)?.cause;
  const codes = (c: unknown): string[] => {
    const e = c as { code?: unknown; errors?: unknown } | null;
    if (e && Array.isArray(e.errors) && e.errors.length > 0) return e.errors.flatMap(codes);
    return [typeof e?.code === 'string' ? e.code : ''];
  };
  const list = cause === undefined ? [] : codes(cause);
  return list.length > 0 && list.every((c) => NOT_SENT_CODES.has(c));
}

function describeFailure(error: unknown): string {
  const e = error as { message?: unknown; cause?: { message?: unknown; code?: unknown } } | null;
  const own = typeof e?.message === 'string' ? e.message : String(error);
  const cause = e?.cause;
  if (!cause) return own;
  const detail = [cause.code, cause.message].filter((x) => typeof x === 'string' && x !== '').join(' ');
  return detail ? `${own}: ${detail}` : own;
}

/** responseError turns a non-2xx answer into the server's typed error. */
export function responseError(x: { status: number; body: unknown }, url: string): EdgeliteError {
  const err = errorFromBody(x.body, x.status);
  const details = { ...(err.details ?? {}), url, status: x.status };
  return new EdgeliteError(err.code, err.message, { details });
}

/**
 * statementsBody builds the request body for one statement or several. A bigint parameter goes as a
 * bare integer literal, which the server keeps exact (README.md#http-api; JSON.stringify cannot write one).
 */
export function statementsBody(statements: StatementInput[], encoding: Encoding = 'json'): string | Uint8Array {
  const list = statements.map((s, i) => normalise(s, i, encoding));
  const body = list.length === 1 ? list[0] : { statements: list };
  if (encoding === 'msgpack') return packr.pack(body) as Uint8Array;
  return list.some(hasBigInt) ? stringifyExactJson(body) : JSON.stringify(body);
}

function hasBigInt(s: { params: unknown }): boolean {
  const p = s.params;
  return Array.isArray(p) ? p.some((v) => typeof v === 'bigint') : p !== null && typeof p === 'object' && Object.values(p).some((v) => typeof v === 'bigint');
}

function normalise(s: StatementInput, i: number, encoding: Encoding): { sql: string; params: unknown } {
  const where = `statements[${i}]`;
  const st = typeof s === 'string' ? { sql: s } : s;
  if (st === null || typeof st !== 'object' || typeof st.sql !== 'string' || st.sql.trim() === '') {
    throw new EdgeliteError('BAD_REQUEST', `${where} must be SQL text or {sql, params}`);
  }
  return { sql: st.sql, params: encodeParams(st.params, `${where}.params`, encoding) };
}

function encodeParams(params: Params | undefined, where: string, encoding: Encoding): unknown {
  if (params === undefined || params === null) return [];
  if (Array.isArray(params)) return params.map((v, i) => encodeValue(v, `${where}[${i}]`, encoding));
  if (typeof params === 'object') {
    return Object.fromEntries(Object.entries(params).map(([k, v]) => [k, encodeValue(v, `${where}.${k}`, encoding)]));
  }
  throw new EdgeliteError('BAD_REQUEST', `${where} must be an array or an object`);
}

function encodeValue(v: ParamValue, where: string, encoding: Encoding): unknown {
  if (v instanceof Uint8Array) return encoding === 'msgpack' ? v : { base64: bytesToBase64(v) };
  if (typeof v === 'bigint') {
    if (v < INT64_MIN || v > INT64_MAX) throw new EdgeliteError('BAD_REQUEST', `${where}: bigint ${v} is outside SQLite's 64-bit integer range`);
    return Number.isSafeInteger(Number(v)) ? Number(v) : v;
  }
  if (typeof v === 'number' && !Number.isFinite(v)) throw new EdgeliteError('BAD_REQUEST', `${where} must be a finite number`);
  if (v === null || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') return v;
  throw new EdgeliteError('BAD_REQUEST', `${where}: unsupported value (use null, number, bigint, string, boolean or Uint8Array)`);
}

/** decodeRows turns `{"base64"}` cells back into Uint8Array. */
export function decodeRows(rows: unknown): SqlValue[][] {
  if (!Array.isArray(rows)) return [];
  return rows.map((row) => (Array.isArray(row) ? row.map(decodeCell) : []));
}

function decodeCell(v: unknown): SqlValue {
  if (v !== null && typeof v === 'object') {
    const b64 = (v as { base64?: unknown }).base64;
    if (typeof b64 === 'string') return base64ToBytes(b64, 'result blob');
  }
  return v as SqlValue;
}

/**
 * positionOf reads the position a read response reports (`Edgelite-Database-Id`, `-Generation`,
 * `-Txid`) as a token for `db`, or null when the server did not say (e.g. a read the replica sent on to
 * the primary).
 */
export function positionOf(db: string, headers: Headers): Token | null {
  const id = uint(headers.get('edgelite-database-id'));
  const generation = uint(headers.get('edgelite-generation'));
  const txid = uint(headers.get('edgelite-txid'));
  if (id === null || generation === null || txid === null) return null;
  return { db, databaseId: id, generation, txid };
}

function uint(text: string | null): number | null {
  if (text === null || !/^\d+$/.test(text)) return null;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : null;
}
