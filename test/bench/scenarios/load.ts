/**
 * HTTP load through autocannon's programmatic API (many keep-alive connections, closed loop), typed
 * here because the package ships no types. Throughput is total 2xx responses over the measured time; a
 * run with any error or non-2xx answer throws, so a broken server cannot pass as a fast one.
 */
import { createRequire } from 'node:module';

interface AutocannonRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  setupRequest?: (req: AutocannonRequest) => AutocannonRequest;
}

interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number;
  pipelining?: number;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  requests?: AutocannonRequest[];
}

interface AutocannonResult {
  duration: number;
  requests: { total: number; average: number };
  latency: { p50: number; p99: number; average: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  '2xx': number;
}

type Autocannon = (opts: AutocannonOptions) => Promise<AutocannonResult>;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

export interface LoadResult {
  /** Requests answered 2xx. */
  requests: number;
  perSec: number;
  p50Ms: number;
  p99Ms: number;
}

export interface LoadOptions {
  url: string;
  path: string;
  connections: number;
  durationSec: number;
  /** A new JSON body for each request (e.g. a random key). */
  body: () => string;
}

/** loadPost runs POST `path` with JSON bodies from `body()` for `durationSec`. */
export async function loadPost(o: LoadOptions): Promise<LoadResult> {
  const r = await autocannon({
    url: o.url,
    connections: o.connections,
    duration: o.durationSec,
    requests: [
      {
        method: 'POST',
        path: o.path,
        headers: { 'content-type': 'application/json' },
        setupRequest: (req) => ({ ...req, body: o.body() }),
      },
    ],
  });
  if (r.errors || r.timeouts || r.non2xx) {
    throw new Error(`load on ${o.url}${o.path}: ${r.errors} errors, ${r.timeouts} timeouts, ${r.non2xx} non-2xx of ${r.requests.total}`);
  }
  return { requests: r['2xx'], perSec: r['2xx'] / r.duration, p50Ms: r.latency.p50, p99Ms: r.latency.p99 };
}
