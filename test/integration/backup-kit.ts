/**
 * Parts the backup tests share: a real S3-compatible server (s3rver) on 127.0.0.1 port 0 with a temp
 * directory, and a primary with backup on under a random write workload that records the primary's
 * position (txid, checksum, time) after every write, so a restore can be compared with what was there.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { formatChecksum } from '../../shared/types.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { exec, http } from '../kit/api.ts';
import { sleep, waitFor } from '../kit/wait.ts';

export const S3_BUCKET = 'edgelite-test';

interface S3rverInstance {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
}
type S3rverCtor = new (o: Record<string, unknown>) => S3rverInstance;

export interface S3Server {
  endpoint: string;
  env: Record<string, string>;
  close(): Promise<void>;
}

/** startS3 runs s3rver (credentials S3RVER/S3RVER, which it checks) with one bucket, on `listenPort` (0: any free one). */
/** startS3 starts s3rver on 127.0.0.1 (`listenPort`, 0: any), its objects in a new directory under `root`. */
export async function startS3(listenPort = 0, root = tmpdir()): Promise<S3Server> {
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverCtor;
  const directory = mkdtempSync(join(root, 'edgelite-s3rver-'));
  const server = new S3rver({ address: '127.0.0.1', port: listenPort, directory, silent: true, configureBuckets: [{ name: S3_BUCKET }] });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    env: { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_S3: endpoint },
    close: async () => {
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

/** Written is the primary's position right after one write, and the times around it. */
export interface Written {
  txid: number;
  checksum: string;
  /** Date.now() before the request and after the answer: the commit time lies in between. */
  before: number;
  after: number;
}

export function quietLogger(): (e: Record<string, unknown>) => void {
  const lines: Array<Record<string, unknown>> = [];
  const log = (e: Record<string, unknown>) => void lines.push(e);
  return Object.assign(log, { lines });
}

export async function startBackedUpPrimary(dataDir: string, url: string, env: Record<string, string>, snapshotEverySegments = 8): Promise<PrimaryHandle> {
  const config = parsePrimaryConfig(['--data', dataDir, '--listen', '127.0.0.1:0', '--query-timeout-ms', '0', '--backup', url, '--backup-interval', '50ms'], env);
  config.backup!.snapshotEverySegments = snapshotEverySegments;
  return startPrimary(config, quietLogger());
}

/**
 * randomWorkload creates table t and runs `n` random inserts, updates and deletes (rows of 10 B..6 KB,
 * so pages split, overflow and free), pausing now and then so uploads land in between. Returns the
 * position after every write.
 */
export async function randomWorkload(url: string, db: string, n: number, seed = 1): Promise<Written[]> {
  let x = seed;
  const rand = (k: number) => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x % k;
  };
  await http(url, 'PUT', `/v1/db/${db}`);
  const out: Written[] = [];
  const write = async (sql: string, params: unknown[] = []) => {
    const before = Date.now();
    const r = await exec(url, db, { sql, params });
    out.push({ txid: Number(r.headers.get('edgelite-txid')), checksum: r.headers.get('edgelite-checksum')!, before, after: Date.now() });
    await sleep(2);
  };
  await write('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  for (let i = 0; i < n; i++) {
    const op = rand(10);
    const v = 'x'.repeat(10 + rand(6000)) + i;
    if (op < 5) await write('INSERT INTO t (v) VALUES (?)', [v]);
    else if (op < 8) await write('UPDATE t SET v = ? WHERE id = ?', [v, 1 + rand(i + 1)]);
    else await write('DELETE FROM t WHERE id IN (?, ?)', [1 + rand(i + 1), 1 + rand(i + 1)]);
    if (rand(20) === 0) await sleep(60);
  }
  return out;
}

/** waitUploaded waits until GET /v1/db/{name} says the backup holds the database's current txid. */
export async function waitUploaded(url: string, db: string): Promise<{ txid: number; uploadedTxid: number; lagMs: number }> {
  return waitFor(async () => {
    const r = await http(url, 'GET', `/v1/db/${db}`);
    const b = r.json.backup as { uploadedTxid: number; lagMs: number };
    return b.uploadedTxid === r.json.txid && b.lagMs === 0 ? { txid: r.json.txid as number, ...b } : null;
  }, `backup of ${db} to catch up`);
}

/** fileChecksum is the database checksum of a file, computed here, not by the code under test. */
export function fileChecksum(path: string): string {
  return formatChecksum(DatabaseChecksum.fromFile(new Uint8Array(readFileSync(path))).value);
}

/** pick returns k distinct random elements (a fixed seed: failures reproduce). */
export function pick<T>(items: readonly T[], k: number, seed = 7): T[] {
  const a = [...items];
  let x = seed;
  for (let i = a.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const j = x % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a.slice(0, k);
}
