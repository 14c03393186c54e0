/**
 * Request bodies for the HTTP routes (shared/http.ts): bounded reads (PAYLOAD_TOO_LARGE past the bound,
 * on the bytes received), JSON or msgpack, from Node's IncomingMessage when under @hono/node-server or
 * Node directly (replica/query-fast-path.ts), else from the web body. Worker-safe: no Node imports.
 */
import type { Context } from 'hono';
import { EdgeliteError } from './errors.ts';
import { parseExactJson, parseMsgpackBody } from './exact-json.ts';
import { concatBytes } from './types.ts';

/** MSGPACK_TYPES: the content types (and Accept values) that mean msgpack. */
export const MSGPACK_TYPES = /application\/(x-)?msgpack/i;

/**
 * readJsonBody reads a request body of at most `maxBytes` (PAYLOAD_TOO_LARGE past it, measured on the
 * bytes actually received, not only the declared length): JSON with a JSON content type (or none), or
 * msgpack with `Content-Type: application/msgpack`. Integers stay exact either way (exact-json.ts,
 * README.md#http-api); re-send a body with stringifyRequestJson, not JSON.stringify.
 */
export async function readJsonBody(c: Context, maxBytes: number): Promise<unknown> {
  const msgpack = checkBodyHeaders(c.req.header('content-type'), c.req.header('content-length'), maxBytes);
  const incoming = nodeIncoming(c);
  return decodeBody(incoming ? await readIncoming(incoming, maxBytes) : await readWebBody(c, maxBytes), msgpack);
}

/** readNodeJsonBody is readJsonBody for a Node request served without hono (replica/query-fast-path.ts). */
export function readNodeJsonBody(incoming: NodeIncoming & { readonly headers: Readonly<Record<string, string | string[] | undefined>> }, maxBytes: number): Promise<unknown> {
  const h = incoming.headers;
  let msgpack: boolean;
  try {
    msgpack = checkBodyHeaders(h['content-type'] as string | undefined, h['content-length'] as string | undefined, maxBytes);
  } catch (err) {
    return Promise.reject(err as Error);
  }
  // No async function here: one promise (the body's) per request instead of two.
  return readIncoming(incoming, maxBytes).then((bytes) => decodeBody(bytes, msgpack));
}

/** checkBodyHeaders refuses a body type we do not read or a declared length past the bound; true: msgpack. */
function checkBodyHeaders(type: string | undefined, length: string | undefined, maxBytes: number): boolean {
  const msgpack = type !== undefined && MSGPACK_TYPES.test(type);
  if (type && !msgpack && !/^application\/json\b/i.test(type)) {
    throw new EdgeliteError('UNSUPPORTED_MEDIA_TYPE', `content-type must be application/json or application/msgpack, got ${type.slice(0, 80)}`);
  }
  if (Number(length ?? '0') > maxBytes) throw tooLarge(maxBytes);
  return msgpack;
}

function decodeBody(bytes: Uint8Array, msgpack: boolean): unknown {
  return msgpack ? parseMsgpack(bytes) : parseJson(bytes);
}

/**
 * drainNodeBody reads and drops what is left of a Node request body a route refused before reading it,
 * up to `maxBytes`, as closeAfterRefusedBody does under hono; false: the connection must close (past
 * the limit, or the body could not be read).
 */
export async function drainNodeBody(incoming: NodeIncoming, maxBytes: number): Promise<boolean> {
  if (incoming.readableEnded === true) return true;
  if (incoming.destroyed === true) return false;
  try {
    await readIncoming(incoming, maxBytes);
    return true;
  } catch {
    return false;
  }
}

/**
 * NodeIncoming is the part of Node's IncomingMessage readIncoming uses, typed here so that this file
 * stays free of Node imports (the Worker bundles it).
 */
