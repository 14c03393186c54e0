/**
 * FaultProxy is a TCP proxy on 127.0.0.1:0 between a client (a replica) and a server (the primary) that
 * injects the faults the reliability tests need: per-direction delay and bandwidth, pause/resume, cut
 * (destroy both sockets), refusing new connections, truncating a message after N bytes, and bit flips
 * at chosen offsets or at seeded-random ones. It counts the bytes it forwards and records every fault it
 * injected, so a failing run can say exactly what was done and be replayed from its seed.
 *
 * Directions: `up` is client → server (requests), `down` is server → client (responses: the replication
 * stream, snapshots).
 *
 * Offsets are counted per HTTP message: when an upstream chunk starts with an HTTP/1.x request line the
 * proxy notes the request (`POST /v1/stream`) and restarts the counters of both directions. Without
 * pipelining (undici's default, and what PrimaryClient uses) every byte that then comes down is the
 * response to that request. With `body: true` a rule counts from the end of the message's header block
 * (the first CRLFCRLF), so offset 0 is the first body byte (for a chunked response, the first chunk-size
 * line). The request-line sniffing is deliberately simple: it is a test tool, not an HTTP parser.
 *
 * Above the bytes, `frames(hook)` rewrites the replication stream frame by frame (proxy-frames.ts), and
 * `requests` lists every request line seen, so a test can count snapshot downloads and reconnects.
 */
import net from 'node:net';
import { prng } from '../helpers.ts';
import type { FrameHook } from './proxy-frames.ts';
import { Connection, type ConnectionInfo, type Direction, type FaultRecord, type FaultRule, type PipeHost, type RuleState } from './proxy-pipe.ts';
import { Tap } from './proxy-tap.ts';

export { type ConnectionInfo, type Direction, type FaultRecord, type FaultRule } from './proxy-pipe.ts';
export { type FrameHook } from './proxy-frames.ts';
export { Tap, type TapMessage, tapBytes } from './proxy-tap.ts';

export interface ProxyTarget {
  host: string;
  port: number;
}

export interface FaultProxyOptions {
  /** Where connections go: `{host, port}` or an `http://host:port` URL. */
  target: ProxyTarget | string;
  /** Seed of the PRNG that picks random flip offsets and bits. Default: random (read it from `seed`). */
  seed?: number;
}

export class FaultProxy implements PipeHost {
  readonly seed: number;
  readonly target: ProxyTarget;
  /** Bytes forwarded per direction, over all connections. */
  readonly bytes: Record<Direction, number> = { up: 0, down: 0 };
  /** Every fault injected, in order. */
  readonly faults: FaultRecord[] = [];
  /** Every request line seen (`POST /v1/stream`), in order, over all connections. */
  readonly requests: string[] = [];
  /** Connections accepted (including refused ones) and cut by `cut()`. */
  connections = 0;
  cuts = 0;
  readonly #server: net.Server;
  readonly #random: () => number;
  readonly #conns = new Set<Connection>();
  readonly #rules: RuleState[] = [];
  readonly #taps: Tap[] = [];
  readonly #delay: Record<Direction, number> = { up: 0, down: 0 };
  readonly #rate: Record<Direction, number | null> = { up: null, down: null };
  readonly #paused: Record<Direction, boolean> = { up: false, down: false };
  #frameHook: FrameHook | null = null;
  #refusing = false;
  #port = 0;
  #messages = 0;

  private constructor(options: FaultProxyOptions) {
    this.target = typeof options.target === 'string' ? targetOf(options.target) : options.target;
    this.seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
    this.#random = prng(this.seed);
    // Half-open sockets, so a FIN is passed on after the bytes queued before it, not instead of them.
    this.#server = net.createServer({ allowHalfOpen: true }, (socket) => this.#accept(socket));
  }

