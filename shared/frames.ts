/**
 * Replication stream frames: what a primary writes on the long-lived stream response and a replica reads
 * (docs/ARCHITECTURE.md#the-stream-protocol). Each frame is length-prefixed and checksummed, so a byte flipped or a stream cut anywhere
 * is detected before anything is applied.
 *
 * Wire layout of one frame (integers big-endian):
 *
 *   offset  size  field
 *   0       4     body length n (u32, 1..MAX_FRAME_BYTES)
 *   4       4     murmur3 hash of the body (u32, seed 0; see hash32.ts)
 *   8       n     body: the frame object as msgpack (a map with a `type` string)
 *
 * The hash covers the body only. A flipped length byte moves the body boundary, so the hash of the
 * wrong range fails (or the frame never completes and `end()` or the heartbeat timeout catches it).
 *
 * msgpackr in workerd: code generation (`new Function`) is disallowed there. msgpackr only generates
 * code for its "records" (shared structures, ext 0x72) and for `randomAccessStructure`; we use neither
 * (`useRecords: false` on both sides, no structures), so encoding and decoding stay on the interpreted
 * paths. If a peer did send records, msgpackr catches the EvalError and falls back to its interpreted
 * reader. `structuredClone: false` also refuses msgpackr's reference extensions.
 */
import { Packr, Unpackr } from 'msgpackr';
import { EdgeliteError } from './errors.ts';
import { murmur3 } from './hash32.ts';
import { validateDatabaseName } from './types.ts';

export interface StreamPosition {
  generation: number;
  txid: number;
  /** Primary's commit time of that txid, ms since the epoch. */
  timestamp: number;
}

export type Frame =
  /** `data` is an encoded change set, opaque here. */
  | { type: 'changeset'; db: string; data: Uint8Array }
  /** The replica must fetch GET /v1/db/{db}/snapshot. */
  | { type: 'snapshot-needed'; db: string; reason: string }
  | { type: 'new-generation'; db: string; generation: number; txid: number }
  | { type: 'db-created'; db: string }
  | { type: 'db-dropped'; db: string }
  /** The primary's current position per database and commit time. */
  | { type: 'heartbeat'; time: number; positions: Record<string, StreamPosition> }
  /** This database is caught up; the live tail follows. */
  | { type: 'ready'; db: string }
  | { type: 'error'; code: string; message: string };

export type FrameType = Frame['type'];

export const FRAME_HEADER_BYTES = 8;

/** MAX_FRAME_BYTES bounds one frame body; a length prefix above it is rejected before any allocation. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

const packr = new Packr({ useRecords: false, structuredClone: false, moreTypes: false, bundleStrings: false });
const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  structuredClone: false,
  // A foreign encoder may write a txid as uint64; values above 2^53 lose precision here but are then
  // rejected as unsafe integers, so nothing is silently rounded.
  int64AsType: 'number',
});

/**
 * encodeFrame validates `frame` and returns its wire bytes (header + body). Encode once and write the
 * same bytes to every subscriber. Fields not in the frame type are dropped.
 */
export function encodeFrame(frame: Frame): Uint8Array {
  const body = packr.pack(validateFrame(frame));
  if (body.length > MAX_FRAME_BYTES) {
    throw new EdgeliteError(
      'PAYLOAD_TOO_LARGE',
      `${frame.type} frame body is ${body.length} bytes; the limit is ${MAX_FRAME_BYTES}`,
    );
  }
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, body.length);
  view.setUint32(4, murmur3(body));
  out.set(body, FRAME_HEADER_BYTES);
  return out;
}

/** decodeFrameBody unpacks one frame body and validates every field; CORRUPT_FRAME on anything else. */
export function decodeFrameBody(body: Uint8Array): Frame {
  let value: unknown;
  try {
    value = unpackr.unpack(body);
  } catch (err) {
    throw new EdgeliteError('CORRUPT_FRAME', `undecodable frame body (${body.length} bytes)`, { cause: err });
  }
  return validateFrame(value);
}

