/**
 * PrimaryClient is a replica's one way to talk to its primary, over fetch, the same on the Node replica
 * and the Worker replica: forwarded API requests, positions (strong reads), snapshots and the stream.
 * It speaks the protocol of protocol.ts (docs/ARCHITECTURE.md#the-stream-protocol). The runtime's
 * connection handling comes in through `fetch` (PrimaryFetch, the part of fetch used here): the Worker
 * passes its global fetch, the Node replica a fetch-shaped function over keep-alive undici pools
 * (replica/primary-fetch.ts), which costs a fifth of the CPU of a full WHATWG fetch per forwarded write.
 *
 * Forwarding credentials (docs/ARCHITECTURE.md#tokens-and-consistency), one rule on both replicas: a
 * client's own `Authorization` header is forwarded unchanged, so the primary is the one authority on
 * its rights; the replica's own token is used for the replica's own requests (stream, snapshots,
 * positions) and for a forwarded request whose client sent none.
 *
 * Errors are EdgeliteError: the primary's own code when it answered, PRIMARY_UNAVAILABLE when it could
 * not be reached, with `details.outcome` (an AppliedOutcome) on a forwarded request that got no answer.
 */
import { RangeCatchUp, type RangeResponse, type RangeStats } from './changes-client.ts';
import { EdgeliteError, errorFromBody, type AppliedOutcome } from './errors.ts';
import { bodyChunks } from './follower-decode.ts';
import type { Logger } from './log.ts';
import { EPOCH_HEADER, type PrimaryLocator } from './primary-locator.ts';
import { PrimaryTarget, type TargetAt } from './primary-target.ts';
import { readSnapshotHead, STREAM_PATH, streamRequestBody, type SnapshotHead } from './protocol.ts';
import { parseChecksum, type Position } from './types.ts';
import type { GenerationStart, PrimaryPosition } from './consistency.ts';

export type { SnapshotHead } from './protocol.ts';
export { primaryOrigin } from './primary-target.ts';

/** PrimaryRequestInit is what the client passes to its fetch; `long` marks the stream and snapshots. */
export interface PrimaryRequestInit {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  headers: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
  /** The body may last for ever (stream) or long (snapshot): a fetch with pools may keep these apart. */
  long?: boolean;
  /** Catch-up ranges read a 307/308 themselves (shared/changes-client.ts); a fetch that follows redirects must not. */
  redirect?: 'manual';
}

/** PrimaryResponse is the part of a fetch Response the client reads. */
export interface PrimaryResponse {
  status: number;
  headers: { get(name: string): string | null; forEach(fn: (value: string, name: string) => void): void };
  text(): Promise<string>;
  body: ReadableStream<Uint8Array> | null;
}

/** PrimaryFetch is the part of fetch the client uses: the global fetch is one. */
export type PrimaryFetch = (url: string, init: PrimaryRequestInit) => Promise<PrimaryResponse>;

export interface PrimaryClientOptions {
  /**
   * The primary (`--primary`), or under the failover lease (README.md#high-availability) the
   * PrimaryLocator whose holder every request goes to: PRIMARY_UNAVAILABLE `not-applied` while none
   * holds it, a stream or snapshot of an older epoch refused (STALE_PRIMARY), a write refused
   * NOT_PRIMARY `not-applied` sent once more when the lease moved (forward).
   */
  url: string | PrimaryLocator;
  /** Where a refusal of a primary of an older epoch is logged. */
  logger?: Logger;
  /** Bearer token with the rights the replica needs (replicate and read; write for forwarding). */
  token?: string;
  /** The fetch to use; default the global one. */
  fetch?: PrimaryFetch;
  /**
   * Bound on an ordinary request, answer and body, and on the answer (not the body) of the stream and
   * a snapshot. 0: no timer of the client's own, for a `fetch` that bounds requests itself.
   */
  requestTimeoutMs?: number;
  /** Called by close() once the client's own requests are ended: the owner of `fetch`'s connections closes them. */
  onClose?: () => Promise<void>;
  /**
   * Catch up by GETs of sealed ranges (shared/changes.ts) when the primary says a database is a range
   * or more behind, so a cache in front of the primary can serve them; default true.
   */
  rangeCatchUp?: boolean;
}

