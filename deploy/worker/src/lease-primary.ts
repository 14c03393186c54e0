/**
 * LeasePrimary is the Worker's primary when LEASE_URL is set (README.md#high-availability): it finds the
 * primary through the failover lease record in etcd (shared/lease.ts LeaseStore.primary(), over fetch)
 * and follows it to a new holder without a restart. One PrimaryClient per holder URL, made when the
 * holder changes; the old one is closed, which ends its stream and snapshot downloads, so the follower's
 * next session opens at the new holder.
 *
 * The record is re-read (at most once per LEASE_REREAD_MS) at each stream session start, whenever a
 * request to the primary fails or is refused with 503 NOT_PRIMARY, and on the object's alarm. A forwarded
 * write refused with NOT_PRIMARY and `details.outcome: 'not-applied'` is sent once more when the record
 * names another holder; any other outcome is passed on as it is (never sent twice).
 *
 * The epoch fence: every answer's `Edgelite-Epoch` raises the highest epoch this object has seen (as
 * does every record read), and a stream answered with an older epoch is refused (502 STALE_PRIMARY, which
 * ends the session) before a byte of it is applied.
 */
import { EPOCH_HEADER } from '../../../shared/primary-locator.ts';
import { EdgeliteError } from '../../../shared/errors.ts';
import { LeaseStore, type LeaseTarget, type PrimaryRecord } from '../../../shared/lease.ts';
import type { Logger } from '../../../shared/log.ts';
import { PrimaryClient, type ForwardResult, type PrimaryFetch, type SnapshotHead, type SnapshotSink } from '../../../shared/primary-client.ts';
import type { PrimaryPosition } from '../../../shared/consistency.ts';
import type { StreamBody } from '../../../shared/follower-port.ts';
import { STREAM_PATH } from '../../../shared/protocol.ts';
import type { Position } from '../../../shared/types.ts';

/** LEASE_REREAD_MS: the lease record is read at most this often. */
export const LEASE_REREAD_MS = 500;

/** WorkerPrimary is what the Worker's object needs of its primary: PrimaryClient is one, LeasePrimary another. */
export interface WorkerPrimary {
  forward(method: 'POST' | 'PUT' | 'GET' | 'DELETE', path: string, body?: string, headers?: Record<string, string>): Promise<ForwardResult>;
  position(db: string): Promise<PrimaryPosition>;
  openStream(databases: string[] | '*', positions: Record<string, Position | null>, signal: AbortSignal): Promise<StreamBody>;
  snapshot(db: string, sink: SnapshotSink, signal?: AbortSignal, onProgress?: () => void): Promise<SnapshotHead>;
}

export interface LeasePrimaryOptions {
  lease: LeaseTarget;
  /** PRIMARY_URL: used until a holder has been read from the lease (etcd unreachable, or the lease vacant). */
  fallbackUrl: string | null;
  token?: string;
  log: Logger;
  /** The fetch for etcd and the primaries; default the global one. */
  fetch?: typeof fetch;
}

export class LeasePrimary implements WorkerPrimary {
  readonly store: LeaseStore;
  readonly #o: LeasePrimaryOptions;
  readonly #fetch: typeof fetch;
  #holder: { url: string; epoch: number; node: string } | null = null;
  #client: PrimaryClient | null = null;
  #highestEpoch = 0;
  #lastRead = Number.NEGATIVE_INFINITY;
  #reading: Promise<void> | null = null;
  /** The last failure to read the lease record, as `CODE: message`; null once a read succeeded. */
  lastLeaseError: string | null = null;
  /** How many times the holder changed under this object. */
  switches = 0;
  #saveEpoch: ((epoch: number) => void) | null = null;

