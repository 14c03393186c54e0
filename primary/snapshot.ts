/**
 * GET /v1/db/{name}/snapshot on the primary: a view pinned by the database (PrimaryDatabase.openSnapshot,
 * in turn with the API writes) streamed by the code a Node replica serves its copy with
 * (shared/node/snapshot-view.ts).
 */
import { snapshotResponse as respond } from '../shared/node/snapshot-view.ts';
import type { PrimaryDatabase } from './database.ts';

export { imageResponse, SnapshotView } from '../shared/node/snapshot-view.ts';

export async function snapshotResponse(db: PrimaryDatabase): Promise<Response> {
  return respond(db.name, await db.openSnapshot());
}