export interface ForwardResult {
  status: number;
  body: unknown;
  /** Response headers, names in lower case. */
  headers: Record<string, string>;
}

/**
 * SnapshotSink receives a snapshot as it arrives (replica/snapshot-file.ts writes it to a file), so the
 * image is never held in memory whole. The download waits for each call (back-pressure); a call that
 * throws ends the download with that error.
 */
export interface SnapshotSink {
  /** open is called once, with the verified headers, before any byte of the body. */
  open(head: SnapshotHead): Promise<void>;
  /** write takes the next chunk of the body; it may keep no reference to `chunk` after it resolves. */
  write(chunk: Uint8Array): Promise<void>;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** CONNECT_FAILURE: error codes that mean the request never left this machine (it cannot have been applied). */
const CONNECT_FAILURE = /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|UND_ERR_CONNECT_TIMEOUT)$/;

export class PrimaryClient {
  readonly #target: PrimaryTarget;
  readonly #token: string | undefined;
  readonly #fetch: PrimaryFetch;
  readonly #timeout: number;
  readonly #onClose: (() => Promise<void>) | undefined;
  /** Aborted by close(): ends the stream and any download still running. */
  readonly #closed = new AbortController();
  readonly #rangeCatchUp: boolean;
  readonly #rangeStats: RangeStats = { ranges: 0, changeSets: 0, damaged: 0, fresh: 0 };

  constructor(o: PrimaryClientOptions) {
    this.#target = new PrimaryTarget(o.url, o.logger);
    this.#token = o.token;
    const f: PrimaryFetch = o.fetch ?? globalThis.fetch;
    // Called as a plain function: Workers' fetch throws "Illegal invocation" when called as a method.
    this.#fetch = (input, init) => f(input, init);
    this.#timeout = o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#onClose = o.onClose;
    this.#rangeCatchUp = o.rangeCatchUp ?? true;
  }

  /** url is the primary's origin now: the fixed one, or the lease holder's ('' while none holds it). */
  get url(): string {
    return this.#target.url;
  }

  /** locator is the PrimaryLocator this client follows, or null for a fixed URL. */
  get locator(): PrimaryLocator | null {
    return this.#target.locator;
  }

  /** staleRefusals counts streams and snapshots refused because their primary's epoch was older than one seen. */
  get staleRefusals(): number {
    return this.#target.staleRefusals;
  }