export interface NodeIncoming {
  on(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  off(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
  off(event: 'end', listener: () => void): unknown;
  off(event: 'error', listener: (err: Error) => void): unknown;
  pause(): unknown;
  /** True once 'end' was emitted: the whole body was read. */
  readonly readableEnded?: boolean;
  /** True once the request was destroyed (the client went away): no more data or 'end' will come. */
  readonly destroyed?: boolean;
}

/**
 * nodeIncoming returns the Node request under @hono/node-server (`c.env.incoming`), or null elsewhere.
 * Reading it directly skips the web ReadableStream the server would otherwise build around it.
 */
export function nodeIncoming(c: Context): NodeIncoming | null {
  const incoming = (c.env as { incoming?: Partial<NodeIncoming> } | undefined)?.incoming;
  return incoming && typeof incoming.on === 'function' && typeof incoming.off === 'function' && typeof incoming.pause === 'function' ? (incoming as NodeIncoming) : null;
}

/**
 * readIncoming collects a Node request body of at most `maxBytes`. Past the limit it stops listening
 * and pauses the request rather than destroying it: destroying would close the socket before the 413
 * is written (the answer then carries `Connection: close`, see closeAfterRefusedBody).
 */
function readIncoming(incoming: NodeIncoming, maxBytes: number): Promise<Uint8Array> {
  return new Promise<Uint8Array>((resolve, reject) => new BodyCollector(incoming, maxBytes, resolve, reject));
}

/**
 * BodyCollector is readIncoming's listeners. They are assigned in the constructor, not declared as
 * `const f = () => ...`: tsx compiles with keepNames, which gives every named closure an
 * Object.defineProperty call when it is made (~1 µs each, per request; docs/BENCHMARKS.md#p2-after-the-read-fast-path).
 */
class BodyCollector {
  readonly #chunks: Uint8Array[] = [];
  #size = 0;
  readonly #incoming: NodeIncoming;
  readonly onData: (chunk: Uint8Array) => void;
  readonly onEnd: () => void;
  readonly onError: (err: Error) => void;

  constructor(incoming: NodeIncoming, maxBytes: number, resolve: (bytes: Uint8Array) => void, reject: (err: EdgeliteError) => void) {
    this.#incoming = incoming;
    this.onData = (chunk) => {
      this.#size += chunk.byteLength;
      if (this.#size > maxBytes) {
        this.#stop();
        incoming.pause();
        reject(tooLarge(maxBytes));
        return;
      }
      this.#chunks.push(chunk);
    };
    // After 'end' no more data comes and a late 'error' only rejects a settled promise: the listeners
    // stay (removing them would be work for nothing on every read).
    this.onEnd = () => resolve(concatBytes(this.#chunks));
    this.onError = (err) => {
      this.#stop();
      reject(new EdgeliteError('BAD_REQUEST', `request body could not be read: ${err.message}`, { cause: err }));
    };
    incoming.on('data', this.onData);
    incoming.on('end', this.onEnd);
    incoming.on('error', this.onError);
  }

  /** Only our own listeners: the server keeps its own (it marks the request ended on 'end'). */
  #stop(): void {
    this.#incoming.off('data', this.onData);
    this.#incoming.off('end', this.onEnd);
    this.#incoming.off('error', this.onError);
  }
}

async function readWebBody(c: Context, maxBytes: number): Promise<Uint8Array> {
  const body = c.req.raw.body;
  if (!body) throw new EdgeliteError('BAD_REQUEST', 'request body is empty');
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw tooLarge(maxBytes);
    }
    chunks.push(value);
  }
  return concatBytes(chunks);
}


/** UTF8 decodes request bodies: one decoder (each decode() call stands alone); making one per body cost ~3% of a point read. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

function parseJson(bytes: Uint8Array): unknown {
  try {
    return parseExactJson(UTF8.decode(bytes));
  } catch (err) {
    if (err instanceof EdgeliteError) throw err; // an integer outside int64, say
    throw new EdgeliteError('BAD_REQUEST', `body is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

function parseMsgpack(bytes: Uint8Array): unknown {
  if (bytes.length === 0) throw new EdgeliteError('BAD_REQUEST', 'request body is empty');
  try {
    return parseMsgpackBody(bytes);
  } catch (err) {
    throw new EdgeliteError('BAD_REQUEST', `body is not valid msgpack: ${(err as Error).message}`, { cause: err });
  }
}

function tooLarge(maxBytes: number): EdgeliteError {
  return new EdgeliteError('PAYLOAD_TOO_LARGE', `request body is larger than ${maxBytes} bytes`, { details: { maxBytes } });
}