/**
 * FrameDecoder turns a byte stream cut into arbitrary chunks into whole frames. It keeps the pending
 * chunks in a list and copies each body out once, so a multi-megabyte change set arriving in many
 * chunks is never re-concatenated per chunk. It takes ownership of pushed chunks: do not modify one
 * after pushing it. The first error poisons the decoder: the stream position is lost, so the caller
 * must reconnect and resume from what it has applied (frames decoded earlier in the failing `push`
 * are discarded with it, which is safe for the same reason).
 */
export class FrameDecoder {
  readonly #maxFrameBytes: number;
  #chunks: Uint8Array[] = [];
  /** Index in #chunks of the first chunk with unread bytes, and how far into it we have read. */
  #head = 0;
  #offset = 0;
  /** Unread bytes in #chunks. */
  #unread = 0;
  /** Header of the frame being assembled, once read; -1 while waiting for a header. */
  #bodyLength = -1;
  #bodyHash = 0;
  #failure: EdgeliteError | null = null;

  constructor(opts: { maxFrameBytes?: number } = {}) {
    const max = opts.maxFrameBytes ?? MAX_FRAME_BYTES;
    if (!Number.isSafeInteger(max) || max < 1 || max > 0xffffffff) {
      throw new EdgeliteError('BAD_REQUEST', `maxFrameBytes must be an integer in 1..${0xffffffff}, got ${max}`);
    }
    this.#maxFrameBytes = max;
  }

  /** buffered is the number of bytes held waiting for the rest of a frame. */
  get buffered(): number {
    return this.#unread + (this.#bodyLength >= 0 ? FRAME_HEADER_BYTES : 0);
  }

