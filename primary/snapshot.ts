/**
 * GET /v1/db/{name}/snapshot on the primary: a view pinned by the database (PrimaryDatabase.openSnapshot,
 * in turn with the API writes) streamed by the code a Node replica serves its copy with
 * (shared/node/snapshot-view.ts).
 */
import type { Context } from 'hono';
import { snapshotAnswer } from '../shared/node/snapshot-view.ts';
import type { PrimaryDatabase } from './database.ts';

export { SnapshotView } from '../shared/node/snapshot-view.ts';

export async function snapshotResponse(c: Context, db: PrimaryDatabase): Promise<Response> {
  return snapshotAnswer(c, db.name, await db.openSnapshot());
}
