/**
 * HTTP plumbing shared by the primary, the Node replica and the Worker replica (hono runs on all three):
 * typed error responses, auth per route, bounded JSON bodies, results as JSON or msgpack.
 */
import type { Context, MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';
import { type AccessGrant, assertEveryDatabase, authorize, type AuthConfig, type Right } from './auth.ts';
import { EdgeliteError, toEdgeliteError } from './errors.ts';
import { Packr } from 'msgpackr';
import { MSGPACK_TYPES, nodeIncoming } from './http-body.ts';
import { toJSONValue } from './protocol.ts';

export { drainNodeBody, type NodeIncoming, readJsonBody, readNodeJsonBody } from './http-body.ts';

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

/**
 * Answer is a response as plain parts, so one route can be sent through hono (answerResponse) or
 * straight through Node's ServerResponse (replica/query-fast-path.ts) with the same bytes.
 */
export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string | Uint8Array;
}

/** answerResponse is an Answer as a web Response (on Node, @hono/node-server's cached-body fast path). */
export function answerResponse(a: Answer): Response {
  return new Response(a.body as unknown as BodyInit, { status: a.status, headers: a.headers });
}

/** errorAnswer renders any thrown value as `{"error": {"code", "message"}}` with its status. */
export function errorAnswer(err: unknown, log?: (e: Record<string, unknown>) => void): Answer {
  const e = toEdgeliteError(err);
  if (e.code === 'INTERNAL' && log) log({ msg: 'internal error', error: String(err), stack: (err as Error)?.stack });
  return { status: e.status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(e.toBody()) };
}

/** errorResponse is errorAnswer as a Response. */
export function errorResponse(err: unknown, log?: (e: Record<string, unknown>) => void): Response {
  return answerResponse(errorAnswer(err, log));
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
 * jsonReplacer converts blobs and bigints. It looks at the raw value (`this[k]`): JSON.stringify calls a
 * Buffer's own toJSON before a replacer sees it, which would turn a blob into {"type":"Buffer",...}.
 */
export function jsonReplacer(this: unknown, k: string, v: unknown): unknown {
  const raw = (this as Record<string, unknown>)[k];
  return toJSONValue(raw instanceof Uint8Array ? raw : v);
}

/**
 * stringifyResult is JSON.stringify with jsonReplacer, which is only needed when the value holds a blob
 * or a bigint (or something with its own toJSON): without one, the replacer returns every value as it
 * is, and the plain stringify writes the same text without a call per key (most reads).
 */
export function stringifyResult(body: unknown): string {
  return needsReplacer(body, 0) ? JSON.stringify(body, jsonReplacer) : JSON.stringify(body);
}

/** MAX_PLAIN_DEPTH: past this depth stringifyResult just takes the replacer. */
const MAX_PLAIN_DEPTH = 16;

function needsReplacer(v: unknown, depth: number): boolean {
  if (typeof v === 'bigint') return true;
  if (v === null || typeof v !== 'object') return false;
  if (depth > MAX_PLAIN_DEPTH || v instanceof Uint8Array || typeof (v as { toJSON?: unknown }).toJSON === 'function') return true;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (needsReplacer(v[i], depth + 1)) return true;
    return false;
  }
  for (const k in v) if (needsReplacer((v as Record<string, unknown>)[k], depth + 1)) return true;
  return false;
}

/** jsonAnswer serialises results, converting blobs and bigints the way the API documents. */
export function jsonAnswer(body: unknown, status = 200, headers: Record<string, string> = {}): Answer {
  return { status, headers: { 'content-type': 'application/json', ...headers }, body: stringifyResult(body) };
}

/** jsonResponse is jsonAnswer as a Response. */
export function jsonResponse(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return answerResponse(jsonAnswer(body, status, headers));
}

const resultPackr = new Packr({ useRecords: false, structuredClone: false, int64AsType: 'number' } as ConstructorParameters<typeof Packr>[0]);

/**
 * resultAnswer renders query/exec results as JSON, or as msgpack when the client's `Accept` asks for
 * `application/msgpack` (blobs stay binary, no base64).
 */
export function resultAnswer(accept: string | undefined, body: unknown, status = 200, headers: Record<string, string> = {}): Answer {
  if (accept && MSGPACK_TYPES.test(accept)) {
    return { status, headers: { 'content-type': 'application/msgpack', ...headers }, body: resultPackr.pack(body) as Uint8Array };
  }
  return jsonAnswer(body, status, headers);
}

/** resultResponse is resultAnswer as a Response. */
export function resultResponse(accept: string | undefined, body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return answerResponse(resultAnswer(accept, body, status, headers));
}

/** AppExtension adds routes and metric lines to a server's app (a failover node's `/v1/ha`, bin/ha.ts). */
export interface AppExtension {
  /** Routes only: no middleware (the replica's reads skip hono's middleware, replica/query-fast-path.ts). */
  routes?: (app: import('hono').Hono) => void;
  /** What GET /v1/openapi.json says of those routes (shared/openapi/document.ts). */
  docs?: import('./openapi/document.ts').RouteDocs;
  /** Prometheus text appended to `/metrics`. */
  metrics?: () => string;
}
