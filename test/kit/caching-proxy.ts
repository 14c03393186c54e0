/**
 * CachingProxy is a small shared HTTP cache on 127.0.0.1:0 in front of a primary, standing in for a
 * CDN, which cannot run here. The caching itself is undici's RFC 9111 cache interceptor in shared mode
 * (`public` lets it store an answer to a request with Authorization; `no-store`, `private` and anything
 * without explicit freshness are not stored; a request with `Cache-Control: no-cache` or a conditional
 * header is revalidated with the origin), over undici's MemoryCacheStore. Around it, what a CDN adds:
 * a cache lock (concurrent misses for one URL wait for the first, like nginx's proxy_cache_lock or a CDN's
 * request collapsing, so N replicas asking at once cost the origin one request), and a log of every request
 * that reached the origin, with its answer's status. `damage()` flips a byte of a stored body: a
 * poisoned cache.
 *
 * Requests and streaming answers (the replication stream) pass through unchanged; hop-by-hop headers are
 * dropped both ways.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, cacheStores, interceptors, type Dispatcher } from 'undici';

/** OriginRequest is one request the cache passed to the origin, and the status it got. */
export interface OriginRequest {
  method: string;
  path: string;
  status: number;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host']);

export class CachingProxy {
  readonly url: string;
  /** Every request that reached the origin, in order. */
  readonly origin: OriginRequest[] = [];
  /** Every request the proxy received (`GET /path`), in order. */
  readonly received: string[] = [];
  readonly #target: string;
  readonly #server: Server;
  readonly #agent: Agent;
  readonly #dispatcher: Dispatcher;
  readonly #store = new cacheStores.MemoryCacheStore();
  /** The cache lock: a GET in flight per URL. */
  readonly #inFlight = new Map<string, Promise<void>>();

  private constructor(target: string, server: Server, url: string) {
    this.#target = new URL(target).origin;
    this.#server = server;
    this.url = url;
    this.#agent = new Agent({ keepAliveTimeout: 1000 });
    // compose: the last interceptor is the outermost, so `count` sees only what the cache lets through.
    this.#dispatcher = this.#agent.compose(this.#count(), interceptors.cache({ store: this.#store, type: 'shared', methods: ['GET', 'HEAD'] }));
    server.on('request', (req, res) => void this.#handle(req, res));
  }

  static async start(target: string): Promise<CachingProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return new CachingProxy(target, server, `http://127.0.0.1:${port}`);
  }

  /** originCount counts origin requests for `path` (exact, with its query) that got `status`. */
  originCount(path: string, status = 200): number {
    return this.origin.filter((r) => r.path === path && r.status === status).length;
  }

  /**
   * damage flips byte `offset` of the stored body of `GET path`: the cache keeps serving it with its
   * headers and ETag intact, as a cache with a bad disk or memory would. Throws if nothing is stored.
   */
  damage(path: string, offset: number): void {
    const hit = this.#store.get({ origin: this.#target, method: 'GET', path, headers: {} }) as { body?: unknown } | undefined;
    const chunks = hit?.body;
    if (!Array.isArray(chunks)) throw new Error(`nothing cached for GET ${path}`);
    let at = offset;
    for (const c of chunks as Buffer[]) {
      if (at < c.length) {
        c[at] = c[at]! ^ 0x40;
        return;
      }
      at -= c.length;
    }
    throw new Error(`the cached body of GET ${path} is shorter than ${offset + 1} bytes`);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    await this.#agent.destroy();
  }

  /** #count is an interceptor under the cache: it logs each request that goes on to the origin. */
  #count(): Dispatcher.DispatcherComposeInterceptor {
    return (dispatch) => (opts, handler) => {
      const entry: OriginRequest = { method: opts.method, path: opts.path, status: 0 };
      this.origin.push(entry);
      return dispatch(opts, {
        onRequestStart: (c, ctx) => handler.onRequestStart?.(c, ctx),
        onRequestUpgrade: (c, status, headers, socket) => handler.onRequestUpgrade?.(c, status, headers, socket),
        onResponseStart: (c, status, headers, message) => {
          entry.status = status;
          return handler.onResponseStart?.(c, status, headers, message);
        },
        onResponseData: (c, chunk) => handler.onResponseData?.(c, chunk),
        onResponseEnd: (c, trailers) => handler.onResponseEnd?.(c, trailers),
        onResponseError: (c, err) => handler.onResponseError?.(c, err),
      });
    };
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    this.received.push(`${method} ${path}`);
    const body = await readBody(req);
    let release: (() => void) | null = null;
    if (method === 'GET') {
      // The cache lock: wait for a GET of the same URL in flight, then ask the cache (now a hit).
      for (let busy = this.#inFlight.get(path); busy; busy = this.#inFlight.get(path)) await busy;
      this.#inFlight.set(path, new Promise<void>((resolve) => (release = resolve)));
    }
    const done = () => {
      if (release && method === 'GET') {
        this.#inFlight.delete(path);
        release();
        release = null;
      }
    };
    try {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
      const answer = await this.#dispatcher.request({ origin: this.#target, path, method: method as Dispatcher.HttpMethod, headers, body: body.length > 0 ? body : null });
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(answer.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
      res.writeHead(answer.statusCode, out);
      res.on('close', () => answer.body.destroy());
      for await (const chunk of answer.body) {
        if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
      }
      res.end();
    } catch {
      // The origin went away or the client hung up: like a CDN, answer 502 if we still can, else cut.
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    } finally {
      done();
    }
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
