/**
 * The inside of the fault proxy (proxy.ts): one Connection per proxied client connection, one Pipe per
 * direction, and the rule, fault and tap types they share. A Pipe applies, per chunk and in this order:
 * request-line sniffing (which restarts the message counters), the frame layer (proxy-frames.ts, on a
 * stream response while a frame hook is set), tapping of the bytes so far unfaulted, the fault rules
 * (flips, truncation), then delay, bandwidth and pause on the way out, with back-pressure to its source.
 */
import net from 'node:net';
import { type FrameHook, FrameLayer, STREAM_REQUEST } from './proxy-frames.ts';
import type { Tap, TapMessage } from './proxy-tap.ts';

/** Direction: `up` is client → server (requests), `down` is server → client (responses). */
export type Direction = 'up' | 'down';

/** ConnectionInfo is what a rule sees of a connection. */
export interface ConnectionInfo {
  id: number;
  /** The request line of the current message, without the protocol: `GET /v1/db/app/snapshot`. */
  request: string | null;
  /** Sequence number of the current message over the whole proxy (0 before the first request line). */
  message: number;
  /** Body bytes of the current message seen so far per direction (offsets from the body start). */
  bodyBytes: Record<Direction, number>;
}

/** FaultRule says what to do to the bytes of matching messages in one direction. */
export interface FaultRule {
  direction: Direction;
  /** Only messages whose request line matches; default every message. */
  request?: RegExp;
  /** Only this connection (a ConnectionInfo id from `live()`); default every connection. */
  connection?: number;
  /** Count offsets from the first body byte instead of the first byte of the message. */
  body?: boolean;
  /** Flip one (random) bit at each of these message offsets. */
  flipAt?: readonly number[];
  /** Flip one random bit with this probability per byte, at offsets drawn from the seeded PRNG. */
  flipRate?: number;
  /**
   * Flip the first byte of the first match in a chunk (of its first capture group, if it has one), e.g.
   * `/edgelite-txid: \d*(\d)\r\n/i` for the last digit of a header. Matched per chunk, as latin1 text.
   */
  flipPattern?: RegExp;
  /** The bit to flip (0..7); default a random one from the seeded PRNG. */
  bit?: number;
  /** Forward this many bytes of the message, then end the connection (FIN down, both sockets closed). */
  truncateAt?: number;
  /** Retire the rule after this many actions (flips and truncations); default never. */
  limit?: number;
}

/** FaultRecord is one injected fault, for logs and assertions. */
export interface FaultRecord {
  kind: 'flip' | 'truncate';
  connection: number;
  direction: Direction;
  request: string | null;
  /** Offset in the message (from the body start when the rule counts from the body). */
  offset: number;
  /** Bit flipped (0..7), for flips. */
  bit?: number;
}

/** RuleState is an installed rule and how often it acted. */
export interface RuleState {
  rule: FaultRule;
  hits: number;
  /** Per connection+direction: message offset at which the next random flip falls. */
  nextFlip: Map<string, number>;
}

interface Queued {
  data: Buffer;
  due: number;
  end: boolean;
}

const REQUEST_LINE = /^([A-Z]+) (\S+) HTTP\/1\.[01]\r\n/;
/** MAX_QUEUED_BYTES: a pipe stops reading its source while it holds more than this (back-pressure). */
const MAX_QUEUED_BYTES = 1024 * 1024;
/** MAX_SLICE_BYTES: chunks are split this small under a bandwidth limit, so the rate stays smooth. */
const MAX_SLICE_BYTES = 16 * 1024;

/** PipeHost is what a connection needs from its proxy (FaultProxy implements it). */
export interface PipeHost {
  readonly bytes: Record<Direction, number>;
  readonly faults: FaultRecord[];
  readonly requests: string[];
  frameHook(): FrameHook | null;
  paused(d: Direction): boolean;
  delay(d: Direction): number;
  rate(d: Direction): number | null;
  random(): number;
  rules(): RuleState[];
  retire(state: RuleState): void;
  taps(): Tap[];
  nextMessage(): number;
}

/** Connection is one proxied client connection: two pipes, one per direction. */
export class Connection {
  onClose: () => void = () => {};
  readonly info: { id: number; request: string | null; message: number };
  readonly #proxy: PipeHost;
  readonly #up: Pipe;
  readonly #down: Pipe;
  readonly #client: net.Socket;
  readonly #server: net.Socket;
  #closed = false;

  constructor(proxy: PipeHost, id: number, client: net.Socket, server: net.Socket) {
    this.info = { id, request: null, message: 0 };
    this.#proxy = proxy;
    this.#client = client;
    this.#server = server;
    client.setNoDelay(true);
    server.setNoDelay(true);
    this.#up = new Pipe(proxy, this, 'up', client, server);
    this.#down = new Pipe(proxy, this, 'down', server, client);
    for (const s of [client, server]) {
      s.on('error', () => this.destroy()); // a reset on either side ends the whole connection
      s.on('close', () => this.destroy());
    }
  }