  /** push feeds the next chunk and returns every frame it completes, in stream order. */
  push(chunk: Uint8Array): Frame[] {
    if (this.#failure) throw this.#failure;
    const frames: Frame[] = [];
    if (chunk.length === 0) return frames;
    this.#chunks.push(chunk);
    this.#unread += chunk.length;
    try {
      for (;;) {
        if (this.#bodyLength < 0) {
          if (this.#unread < FRAME_HEADER_BYTES) break;
          const length = this.#readU32();
          this.#bodyHash = this.#readU32();
          if (length === 0 || length > this.#maxFrameBytes) {
            throw new EdgeliteError('CORRUPT_FRAME', `frame length ${length} is outside 1..${this.#maxFrameBytes}`);
          }
          this.#bodyLength = length;
        }
        if (this.#unread < this.#bodyLength) break;
        const body = this.#take(this.#bodyLength);
        const hash = murmur3(body);
        if (hash !== this.#bodyHash) {
          throw new EdgeliteError(
            'CORRUPT_FRAME',
            `frame hash mismatch: header says ${hex32(this.#bodyHash)}, body of ${body.length} bytes hashes to ${hex32(hash)}`,
          );
        }
        this.#bodyLength = -1;
        frames.push(decodeFrameBody(body));
      }
    } catch (err) {
      throw this.#fail(err);
    }
    this.#compact();
    return frames;
  }

  /** end declares the stream finished; CORRUPT_FRAME if it was cut inside a frame. */
  end(): void {
    if (this.#failure) throw this.#failure;
    const left = this.buffered;
    if (left > 0) {
      throw this.#fail(new EdgeliteError('CORRUPT_FRAME', `stream ended inside a frame with ${left} bytes pending`));
    }
  }

  #fail(err: unknown): EdgeliteError {
    const failure =
      err instanceof EdgeliteError && err.code === 'CORRUPT_FRAME'
        ? err
        : new EdgeliteError('CORRUPT_FRAME', err instanceof Error ? err.message : String(err), { cause: err });
    this.#failure = failure;
    this.#chunks = [];
    this.#head = 0;
    this.#offset = 0;
    this.#unread = 0;
    this.#bodyLength = -1;
    return failure;
  }

  #readU32(): number {
    let value = 0;
    for (let i = 0; i < 4; i++) {
      const chunk = this.#chunks[this.#head]!;
      value = value * 256 + chunk[this.#offset]!;
      this.#advance(1);
    }
    return value;
  }

  /** #take copies the next `n` unread bytes into a new Uint8Array the frame may keep. */
  #take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[this.#head]!;
      const count = Math.min(n - filled, chunk.length - this.#offset);
      out.set(chunk.subarray(this.#offset, this.#offset + count), filled);
      filled += count;
      this.#advance(count);
    }
    return out;
  }

  #advance(count: number): void {
    this.#offset += count;
    this.#unread -= count;
    if (this.#offset === this.#chunks[this.#head]!.length) {
      this.#head++;
      this.#offset = 0;
    }
  }

  /** #compact drops consumed chunks so the list does not grow with the stream. */
  #compact(): void {
    if (this.#unread === 0) {
      this.#chunks = [];
      this.#head = 0;
    } else if (this.#head > 32 && this.#head * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}

type Fields = Record<string, unknown>;

/** validateFrame checks every field of an unpacked value and returns a fresh Frame holding only them. */
function validateFrame(value: unknown): Frame {
  const o = record(value, 'frame');
  const type = o['type'];
  switch (type) {
    case 'changeset':
      return { type, db: db(o), data: bytes(o, 'data') };
    case 'snapshot-needed':
      return { type, db: db(o), reason: string(o, 'reason') };
    case 'new-generation':
      return { type, db: db(o), generation: uint(o, 'generation'), txid: uint(o, 'txid') };
    case 'db-created':
    case 'db-dropped':
    case 'ready':
      return { type, db: db(o) };
    case 'heartbeat':
      return { type, time: uint(o, 'time'), positions: positions(o['positions']) };
    case 'error':
      return { type, code: string(o, 'code'), message: string(o, 'message') };
    default:
      throw corrupt(`unknown frame type ${describe(type)}`);
  }
}

function positions(value: unknown): Record<string, StreamPosition> {
  const map = record(value, 'heartbeat positions');
  const out: Record<string, StreamPosition> = {};
  for (const [name, entry] of Object.entries(map)) {
    checkName(name);
    const p = record(entry, `heartbeat position of ${name}`);
    out[name] = { generation: uint(p, 'generation'), txid: uint(p, 'txid'), timestamp: uint(p, 'timestamp') };
  }
  return out;
}

function record(value: unknown, what: string): Fields {
  if (typeof value !== 'object' || value === null) throw corrupt(`${what} is ${describe(value)}, want a map`);
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) throw corrupt(`${what} is not a plain map`);
  return value as Fields;
}

function db(o: Fields): string {
  return checkName(o['db']);
}

function checkName(name: unknown): string {
  try {
    return validateDatabaseName(name);
  } catch (err) {
    throw corrupt(`bad database name ${describe(name)}`, err);
  }
}

function string(o: Fields, key: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw corrupt(`field ${key} is ${describe(v)}, want a string`);
  return v;
}

function uint(o: Fields, key: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw corrupt(`field ${key} is ${describe(v)}, want a non-negative safe integer`);
  }
  return v;
}

function bytes(o: Fields, key: string): Uint8Array {
  const v = o[key];
  if (!(v instanceof Uint8Array)) throw corrupt(`field ${key} is ${describe(v)}, want bytes`);
  return v;
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}...` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `${typeof v} ${String(v)}`;
  if (typeof v !== 'object') return typeof v;
  const name: unknown = (v as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' ? name : 'object';
}

function corrupt(message: string, cause?: unknown): EdgeliteError {
  return new EdgeliteError('CORRUPT_FRAME', message, cause === undefined ? {} : { cause });
}
