/**
 * The frame layer of the fault proxy (proxy.ts). The byte layer flips bits the stream's frame hash
 * catches; this layer changes a frame's content and keeps the frame valid, so only the checks inside it
 * (change-set checksums, delta bases) can catch what it did. See docs/FORMAT.md for the frames.
 *
 * On a `POST /v1/stream` response with status 200 and a chunked body, a FrameLayer passes the header
 * block on, de-chunks the body, decodes its frames (shared/frames.ts), hands each to the proxy's frame
 * hook, and re-encodes what the hook returns as one HTTP chunk per frame (so the frame hash is
 * recomputed). Any other response passes untouched. If the source ends mid-frame the partial frame is
 * dropped: the replica sees the cut at a frame boundary.
 */
import { encodeFrame, FrameDecoder, type Frame } from '../../shared/frames.ts';

/** FrameHook sees every frame of a proxied stream, in order, and returns the frame to send instead. */
export type FrameHook = (frame: Frame) => Frame;

/** STREAM_REQUEST: the request line of the replication stream (the frame layer applies to its response). */
export const STREAM_REQUEST = /^POST \/v1\/stream$/;

const EMPTY: Buffer = Buffer.alloc(0);
const CRLF = '\r\n';

/** FrameLayer rewrites one response message (a new one per message; see Pipe.restart in proxy-pipe.ts). */
export class FrameLayer {
  readonly #hook: FrameHook;
  readonly #decoder = new FrameDecoder();
  #mode: 'head' | 'chunks' | 'pass' = 'head';
  /** Bytes received but not yet parsed (the header block, or a chunk-size line split across reads). */
  #held = EMPTY;
  /** Data bytes left in the current chunk, and whether its closing CRLF is still to come. */
  #chunkLeft = 0;
  #needCrlf = false;

  constructor(hook: FrameHook) {
    this.#hook = hook;
  }

  /** push takes the next bytes from the server and returns the bytes to forward (maybe none yet). */
  push(chunk: Buffer): Buffer {
    if (this.#mode === 'pass') return chunk;
    this.#held = this.#held.length > 0 ? Buffer.concat([this.#held, chunk]) : chunk;
    const out: Buffer[] = [];
    if (this.#mode === 'head') {
      const end = this.#held.indexOf('\r\n\r\n', 0, 'latin1');
      if (end < 0) return EMPTY;
      const head = this.#held.subarray(0, end + 4);
      this.#held = this.#held.subarray(end + 4);
      out.push(head);
      const text = head.toString('latin1');
      if (!/^HTTP\/1\.1 200 /.test(text) || !/\r\ntransfer-encoding: *chunked\r\n/i.test(text)) return this.#pass(out);
      this.#mode = 'chunks';
    }
    const { body, last } = this.#dechunk();
    for (const piece of body) {
      for (const frame of this.#decoder.push(piece)) {
        const bytes = encodeFrame(this.#hook(frame));
        out.push(Buffer.from(`${bytes.length.toString(16)}${CRLF}`, 'latin1'), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length), Buffer.from(CRLF));
      }
    }
    if (last) {
      out.push(Buffer.from(`0${CRLF}`, 'latin1')); // the last chunk; its trailer section follows in #held
      return this.#pass(out);
    }
    return Buffer.concat(out);
  }

  /** #pass forwards everything from here on as it comes (after `out`). */
  #pass(out: Buffer[]): Buffer {
    this.#mode = 'pass';
    out.push(this.#held);
    this.#held = EMPTY;
    return Buffer.concat(out);
  }

  /** #dechunk returns the body bytes of the chunks complete or begun in #held, and whether the last chunk came. */
  #dechunk(): { body: Buffer[]; last: boolean } {
    const body: Buffer[] = [];
    for (;;) {
      if (this.#chunkLeft > 0) {
        const n = Math.min(this.#chunkLeft, this.#held.length);
        if (n === 0) break;
        body.push(this.#held.subarray(0, n));
        this.#held = this.#held.subarray(n);
        this.#chunkLeft -= n;
      } else if (this.#needCrlf) {
        if (this.#held.length < 2) break;
        this.#held = this.#held.subarray(2);
        this.#needCrlf = false;
      } else {
        const eol = this.#held.indexOf(CRLF, 0, 'latin1');
        if (eol < 0) break;
        const size = Number.parseInt(this.#held.subarray(0, eol).toString('latin1').split(';')[0]!, 16);
        if (!Number.isSafeInteger(size) || size < 0) throw new Error(`bad chunk-size line in a stream response`);
        this.#held = this.#held.subarray(eol + 2);
        if (size === 0) return { body, last: true };
        this.#chunkLeft = size;
        this.#needCrlf = true;
      }
    }
    return { body, last: false };
  }
}