  /** rangeStats counts the catch-up ranges read since the client was made (a copy). */
  get rangeStats(): RangeStats {
    return { ...this.#rangeStats };
  }

  /** #headers applies the forwarding-credential rule (top of this file) to a request's headers. */
  #headers(extra: Record<string, string>): Record<string, string> {
    const h: Record<string, string> = {};
    for (const [k, v] of Object.entries(extra)) h[k.toLowerCase()] = v;
    if (this.#token && !h.authorization) h.authorization = `Bearer ${this.#token}`;
    return h;
  }

  /**
   * forward sends an API request to the primary and returns its status, JSON body and headers. Under
   * the lease, an answer 503 NOT_PRIMARY `not-applied` (the old holder refused before running it) reads
   * the record again and sends the request once more, to the new holder, only if the lease moved; any
   * other answer, and any failure to get one, is passed on as it is (never sent twice).
   * `opts.long` sends it beside the stream rather than beside forwarded requests: a candidate's applied
   * report (README.md#synchronous-replicas) must never queue behind forwarded writes that wait for it.
   */
  async forward(method: 'POST' | 'PUT' | 'GET' | 'DELETE', path: string, body?: string, headers: Record<string, string> = {}, opts: { long?: boolean } = {}): Promise<ForwardResult> {
    const at = this.#target.now();
    const r = await this.#forwardTo(at, method, path, body, headers, opts);
    if (!this.#target.locator || !refusedNotApplied(r)) return r;
    const next = await this.#target.moved(at);
    return next ? this.#forwardTo(next, method, path, body, headers, opts) : r;
  }

  async #forwardTo(at: TargetAt, method: 'POST' | 'PUT' | 'GET' | 'DELETE', path: string, body: string | undefined, headers: Record<string, string>, opts: { long?: boolean }): Promise<ForwardResult> {
    const url = at.origin;
    const init: PrimaryRequestInit = { method, headers: this.#headers(body === undefined ? headers : { 'content-type': 'application/json', ...headers }) };
    if (opts.long) init.long = true;
    if (body !== undefined) init.body = body;
    if (this.#timeout > 0) init.signal = AbortSignal.timeout(this.#timeout);
    let res: PrimaryResponse;
    try {
      res = await this.#fetch(url + path, init);
    } catch (err) {
      this.#target.locator?.refresh().catch(() => undefined); // a dead holder: find the next one sooner
      // Whether the primary may have received it matters to a client deciding to resend a write.
      throw unreachable(`primary ${url} unreachable: ${messageOf(err)}`, err, outcomeOf(err));
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw unreachable(`primary ${url} answered ${res.status} but its body was cut: ${messageOf(err)}`, err, 'unknown');
    }
    let parsed: unknown = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        throw unreachable(`primary answered ${res.status} with a non-JSON body`, err, 'unknown');
      }
    }
    const out: Record<string, string> = {};
    res.headers.forEach((v, k) => (out[k.toLowerCase()] = v));
    this.#target.observe(out[EPOCH_HEADER]);
    return { status: res.status, body: parsed, headers: out };
  }

  /** position asks the primary for a database's current position (strong reads) and generation starts. */
  async position(db: string): Promise<PrimaryPosition> {
    const r = await this.forward('GET', `/v1/db/${encodeURIComponent(db)}`);
    if (r.status !== 200) throw errorFromBody(r.body, r.status);
    const b = r.body as { generation: number; txid: number; checksum: string; generations?: unknown };
    const p: PrimaryPosition = { generation: b.generation, txid: b.txid, checksum: parseChecksum(b.checksum) };
    const starts = generationStartsOf(b.generations);
    return starts === null ? p : { ...p, generations: starts };
  }

  /**
   * snapshot downloads a consistent image of a database into `sink`, and returns what its headers say
   * (position, database id, page size, length). The headers must match their digest and the body its
   * announced length (else CORRUPT_CHANGESET); the body is cancelled on any error, `sink`'s included,
   * and the sink's own error is passed on as it is. `onProgress` is called for every chunk received
   * (a large download is alive while bytes flow).
   */
  async snapshot(db: string, sink: SnapshotSink, signal?: AbortSignal, onProgress?: () => void): Promise<SnapshotHead> {
    const what = `snapshot of ${db}`;
    const res = await this.#open(`/v1/db/${encodeURIComponent(db)}/snapshot`, { method: 'GET', headers: this.#headers({}) }, signal, what);
    const reader = res.body!.getReader();
    let off = 0;
    let length = 0;
    /** The sink's own error, passed on as it is (only network errors become PRIMARY_UNAVAILABLE). */
    let sinkError: unknown = null;
    const toSink = (p: Promise<void>) => p.catch((err: unknown) => Promise.reject((sinkError = err)));
    try {
      const head = readSnapshotHead(res.headers);
      length = head.length;
      await toSink(sink.open(head));
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (off + value.byteLength > length) throw new EdgeliteError('CORRUPT_CHANGESET', `${what} is longer than announced`);
        await toSink(sink.write(value));
        off += value.byteLength;
        onProgress?.();
      }
      if (off !== length) throw new EdgeliteError('CORRUPT_CHANGESET', `${what} was cut at ${off} of ${length} bytes`);
      return head;
    } catch (err) {
      reader.cancel().catch(() => undefined); // the connection is being dropped; its own error says nothing more
      if (err === sinkError || err instanceof EdgeliteError || signal?.aborted) throw err;
      throw unreachable(`${what} failed at ${off} of ${length} bytes: ${messageOf(err)}`, err);
    }
  }

