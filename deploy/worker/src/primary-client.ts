/**
 * WorkerPrimaryClient is the Worker replica's one way to talk to its primary, over the runtime's fetch:
 * the replication stream, snapshots, forwarded writes and position look-ups. Errors are EdgeliteError
 * (PRIMARY_UNAVAILABLE when the primary cannot be reached, the primary's own code otherwise).
 */
import { SNAPSHOT_DIGEST_HEADER, verifySnapshotDigest } from '../../../shared/protocol.ts';
import { EdgeliteError, errorFromBody } from '../../../shared/errors.ts';
import { formatChecksum, parseChecksum, type Position } from '../../../shared/types.ts';

export interface SnapshotHead {
  position: Position;
  databaseId: number;
  pageSize: number;
  length: number;
  body: ReadableStream<Uint8Array>;
}

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
   * openStream posts this replica's position and returns the never-ending frame body. It asks for delta
   * change sets (live change sets carry only the bytes changed since each page's previous image; the
   * follower rebuilds them from its stored pages), as the Node replica does.
   */
  async openStream(db: string, position: Position | null, signal: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const body = JSON.stringify({
      databases: [db],
      deltas: true,
      positions: { [db]: position && { generation: position.generation, txid: position.txid, checksum: formatChecksum(position.checksum) } },
    });
    const res = await this.#fetch('/v1/stream', { method: 'POST', body, headers: this.#headers({ 'content-type': 'application/json' }), signal }, 'stream');
    if (res.status !== 200 || !res.body) throw await failure(res);
    return res.body;
  }

  /** snapshot starts a snapshot download; the caller reads `body` (length bytes) and verifies it. */
  async snapshot(db: string, signal?: AbortSignal): Promise<SnapshotHead> {
    const res = await this.#fetch(`/v1/db/${encodeURIComponent(db)}/snapshot`, { headers: this.#headers(), signal }, `snapshot of ${db}`);
    if (res.status !== 200 || !res.body) throw await failure(res);
    const h = res.headers;
    const length = Number(h.get('content-length'));
    const checksum = h.get('edgelite-checksum') ?? '';
    const position = { generation: Number(h.get('edgelite-generation')), txid: Number(h.get('edgelite-txid')), checksum: parseChecksum(checksum) };
    const databaseId = Number(h.get('edgelite-database-id'));
    const pageSize = Number(h.get('edgelite-page-size'));
    if (!Number.isSafeInteger(length) || !Number.isSafeInteger(position.txid) || !Number.isSafeInteger(position.generation) || !Number.isSafeInteger(databaseId)) {
      await res.body.cancel();
      throw new EdgeliteError('PRIMARY_UNAVAILABLE', `snapshot of ${db} came without its position headers`);
    }
    try {
      verifySnapshotDigest({ generation: position.generation, txid: position.txid, checksum, databaseId, pageSize, length }, h.get(SNAPSHOT_DIGEST_HEADER));
    } catch (err) {
      await res.body.cancel();
      throw err;
    }
    return { position, databaseId, pageSize, length, body: res.body };
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
