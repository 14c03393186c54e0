/**
 * GET /v1/db/{name}/snapshot: a consistent SQLite file at a known position, streamed page range by page
 * range from a pinned read transaction, so writers are never blocked and memory stays bounded. Any tool
 * (sqlite3 CLI, DuckDB) can open the result; the position travels in response headers.
 */
import { snapshotHeaders } from '../shared/protocol.ts';
import type { Position } from '../shared/types.ts';
import type { PrimaryDatabase } from './database.ts';
import type { Connection, Stmt } from './sqlite.ts';

/** SNAPSHOT_CHUNK_BYTES is how much one pull reads from SQLite. */
const SNAPSHOT_CHUNK_BYTES = 1024 * 1024;

export async function snapshotResponse(db: PrimaryDatabase): Promise<Response> {
  const view = await db.openSnapshot();
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
  return new Response(body, {
    headers: {
      'content-type': 'application/vnd.sqlite3',
      'content-disposition': `attachment; filename="${db.name}.db"`,
      'cache-control': 'no-store',
      ...snapshotHeaders({ position: view.position, databaseId: view.databaseId, pageSize: view.pageSize, length: view.pageCount * view.pageSize }),
    },
  });
}

/** SnapshotView is a read transaction pinned at `position`; read its pages in ranges, then end it. */
export class SnapshotView {
  readonly #conn: Connection;
  readonly #stmt: Stmt;
  constructor(
    conn: Connection,
    readonly position: Position,
    readonly databaseId: number,
    readonly pageSize: number,
    readonly pageCount: number,
  ) {
    this.#conn = conn;
    this.#stmt = conn.prepare<unknown[]>('SELECT pgno, data FROM sqlite_dbpage WHERE pgno BETWEEN ? AND ?');
  }

  /**
   * readPages returns pages first..last (inclusive) as one file range; a page SQLite does not return
   * (the lock page of a database past 1 GiB) stays zero-filled, as it is in a database file.
   */
  readPages(first: number, last: number): Uint8Array {
    const out = new Uint8Array((last - first + 1) * this.pageSize);
    for (const row of this.#stmt.iterate(first, last) as Iterable<{ pgno: number; data: Uint8Array }>) {
      out.set(row.data, (row.pgno - first) * this.pageSize);
    }
    return out;
  }

  end(): void {
    if (this.#conn.open) {
      if (this.#conn.inTransaction) this.#conn.exec('COMMIT');
      this.#conn.close();
    }
  }
}
