/**
 * The Worker replica fed from the bucket (SOURCE_URL) in wrangler's local runtime (workerd): it
 * bootstraps from a real S3-compatible server (s3rver on 127.0.0.1) through the same shared, fetch-based
 * code as the Node replica (no snapshot from the primary, counted at a proxy in front of it), takes the
 * live tail from the primary, follows the bucket while the primary is unreachable, and takes the tail
 * again when it is back.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unstable_dev, type Unstable_DevWorker } from 'wrangler';
import type { PrimaryHandle } from '../../primary/server.ts';
import { tempDir } from '../helpers.ts';
import { FaultProxy } from '../kit/proxy.ts';
import { waitFor } from '../kit/wait.ts';
import { S3_BUCKET, startBackedUpPrimary, startS3, waitUploaded, type S3Server } from '../integration/backup-kit.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORKER_DIR = join(ROOT, 'deploy/worker');
const READ = 'read-token-0123456789';
const SOURCE = `s3://${S3_BUCKET}/worker`;

type Json = any; // response bodies of many shapes

describe('Worker replica with SOURCE_URL (workerd)', () => {
  const t = tempDir('worker-bucket');
  let s3: S3Server;
  let primary: PrimaryHandle;
  let proxy: FaultProxy;
  let worker: Unstable_DevWorker | null = null;

  async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: Json }> {
    const res = await worker!.fetch(path, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: { authorization: `Bearer ${READ}`, 'content-type': 'application/json' },
    });
    return { status: res.status, json: await res.json() };
  }
  const describeApp = async (): Promise<Json> => (await call('GET', '/v1/db/app')).json;

  async function write(v: string): Promise<{ txid: number; checksum: string }> {
    const res = await fetch(`${primary.url}/v1/db/app/exec`, { method: 'POST', body: JSON.stringify({ sql: 'INSERT INTO t (v) VALUES (?)', params: [v] }), headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(200);
    return { txid: Number(res.headers.get('edgelite-txid')), checksum: res.headers.get('edgelite-checksum')! };
  }

  async function workerAt(p: { txid: number; checksum: string }, what: string): Promise<Json> {
    return waitFor(async () => {
      const d = await describeApp();
      return d.txid === p.txid ? d : null;
    }, what, 60_000, 100);
  }

  beforeAll(async () => {
    s3 = await startS3();
    primary = await startBackedUpPrimary(join(t.dir, 'p'), SOURCE, s3.env);
    await fetch(`${primary.url}/v1/db/app`, { method: 'PUT' });
    await fetch(`${primary.url}/v1/db/app/exec`, { method: 'POST', body: JSON.stringify({ sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' }), headers: { 'content-type': 'application/json' } });
    for (let i = 0; i < 20; i++) await write(`row-${i}`);
    await waitUploaded(primary.url, 'app');
    proxy = await FaultProxy.start({ target: primary.url });
    worker = await unstable_dev(join(WORKER_DIR, 'src/index.ts'), {
      config: join(WORKER_DIR, 'wrangler.toml'),
      persistTo: join(t.dir, 'worker-state'),
      logLevel: 'none',
      vars: {
        PRIMARY_URL: proxy.url,
        DATABASES: 'app',
        EDGELITE_TOKENS: `read=${READ}`,
        HEARTBEAT_TIMEOUT_MS: '3000',
        SOURCE_URL: SOURCE,
        SOURCE_INTERVAL_MS: '100',
        S3_ENDPOINT: s3.endpoint,
        AWS_ACCESS_KEY_ID: s3.env.AWS_ACCESS_KEY_ID!,
        AWS_SECRET_ACCESS_KEY: s3.env.AWS_SECRET_ACCESS_KEY!,
      },
      experimental: { disableExperimentalWarning: true },
    });
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    await proxy?.close();
    await primary?.close();
    await s3?.close();
    t.cleanup();
  });

  it('bootstraps from the bucket, takes the live tail, follows the bucket while the primary is unreachable, then the primary again', async () => {
    const uploaded = (await (await fetch(`${primary.url}/v1/db/app`)).json()) as Json;
    const boot = await workerAt({ txid: uploaded.txid, checksum: uploaded.checksum }, 'the Worker to bootstrap');
    expect(boot.checksum).toBe(uploaded.checksum);
    expect(boot.bucket.snapshots).toBe(1);
    expect(proxy.count(/^GET \/v1\/db\/app\/snapshot/)).toBe(0);
    const rows = await call('POST', '/v1/db/app/query', { sql: 'SELECT count(*) FROM t' });
    expect(rows.json.results[0].rows).toEqual([[20]]);

    await waitFor(async () => (await describeApp()).source === 'primary', 'the Worker to take the primary stream', 30_000, 100);
    const fromBucket = (await describeApp()).bucket.changeSets;
    let last = await write('live');
    expect((await workerAt(last, 'the live write')).bucket.changeSets).toBe(fromBucket);

    proxy.refuse(true);
    proxy.cut();
    for (let i = 0; i < 3; i++) last = await write(`while-unreachable-${i}`);
    await waitUploaded(primary.url, 'app');
    const viaBucket = await workerAt(last, 'the Worker to follow the bucket');
    expect(viaBucket.checksum).toBe(last.checksum);
    expect(viaBucket.source).toBe('bucket');
    expect(viaBucket.bucket.changeSets).toBeGreaterThanOrEqual(fromBucket + 3);

    proxy.refuse(false);
    await waitFor(async () => (await describeApp()).source === 'primary', 'the Worker to take the primary stream again', 30_000, 100);
    const before = (await describeApp()).bucket.changeSets;
    last = await write('live-again');
    expect((await workerAt(last, 'the live write after')).bucket.changeSets).toBe(before);
    expect(proxy.count(/^GET \/v1\/db\/app\/snapshot/)).toBe(0);
  }, 180_000);
});
