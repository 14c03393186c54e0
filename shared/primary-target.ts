/**
 * PrimaryTarget is where a PrimaryClient (primary-client.ts) sends its requests: one fixed URL
 * (`--primary`), or, under the failover lease (README.md#high-availability), whoever holds it as a
 * PrimaryLocator last read, with the replica's fence: a stream or snapshot answered by a primary whose
 * `Edgelite-Epoch` is older than the locator's maxEpoch is refused (STALE_PRIMARY). Worker-safe.
 */
import { EdgeliteError } from './errors.ts';
import type { Logger } from './log.ts';
import { noHolder, type PrimaryLocator } from './primary-locator.ts';

/** Where one request goes: the origin and the epoch of the holder it was taken from (null: a fixed URL). */
export interface TargetAt {
  origin: string;
  epoch: number | null;
}

export class PrimaryTarget {
  readonly locator: PrimaryLocator | null;
  readonly #fixed: string | null;
  readonly #logger: Logger;
  /** The last record's URL and its origin, so a request does not parse the URL again. */
  #cachedUrl = '';
  #cachedOrigin = '';
  /** Streams and snapshots refused for an older epoch (edgelite_stale_primary_refusals_total). */
  staleRefusals = 0;

  constructor(to: string | PrimaryLocator, logger: Logger = () => {}) {
    this.#fixed = typeof to === 'string' ? primaryOrigin(to) : null;
    this.locator = typeof to === 'string' ? null : to;
    this.#logger = logger;
  }

  /** url is the origin requests go to now ('' while no node holds the lease). */
  get url(): string {
    if (this.#fixed !== null) return this.#fixed;
    const r = this.locator!.current;
    return r ? this.#origin(r.url) : '';
  }

  /** now is where a request goes at this instant; PRIMARY_UNAVAILABLE (not-applied) when no node holds the lease. */
  now(): TargetAt {
    if (this.#fixed !== null) return { origin: this.#fixed, epoch: null };
    const r = this.locator!.current;
    if (!r) throw noHolder();
    return { origin: this.#origin(r.url), epoch: r.epoch };
  }

  /** wait is `now`, but waits (bounded, and by `signal`) for a holder to appear: for the stream and snapshots. */
  async wait(timeoutMs: number, signal?: AbortSignal): Promise<TargetAt> {
    if (this.#fixed !== null || this.locator!.current) return this.now();
    const r = await this.locator!.waitForPrimary(timeoutMs, signal);
    return { origin: this.#origin(r.url), epoch: r.epoch };
  }

  #origin(url: string): string {
    if (url !== this.#cachedUrl) {
      try {
        this.#cachedOrigin = primaryOrigin(url);
      } catch (err) {
        throw new EdgeliteError('PRIMARY_UNAVAILABLE', `the lease record names "${url}", not an http(s) URL`, { cause: err, details: { outcome: 'not-applied' } });
      }
      this.#cachedUrl = url;
    }
    return this.#cachedOrigin;
  }

  /** observe records the epoch a forwarded request's answer carried (a newer one raises maxEpoch). */
  observe(header: string | null | undefined): void {
    if (this.locator && header) this.locator.observe(Number(header));
  }

  /**
   * fence checks the epoch of a stream or snapshot answer: STALE_PRIMARY when older than one seen (a
   * 200 without one counts as epoch 0: a primary not under the lease), logged, counted, and the
   * record read again. Null when it may be used. An error answer without the header is passed on.
   */
  fence(header: string | null, ok: boolean, at: TargetAt, what: string): EdgeliteError | null {
    const locator = this.locator;
    if (!locator || (!ok && header === null)) return null;
    const epoch = header === null ? 0 : Number(header);
    if (locator.observe(epoch)) return null;
    this.staleRefusals++;
    locator.refresh().catch(() => undefined); // the failure is the locator's to count and log
    const err = new EdgeliteError('STALE_PRIMARY', `${what}: refused ${at.origin}, epoch ${header ?? 'none'}, older than epoch ${locator.maxEpoch} seen through the lease`, {
      details: { primary: at.origin, epoch: header === null ? null : epoch, maxEpoch: locator.maxEpoch },
    });
    this.#logger({ msg: 'refused a primary of an older epoch', primary: at.origin, epoch: header, maxEpoch: locator.maxEpoch, what });
    return err;
  }

  /**
   * moved reads the record again after a refusal by `at` (NOT_PRIMARY): the new holder when the lease
   * moved away from `at`, else null (still the same holder, none, or etcd unreachable).
   */
  async moved(at: TargetAt): Promise<TargetAt | null> {
    if (!this.locator) return null;
    const r = await this.locator.refresh().catch(() => null);
    if (!r) return null;
    const next = { origin: this.#origin(r.url), epoch: r.epoch };
    return next.origin === at.origin && next.epoch === at.epoch ? null : next;
  }
}

/** primaryOrigin checks a primary URL and returns its origin, the base of every request; MISCONFIGURED if it is not http(s). */
export function primaryOrigin(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch (err) {
    throw new EdgeliteError('MISCONFIGURED', `primary URL "${url}" is not a URL`, { cause: err });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new EdgeliteError('MISCONFIGURED', `primary URL must be http(s), got ${url}`);
  return u.origin;
}
