/**
 * HTTP plumbing shared by the primary, the Node replica and the Worker replica (hono runs on all three):
 * typed error responses, auth per route, bounded JSON bodies, results as JSON or msgpack.
 */
import { concatBytes } from './types.ts';
import type { Context, MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';
import { type AccessGrant, assertEveryDatabase, authorize, type AuthConfig, type Right } from './auth.ts';
import { EdgeliteError, toEdgeliteError } from './errors.ts';
import { Packr } from 'msgpackr';
import { parseExactJson, parseMsgpackBody } from './exact-json.ts';
import { toJSONValue } from './protocol.ts';

/** DEFAULT_MAX_BODY_BYTES bounds a request body unless configured otherwise. */
export const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;

/** Response headers browsers may read (CORS), so web apps can keep their position and token. */
export const EXPOSED_HEADERS = [
  'Edgelite-Token',
  'Edgelite-Generation',
  'Edgelite-Txid',
  'Edgelite-Checksum',
  'Edgelite-Database-Id',
  'Edgelite-Page-Size',
  'Edgelite-Served-By',
  'Edgelite-Snapshot-Digest',
];

/**
 * corsMiddleware lets browser apps call any edgelite server: preflights are answered without auth,
 * the request headers we read are allowed, and the position/token headers are readable.
 */
export function corsMiddleware(origin: string | string[] = '*'): MiddlewareHandler {
  const inner = cors({
    origin,
    allowMethods: ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS'],
    allowHeaders: ['Authorization', 'Content-Type', 'Accept', 'Edgelite-Token', 'Edgelite-Consistency'],
    exposeHeaders: EXPOSED_HEADERS,
    maxAge: 600,
  });
  // Only a request with an Origin header (every cross-origin browser request, every preflight) needs
  // CORS headers. Skipping the rest matters for speed: hono's cors sets headers before the handler
  // runs, which makes hono rebuild the handler's Response around a web stream, and on Node the server
  // then leaves its fast path for a string body (measured: ~20% of a point read's CPU).
  return (c, next) => (c.req.header('origin') === undefined ? next() : inner(c, next));
}

/**
 * closeAfterRefusedBody marks a 413 answer `Connection: close`: a body refused part-way is cancelled,
 * which ends the socket after the answer, and a keep-alive client would otherwise send its next request
 * into the closed connection. It also reads, before the answer goes out, a body the route never read
 * (a 404, an auth refusal, a route that takes none), up to `maxBodyBytes` (past it: cancelled and
 * `Connection: close`): left to the HTTP server, it is drained after the answer under a 500 ms timer
 * that closes the socket under the client when the event loop was busy, so the client saw "other side
 * closed" instead of the answer (found by the HTTP fuzz). Register it first, so it runs after every
 * other middleware.
 */
export function closeAfterRefusedBody(maxBodyBytes = DEFAULT_MAX_BODY_BYTES): MiddlewareHandler {
  return async (c, next) => {
    await next();
    // Headers first: touching `body` of a request that has none would build the full Request object,
    // which the Node server otherwise skips on its fast path (reads are most requests).
    const length = c.req.header('content-length');
    const sent = (length !== undefined && length !== '0') || c.req.header('transfer-encoding') !== undefined;
    // A Node body readJsonBody read to its end: nothing left, and no Request object to build (P2's
    // per-request cost, docs/BENCHMARKS.md#per-phase-breakdown).
    const drained = nodeIncoming(c)?.readableEnded === true;
    const req = c.req.raw;
    if (sent && !drained && req.body && !req.bodyUsed) {
      const reader = req.body.getReader();
      let n = 0;
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          n += value.byteLength;
          if (n > maxBodyBytes) {
            await reader.cancel();
            c.res.headers.set('connection', 'close');
            break;
          }
        }
      } catch {
        c.res.headers.set('connection', 'close'); // the client went away mid-body: nothing to keep alive
      }
    }
    if (c.res.status === 413) c.res.headers.set('connection', 'close');
  };
}

