/**
 * RangeCatchUp is the replica's side of catch-up ranges (shared/changes.ts): it GETs one database's
 * sealed ranges from its position on, through whatever cache sits in front of the primary, and turns
 * them into the stream's own `changeset` frames, so the follower core applies them exactly as it applies
 * the stream, through the same verifier (the primary client yields them ahead of the stream's bytes).
 *
 * Nothing damaged is passed on: every change set is decoded (its file checksum) and must continue the
 * position reached (same generation, next txid, pre-apply checksum equal to the last post-apply one)
 * before its frame is made; a range that ends early is damaged too. A damaged or non-fitting range is
 * asked for once more with FRESH_PARAM (a nonce) and `Cache-Control: no-cache`, which skips every cache
 * keyed on the URL; if that answer does not fit either, the ranges stop there and the stream takes over
 * from the position reached (its resume rule decides whether a snapshot is needed). So a poisoned cache
 * costs one extra request per range, never a wrong page and never a snapshot.
 */
import { decodeChangeSet } from './changeset.ts';
import { changeSetByteLength, HEADER_SIZE, readChangeSetHeader } from './changeset-format.ts';
import { CHANGES_TXIDS_HEADER, changesPath, FRESH_PARAM } from './changes.ts';
import { bodyChunks } from './follower-decode.ts';
import { encodeFrame } from './frames.ts';
import { concatBytes, type Position } from './types.ts';

/** RangeResponse is the part of a fetch Response a range read needs. */
export interface RangeResponse {
  status: number;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
  body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | null;
}

/** RangeGet fetches a path of the primary (redirects not followed); `fresh` adds `Cache-Control: no-cache`. */
export type RangeGet = (path: string, fresh: boolean) => Promise<RangeResponse>;

/** RangeStats counts what the range reads did, for tests and metrics. */
export interface RangeStats {
  /** Ranges read whole and passed on. */
  ranges: number;
  /** Change sets passed on as frames. */
  changeSets: number;
  /** Answers refused: a change set that failed its checksums, did not fit, or a range cut short. */
  damaged: number;
  /** Requests sent with FRESH_PARAM, skipping the caches. */
  fresh: number;
}

/** MAX_REDIRECTS bounds the 307/308 hops of one range request (the primary needs one at most). */
const MAX_REDIRECTS = 3;

type Outcome = 'done' | 'damaged';

export class RangeCatchUp {
  readonly db: string;
  /** Where the frames passed on so far take the database. */
  position: Position;
  /** Why the ranges stopped (the code or status of the last answer), once frames() has ended. */
  stoppedBy: string | null = null;
  readonly #get: RangeGet;
  readonly #stats: RangeStats;
  readonly #signal: AbortSignal;

  constructor(db: string, from: Position, get: RangeGet, stats: RangeStats, signal: AbortSignal) {
    this.db = db;
    this.position = from;
    this.#get = get;
    this.#stats = stats;
    this.#signal = signal;
  }

  /**
   * frames yields the frames of every sealed range from the position on, a chunk per body read, until
   * the primary says the rest is the stream's (USE_STREAM), or anything else stops the ranges. Only an
   * abort of the caller's signal is thrown; every other failure just ends the ranges.
   */
  async *frames(): AsyncGenerator<Uint8Array> {
    try {
      yield* this.#ranges();
    } catch (err) {
      if (this.#signal.aborted) throw err;
      // Unreachable, cut: the stream posted next fails the same way or takes over from here.
      this.#stop(`failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  async *#ranges(): AsyncGenerator<Uint8Array> {
    let fresh = false;
    let again: string | null = null;
    for (;;) {
      // A range re-asked is asked at its own start (already aligned); the next one from the position reached.
      let path: string = again ?? changesPath(this.db, this.position.generation, this.position.txid + 1);
      again = null;
      let res: RangeResponse | null = null;
      for (let hop = 0; ; hop++) {
        if (fresh) this.#stats.fresh++;
        res = await this.#get(fresh ? `${path}?${FRESH_PARAM}=${nonce()}` : path, fresh);
        if (res.status !== 307 && res.status !== 308) break;
        await drain(res);
        const next = this.#redirectTarget(res.headers.get('location'));
        if (next === null || hop >= MAX_REDIRECTS) return this.#stop(`bad redirect ${res.status}`);
        path = next;
      }
      if (res.status !== 200) {
        const text = await res.text().catch(() => '');
        return this.#stop(errorCode(text) ?? `HTTP ${res.status}`);
      }
      const before = this.position.txid;
      const outcome = yield* this.#read(res);
      if (outcome === 'damaged') {
        this.#stats.damaged++;
        if (fresh) return this.#stop('damaged');
        fresh = true;
        again = path;
        continue;
      }
      this.#stats.ranges++;
      // A range that took us nowhere (a stale redirect to an earlier range): asking again would loop.
      if (this.position.txid === before) return this.#stop('no progress');
      fresh = false;
    }
  }

  #stop(why: string): void {
    this.stoppedBy = why;
  }

  /** #redirectTarget accepts a Location only to a range of the same database and generation. */
  #redirectTarget(location: string | null): string | null {
    if (!location) return null;
    let u: URL;
    try {
      u = new URL(location, 'http://primary.invalid');
    } catch {
      return null; // not a URL: the ranges stop, the stream goes on
    }
    const prefix = changesPath(this.db, this.position.generation, 1).slice(0, -16);
    return u.pathname.startsWith(prefix) && /^[0-9a-f]{16}$/.test(u.pathname.slice(prefix.length)) ? u.pathname : null;
  }

