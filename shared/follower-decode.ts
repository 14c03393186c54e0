/**
 * The follower core's pure parts: change sets as the stream carries them (plain or delta), the
 * reconnect delay, and reading either kind of stream body. Worker-safe.
 */
import { decodeChangeSet } from './changeset.ts';
import { decodeDeltaChangeSet, isDeltaChangeSet } from './changeset-delta.ts';
import type { StreamBody } from './follower-port.ts';
import type { ChangeSet } from './types.ts';

/** StoredPage returns the replica's committed image of a page, or null if it has none. */
export type StoredPage = (pgno: number) => Uint8Array | null;

/**
 * decodeStreamChangeSet decodes a change set from the stream. A delta one is rebuilt against the pages
 * it changes, taken from `pending` (decoded change sets of the batch not yet applied, newest first) or
 * else from `stored`; the shared decoder checks each base's hash and throws CHECKSUM_MISMATCH with
 * divergence `delta-base` when the replica's page is not the one the primary encoded against, so a
 * replica that is not where the primary thinks can never build a wrong page (docs/FORMAT.md).
 */
export function decodeStreamChangeSet(bytes: Uint8Array, pending: readonly ChangeSet[], stored: StoredPage): ChangeSet {
  if (!isDeltaChangeSet(bytes)) return decodeChangeSet(bytes);
  return decodeDeltaChangeSet(bytes, (pgno) => {
    for (let i = pending.length - 1; i >= 0; i--) {
      const hit = pending[i]!.pages.find((p) => p.pgno === pgno);
      if (hit) return hit.data;
    }
    return stored(pgno);
  });
}

/**
 * backoffDelayMs is the wait before reconnect `attempt` (0 for the first after a success): a base of
 * min·2^attempt capped at max, and a delay drawn uniformly from [base/2, base], so replicas that lost
 * their primary together do not reconnect in step and none retries in a tight loop.
 */
export function backoffDelayMs(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(0, attempt), 30));
  return base / 2 + random() * (base / 2);
}

/**
 * readChunks reads a stream body of either kind, and ends with `signal`'s reason as soon as it aborts,
 * even if the body itself ignores the signal (a hung source must not hang the follower).
 */
export async function* readChunks(body: StreamBody, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  let rejectAborted: (err: unknown) => void = () => {};
  const aborted = new Promise<never>((_, reject) => (rejectAborted = reject));
  aborted.catch(() => {}); // observed below; never an unhandled rejection
  const onAbort = () => rejectAborted(signal.reason);
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  const it = isReadableStream(body) ? readerIterator(body) : body[Symbol.asyncIterator]();
  try {
    for (;;) {
      const r = await Promise.race([it.next(), aborted]);
      if (r.done) return;
      yield r.value;
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    void it.return?.()?.catch(() => {});
  }
}

/** untilAborted settles like `promise`, or rejects with `signal`'s reason once it aborts, whichever is first. */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/**
 * bodyChunks reads a response body of either kind (a fetch ReadableStream, Node's async iterable);
 * stopping early cancels it (the connection is dropped on purpose: nothing to report).
 */
export async function* bodyChunks(body: StreamBody): AsyncGenerator<Uint8Array> {
  if (!isReadableStream(body)) {
    yield* body;
    return;
  }
  const it = readerIterator(body);
  let done = false;
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) {
        done = true;
        return;
      }
      yield r.value;
    }
  } finally {
    if (!done) void it.return?.();
  }
}

function isReadableStream(body: StreamBody): body is ReadableStream<Uint8Array> {
  return typeof (body as ReadableStream<Uint8Array>).getReader === 'function';
}

function readerIterator(body: ReadableStream<Uint8Array>): AsyncIterator<Uint8Array> {
  const reader = body.getReader();
  return {
    async next() {
      const { done, value } = await reader.read();
      return done ? { done: true, value: undefined } : { done: false, value };
    },
    async return() {
      await reader.cancel().catch(() => {});
      return { done: true, value: undefined };
    },
  };
}