/** errorResponse renders any thrown value as `{"error": {"code", "message"}}` with its status. */
export function errorResponse(err: unknown, log?: (e: Record<string, unknown>) => void): Response {
  const e = toEdgeliteError(err);
  if (e.code === 'INTERNAL' && log) log({ msg: 'internal error', error: String(err), stack: (err as Error)?.stack });
  return new Response(JSON.stringify(e.toBody()), {
    status: e.status,
    headers: { 'content-type': 'application/json' },
  });
}

/**
 * requireRight is the per-route auth middleware. On a route with a `:name` the token must also reach that
 * database (a tenant-scoped token, README.md#tenant-scoped-tokens); `every: true` refuses a scoped token
 * outright (a route that shows every database, like /metrics).
 */
export function requireRight(auth: AuthConfig, right: Right, opts: { every?: boolean } = {}): MiddlewareHandler {
  const mw: MiddlewareHandler = async (c, next) => {
    const grant = authorize(auth, c.req.header('authorization'), right, c.req.param('name'));
    if (opts.every) assertEveryDatabase(grant, `${c.req.method} ${c.req.path}`);
    await next();
  };
  return tagRight(mw, { right, every: opts.every === true });
}

/** RouteRight is the right a route's auth middleware demands; `every`: no tenant-scoped token. */
export interface RouteRight {
  right: Right;
  every: boolean;
}

const ROUTE_RIGHT = Symbol('edgelite.routeRight');

/**
 * tagRight marks an auth middleware with the right it checks, so GET /v1/openapi.json reads each
 * route's right from the route itself (shared/openapi/document.ts), not from a list that could drift.
 */
export function tagRight<H extends object>(handler: H, right: RouteRight): H {
  return Object.assign(handler, { [ROUTE_RIGHT]: right });
}

/** routeRight is the right a handler was tagged with, or null. */
export function routeRight(handler: unknown): RouteRight | null {
  return (typeof handler === 'function' && (handler as { [ROUTE_RIGHT]?: RouteRight })[ROUTE_RIGHT]) || null;
}

/** requestGrant is the grant of a request that passed requireRight(auth, right): what a listing or the stream narrows to. */
export function requestGrant(auth: AuthConfig, c: Context, right: Right): AccessGrant {
  return authorize(auth, c.req.header('authorization'), right);
}

/**
 * readJsonBody reads a request body of at most `maxBytes` (PAYLOAD_TOO_LARGE past it, measured on the
 * bytes actually received, not only the declared length): JSON with a JSON content type (or none), or
 * msgpack with `Content-Type: application/msgpack`. Integers stay exact either way (exact-json.ts,
 * README.md#http-api); re-send a body with stringifyRequestJson, not JSON.stringify.
 */
export async function readJsonBody(c: Context, maxBytes: number): Promise<unknown> {
  const type = c.req.header('content-type');
  const msgpack = type !== undefined && MSGPACK_TYPES.test(type);
  if (type && !msgpack && !/^application\/json\b/i.test(type)) {
    throw new EdgeliteError('UNSUPPORTED_MEDIA_TYPE', `content-type must be application/json or application/msgpack, got ${type.slice(0, 80)}`);
  }
  const declared = Number(c.req.header('content-length') ?? '0');
  if (declared > maxBytes) throw tooLarge(maxBytes);
  const incoming = nodeIncoming(c);
  const bytes = incoming ? await readIncoming(incoming, maxBytes) : await readWebBody(c, maxBytes);
  return msgpack ? parseMsgpack(bytes) : parseJson(bytes);
}

/**
 * NodeIncoming is the part of Node's IncomingMessage readIncoming uses, typed here so that this file
 * stays free of Node imports (the Worker bundles it).
 */
