/**
 * The Node replica's connections to its primary, handed to the shared PrimaryClient
 * (shared/primary-client.ts) as a fetch-shaped function over undici pools. Not undici's WHATWG fetch:
 * measured on this project's forwarded writes it costs about five times the CPU per request of
 * `Pool.request` (Request/Headers objects, a web stream per body), and a forwarded write is the hot path.
 *
 * Two keep-alive pools, as the two kinds of request need: forwarded requests run concurrently, one
 * per connection and never queued behind one another (pipelining 1), each bounded by the request
 * timeout; the stream and snapshots hold a connection for long, with no body timeout (the stream's body
 * never ends; its heartbeat watchdog decides when it is dead). The only replica module that imports undici.
 *
 * Under the failover lease (README.md#high-availability) the primary's origin changes with the holder:
 * pools are made per origin on first use, and the pools of the previous origin are closed gracefully
 * (requests in flight there finish; the follower has ended its stream) once another origin is used.
 */
import { Pool, type Dispatcher } from 'undici';
import type { Logger } from '../shared/log.ts';
import { DEFAULT_REQUEST_TIMEOUT_MS, PrimaryClient, primaryOrigin, type PrimaryFetch, type PrimaryResponse } from '../shared/primary-client.ts';
import type { PrimaryLocator } from '../shared/primary-locator.ts';

/** DEFAULT_PRIMARY_CONNECTIONS: forwarded writes run concurrently, one per connection. */
export const DEFAULT_PRIMARY_CONNECTIONS = 64;
/** STREAM_CONNECTIONS: the stream, and a snapshot or two beside it. */
const STREAM_CONNECTIONS = 4;

export interface NodePrimaryClientOptions {
  /** The primary's URL, or the PrimaryLocator of the lease holder (shared/primary-client.ts). */
  url: string | PrimaryLocator;
  /** Where the client logs a refused primary of an older epoch. */
  logger?: Logger;
  token?: string | undefined;
  connections?: number;
  requestTimeoutMs?: number;
}

/** nodePrimaryClient is the PrimaryClient of a Node replica; closing it closes its connections. */
export function nodePrimaryClient(o: NodePrimaryClientOptions): PrimaryClient {
  const timeout = o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const url = typeof o.url === 'string' ? primaryOrigin(o.url) : o.url;
  interface Pools {
    origin: string;
    requests: Pool;
    long: Pool;
  }
  let current: Pools | null = null;
  const retired = new Set<Pools>();
  const poolsFor = (target: string): Pools => {
    if (current && target.startsWith(current.origin) && target.charAt(current.origin.length) === '/') return current;
    const origin = primaryOrigin(target);
    if (current) {
      const old = current;
      retired.add(old);
      void Promise.all([old.requests.close(), old.long.close()]).finally(() => retired.delete(old));
    }
    current = {
      origin,
      requests: new Pool(origin, { connections: o.connections ?? DEFAULT_PRIMARY_CONNECTIONS, pipelining: 1, headersTimeout: timeout, bodyTimeout: timeout }),
      long: new Pool(origin, { connections: STREAM_CONNECTIONS, headersTimeout: timeout, bodyTimeout: 0 }),
    };
    return current;
  };
  const fetch: PrimaryFetch = async (target, init) => {
    const pools = poolsFor(target);
    const pool = init.long ? pools.long : pools.requests;
    const res = await pool.request({ method: init.method, path: target.slice(pools.origin.length), headers: init.headers, body: init.body ?? null, signal: init.signal ?? null });
    return response(res, init.long === true);
  };
  const onClose = async (): Promise<void> => {
    const all = [...retired, ...(current ? [current] : [])];
    await Promise.all(all.flatMap((p) => [p.requests.destroy(), p.long.destroy()]));
  };
  // The pools bound every request themselves (requestTimeoutMs: 0, no timer of the client's own).
  return new PrimaryClient({ url, ...(o.token ? { token: o.token } : {}), ...(o.logger ? { logger: o.logger } : {}), fetch, requestTimeoutMs: 0, onClose });
}

/** response presents undici's answer as the part of a fetch Response the client reads. */
function response(res: Dispatcher.ResponseData, stream: boolean): PrimaryResponse {
  let web: ReadableStream<Uint8Array> | undefined;
  const one = (v: string | string[] | undefined): string | null => (v === undefined ? null : Array.isArray(v) ? v.join(', ') : v);
  return {
    status: res.statusCode,
    headers: {
      get: (name) => one(res.headers[name.toLowerCase()]),
      forEach: (fn) => {
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) fn(one(v)!, k);
      },
    },
    text: () => res.body.text(),
    // Made on first use, and only for the stream and snapshots (an error answer is read with text()).
    get body() {
      return stream ? (web ??= toWeb(res.body)) : null;
    },
  };
}

/**
 * toWeb presents undici's body as a web stream, pulled one chunk at a time; cancelling it destroys the
 * body (the connection is dropped). Not node:stream's Readable.toWeb: on Node 20 a cancel while the body
 * still has data buffered makes it enqueue into the closed controller, an uncaught exception (seen when a
 * snapshot's headers were refused before its body was read).
 */
function toWeb(body: Dispatcher.ResponseData['body']): ReadableStream<Uint8Array> {
  const chunks = body[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
  let cancelled = false;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const { done, value } = await chunks.next();
        if (cancelled) return;
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel(reason) {
        cancelled = true;
        // Dropped by us, maybe before a byte was read (a refused stream): its abort error says nothing more.
        body.on('error', () => undefined);
        body.destroy(reason instanceof Error ? reason : undefined);
      },
    },
    { highWaterMark: 0 },
  );
}