  snapshot(): ConnectionInfo {
    return { ...this.info, bodyBytes: { up: this.#up.bodyBytes, down: this.#down.bodyBytes } };
  }

  /** newMessage restarts both directions' counters at a request line. */
  newMessage(request: string): void {
    this.info.request = request;
    this.info.message = this.#proxy.nextMessage();
    this.#proxy.requests.push(request);
    this.#up.restart();
    this.#down.restart();
  }

  sync(): void {
    this.#up.sync();
    this.#down.sync();
  }

  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#up.stop();
    this.#down.stop();
    this.#client.destroy();
    this.#server.destroy();
    this.onClose();
  }
}

/** Pipe forwards one direction of a connection, applying delay, rate, pause and the fault rules. */
class Pipe {
  readonly #proxy: PipeHost;
  readonly #conn: Connection;
  readonly #direction: Direction;
  readonly #src: net.Socket;
  readonly #dst: net.Socket;
  readonly #queue: Queued[] = [];
  #queuedBytes = 0;
  /** Bytes of the current message seen, and where its body starts (-1 until the header block ended). */
  #offset = 0;
  #bodyStart = -1;
  /** The last 3 bytes seen, to find a CRLFCRLF split across chunks. */
  #tail = Buffer.alloc(0);
  #lastDue = 0;
  /** The tap message this pipe's current message is recorded in, per tap. */
  #tapped = new Map<Tap, TapMessage>();
  /** The frame layer rewriting the current message, if it is a stream response and a hook is set. */
  #frames: FrameLayer | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #blocked = false;
  /** A FIN or a truncation is queued: nothing after it is forwarded. */
  #closing = false;
  #ended = false;

