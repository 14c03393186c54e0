/**
 * ReplicaSet is what the client's replica chooser sees: for each replica, whether it is healthy and
 * its round-trip time, from periodic `GET /v1/health` probes and from real requests. `order()` lists
 * the replicas to try for one request: healthy ones nearest first, then the unhealthy ones (as a last
 * resort, soonest to recover first), so marking a replica unhealthy never makes a request fail that
 * it alone could have served.
 */
import { send, type FetchFn } from './client-http.ts';

export interface ReplicaStatus {
  url: string;
  /**
   * False from a failure until a probe or request succeeds. (After its back-off an unhealthy replica
   * is tried again in its RTT place, which is how a request can find it well.)
   */
  healthy: boolean;
  /** Smoothed round-trip time; null until measured. */
  rttMs: number | null;
  lastError: string | null;
}

/** RTT_WEIGHT is the weight of a new sample in the moving average. */
const RTT_WEIGHT = 0.3;
/** Back-off after consecutive failures: BACKOFF_MIN_MS doubling up to BACKOFF_MAX_MS. */
export const BACKOFF_MIN_MS = 1000;
export const BACKOFF_MAX_MS = 30_000;
/**
 * STICKY_RATIO and STICKY_SLACK_MS: the replica last used keeps the traffic unless another is clearly
 * nearer, so near-equal replicas do not swap on every noisy sample (and a session keeps reading where
 * its writes were applied).
 */
const STICKY_RATIO = 1.25;
const STICKY_SLACK_MS = 2;
/** PROBE_TIMEOUT_MS bounds one health probe (a replica slower than this is no one's nearest). */
export const PROBE_TIMEOUT_MS = 2000;

interface Entry {
  url: string;
  index: number;
  rttMs: number | null;
  failures: number;
  retryAt: number;
  lastError: string | null;
}

export class ReplicaSet {
  readonly #entries: Entry[];
  readonly #fetch: FetchFn;
  #preferred: Entry | null = null;
  #timer: ReturnType<typeof setInterval> | null = null;
  #probing: Promise<ReplicaStatus[]> | null = null;

  constructor(urls: string[], fetchFn: FetchFn) {
    this.#entries = urls.map((url, index) => ({ url, index, rttMs: null, failures: 0, retryAt: 0, lastError: null }));
    this.#fetch = fetchFn;
  }

  /** order lists the replicas to try for one request, best first; every replica appears once. */
  order(now = Date.now()): string[] {
    const healthy = this.#entries.filter((e) => e.retryAt <= now).sort(byRtt);
    const sick = this.#entries.filter((e) => e.retryAt > now).sort((a, b) => a.retryAt - b.retryAt);
    const p = this.#preferred;
    const best = healthy[0];
    if (p && best && p !== best && p.retryAt <= now && p.rttMs !== null && best.rttMs !== null && p.rttMs <= best.rttMs * STICKY_RATIO + STICKY_SLACK_MS) {
      healthy.splice(healthy.indexOf(p), 1);
      healthy.unshift(p);
    }
    return [...healthy, ...sick].map((e) => e.url);
  }

  /**
   * succeeded records a good answer and its time (null when the time measures more than the network,
   * e.g. a forwarded write); `used` (a real request, not a probe) makes the replica the sticky choice.
   */
  succeeded(url: string, ms: number | null, used = true): void {
    const e = this.#find(url);
    if (!e) return;
    if (ms !== null) e.rttMs = e.rttMs === null ? ms : e.rttMs * (1 - RTT_WEIGHT) + ms * RTT_WEIGHT;
    e.failures = 0;
    e.retryAt = 0;
    if (used) this.#preferred = e;
  }

  /** failed marks a replica unhealthy for a back-off that doubles with each consecutive failure. */
  failed(url: string, message: string, now = Date.now()): void {
    const e = this.#find(url);
    if (!e) return;
    e.failures++;
    e.retryAt = now + Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(e.failures - 1, 10));
    e.lastError = message;
    if (this.#preferred === e) this.#preferred = null;
  }

  status(): ReplicaStatus[] {
    return this.#entries.map((e) => ({
      url: e.url,
      healthy: e.failures === 0,
      rttMs: e.rttMs === null ? null : Math.round(e.rttMs * 100) / 100,
      lastError: e.lastError,
    }));
  }

  /** probe asks every replica for its health at once; a round already running is shared. */
  probe(timeoutMs = PROBE_TIMEOUT_MS): Promise<ReplicaStatus[]> {
    this.#probing ??= Promise.all(this.#entries.map((e) => this.#probeOne(e, timeoutMs)))
      .then(() => this.status())
      .finally(() => {
        this.#probing = null;
      });
    return this.#probing;
  }

  async #probeOne(e: Entry, timeoutMs: number): Promise<void> {
    const x = await send(this.#fetch, `${e.url}/v1/health`, { method: 'GET', headers: {}, timeoutMs });
    if (x.kind === 'failed') {
      this.failed(e.url, `health probe: ${x.message}`);
    } else if (x.status === 200) {
      this.succeeded(e.url, x.ms, false);
    } else {
      // 503 "lagging": the replica itself says its data is too old to prefer.
      const status = (x.body as { status?: unknown } | null)?.status;
      this.failed(e.url, `health probe: HTTP ${x.status}${typeof status === 'string' ? ` (${status})` : ''}`);
    }
  }

  /** startProbes probes now and then every `intervalMs`, until stopProbes. */
  startProbes(intervalMs: number): void {
    if (this.#timer !== null || intervalMs <= 0) return;
    void this.probe();
    this.#timer = setInterval(() => void this.probe(), intervalMs);
    // In Node, probes alone must not keep a process alive; browsers and Workers return a number.
    (this.#timer as { unref?: () => void }).unref?.();
  }

  stopProbes(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  #find(url: string): Entry | undefined {
    return this.#entries.find((e) => e.url === url);
  }
}

function byRtt(a: Entry, b: Entry): number {
  const ra = a.rttMs ?? Number.POSITIVE_INFINITY;
  const rb = b.rttMs ?? Number.POSITIVE_INFINITY;
  return ra === rb ? a.index - b.index : ra - rb;
}
