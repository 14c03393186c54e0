/**
 * WorkerPrimaryClient is the Worker replica's one way to talk to its primary, over the runtime's fetch:
 * the replication stream, snapshots, forwarded writes and position look-ups. Errors are EdgeliteError
 * (PRIMARY_UNAVAILABLE when the primary cannot be reached, the primary's own code otherwise).
 */
import { SNAPSHOT_DIGEST_HEADER, verifySnapshotDigest } from '../../../shared/protocol.ts';
import { EdgeliteError, errorFromBody } from '../../../shared/errors.ts';
import { formatChecksum, parseChecksum, type Position } from '../../../shared/types.ts';

/** SnapshotHead: a snapshot's digest-checked headers, in the Node client's shape (one shared client will serve both). */
export interface SnapshotHead { position: Position; databaseId: number; pageSize: number; length: number }

/** SnapshotSink takes a download as it arrives (open with the head, then each chunk, each awaited), as the Node client's does. */
export interface SnapshotSink { open(head: SnapshotHead): Promise<void>; write(chunk: Uint8Array): Promise<void> }

export interface Forwarded {
  status: number;
  body: unknown;
}

export class WorkerPrimaryClient {
  readonly url: string;
  readonly #token: string | undefined;

  constructor(url: string, token: string | undefined) {
    this.url = url.replace(/\/+$/, '');
    this.#token = token;
  }

  #headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.#token ? { ...extra, authorization: `Bearer ${this.#token}` } : extra;
  }

  async #fetch(path: string, init: RequestInit, what: string): Promise<Response> {
    try {
      return await fetch(`${this.url}${path}`, init);
    } catch (err) {
      throw new EdgeliteError('PRIMARY_UNAVAILABLE', `${what}: primary ${this.url} unreachable: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * openStream posts the followed databases' positions and returns the never-ending frame body. It asks
   * for delta change sets (live change sets carry only the bytes changed since each page's previous
   * image; the follower rebuilds them from its stored pages), as the Node replica does.
   */
  async openStream(databases: '*' | string[], positions: Record<string, Position | null>, signal: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const body = JSON.stringify({
      databases,
      deltas: true,
      positions: Object.fromEntries(
        Object.entries(positions).map(([k, p]) => [k, p && { generation: p.generation, txid: p.txid, checksum: formatChecksum(p.checksum) }]),
      ),
    });
    const res = await this.#fetch('/v1/stream', { method: 'POST', body, headers: this.#headers({ 'content-type': 'application/json' }), signal }, 'stream');
    if (res.status !== 200 || !res.body) throw await failure(res);
    return res.body;
  }

  /**
   * snapshot downloads a snapshot into `sink`: the headers checked against their digest and handed to
   * `sink.open`, then the body chunk by chunk (`onProgress` after each), no longer and no shorter than
   * announced (CORRUPT_CHANGESET). The body is cancelled on any error, the sink's included.
   */
  async snapshot(db: string, sink: SnapshotSink, signal?: AbortSignal, onProgress?: () => void): Promise<SnapshotHead> {
    const res = await this.#fetch(`/v1/db/${encodeURIComponent(db)}/snapshot`, { headers: this.#headers(), signal }, `snapshot of ${db}`);
    if (res.status !== 200 || !res.body) throw await failure(res);
    const reader = res.body.getReader();
    let off = 0;
    let length = 0;
    try {
      const head = snapshotHead(db, res.headers);
      length = head.length;
      await sink.open(head);
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (off + value.byteLength > length) throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot of ${db} is longer than announced`);
        await sink.write(value);
        off += value.byteLength;
        onProgress?.();
      }
      if (off !== length) throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot of ${db} was cut at ${off} of ${length} bytes`);
      return head;
    } catch (err) {
      await reader.cancel().catch(() => {});
      if (err instanceof EdgeliteError || signal?.aborted) throw err;
      throw new EdgeliteError('PRIMARY_UNAVAILABLE', `snapshot of ${db} failed at ${off} of ${length} bytes: ${(err as Error).message}`, { cause: err });
    } finally {
      reader.releaseLock();
    }
  }

  /** forward sends an API request to the primary and returns its status and JSON body. */
  async forward(method: 'GET' | 'POST' | 'PUT', path: string, body?: string): Promise<Forwarded> {
    const headers = this.#headers(body ? { 'content-type': 'application/json' } : {});
    const res = await this.#fetch(path, { method, body, headers }, `${method} ${path}`);
    const text = await res.text();
    try {
      return { status: res.status, body: text ? JSON.parse(text) : null };
    } catch (err) {
      throw new EdgeliteError('PRIMARY_UNAVAILABLE', `primary answered ${res.status} with a non-JSON body`, { cause: err });
    }
  }

  /** position asks the primary for a database's current position (strong reads). */
  async position(db: string): Promise<Position> {
    const r = await this.forward('GET', `/v1/db/${encodeURIComponent(db)}`);
    if (r.status !== 200) throw errorFromBody(r.body, r.status);
    const b = r.body as { generation: number; txid: number; checksum: string };
    return { generation: b.generation, txid: b.txid, checksum: parseChecksum(b.checksum) };
  }
}

/** snapshotHead reads a snapshot response's position headers and checks them against their digest. */
function snapshotHead(db: string, h: Headers): SnapshotHead {
  const length = Number(h.get('content-length'));
  const checksum = h.get('edgelite-checksum') ?? '';
  const generation = Number(h.get('edgelite-generation'));
  const txid = Number(h.get('edgelite-txid'));
  const databaseId = Number(h.get('edgelite-database-id'));
  const pageSize = Number(h.get('edgelite-page-size'));
  if (![length, txid, generation, databaseId].every(Number.isSafeInteger)) {
    throw new EdgeliteError('PRIMARY_UNAVAILABLE', `snapshot of ${db} came without its position headers`);
  }
  verifySnapshotDigest({ generation, txid, checksum, databaseId, pageSize, length }, h.get(SNAPSHOT_DIGEST_HEADER));
  return { position: { generation, txid, checksum: parseChecksum(checksum) }, databaseId, pageSize, length };
}

async function failure(res: Response): Promise<EdgeliteError> {
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (err) {
    return new EdgeliteError('PRIMARY_UNAVAILABLE', `primary answered ${res.status} with a non-JSON body`, { cause: err });
  }
  return errorFromBody(body, res.status);
}
