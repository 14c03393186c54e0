/**
 * One stream session of the follower core (shared/follower.ts, whose doc comment states the rules):
 * post the positions, read frames until the stream fails or the session is aborted, and the watchdog
 * that ends a silent or stalled session. Worker-safe.
 */
import { EdgeliteError } from './errors.ts';
import { readChunks, untilAborted } from './follower-decode.ts';
import type { StreamSource } from './follower-port.ts';
import { FrameDecoder, type Frame } from './frames.ts';
import type { Position } from './types.ts';

/** MIN_FRAME_BYTES_PER_SEC: below this rate, bytes without a whole frame count as a stalled stream. */
export const MIN_FRAME_BYTES_PER_SEC = 64 * 1024;

/**
 * StreamWatchdog holds the contact clocks: when the primary last sent anything (any session,
 * lastContactMs), and for the current session when bytes last arrived, when a whole frame was last
 * decoded and the bytes since.
 */
export class StreamWatchdog {
  #lastBytesAt = 0;
  #lastFrameAt = 0;
  #bytesSinceFrame = 0;
  #lastContactAt = 0;

  /** lastContactMs is how long ago the primary last sent anything; infinite before the first contact. */
  get lastContactMs(): number {
    return this.#lastContactAt === 0 ? Number.POSITIVE_INFINITY : Date.now() - this.#lastContactAt;
  }

  /** begin starts a session's clocks (no contact counted: the primary has not answered yet). */
  begin(): void {
    this.#lastBytesAt = Date.now();
    this.#lastFrameAt = this.#lastBytesAt;
    this.#bytesSinceFrame = 0;
  }

  /** contact records that the primary answered (the stream's response arrived). */
  contact(): void {
    this.#lastContactAt = Date.now();
  }

  /** alive records bytes from the primary: contact, and with `frame` (a whole frame, snapshot bytes) the frame clock. */
  alive(frame: boolean): void {
    this.#lastBytesAt = Date.now();
    this.#lastContactAt = this.#lastBytesAt;
    if (frame) {
      this.#lastFrameAt = this.#lastBytesAt;
      this.#bytesSinceFrame = 0;
    }
  }

  /** partial records a chunk that completed no frame. */
  partial(bytes: number): void {
    this.#bytesSinceFrame += bytes;
  }

  /** check returns why the session is dead (silent, or stalled below MIN_FRAME_BYTES_PER_SEC), or null. */
  check(heartbeatTimeoutMs: number, now = Date.now()): EdgeliteError | null {
    if (now - this.#lastBytesAt > heartbeatTimeoutMs) return new EdgeliteError('PRIMARY_UNAVAILABLE', 'no heartbeat from the primary');
    const sinceFrame = now - this.#lastFrameAt;
    if (sinceFrame > heartbeatTimeoutMs && this.#bytesSinceFrame < (MIN_FRAME_BYTES_PER_SEC * sinceFrame) / 1000) {
      return new EdgeliteError('PRIMARY_UNAVAILABLE', `no whole frame from the primary for ${sinceFrame} ms`);
    }
    return null;
  }
}

/** SessionHooks is what a session needs of the core. */
export interface SessionHooks {
  source: StreamSource;
  watchdog: StreamWatchdog;
  heartbeatTimeoutMs: number;
  /** How often the watchdog looks (and `tick` runs), in ms. */
  tickMs: number;
  /** request is the stream request, made once the session starts. */
  request(): { databases: '*' | string[]; positions: Record<string, Position | null> };
  /** opened hears that the primary answered the request (the body follows). */
  opened(): void;
  /** frames handles one chunk's whole frames; what it throws ends the session. */
  frames(frames: Frame[]): Promise<void>;
  /** tick runs at every watchdog look. */
  tick(): void;
}

/**
 * runStreamSession runs one session until it ends, and throws why: the abort's reason when `abort`
 * aborted (the watchdog, a restart asked by the core; `passThrough` errors, the core's own restarts,
 * are thrown as they are), else the stream's failure. It never returns.
 */
export async function runStreamSession(h: SessionHooks, abort: AbortController, passThrough: (err: unknown) => boolean): Promise<never> {
  const watchdog = setInterval(() => {
    const dead = h.watchdog.check(h.heartbeatTimeoutMs);
    if (dead) abort.abort(dead);
    h.tick();
  }, h.tickMs);
  h.watchdog.begin();
  try {
    const { databases, positions } = h.request();
    const body = await untilAborted(h.source.openStream(databases, positions, abort.signal), abort.signal);
    h.opened();
    h.watchdog.contact();
    const decoder = new FrameDecoder();
    for await (const chunk of readChunks(body, abort.signal)) {
      const frames = decoder.push(chunk);
      h.watchdog.alive(frames.length > 0);
      if (frames.length === 0) h.watchdog.partial(chunk.byteLength);
      await h.frames(frames);
    }
    decoder.end();
    throw new EdgeliteError('PRIMARY_UNAVAILABLE', 'the primary closed the stream');
  } catch (err) {
    if (abort.signal.aborted && !passThrough(err)) {
      const reason: unknown = abort.signal.reason;
      throw reason instanceof Error ? reason : new EdgeliteError('PRIMARY_UNAVAILABLE', 'stream aborted');
    }
    throw err;
  } finally {
    clearInterval(watchdog);
    abort.abort();
  }
}

/** Sleeper is the wait between sessions, which wake() cuts short (a new followed list, a stop, the primary moved). */
export class Sleeper {
  #wake: (() => void) | null = null;

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }

  wake(): void {
    this.#wake?.();
  }
}