  constructor(o: LeasePrimaryOptions) {
    this.#o = o;
    const f = o.fetch ?? globalThis.fetch;
    // Called as a plain function: Workers' fetch throws "Illegal invocation" when called as a method.
    this.#fetch = (input, init) => f(input, init);
    this.store = new LeaseStore(o.lease, { fetch: (input, init) => this.#fetch(input, init) });
    if (o.fallbackUrl) this.#client = this.#clientFor(o.fallbackUrl);
  }

  /** primary is the URL requests go to now (the holder's, else PRIMARY_URL), or null. */
  get primary(): string | null {
    return this.#client?.url ?? null;
  }

  /** epoch is the epoch of the holder in use, or null before one was read. */
  get epoch(): number | null {
    return this.#holder?.epoch ?? null;
  }

  /** highestEpoch is the highest epoch this object has seen, in a record or an answer. */
  get highestEpoch(): number {
    return this.#highestEpoch;
  }

  /**
   * refresh re-reads the lease record, unless it was read less than LEASE_REREAD_MS ago (a read in
   * flight is shared); with `wait`, it then waits out the rest of that time and reads (a refusal that
   * names no new holder yet must see a record read after it). A vacant lease keeps the holder last seen.
   */
  async refresh(wait = false): Promise<void> {
    if (wait) {
      if (this.#reading) await this.#reading;
      const left = this.#lastRead + LEASE_REREAD_MS - Date.now();
      if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
    }
    if (this.#reading) return this.#reading;
    const now = Date.now();
    if (now - this.#lastRead < LEASE_REREAD_MS) return;
    this.#lastRead = now;
    this.#reading = this.store
      .primary()
      .then(
        (r) => {
          this.lastLeaseError = null;
          if (r && r.url) this.#adopt(r);
        },
        (err: unknown) => {
          this.lastLeaseError = err instanceof EdgeliteError ? `${err.code}: ${err.message}` : String(err);
          this.#o.log({ msg: 'lease record unreadable', lease: this.store.description, error: this.lastLeaseError });
        },
      )
      .finally(() => (this.#reading = null));
    return this.#reading;
  }

  #adopt(r: PrimaryRecord): void {
    if (r.epoch < this.#highestEpoch && this.#holder) return; // a record older than an epoch seen cannot be the holder now
    this.#noteEpoch(r.epoch);
    const h = this.#holder;
    if (h && h.url === r.url && h.epoch === r.epoch) return;
    this.#holder = { url: r.url, epoch: r.epoch, node: r.node };
    if (this.#client?.url === new URL(r.url).origin) return;
    const old = this.#client;
    this.#client = this.#clientFor(r.url);
    this.switches++;
    this.#o.log({ msg: 'following the lease holder', node: r.node, primary: this.#client.url, epoch: r.epoch, previous: old?.url ?? null });
    void old?.close(); // ends its stream: the follower's next session opens at the new holder
  }

  /**
   * keepEpochs starts from the highest epoch an earlier life of the object saw and saves each higher
   * one (the object's storage), so an evicted object still refuses an older primary's stream, even
   * before it can read the lease record.
   */
  keepEpochs(saved: number, save: (epoch: number) => void): void {
    this.#noteEpoch(saved);
    this.#saveEpoch = save;
  }

  #noteEpoch(epoch: number): void {
    if (epoch <= this.#highestEpoch) return;
    this.#highestEpoch = epoch;
    this.#saveEpoch?.(epoch);
  }

  /** #clientFor is a client of one primary URL whose fetch reads each answer's epoch and fences the stream. */
  #clientFor(url: string): PrimaryClient {
    const fenced: PrimaryFetch = async (input, init) => {
      const res = await this.#fetch(input, init as RequestInit);
      const epoch = Number(res.headers.get(EPOCH_HEADER) ?? NaN);
      if (!Number.isSafeInteger(epoch) || epoch <= 0) return res;
      if (input.endsWith(STREAM_PATH) && epoch < this.#highestEpoch) {
        res.body?.cancel().catch(() => undefined); // refused: not a byte of it is read
        void this.refresh();
        return refusal(input, epoch, this.#highestEpoch, this.#holder);
      }
      if (epoch > this.#highestEpoch) {
        this.#noteEpoch(epoch);
        if (this.#holder && epoch > this.#holder.epoch) void this.refresh();
      }
      return res;
    };
    return new PrimaryClient({ url, fetch: fenced, ...(this.#o.token ? { token: this.#o.token } : {}) });
  }

  async #current(): Promise<PrimaryClient> {
    if (!this.#holder) await this.refresh();
    if (this.#client) return this.#client;
    const why = this.lastLeaseError ? `the lease record cannot be read (${this.lastLeaseError})` : 'no node holds the lease yet';
    throw new EdgeliteError('NO_PRIMARY', `no primary to send to: ${why} at ${this.store.description}, and PRIMARY_URL is not set`);
  }

  /** #call runs `fn` on the current holder's client; a failure that may mean a new holder re-reads the record. */
  async #call<T>(fn: (c: PrimaryClient) => Promise<T>): Promise<T> {
    const c = await this.#current();
    try {
      return await fn(c);
    } catch (err) {
      if (err instanceof EdgeliteError && (err.code === 'PRIMARY_UNAVAILABLE' || err.code === 'NOT_PRIMARY' || err.code === 'STALE_PRIMARY' || err.code === 'UNAVAILABLE')) void this.refresh();
      throw err;
    }
  }

  async forward(method: 'POST' | 'PUT' | 'GET' | 'DELETE', path: string, body?: string, headers: Record<string, string> = {}): Promise<ForwardResult> {
    const c = await this.#current();
    let r: ForwardResult;
    try {
      r = await c.forward(method, path, body, headers);
    } catch (err) {
      // Unreachable: a new holder may be there, but this request may have reached the old one: not resent.
      void this.refresh();
      throw err;
    }
    if (!isNotPrimary(r)) return r;
    await this.refresh(true);
    const next = this.#client;
    if (!next || next === c || outcomeOf(r) !== 'not-applied') return r;
    return next.forward(method, path, body, headers);
  }

  position(db: string): Promise<PrimaryPosition> {
    return this.#call((c) => c.position(db));
  }

  /** openStream re-reads the record first (each session start), then opens the stream at the holder. */
  async openStream(databases: string[] | '*', positions: Record<string, Position | null>, signal: AbortSignal): Promise<StreamBody> {
    await this.refresh();
    return this.#call((c) => c.openStream(databases, positions, signal));
  }

  snapshot(db: string, sink: SnapshotSink, signal?: AbortSignal, onProgress?: () => void): Promise<SnapshotHead> {
    return this.#call((c) => c.snapshot(db, sink, signal, onProgress));
  }
}

function isNotPrimary(r: ForwardResult): boolean {
  return r.status === 503 && (r.body as { error?: { code?: unknown } } | null)?.error?.code === 'NOT_PRIMARY';
}

function outcomeOf(r: ForwardResult): unknown {
  return (r.body as { error?: { details?: { outcome?: unknown } } } | null)?.error?.details?.outcome;
}

/** refusal is the 502 STALE_PRIMARY a stream from an older epoch is turned into (errorFromBody reads it), as the Node replica's fence. */
function refusal(url: string, epoch: number, highest: number, holder: { url: string; epoch: number } | null): Response {
  const message = `refused the stream of ${new URL(url).origin}: its epoch ${epoch} is older than epoch ${highest} already seen${holder ? ` (the holder is ${holder.url}, epoch ${holder.epoch})` : ''}`;
  const details = { epoch, maxEpoch: highest, primary: holder?.url ?? null };
  return new Response(JSON.stringify({ error: { code: 'STALE_PRIMARY', message, details } }), { status: 502, headers: { 'content-type': 'application/json' } });
}