interface NodeIncoming {
  on(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  off(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
  off(event: 'end', listener: () => void): unknown;
  off(event: 'error', listener: (err: Error) => void): unknown;
  pause(): unknown;
  /** True once 'end' was emitted: the whole body was read. */
  readonly readableEnded?: boolean;
}

/**
 * nodeIncoming returns the Node request under @hono/node-server (`c.env.incoming`), or null elsewhere.
 * Reading it directly skips the web ReadableStream the server would otherwise build around it.
 */
function nodeIncoming(c: Context): NodeIncoming | null {
  const incoming = (c.env as { incoming?: Partial<NodeIncoming> } | undefined)?.incoming;
  return incoming && typeof incoming.on === 'function' && typeof incoming.off === 'function' && typeof incoming.pause === 'function' ? (incoming as NodeIncoming) : null;
}

/**
 * readIncoming collects a Node request body of at most `maxBytes`. Past the limit it stops listening
 * and pauses the request rather than destroying it: destroying would close the socket before the 413
 * is written (the answer then carries `Connection: close`, see closeAfterRefusedBody).
 */
function readIncoming(incoming: NodeIncoming, maxBytes: number): Promise<Uint8Array> {
  return new Promise<Uint8Array>((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let size = 0;
    const stop = () => {
      // Only our own listeners: the server keeps its own (it marks the request ended on 'end').
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onError);
    };
    const onData = (chunk: Uint8Array) => {
      size += chunk.byteLength;
      if (size > maxBytes) {
        stop();
        incoming.pause();
        reject(tooLarge(maxBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      stop();
      resolve(concatBytes(chunks));
    };
    const onError = (err: Error) => {
      stop();
      reject(new EdgeliteError('BAD_REQUEST', `request body could not be read: ${err.message}`, { cause: err }));
    };
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onError);
  });
}

async function readWebBody(c: Context, maxBytes: number): Promise<Uint8Array> {
  const body = c.req.raw.body;
  if (!body) throw new EdgeliteError('BAD_REQUEST', 'request body is empty');
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw tooLarge(maxBytes);
    }
    chunks.push(value);
  }
  return concatBytes(chunks);
}


function parseJson(bytes: Uint8Array): unknown {
  try {
    return parseExactJson(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    if (err instanceof EdgeliteError) throw err; // an integer outside int64, say
    throw new EdgeliteError('BAD_REQUEST', `body is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

function parseMsgpack(bytes: Uint8Array): unknown {
  if (bytes.length === 0) throw new EdgeliteError('BAD_REQUEST', 'request body is empty');
  try {
    return parseMsgpackBody(bytes);
  } catch (err) {
    throw new EdgeliteError('BAD_REQUEST', `body is not valid msgpack: ${(err as Error).message}`, { cause: err });
  }
}

function tooLarge(maxBytes: number): EdgeliteError {
  return new EdgeliteError('PAYLOAD_TOO_LARGE', `request body is larger than ${maxBytes} bytes`, { details: { maxBytes } });
}

/**
 * jsonReplacer converts blobs and bigints. It looks at the raw value (`this[k]`): JSON.stringify calls a
 * Buffer's own toJSON before a replacer sees it, which would turn a blob into {"type":"Buffer",...}.
 */
export function jsonReplacer(this: unknown, k: string, v: unknown): unknown {
  const raw = (this as Record<string, unknown>)[k];
  return toJSONValue(raw instanceof Uint8Array ? raw : v);
}

/** jsonResponse serialises results, converting blobs and bigints the way the API documents. */
export function jsonResponse(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body, jsonReplacer), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

const MSGPACK_TYPES = /application\/(x-)?msgpack/i;
const resultPackr = new Packr({ useRecords: false, structuredClone: false, int64AsType: 'number' } as ConstructorParameters<typeof Packr>[0]);

/**
 * resultResponse renders query/exec results as JSON, or as msgpack when the client's `Accept` asks for
 * `application/msgpack` (blobs stay binary, no base64).
 */
export function resultResponse(accept: string | undefined, body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  if (accept && MSGPACK_TYPES.test(accept)) {
    const packed = resultPackr.pack(body) as Uint8Array;
    return new Response(packed as unknown as BodyInit, { status, headers: { 'content-type': 'application/msgpack', ...headers } });
  }
  return jsonResponse(body, status, headers);
}

/** AppExtension adds routes and metric lines to a server's app (a failover node's `/v1/ha`, bin/ha.ts). */
export interface AppExtension {
  routes?: (app: import('hono').Hono) => void;
  /** What GET /v1/openapi.json says of those routes (shared/openapi/document.ts). */
  docs?: import('./openapi/document.ts').RouteDocs;
  /** Prometheus text appended to `/metrics`. */
  metrics?: () => string;
}