  /**
   * openStream posts the stream request (protocol.ts) and returns the never-ending frame body. With
   * range catch-up on, the request says `"ranges": true`; when the primary answers USE_RANGES, the body
   * first carries the frames of those databases' sealed ranges, read by GET (changes-client.ts, through
   * any cache in front of the primary), then the stream posted from the positions they reached. The
   * follower core reads and verifies both the same way.
   */
  async openStream(databases: string[] | '*', positions: Record<string, Position | null>, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const ranges = this.#rangeCatchUp && Object.values(positions).some((p) => p !== null);
    try {
      return bodyChunks((await this.#postStream(databases, positions, ranges, signal)).body!);
    } catch (err) {
      const names = err instanceof EdgeliteError && err.code === 'USE_RANGES' ? err.details?.databases : null;
      if (!Array.isArray(names) || signal.aborted) throw err;
      return this.#rangesThenStream(databases, positions, names.filter((n): n is string => typeof n === 'string'), signal);
    }
  }

  async #postStream(databases: string[] | '*', positions: Record<string, Position | null>, ranges: boolean, signal: AbortSignal): Promise<PrimaryResponse> {
    const init: PrimaryRequestInit = { method: 'POST', body: streamRequestBody(databases, positions, ranges), headers: this.#headers({ 'content-type': 'application/json' }) };
    return this.#open(STREAM_PATH, init, signal, 'stream');
  }

  /** #rangesThenStream yields the ranges' frames, then the stream from where they took each database. */
  async *#rangesThenStream(databases: string[] | '*', positions: Record<string, Position | null>, names: string[], signal: AbortSignal): AsyncGenerator<Uint8Array> {
    const reached = { ...positions };
    const origin = this.#target.now().origin; // the holder that answered USE_RANGES (fenced by #open)
    const get = (path: string, fresh: boolean): Promise<RangeResponse> =>
      this.#fetch(origin + path, { method: 'GET', headers: this.#headers(fresh ? { 'cache-control': 'no-cache' } : {}), long: true, redirect: 'manual', signal: anySignal([signal, this.#closed.signal]) });
    for (const name of names) {
      const from = reached[name];
      if (!from) continue;
      const run = new RangeCatchUp(name, from, get, this.#rangeStats, signal);
      // The follower pulls the next chunk only once it applied this one: what was yielded is applied.
      for await (const frames of run.frames()) {
        yield frames;
        reached[name] = run.position;
      }
    }
    yield* bodyChunks((await this.#postStream(databases, reached, false, signal)).body!);
  }

  /** close ends the stream and downloads still running, then calls `onClose` (which may end the rest). */
  async close(): Promise<void> {
    this.#closed.abort(new EdgeliteError('UNAVAILABLE', 'the primary client is closed'));
    await this.#onClose?.();
  }

  /**
   * #open starts a long request (stream, snapshot): no time limit on the body, only on the answer.
   * Under the lease it waits (bounded, and by `signal`) for a holder, and refuses an answer of an
   * older epoch (PrimaryTarget.fence) before reading anything of it.
   */
  async #open(path: string, init: PrimaryRequestInit, signal: AbortSignal | undefined, what: string): Promise<PrimaryResponse> {
    const signals = signal ? [signal, this.#closed.signal] : [this.#closed.signal];
    const answered = new AbortController();
    if (this.#timeout > 0) signals.push(answered.signal);
    const timer = this.#timeout > 0 ? setTimeout(() => answered.abort(new EdgeliteError('PRIMARY_UNAVAILABLE', `${what}: no answer in ${this.#timeout} ms`)), this.#timeout) : undefined;
    let res: PrimaryResponse;
    let at: TargetAt;
    try {
      const any = anySignal(signals);
      at = await this.#target.wait(this.#timeout || DEFAULT_REQUEST_TIMEOUT_MS, any);
      res = await this.#fetch(at.origin + path, { ...init, long: true, signal: any });
    } catch (err) {
      if (answered.signal.aborted) throw answered.signal.reason;
      if (signal?.aborted || err instanceof EdgeliteError) throw err;
      throw unreachable(`${what} failed: ${messageOf(err)}`, err);
    } finally {
      clearTimeout(timer);
    }
    const ok = res.status === 200 && res.body !== null;
    const stale = this.#target.fence(res.headers.get(EPOCH_HEADER), ok, at, what);
    if (stale && ok) res.body!.cancel().catch(() => undefined); // dropped unread; its own error says nothing more
    if (stale) throw stale;
    if (!ok) {
      const text = await res.text().catch(() => '');
      throw errorFromBody(safeJson(text), res.status);
    }
    return res;
  }
}

/**
 * anySignal aborts when any of `signals` does (AbortSignal.any, where the runtime has it). The
 * listeners stay until the signals are collected: every signal here lives no longer than one request
 * or the client.
 */
function anySignal(signals: AbortSignal[]): AbortSignal {
  const any = (AbortSignal as { any?: (s: AbortSignal[]) => AbortSignal }).any;
  if (any) return any(signals);
  const c = new AbortController();
  for (const s of signals) {
    if (s.aborted) {
      c.abort(s.reason);
      break;
    }
    s.addEventListener('abort', () => c.abort(s.reason), { once: true });
  }
  return c.signal;
}

/** outcomeOf tells from a fetch failure whether the request can have reached the primary. */
function outcomeOf(err: unknown): AppliedOutcome {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECT_FAILURE.test(code)) return 'not-applied';
  }
  return 'unknown';
}

function unreachable(message: string, cause: unknown, outcome?: AppliedOutcome): EdgeliteError {
  return new EdgeliteError('PRIMARY_UNAVAILABLE', message, { cause, ...(outcome ? { details: { outcome } } : {}) });
}

/** messageOf names a fetch failure by its cause when it has one (undici's "fetch failed" says nothing). */
function messageOf(err: unknown): string {
  const e = err as { message?: unknown; cause?: { message?: unknown; code?: unknown } };
  const cause = e?.cause?.message ?? e?.cause?.code;
  return `${String(e?.message ?? err)}${cause ? ` (${String(cause)})` : ''}`;
}

/** refusedNotApplied: the answer is a NOT_PRIMARY refusal given before the request ran (safe to send elsewhere). */
function refusedNotApplied(r: ForwardResult): boolean {
  if (r.status !== 503) return false;
  const e = (r.body as { error?: { code?: unknown; details?: { outcome?: unknown } } } | null)?.error;
  return e?.code === 'NOT_PRIMARY' && e.details?.outcome === 'not-applied';
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null; // not JSON: errorFromBody falls back to the status
  }
}

/** generationStartsOf reads GET /v1/db/{name}'s `generations`; null when absent or not that shape. */
export function generationStartsOf(v: unknown): GenerationStart[] | null {
  if (!Array.isArray(v)) return null;
  const out: GenerationStart[] = [];
  for (const e of v as Array<{ generation?: unknown; startTxid?: unknown }>) {
    if (!Number.isSafeInteger(e?.generation) || !Number.isSafeInteger(e?.startTxid)) return null;
    out.push({ generation: e.generation as number, startTxid: e.startTxid as number });
  }
  return out;
}
