/**
 * GET /v1/db/{name}/snapshot (README.md#http-api) as the primary and a Node replica both serve it: a
 * consistent SQLite file at a known position, streamed page range by page range from a read
 * transaction pinned at that position, so writers (the primary's, a replica's applier) are never
 * blocked and memory stays bounded. Any tool (sqlite3 CLI, DuckDB) can open the result; the position
 * travels in the response headers (shared/protocol.ts snapshotHeaders), the same on both servers.
 */
import type Database from 'better-sqlite3';
import type { Context } from 'hono';
import type { ServerResponse } from 'node:http';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { snapshotHeaders, type SnapshotHead } from '../protocol.ts';
import type { Position } from '../types.ts';

/**
 * SNAPSHOT_CHUNK_BYTES is how much one pull reads from SQLite: a quarter of a 1 MiB tenant, so its first
 * bytes are on the wire (and hashed by the replica) while the rest is read, and memory stays bounded.
 */
export const SNAPSHOT_CHUNK_BYTES = 256 * 1024;

export interface SnapshotViewOptions {
  /**
   * page1 maps page 1 as the file holds it to page 1 as the image must carry it (a replica's file
   * differs from the primary's in its header: replica/page1-header.ts); absent, pages go as they are.
   */
  page1?: (page: Uint8Array) => Uint8Array;
  /** onEnd runs once when the view ends (the body was read, cancelled or failed). */
  onEnd?: () => void;
}

/**
 * SnapshotView is a read transaction pinned at `position` on a connection of its own; read its pages in
 * ranges, then end it (which closes the connection). The caller began the transaction.
 */
export class SnapshotView {
  readonly #conn: Database.Database;
  readonly #stmt: Database.Statement<unknown[], unknown>;
  readonly #page1: ((page: Uint8Array) => Uint8Array) | null;
  #onEnd: (() => void) | null;

  constructor(
    conn: Database.Database,
    readonly position: Position,
    readonly databaseId: number,
    readonly pageSize: number,
    readonly pageCount: number,
    options: SnapshotViewOptions = {},
  ) {
    this.#conn = conn;
    // One page per step by equality: sqlite_dbpage plans `pgno = ?` as a direct read, while a range
    // (BETWEEN) read 2.5x slower here (docs/BENCHMARKS.md#p7-bootstrap-by-file).
    this.#stmt = conn.prepare<unknown[]>('SELECT data FROM sqlite_dbpage WHERE pgno = ?').pluck();
    // Pages not in the WAL come through a memory map of the file instead of one read() each: 1 GiB in
    // 0.85 s instead of 1.4 here (docs/BENCHMARKS.md#p7-bootstrap-by-file). SQLite never shrinks the
    // file under a reader's snapshot; the map goes with the connection.
    conn.pragma(`mmap_size = ${pageCount * pageSize}`);
    this.#page1 = options.page1 ?? null;
    this.#onEnd = options.onEnd ?? null;
  }

