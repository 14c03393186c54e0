/**
 * `edgelite export` downloads each database as a consistent snapshot (GET /v1/db/{name}/snapshot,
 * README.md#http-api) into its temp directory with the replica's own verified download
 * (replica/snapshot-file.ts: length, position digest and page checksum checked as it arrives). The URL
 * may be the primary's or a Node replica's: both serve the route in one wire format, a replica at its
 * own position (README.md#analytics-export).
 */
import { linkSync } from 'node:fs';
import { join } from 'node:path';
import { EdgeliteError } from '../shared/errors.ts';
import { silentLogger } from '../shared/log.ts';
import { PrimaryClient } from '../shared/primary-client.ts';
import { formatChecksum, validateDatabaseName, type PositionJSON } from '../shared/types.ts';
import { downloadSnapshot } from '../replica/snapshot-file.ts';

export interface Downloaded {
  db: string;
  path: string;
  position: PositionJSON;
}

/** download fetches `db`'s snapshot from `url` to `dir/<db>.db`. A server without the route (the Worker replica) is NOT_FOUND, said plainly. */
export async function download(url: string, token: string | undefined, db: string, dir: string): Promise<Downloaded> {
  const client = new PrimaryClient({ url, ...(token ? { token } : {}), requestTimeoutMs: 0 });
  try {
    const path = join(dir, `${db}.db`);
    const file = await downloadSnapshot(client, validateDatabaseName(db), `${path}.download`, { logger: silentLogger });
    const { position } = file.head;
    // SnapshotFile holds a descriptor until remove(): keep a second name, so that thousands of tenants
    // do not hold thousands of descriptors while the export reads them.
    linkSync(file.path, path);
    file.remove();
    return { db, path, position: { generation: position.generation, txid: position.txid, checksum: formatChecksum(position.checksum) } };
  } catch (err) {
    if (err instanceof EdgeliteError && err.code === 'NOT_FOUND') {
      throw new EdgeliteError('NOT_FOUND', `${url} serves no snapshots of ${db} (${err.message}): give the URL of the primary or of a Node replica (the Worker replica serves none)`, { cause: err });
    }
    throw err;
  } finally {
    await client.close();
  }
}