  /** start listens on 127.0.0.1:0 and resolves once the port is known. */
  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const proxy = new FaultProxy(options);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject);
      proxy.#server.listen(0, '127.0.0.1', () => resolve());
    });
    proxy.#port = (proxy.#server.address() as net.AddressInfo).port;
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** active is the number of open proxied connections. */
  get active(): number {
    return this.#conns.size;
  }

  /** live lists the open connections, oldest first. */
  live(): ConnectionInfo[] {
    return [...this.#conns].map((c) => c.snapshot());
  }

  /** setDelay holds every chunk in `direction` for `ms` before forwarding it (order is kept). */
  setDelay(direction: Direction, ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`delay must be >= 0 ms, got ${ms}`);
    this.#delay[direction] = ms;
  }

  /** setRate limits each connection's `direction` to `bytesPerSecond` (null: unlimited). */
  setRate(direction: Direction, bytesPerSecond: number | null): void {
    if (bytesPerSecond !== null && !(bytesPerSecond > 0)) throw new RangeError(`rate must be > 0 bytes/s, got ${bytesPerSecond}`);
    this.#rate[direction] = bytesPerSecond;
  }

  /** pause stops forwarding (and reading) in one or both directions, on current and new connections. */
  pause(direction?: Direction): void {
    for (const d of directions(direction)) this.#paused[d] = true;
    for (const c of this.#conns) c.sync();
  }

  resume(direction?: Direction): void {
    for (const d of directions(direction)) this.#paused[d] = false;
    for (const c of this.#conns) c.sync();
  }

  isPaused(direction: Direction): boolean {
    return this.#paused[direction];
  }

  /** cut destroys both sockets of every open connection (the peers see a reset). */
  cut(): number {
    const n = this.#conns.size;
    for (const c of [...this.#conns]) c.destroy();
    this.cuts += n;
    return n;
  }

  /** refuse makes new connections close at once, as a dead primary's port would (until refuse(false)). */
  refuse(on = true): void {
    this.#refusing = on;
  }

  /** addRule installs a fault rule and returns a function that removes it. */
  addRule(rule: FaultRule): () => void {
    if (rule.flipRate !== undefined && !(rule.flipRate > 0 && rule.flipRate <= 1)) {
      throw new RangeError(`flipRate must be in (0, 1], got ${rule.flipRate}`);
    }
    if (rule.truncateAt !== undefined && !(Number.isSafeInteger(rule.truncateAt) && rule.truncateAt >= 0)) {
      throw new RangeError(`truncateAt must be a byte offset, got ${rule.truncateAt}`);
    }
    if (rule.bit !== undefined && !(Number.isInteger(rule.bit) && rule.bit >= 0 && rule.bit <= 7)) {
      throw new RangeError(`bit must be 0..7, got ${rule.bit}`);
    }
    for (const o of rule.flipAt ?? []) {
      if (!(Number.isSafeInteger(o) && o >= 0)) throw new RangeError(`flipAt offsets must be byte offsets, got ${o}`);
    }
    const state: RuleState = { rule, hits: 0, nextFlip: new Map() };
    this.#rules.push(state);
    return () => {
      const i = this.#rules.indexOf(state);
      if (i >= 0) this.#rules.splice(i, 1);
    };
  }

  /** tap starts recording matching messages in `direction` (original bytes, up to maxBytes each). */
  tap(direction: Direction, request?: RegExp, maxBytes = 64 * 1024 * 1024): Tap {
    const t = new Tap(direction, request, maxBytes);
    this.#taps.push(t);
    return t;
  }

  /**
   * frames passes every frame of the stream responses that start from now on through `hook` and
   * returns a function that removes it (one hook at a time).
   */
  frames(hook: FrameHook): () => void {
    this.#frameHook = hook;
    return () => {
      if (this.#frameHook === hook) this.#frameHook = null;
    };
  }

  /** count is how many request lines seen so far match `request`. */
  count(request: RegExp): number {
    return this.requests.filter((r) => request.test(r)).length;
  }

  clearRules(): void {
    this.#rules.length = 0;
  }

  /** close stops listening and destroys every connection. */
  async close(): Promise<void> {
    this.clearRules();
    for (const c of [...this.#conns]) c.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: net.Socket): void {
    this.connections++;
    if (this.#refusing) {
      client.destroy();
      return;
    }
    const conn = new Connection(this, this.connections, client, net.connect({ port: this.target.port, host: this.target.host, allowHalfOpen: true }));
    this.#conns.add(conn);
    conn.onClose = () => this.#conns.delete(conn);
  }

  // The internals below are what a Connection needs from its proxy.

  /** @internal */ frameHook(): FrameHook | null {
    return this.#frameHook;
  }

  /** @internal */ paused(d: Direction): boolean {
    return this.#paused[d];
  }

  /** @internal */ delay(d: Direction): number {
    return this.#delay[d];
  }

  /** @internal */ rate(d: Direction): number | null {
    return this.#rate[d];
  }

  /** @internal */ random(): number {
    return this.#random();
  }

  /** @internal */ rules(): RuleState[] {
    return this.#rules;
  }

  /** @internal */ nextMessage(): number {
    return ++this.#messages;
  }

  /** @internal */ taps(): Tap[] {
    return this.#taps;
  }

  /** @internal */ retire(state: RuleState): void {
    const i = this.#rules.indexOf(state);
    if (i >= 0) this.#rules.splice(i, 1);
  }
}

function directions(d: Direction | undefined): Direction[] {
  return d ? [d] : ['up', 'down'];
}

function targetOf(url: string): ProxyTarget {
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)) };
}
