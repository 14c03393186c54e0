/**
 * PrimaryClient is the replica's one way to talk to its primary: a keep-alive undici pool (requests
 * are pipelined over several connections, never queued behind one another) for forwarded writes,
 * positions, snapshots and the stream. The only replica module that imports undici.
 */
import { Pool, type Dispatcher } from 'undici';
import { EdgeliteError, errorFromBody } from '../shared/errors.ts';
import { SNAPSHOT_DIGEST_HEADER, verifySnapshotDigest } from '../shared/protocol.ts';
import { formatChecksum, parseChecksum, type Position } from '../shared/types.ts';

export interface PrimaryClientOptions {
  url: string;
  /** Bearer token with the rights the replica needs (replicate, and write/read for forwarding). */
  token?: string;
  connections?: number;
  /** Timeout for ordinary requests (not the stream). */
  requestTimeoutMs?: number;
}

export interface ForwardResult {
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

/** SnapshotHead is what a snapshot's headers say, checked against their digest. */
export interface SnapshotHead {
  position: Position;
  databaseId: number;
  pageSize: number;
  /** The image's length in bytes (Content-Length, covered by the digest). */
  length: number;
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

/** DEFAULT_PRIMARY_CONNECTIONS: forwarded writes run concurrently, one per connection. */
export const DEFAULT_PRIMARY_CONNECTIONS = 64;
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export class PrimaryClient {
  readonly url: string;
  readonly #pool: Pool;
  readonly #streamPool: Pool;
  readonly #token: string | undefined;
  readonly #timeout: number;

  constructor(o: PrimaryClientOptions) {
    const u = new URL(o.url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new EdgeliteError('BAD_REQUEST', `primary URL must be http(s), got ${o.url}`);
    }
    this.url = u.origin;
    this.#token = o.token;
    this.#timeout = o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#pool = new Pool(this.url, { connections: o.connections ?? DEFAULT_PRIMARY_CONNECTIONS, pipelining: 1 });
    // The stream and snapshots hold a connection for long: keep them off the request pool.
    this.#streamPool = new Pool(this.url, { connections: 4, bodyTimeout: 0, headersTimeout: this.#timeout });
  }

  #headers(extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { ...extra };
    // A client's own credentials go through (the primary is the authority for its rights); the
    // replica's token is used for its own requests and for clients that sent none.
    if (this.#token && !h.authorization) h.authorization = `Bearer ${this.#token}`;
    return h;
  }

  /** forward sends an API request to the primary and returns its status, JSON body and headers. */
  async forward(method: 'POST' | 'PUT' | 'GET', path: string, body?: string, headers: Record<string, string> = {}): Promise<ForwardResult> {
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#pool.request({
        method,
        path,
        body,
        headers: this.#headers(body ? { 'content-type': 'application/json', ...headers } : headers),
        headersTimeout: this.#timeout,
        bodyTimeout: this.#timeout,
      });
    } catch (err) {
      // Whether the primary may have received it matters to a client deciding to resend a write.
      const code = (err as { code?: string }).code ?? '';
      const outcome = /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|UND_ERR_CONNECT_TIMEOUT/.test(code) ? 'not-sent' : 'unknown';
      throw new EdgeliteError('PRIMARY_UNAVAILABLE', `primary ${this.url} unreachable: ${(err as Error).message}`, { cause: err, details: { outcome } });
    }
    const text = await res.body.text();
    let parsed: unknown = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        throw new EdgeliteError('PRIMARY_UNAVAILABLE', `primary answered ${res.statusCode} with a non-JSON body`, { cause: err });
      }
    }
    return { status: res.statusCode, body: parsed, headers: flatHeaders(res.headers) };
  }

  /** position asks the primary for a database's current position (strong reads). */
  async position(db: string): Promise<Position> {
    const r = await this.forward('GET', `/v1/db/${encodeURIComponent(db)}`);
    if (r.status !== 200) throw errorFromBody(r.body, r.status);
    const b = r.body as { generation: number; txid: number; checksum: string };
    return { generation: b.generation, txid: b.txid, checksum: parseChecksum(b.checksum) };
  }

  /**
   * snapshot downloads a consistent image of a database into `sink`, and returns what its headers say
   * (position, database id, page size, length). The position headers must match their digest and the body its announced length (else
   * CORRUPT_CHANGESET); the body is left unread and closed on any error, `sink`'s included.
   * `onProgress` is called for every chunk received (a large download is alive while bytes flow).
   */
  async snapshot(db: string, sink: SnapshotSink, signal?: AbortSignal, onProgress?: () => void): Promise<SnapshotHead> {
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#streamPool.request({ method: 'GET', path: `/v1/db/${encodeURIComponent(db)}/snapshot`, headers: this.#headers(), signal });
    } catch (err) {
      throw new EdgeliteError('PRIMARY_UNAVAILABLE', `snapshot of ${db} failed: ${(err as Error).message}`, { cause: err });
    }
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      throw errorFromBody(safeJson(text), res.statusCode);
    }
    const h = flatHeaders(res.headers);
    const length = Number(h['content-length']);
    let off = 0;
    /** The sink's own error, passed on as it is (only network errors become PRIMARY_UNAVAILABLE). */
    let sinkError: unknown = null;
    const toSink = (p: Promise<void>) => p.catch((err: unknown) => Promise.reject((sinkError = err)));
    try {
      verifySnapshotDigest(
        {
          generation: Number(h['edgelite-generation']),
          txid: Number(h['edgelite-txid']),
          checksum: h['edgelite-checksum'] ?? '',
          databaseId: Number(h['edgelite-database-id']),
          pageSize: Number(h['edgelite-page-size']),
          length,
        },
        h[SNAPSHOT_DIGEST_HEADER.toLowerCase()],
      );
      const head: SnapshotHead = {
        position: {
          generation: Number(h['edgelite-generation']),
          txid: Number(h['edgelite-txid']),
          checksum: parseChecksum(h['edgelite-checksum'] ?? ''),
        },
        databaseId: Number(h['edgelite-database-id']),
        pageSize: Number(h['edgelite-page-size']),
        length,
      };
      await toSink(sink.open(head));
      for await (const chunk of res.body) {
        const c = chunk as Uint8Array;
        if (off + c.byteLength > length) throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot of ${db} is longer than announced`);
        await toSink(sink.write(c));
        off += c.byteLength;
        onProgress?.();
      }
      if (off !== length) throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot of ${db} was cut at ${off} of ${length} bytes`);
      return head;
    } catch (err) {
      res.body.destroy();
      if (err === sinkError || err instanceof EdgeliteError || signal?.aborted) throw err;
      throw new EdgeliteError('PRIMARY_UNAVAILABLE', `snapshot of ${db} failed at ${off} of ${length} bytes: ${(err as Error).message}`, { cause: err });
    }
  }

  /** openStream posts positions and returns the never-ending frame body. */
  async openStream(databases: string[] | '*', positions: Record<string, Position | null>, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const body = JSON.stringify({
      databases,
      deltas: true,
      positions: Object.fromEntries(
        Object.entries(positions).map(([k, p]) => [k, p && { generation: p.generation, txid: p.txid, checksum: formatChecksum(p.checksum) }]),
      ),
    });
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#streamPool.request({
        method: 'POST',
        path: '/v1/stream',
        body,
        headers: this.#headers({ 'content-type': 'application/json' }),
        signal,
        bodyTimeout: 0,
      });
    } catch (err) {
      throw new EdgeliteError('PRIMARY_UNAVAILABLE', `stream to ${this.url} failed: ${(err as Error).message}`, { cause: err });
    }
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      throw errorFromBody(safeJson(text), res.statusCode);
    }
    return res.body as AsyncIterable<Uint8Array>;
  }

  async close(): Promise<void> {
    await Promise.all([this.#pool.destroy(), this.#streamPool.destroy()]);
  }
}

function flatHeaders(h: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null; // not JSON: errorFromBody falls back to the status
  }
}
