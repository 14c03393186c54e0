/**
 * Transport is the client's request engine (client.ts is the public surface): it validates the
 * connect options once, then sends reads to the nearest healthy replica and on to the next one when a
 * replica fails, and sends writes where they belong without ever resending one that may have been
 * applied.
 */
import { EdgeliteError, type AppliedOutcome } from './errors.ts';
import { MEDIA_TYPES, responseError, send, type Encoding, type FetchFn } from './client-http.ts';
import { ReplicaSet } from './client-replicas.ts';
import { LeaseHolder, type Holder } from './client-lease.ts';
import { parseLeaseUrl, type LeaseTarget } from './lease.ts';

export interface ConnectOptions {
  /** Base URLs of the replicas, e.g. `http://127.0.0.1:7401`. May be empty when `primary` is given. */
  replicas: string[];
  /** The primary's base URL: writes go there directly with `writesTo: 'primary'`. */
  primary?: string;
  /**
   * `etcd://host:port/prefix` of the failover lease (README.md#high-availability): writes go to the
   * holder named in the lease record, and follow a new holder without a restart. A write refused with 503
   * NOT_PRIMARY `outcome: 'not-applied'` (or never sent) is sent once more to the next holder; one whose
   * outcome is `unknown` is never resent. With `primary`, that URL is used while etcd cannot be read.
   * With no `replicas`, reads go to the holder too.
   */
  lease?: string;
  /** Bearer token sent on every API request. */
  authToken?: string;
  /** Where writes go: a replica (default; it forwards them and waits until it has applied them) or the primary. */
  writesTo?: 'replica' | 'primary';
  /** fetch to use (Workers' service bindings, tests); default the global one. */
  fetch?: FetchFn;
  /**
   * How often every replica's `GET /v1/health` is probed for health and round-trip time; 0 turns probes
   * off (real requests are still measured). Workers forbid timers and fetch at global scope: there,
   * connect inside a handler with probes off.
   */
  probeIntervalMs?: number;
  /** Bound on one HTTP exchange; it must exceed the replicas' read wait (5 s by default). */
  requestTimeoutMs?: number;
  /**
   * Body encoding: `json` (default; result integers beyond 2^53 come back as strings) or `msgpack`
   * (64-bit integers as bigints both ways, blobs as bytes). README.md#http-api.
   */
  encoding?: Encoding;
}

export const DEFAULT_PROBE_INTERVAL_MS = 5000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 15_000;

interface Config {
  replicas: string[];
  primary: string | null;
  lease: LeaseTarget | null;
  authToken: string | null;
  writesTo: 'replica' | 'primary';
  fetch: FetchFn;
  probeIntervalMs: number;
  requestTimeoutMs: number;
  encoding: Encoding;
}

const KNOWN_OPTIONS = ['replicas', 'primary', 'lease', 'authToken', 'writesTo', 'fetch', 'probeIntervalMs', 'requestTimeoutMs', 'encoding'];

/** Answer is a server's 2xx reply and who gave it. */
export interface Answer {
  url: string;
  status: number;
  body: unknown;
  headers: Headers;
}

/** expandConfig checks the options once, on the way in, with messages that name the option. */
export function expandConfig(o: ConnectOptions): Config {
  if (o === null || typeof o !== 'object') throw bad('connect() wants an options object');
  for (const key of Object.keys(o)) {
    if (KNOWN_OPTIONS.includes(key)) continue;
    const near = KNOWN_OPTIONS.find((k) => k.toLowerCase() === key.toLowerCase() || k.startsWith(key) || key.startsWith(k));
    throw bad(`unknown option "${key}"${near ? `; did you mean "${near}"?` : ''}`);
  }
  if (!Array.isArray(o.replicas)) throw bad('"replicas" must be an array of base URLs');
  const replicas = o.replicas.map((u, i) => baseUrl(u, `replicas[${i}]`));
  if (new Set(replicas).size !== replicas.length) throw bad('"replicas" lists a URL twice');
  const primary = o.primary === undefined ? null : baseUrl(o.primary, 'primary');
  const lease = o.lease === undefined ? null : leaseTarget(o.lease);
  if (replicas.length === 0 && primary === null && lease === null) throw bad('give at least one replica URL, a primary, or a lease');
  const writesTo = o.writesTo ?? (lease ? 'primary' : 'replica');
  if (writesTo !== 'replica' && writesTo !== 'primary') throw bad(`"writesTo" must be "replica" or "primary", got ${JSON.stringify(writesTo)}`);
  if (lease && writesTo !== 'primary') throw bad('"lease" sends writes to the lease holder: leave "writesTo" out (or "primary")');
  if (writesTo === 'primary' && primary === null && lease === null) throw bad('"writesTo": "primary" needs the "primary" URL (or a "lease")');
  if (o.authToken !== undefined && (typeof o.authToken !== 'string' || o.authToken === '')) throw bad('"authToken" must be a non-empty string');
  if (o.fetch !== undefined && typeof o.fetch !== 'function') throw bad('"fetch" must be a function');
  if (o.encoding !== undefined && o.encoding !== 'json' && o.encoding !== 'msgpack') throw bad(`"encoding" must be "json" or "msgpack", got ${JSON.stringify(o.encoding)}`);
  const userFetch = o.fetch ?? globalThis.fetch;
  return {
    replicas: replicas.length > 0 ? replicas : primary !== null && lease === null ? [primary] : [],
    primary,
    lease,
    authToken: o.authToken ?? null,
    writesTo,
    // Called as a plain function: Workers' fetch throws "Illegal invocation" when called as a method.
    fetch: (input, init) => userFetch(input, init),
    probeIntervalMs: ms(o.probeIntervalMs, DEFAULT_PROBE_INTERVAL_MS, 'probeIntervalMs', 0),
    requestTimeoutMs: ms(o.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS, 'requestTimeoutMs', 1),
    encoding: o.encoding ?? 'json',
  };
}

