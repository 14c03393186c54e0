/**
 * GET /v1/db/{name}/snapshot on the primary: a view pinned by the database (PrimaryDatabase.openSnapshot,
 * in turn with the API writes) answered by the code a Node replica serves its copy with
 * (shared/node/snapshot-view.ts): straight to Node's socket where it can, else as a web stream.
 */
import type { Context } from 'hono';
import { snapshotAnswer } from '../shared/node/snapshot-view.ts';
import type { PrimaryDatabase } from './database.ts';

export { imageResponse, SnapshotView } from '../shared/node/snapshot-view.ts';

/**
 * snapshotResponse answers with `db`'s snapshot; `after` gives the headers the app's middleware adds after
 * a handler, read once the view is pinned, as the middleware would.
 */
export async function snapshotResponse(c: Context, db: PrimaryDatabase, after: () => Record<string, string> = () => ({})): Promise<Response> {
  const view = await db.openSnapshot();
  return snapshotAnswer(c, db.name, view, after());
}