  /** #read passes on the verified change sets of one range body, a chunk of frames per body read. */
  async *#read(res: RangeResponse): AsyncGenerator<Uint8Array, Outcome> {
    // The header only catches a range cut at a change-set boundary early: without it (a cache that drops
    // headers) such a cut costs one more request, never a wrong apply, as every change set is chained.
    const header = res.headers.get(CHANGES_TXIDS_HEADER);
    const last = header === null ? 0 : lastTxidOf(header);
    if (last === null || !res.body) {
      await drain(res);
      return 'damaged';
    }
    const queue = new ByteQueue();
    for await (const chunk of bodyChunks(res.body)) {
      queue.push(chunk);
      const frames: Uint8Array[] = [];
      for (;;) {
        const next = this.#next(queue);
        if (next === 'damaged') {
          if (frames.length > 0) yield concatBytes(frames);
          return 'damaged'; // leaving the loop cancels the body
        }
        if (next === null) break;
        frames.push(next);
      }
      if (frames.length > 0) yield concatBytes(frames);
    }
    return queue.length === 0 && this.position.txid >= last ? 'done' : 'damaged';
  }

  /** #next takes the next whole change set off the queue as a frame, null when it is not all here yet. */
  #next(queue: ByteQueue): Uint8Array | null | 'damaged' {
    if (queue.length < HEADER_SIZE) return null;
    let bytes: Uint8Array;
    try {
      const h = readChangeSetHeader(queue.peek(HEADER_SIZE));
      const length = changeSetByteLength(h.pageSize, h.pageCount);
      if (queue.length < length) return null;
      bytes = queue.take(length);
      const cs = decodeChangeSet(bytes);
      const p = this.position;
      if (cs.generation !== p.generation) return 'damaged';
      if (cs.maxTxid <= p.txid) return this.#next(queue); // the range began before our position
      if (cs.minTxid !== p.txid + 1 || cs.preChecksum !== p.checksum) return 'damaged';
      this.position = { generation: p.generation, txid: cs.maxTxid, checksum: cs.postChecksum };
    } catch {
      return 'damaged'; // CORRUPT_CHANGESET: a flipped byte, a cut; the answer is refused whole from here
    }
    this.#stats.changeSets++;
    return encodeFrame({ type: 'changeset', db: this.db, data: bytes });
  }
}

/** ByteQueue holds body chunks until a whole change set is there, copying only what is taken. */
class ByteQueue {
  #chunks: Uint8Array[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.byteLength;
  }

  /** peek returns the first n bytes (n ≤ length) as one array, merging chunks if needed. */
  peek(n: number): Uint8Array {
    const first = this.#chunks[0]!;
    if (first.byteLength >= n) return first.subarray(0, n);
    const merged = concatBytes(this.#chunks);
    this.#chunks = [merged];
    return merged.subarray(0, n);
  }

  /** take removes the first n bytes (n ≤ length) and returns them in an array of their own. */
  take(n: number): Uint8Array {
    const out = this.peek(n).slice();
    let left = n;
    while (left > 0) {
      const c = this.#chunks[0]!;
      if (c.byteLength <= left) {
        this.#chunks.shift();
        left -= c.byteLength;
      } else {
        this.#chunks[0] = c.subarray(left);
        left = 0;
      }
    }
    this.#length -= n;
    return out;
  }
}


/** lastTxidOf reads `<first>-<last>` of CHANGES_TXIDS_HEADER, or null (damaged: the range is refused). */
function lastTxidOf(header: string): number | null {
  const m = /^(\d{1,16})-(\d{1,16})$/.exec(header);
  if (!m) return null;
  const first = Number(m[1]);
  const last = Number(m[2]);
  return Number.isSafeInteger(last) && first >= 1 && last >= first ? last : null;
}

function errorCode(text: string): string | null {
  try {
    const code = (JSON.parse(text) as { error?: { code?: unknown } } | null)?.error?.code;
    return typeof code === 'string' ? code : null;
  } catch {
    return null; // not an error body of ours: the status says it
  }
}

async function drain(res: RangeResponse): Promise<void> {
  await res.text().catch(() => ''); // the body of a redirect or refused answer says nothing we use
}

function nonce(): string {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

