/** A reader of the replication stream (POST /v1/stream) for the tests of both sides of it. */
import { FrameDecoder, type Frame } from '../../shared/frames.ts';

/**
 * FrameStream reads a replication stream (POST /v1/stream) in the background and keeps every decoded
 * frame. `pause()` stops reading from the socket (so the server sees back-pressure) until `resume()`.
 */
export class FrameStream {
  readonly frames: Frame[] = [];
  readonly status: number;
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #decoder = new FrameDecoder();
  #paused: { promise: Promise<void>; resolve: () => void } | null = null;
  #waiters = new Set<() => void>();
  #ended = false;
  #error: unknown = null;
  readonly #abort: AbortController;

  private constructor(status: number, body: ReadableStream<Uint8Array>, abort: AbortController) {
    this.status = status;
    this.#reader = body.getReader();
    this.#abort = abort;
    void this.#pump();
  }

  /** open posts `body` to `${url}/v1/stream`; rejects with the error body on a non-200 answer. */
  static async open(url: string, body: unknown, headers: Record<string, string> = {}): Promise<FrameStream> {
    const abort = new AbortController();
    const res = await fetch(`${url}/v1/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
      signal: abort.signal,
    });
    if (res.status !== 200 || !res.body) throw new Error(`stream answered ${res.status}: ${await res.text()}`);
    return new FrameStream(res.status, res.body, abort);
  }

  get ended(): boolean {
    return this.#ended;
  }

  async #pump(): Promise<void> {
    try {
      for (;;) {
        if (this.#paused) await this.#paused.promise;
        const { done, value } = await this.#reader.read();
        if (done) break;
        for (const f of this.#decoder.push(value)) this.frames.push(f);
        this.#notify();
      }
    } catch (err) {
      if (!this.#abort.signal.aborted) this.#error = err;
    }
    this.#ended = true;
    this.#notify();
  }

  #notify(): void {
    for (const w of this.#waiters) w();
  }

  /**
   * waitFor resolves with the index of the first frame at or after `from` that matches, reading
   * on until it arrives; rejects on timeout or when the stream ends without one.
   */
  waitFor(match: (f: Frame) => boolean, from = 0, timeoutMs = 15_000): Promise<number> {
    return new Promise((resolve, reject) => {
      let i = from;
      const check = () => {
        for (; i < this.frames.length; i++) {
          if (match(this.frames[i]!)) return finish(() => resolve(i));
        }
        if (this.#ended) finish(() => reject(new Error(`stream ended (${String(this.#error ?? 'cleanly')}) before the frame came`)));
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`no matching frame within ${timeoutMs} ms (${this.frames.length} frames)`))), timeoutMs);
      const finish = (f: () => void) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        f();
      };
      this.#waiters.add(check);
      check();
    });
  }

  pause(): void {
    if (this.#paused) return;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.#paused = { promise, resolve };
  }

  resume(): void {
    const p = this.#paused;
    this.#paused = null;
    p?.resolve();
  }

  close(): void {
    this.resume();
    this.#abort.abort();
  }
}