export class Transport {
  readonly config: Config;
  readonly replicas: ReplicaSet;
  /** The lease holder (the `lease` option), or null. */
  readonly lease: LeaseHolder | null;
  #closed = false;

  constructor(o: ConnectOptions) {
    this.config = expandConfig(o);
    this.replicas = new ReplicaSet(this.config.replicas, this.config.fetch);
    this.lease = this.config.lease ? new LeaseHolder(this.config.lease, this.config.fetch, this.config.primary) : null;
    this.replicas.startProbes(this.config.probeIntervalMs);
  }

  close(): void {
    this.#closed = true;
    this.replicas.stopProbes();
  }

  /**
   * read sends a read to each replica in `order()` until one answers. A network failure or a 5xx marks
   * the replica unhealthy and moves on; so does an answer `refuse` rejects (a position behind the
   * session's). A 4xx is the caller's error and is thrown at once. When every replica failed, the last
   * server error is thrown (REPLICA_BEHIND, say), else UNAVAILABLE.
   */
  async read(path: string, body: string | Uint8Array, headers: Record<string, string>, refuse: (a: Answer) => EdgeliteError | null): Promise<Answer> {
    this.#checkOpen();
    const attempts: string[] = [];
    let serverError: EdgeliteError | null = null;
    // With a lease and no replicas, reads go to the holder (read again after it fails).
    const holder = this.config.replicas.length === 0 ? this.lease!.current(Date.now() + this.config.requestTimeoutMs) : null;
    for (const url of holder ? [(await holder).url] : this.replicas.order()) {
      const x = await send(this.config.fetch, url + path, { method: 'POST', headers: this.#headers(headers, true), body, timeoutMs: this.config.requestTimeoutMs });
      if (x.kind === 'failed') {
        this.replicas.failed(url, x.message);
        this.lease?.forget();
        attempts.push(`${url}: ${x.message}`);
        continue;
      }
      const answer: Answer = { url, status: x.status, body: x.body, headers: x.headers };
      const err = x.status >= 200 && x.status < 300 ? refuse(answer) : responseError(x, url);
      if (err === null) {
        this.replicas.succeeded(url, x.ms);
        return answer;
      }
      if (x.status >= 400 && x.status < 500) throw err;
      this.replicas.failed(url, `${err.code}: ${err.message}`);
      if (holder) this.lease!.forget();
      attempts.push(`${url}: ${err.code}: ${err.message}`);
      serverError = err;
    }
    if (serverError) {
      throw new EdgeliteError(serverError.code, serverError.message, { details: { ...serverError.details, attempts } });
    }
    throw new EdgeliteError('UNAVAILABLE', `no replica answered: ${attempts.join('; ')}`, { details: { attempts } });
  }

  /**
   * write sends a write to the primary (`writesTo: 'primary'`) or to the nearest replica. It moves on
   * to the next replica only when the request certainly never left (the connection was refused);
   * after anything else that may have reached a server it fails with UNAVAILABLE and
   * `details.outcome: 'unknown'` (an AppliedOutcome, shared/errors.ts), because resending could apply
   * the write twice; when no server took it, `details.outcome: 'not-applied'`. `idempotent` requests
   * (creating a database) may be resent after any network failure. Server answers are never retried.
   */
  async write(method: 'POST' | 'PUT', path: string, body: string | Uint8Array | undefined, idempotent = false): Promise<Answer> {
    this.#checkOpen();
    if (this.lease) return this.#writeToHolder(method, path, body, idempotent);
    const toPrimary = this.config.writesTo === 'primary';
    const targets = toPrimary ? [this.config.primary!] : this.replicas.order();
    const attempts: string[] = [];
    for (const url of targets) {
      const init = { method, headers: this.#headers({}, body !== undefined), timeoutMs: this.config.requestTimeoutMs };
      const x = await send(this.config.fetch, url + path, body === undefined ? init : { ...init, body });
      if (x.kind === 'failed') {
        if (!toPrimary) this.replicas.failed(url, x.message);
        if (x.mayHaveBeenSent && !idempotent) {
          throw new EdgeliteError(
            'UNAVAILABLE',
            `write to ${url} failed after it may have reached the server (${x.message}); it may or may not have been applied, and was not resent`,
            { cause: x.error, details: { url, outcome: 'unknown' satisfies AppliedOutcome } },
          );
        }
        attempts.push(`${url}: ${x.message}`);
        continue;
      }
      if (x.status < 200 || x.status >= 300) throw responseError(x, url);
      // A write's time includes the primary and the wait to apply: not this replica's distance.
      if (!toPrimary) this.replicas.succeeded(url, null);
      return { url, status: x.status, body: x.body, headers: x.headers };
    }
    throw new EdgeliteError('UNAVAILABLE', `no server took the write (it was not applied): ${attempts.join('; ')}`, {
      details: { attempts, outcome: 'not-applied' satisfies AppliedOutcome },
    });
  }

  /**
   * #writeToHolder sends a write to the lease holder. Refused with NOT_PRIMARY `outcome: 'not-applied'`,
   * or never sent (connection refused), it waits (within the request timeout) for the record to name
   * the next holder and sends it there once. Anything that may have been applied is never resent.
   */
  async #writeToHolder(method: 'POST' | 'PUT', path: string, body: string | Uint8Array | undefined, idempotent: boolean): Promise<Answer> {
    const lease = this.lease!;
    const deadline = Date.now() + this.config.requestTimeoutMs;
    let h: Holder = await lease.current(deadline);
    for (let attempt = 0; ; attempt++) {
      const init = { method, headers: this.#headers({}, body !== undefined), timeoutMs: this.config.requestTimeoutMs };
      const x = await send(this.config.fetch, h.url + path, body === undefined ? init : { ...init, body });
      let err: EdgeliteError;
      if (x.kind === 'failed') {
        if (x.mayHaveBeenSent && !idempotent) {
          lease.forget();
          throw new EdgeliteError(
            'UNAVAILABLE',
            `write to ${h.url} failed after it may have reached the server (${x.message}); it may or may not have been applied, and was not resent`,
            { cause: x.error, details: { url: h.url, outcome: 'unknown' satisfies AppliedOutcome } },
          );
        }
        err = new EdgeliteError('UNAVAILABLE', `no server took the write (it was not applied): ${h.url}: ${x.message}`, { cause: x.error, details: { url: h.url, outcome: 'not-applied' satisfies AppliedOutcome } });
      } else if (x.status >= 200 && x.status < 300) {
        return { url: h.url, status: x.status, body: x.body, headers: x.headers };
      } else {
        err = responseError(x, h.url);
        const resendable = err.code === 'NOT_PRIMARY' && (err.details?.outcome === 'not-applied' || idempotent);
        if (!resendable) {
          if (err.code === 'NOT_PRIMARY') lease.forget();
          throw err;
        }
      }
      if (attempt > 0) throw err;
      const next = await lease.after(h, deadline).catch(() => null);
      if (!next) throw err;
      h = next;
    }
  }

  #headers(extra: Record<string, string>, hasBody: boolean): Record<string, string> {
    const type = MEDIA_TYPES[this.config.encoding];
    const h: Record<string, string> = { accept: type, ...extra };
    if (hasBody) h['content-type'] = type;
    if (this.config.authToken !== null) h.authorization = `Bearer ${this.config.authToken}`;
    return h;
  }

  #checkOpen(): void {
    if (this.#closed) throw new EdgeliteError('UNAVAILABLE', 'this edgelite client is closed');
  }
}

function baseUrl(u: unknown, where: string): string {
  if (typeof u !== 'string') throw bad(`"${where}" must be a URL string`);
  let url: URL;
  try {
    url = new URL(u);
  } catch (err) {
    throw new EdgeliteError('BAD_REQUEST', `"${where}" is not a URL: ${JSON.stringify(u)}`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad(`"${where}" must be http(s), got ${url.protocol}`);
  if (url.search || url.hash) throw bad(`"${where}" must be a base URL without query or fragment`);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function leaseTarget(u: unknown): LeaseTarget {
  if (typeof u !== 'string') throw bad('"lease" must be an etcd://HOST:PORT/PREFIX string');
  try {
    return parseLeaseUrl(u, '"lease"');
  } catch (err) {
    throw new EdgeliteError('BAD_REQUEST', (err as Error).message, { cause: err });
  }
}

function ms(v: unknown, fallback: number, name: string, min: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw bad(`"${name}" must be an integer of at least ${min} (ms), got ${String(v)}`);
  return v;
}

function bad(message: string): EdgeliteError {
  return new EdgeliteError('BAD_REQUEST', message);
}