  constructor(proxy: PipeHost, conn: Connection, direction: Direction, src: net.Socket, dst: net.Socket) {
    this.#proxy = proxy;
    this.#conn = conn;
    this.#direction = direction;
    this.#src = src;
    this.#dst = dst;
    src.on('data', (chunk: Buffer) => this.#receive(chunk));
    src.on('end', () => {
      if (!this.#closing) this.#enqueue(Buffer.alloc(0), true);
    });
    dst.on('drain', () => {
      this.#blocked = false;
      this.sync();
    });
    this.sync();
  }

  get bodyBytes(): number {
    return this.#bodyStart < 0 ? 0 : this.#offset - this.#bodyStart;
  }

  restart(): void {
    this.#tapped = new Map();
    this.#offset = 0;
    this.#bodyStart = -1;
    this.#tail = Buffer.alloc(0);
    const hook = this.#direction === 'down' && STREAM_REQUEST.test(this.#conn.info.request ?? '') ? this.#proxy.frameHook() : null;
    this.#frames = hook ? new FrameLayer(hook) : null;
  }

  /** sync reads from the source only while this direction is not paused and the destination keeps up. */
  sync(): void {
    if (this.#ended) return;
    this.#pump();
    this.#flow();
  }

  /** #flow pauses or resumes reading the source. */
  #flow(): void {
    if (this.#ended || this.#closing) return;
    if (this.#proxy.paused(this.#direction) || this.#blocked || this.#queuedBytes > MAX_QUEUED_BYTES) this.#src.pause();
    else this.#src.resume();
  }

  stop(): void {
    this.#ended = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#queue.length = 0;
  }

  #receive(chunk: Buffer): void {
    if (this.#ended || this.#closing) return;
    if (this.#direction === 'up') {
      const m = REQUEST_LINE.exec(chunk.subarray(0, 2048).toString('latin1'));
      if (m) this.#conn.newMessage(`${m[1]} ${m[2]}`);
    }
    if (this.#frames) {
      try {
        chunk = this.#frames.push(chunk);
      } catch {
        // An undecodable stream from the server: end the connection, as a replica would on it.
        this.#conn.destroy();
        return;
      }
      if (chunk.length === 0) return;
    }
    const start = this.#offset;
    this.#scanHeaderEnd(chunk, start);
    this.#offset += chunk.length;
    this.#recordTap(chunk);
    const { data, truncated } = this.#applyRules(chunk, start);
    this.#enqueue(data, truncated);
  }

  #recordTap(chunk: Buffer): void {
    const request = this.#conn.info.request;
    for (const t of this.#proxy.taps()) {
      if (t.stopped || t.direction !== this.#direction || (t.request && !(request !== null && t.request.test(request)))) continue;
      let m = this.#tapped.get(t);
      if (!m) {
        m = { connection: this.#conn.info.id, request, bodyStart: -1, chunks: [], size: 0 };
        t.messages.push(m);
        this.#tapped.set(t, m);
      }
      m.bodyStart = this.#bodyStart;
      if (m.size < t.maxBytes) {
        const part = chunk.subarray(0, t.maxBytes - m.size);
        m.chunks.push(part);
        m.size += part.length;
      }
    }
  }

  /** #scanHeaderEnd notes where the message body starts (after the first CRLFCRLF). */
  #scanHeaderEnd(chunk: Buffer, start: number): void {
    if (this.#bodyStart >= 0) return;
    const joined = Buffer.concat([this.#tail, chunk]);
    const i = joined.indexOf('\r\n\r\n', 0, 'latin1');
    if (i >= 0) this.#bodyStart = start - this.#tail.length + i + 4;
    else this.#tail = joined.subarray(Math.max(0, joined.length - 3));
  }

  /** #applyRules flips and truncates `chunk` (message bytes [start, start + length)) as the rules say. */
  #applyRules(chunk: Buffer, start: number): { data: Buffer; truncated: boolean } {
    let data = chunk;
    let truncated = false;
    const request = this.#conn.info.request;
    for (const state of [...this.#proxy.rules()]) {
      const r = state.rule;
      if (r.direction !== this.#direction || (r.request && !(request !== null && r.request.test(request)))) continue;
      if (r.connection !== undefined && r.connection !== this.#conn.info.id) continue;
      let base = 0;
      if (r.body) {
        if (this.#bodyStart < 0) continue;
        base = this.#bodyStart;
      }
      const lo = start - base;
      const hi = lo + data.length;
      const flip = (at: number) => {
        if (data === chunk) data = Buffer.from(chunk);
        const bit = r.bit ?? Math.floor(this.#proxy.random() * 8);
        data[at - lo]! ^= 1 << bit;
        this.#record(state, { kind: 'flip', offset: at, bit });
      };
      for (const at of r.flipAt ?? []) {
        if (at >= Math.max(lo, 0) && at < hi && this.#live(state)) flip(at);
      }
      if (r.flipPattern && this.#live(state)) {
        const m = new RegExp(r.flipPattern.source, r.flipPattern.flags.replace('g', '')).exec(data.toString('latin1'));
        if (m) {
          const at = m.index + (m[1] === undefined ? 0 : m[0].indexOf(m[1]));
          if (lo + at >= 0) flip(lo + at);
        }
      }
      if (r.flipRate !== undefined) {
        const key = String(this.#conn.info.id);
        let next = state.nextFlip.get(key);
        if (next === undefined || next < Math.max(lo, 0)) next = Math.max(lo, 0) + this.#gap(r.flipRate);
        while (next < hi && this.#live(state)) {
          flip(next);
          next += this.#gap(r.flipRate);
        }
        state.nextFlip.set(key, next);
      }
      if (r.truncateAt !== undefined && r.truncateAt >= Math.max(lo, 0) && r.truncateAt < hi && this.#live(state)) {
        data = data.subarray(0, r.truncateAt - lo);
        truncated = true;
        this.#record(state, { kind: 'truncate', offset: r.truncateAt });
        break;
      }
    }
    return { data, truncated };
  }

  /** #gap draws the distance to the next random flip: geometric with mean 1/rate, at least 1. */
  #gap(rate: number): number {
    return 1 + Math.floor(Math.log(1 - this.#proxy.random()) / Math.log(1 - Math.min(rate, 0.999999)));
  }

  #live(state: RuleState): boolean {
    return state.rule.limit === undefined || state.hits < state.rule.limit;
  }

  #record(state: RuleState, f: Omit<FaultRecord, 'connection' | 'direction' | 'request'>): void {
    state.hits++;
    this.#proxy.faults.push({ connection: this.#conn.info.id, direction: this.#direction, request: this.#conn.info.request, ...f });
    if (!this.#live(state)) this.#proxy.retire(state);
  }

  #enqueue(data: Buffer, end: boolean): void {
    if (this.#ended) return;
    if (end) this.#closing = true;
    const now = Date.now();
    const rate = this.#proxy.rate(this.#direction);
    const slices: Buffer[] = [];
    if (rate === null) slices.push(data);
    else for (let i = 0; i < data.length; i += MAX_SLICE_BYTES) slices.push(data.subarray(i, i + MAX_SLICE_BYTES));
    if (slices.length === 0) slices.push(data);
    slices.forEach((slice, i) => {
      let due = Math.max(now + this.#proxy.delay(this.#direction), this.#lastDue);
      if (rate !== null) due = Math.max(now, this.#lastDue) + (slice.length / rate) * 1000;
      this.#lastDue = due;
      this.#queue.push({ data: slice, due, end: end && i === slices.length - 1 });
      this.#queuedBytes += slice.length;
    });
    if (end) this.#src.pause();
    this.#pump();
    this.#flow();
  }

  #pump(): void {
    if (this.#ended || this.#timer) return;
    while (this.#queue.length > 0 && !this.#proxy.paused(this.#direction) && !this.#blocked) {
      const head = this.#queue[0]!;
      const wait = head.due - Date.now();
      if (wait > 0) {
        this.#timer = setTimeout(() => {
          this.#timer = null;
          this.#pump();
          this.#flow();
        }, wait);
        return;
      }
      this.#queue.shift();
      this.#queuedBytes -= head.data.length;
      this.#proxy.bytes[this.#direction] += head.data.length;
      if (head.end) {
        // A truncation or the source's FIN: pass the last bytes and a FIN on, then drop the connection.
        this.#ended = true;
        this.#src.pause();
        this.#dst.end(head.data, () => this.#conn.destroy());
        return;
      }
      if (!this.#dst.write(head.data)) {
        this.#blocked = true;
        this.#src.pause();
      }
    }
  }
}