  /**
   * readPages returns pages first..last (inclusive) as one file range; a page SQLite does not return
   * (the lock page of a database past 1 GiB) stays zero-filled, as it is in a database file.
   */
  readPages(first: number, last: number): Uint8Array {
    const out = new Uint8Array((last - first + 1) * this.pageSize);
    for (let pgno = first; pgno <= last; pgno++) {
      const data = this.#stmt.get(pgno) as Uint8Array | undefined;
      if (data) out.set(pgno === 1 && this.#page1 ? this.#page1(data) : data, (pgno - first) * this.pageSize);
    }
    return out;
  }

  end(): void {
    if (this.#conn.open) {
      if (this.#conn.inTransaction) this.#conn.exec('COMMIT');
      this.#conn.close();
    }
    const onEnd = this.#onEnd;
    this.#onEnd = null;
    onEnd?.();
  }
}

/**
 * snapshotAnswer answers GET …/snapshot with `view`; `after` is what the app's middleware adds to an
 * answer after its handler (a lease holder's epoch, primary/app.ts), which a head written here goes out
 * without, so the route passes it in. Under @hono/node-server, for a GET without an Origin header (no CORS
 * header due) and without a body (nothing for closeAfterRefusedBody to read or mark), it writes straight
 * to Node's response (writeSnapshot), its head carrying the headers middleware set before the handler
 * too; elsewhere (`app.request()`, CORS) it returns the web-stream answer. HEAD gets the headers and no
 * body, the view ended at once (hono drops a GET answer's body for HEAD without cancelling it, which
 * would leave the read transaction open).
 */
export function snapshotAnswer(c: Context, name: string, view: SnapshotView, after: Record<string, string> = {}): Response {
  if (c.req.method === 'HEAD') {
    view.end();
    return new Response(null, { headers: { ...headersOf(name, view), ...after } });
  }
  const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
  const direct = outgoing !== undefined && typeof outgoing.writeHead === 'function' && !outgoing.headersSent && c.req.header('origin') === undefined &&
    c.req.header('transfer-encoding') === undefined && (c.req.header('content-length') ?? '0') === '0';
  if (!direct) {
    const res = snapshotResponse(name, view);
    for (const [k, v] of Object.entries(after)) res.headers.set(k, v);
    return res;
  }
  const head: Record<string, string> = {};
  c.res.headers.forEach((v, k) => (head[k] = v));
  writeSnapshot(outgoing, { ...head, ...headersOf(name, view), ...after }, view);
  // A marker of its own per answer: middleware after the handler may set headers on it (unsent).
  return new Response(null, { headers: RESPONSE_ALREADY_SENT.headers });
}

/**
 * writeSnapshot writes `view` to Node's response a chunk at a time, reading the next chunk only once the
 * socket takes more ('drain'), so memory stays bounded by the socket's buffer. The view ends (its read
 * transaction with it) when the last page is read, when the client goes away ('close'), or on a read
 * error, after which the socket is destroyed: the client sees a body shorter than its Content-Length.
 * What is left of the cost is reading pages and the socket's own copy (docs/BENCHMARKS.md#p7-bootstrap-by-file).
 */
function writeSnapshot(outgoing: ServerResponse, headers: Record<string, string>, view: SnapshotView): void {
  const pagesPerChunk = Math.max(1, Math.floor(SNAPSHOT_CHUNK_BYTES / view.pageSize));
  let next = 1;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    outgoing.off('drain', pump);
    view.end();
  };
  const pump = (): void => {
    if (ended) return;
    try {
      while (next <= view.pageCount) {
        const last = Math.min(view.pageCount, next + pagesPerChunk - 1);
        const chunk = view.readPages(next, last);
        next = last + 1;
        if (!outgoing.write(chunk)) {
          outgoing.once('drain', pump);
          return;
        }
      }
    } catch (err) {
      end();
      outgoing.destroy(err as Error);
      return;
    }
    end();
    outgoing.end();
  };
  outgoing.once('close', end);
  outgoing.writeHead(200, headers);
  pump();
}

function headersOf(name: string, view: SnapshotView): Record<string, string> {
  return snapshotResponseHeaders(name, { position: view.position, databaseId: view.databaseId, pageSize: view.pageSize, length: view.pageCount * view.pageSize });
}

function snapshotResponseHeaders(name: string, head: SnapshotHead): Record<string, string> {
  return {
    'content-type': 'application/vnd.sqlite3',
    'content-disposition': `attachment; filename="${name}.db"`,
    'cache-control': 'no-store',
    ...snapshotHeaders(head),
  };
}

/** snapshotResponse streams `view` as the snapshot of database `name`, ending the view when the body ends. */
export function snapshotResponse(name: string, view: SnapshotView): Response {
  const pagesPerChunk = Math.max(1, Math.floor(SNAPSHOT_CHUNK_BYTES / view.pageSize));
  let next = 1;
  const body = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (next > view.pageCount) {
          view.end();
          controller.close();
          return;
        }
        const last = Math.min(view.pageCount, next + pagesPerChunk - 1);
        try {
          controller.enqueue(view.readPages(next, last));
        } catch (err) {
          view.end();
          controller.error(err);
          return;
        }
        next = last + 1;
      },
      cancel() {
        view.end();
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, { headers: headersOf(name, view) });
}

/** imageResponse answers with a whole image in memory as the snapshot `head` describes (a closed database's file). */
export function imageResponse(name: string, head: SnapshotHead, bytes: Uint8Array): Response {
  return new Response(bytes as Uint8Array<ArrayBuffer>, { headers: snapshotResponseHeaders(name, head) });
}
