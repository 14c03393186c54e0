/**
 * The edgelite system under test, as users run it: a primary and an HTTP replica, each its own
 * `edgelite` process (bin/edgelite.mjs), on loopback. The database `bench` holds `kv` (ROWS point-read
 * rows of ~100 bytes) and `lag` (one row per replicated commit in the lag scenarios).
 */
import { join } from 'node:path';
import { getJson, postJson, spawnEdgelite, tempDir, waitUntil, type BenchContext, type ServerProcess } from './common.ts';

export const DB = 'bench';
export const ROWS = 10_000;

export interface Cluster {
  primary: ServerProcess;
  replica: ServerProcess;
  /** The replica's copy of `bench`: a plain SQLite file any process may open read-only. */
  replicaFile: string;
  dir: string;
  /** waitForReplica resolves once the replica (or the one at `url`) has applied everything the primary has. */
  waitForReplica(timeoutMs?: number, url?: string): Promise<void>;
}

/** startPrimaryProcess runs `edgelite primary` on a data directory (stopped by the cleanup stack). */
export function startPrimaryProcess(ctx: BenchContext, dataDir: string): Promise<ServerProcess> {
  return spawnEdgelite(ctx, ['primary', '--data', dataDir, '--listen', '127.0.0.1:0']);
}

export function startReplicaProcess(ctx: BenchContext, primaryUrl: string, dataDir: string): Promise<ServerProcess> {
  return spawnEdgelite(ctx, ['replica', '--primary', primaryUrl, '--data', dataDir, '--listen', '127.0.0.1:0', '--databases', DB]);
}

export async function startCluster(ctx: BenchContext): Promise<Cluster> {
  const dir = tempDir(ctx, 'cluster');
  const primary = await startPrimaryProcess(ctx, join(dir, 'primary'));
  await postJson(`${primary.url}/v1/db/${DB}`, undefined, 'PUT');
  await postJson(`${primary.url}/v1/db/${DB}/exec`, {
    statements: [
      { sql: 'CREATE TABLE kv (id INTEGER PRIMARY KEY, v TEXT NOT NULL)' },
      { sql: 'CREATE TABLE lag (id INTEGER PRIMARY KEY, t REAL NOT NULL)' },
      { sql: 'CREATE TABLE w (id INTEGER PRIMARY KEY, v TEXT NOT NULL)' },
      {
        sql: `INSERT INTO kv (id, v) WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ${ROWS})
              SELECT i, printf('value-%06d-', i) || hex(randomblob(44)) FROM c`,
      },
    ],
  });
  const replica = await startReplicaProcess(ctx, primary.url, join(dir, 'replica'));
  const waitForReplica = async (timeoutMs = 60_000, url = replica.url) => {
    const want = (await getJson(`${primary.url}/v1/db/${DB}`)).txid;
    await waitUntil(async () => {
      const r = await getJson(`${url}/v1/db/${DB}`).catch(() => null);
      return r !== null && typeof r.txid === 'number' && typeof want === 'number' && r.txid >= want;
    }, 'the replica to catch up', timeoutMs, 5);
  };
  await waitForReplica();
  return { primary, replica, replicaFile: join(dir, 'replica', `${DB}.db`), dir, waitForReplica };
}
