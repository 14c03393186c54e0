/**
 * The Worker replica (deploy/worker, in wrangler's local runtime) catches up by the cacheable catch-up
 * ranges through the same primary client as the Node replica (shared/primary-client.ts, README.md,
 * "HTTP API"): restarted far behind, its stream request is answered USE_RANGES, it reads the ranges by
 * GET through a shared cache in front of the primary (workerd's fetch, redirects read by the client),
 * then the stream, and ends at the primary's checksum without a snapshot.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unstable_dev, type Unstable_DevWorker } from 'wrangler';
import { parseAuthConfig } from '../../shared/auth.ts';
import { silentLogger } from '../../shared/log.ts';
import { formatChecksum } from '../../shared/types.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { tempDir } from '../helpers.ts';
import { CachingProxy } from '../kit/caching-proxy.ts';
import { waitFor } from '../kit/wait.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORKER_DIR = join(ROOT, 'deploy/worker');
const TOKEN = 'worker-ranges-token-0123456789';

function workerdRuns(): string | null {
  try {
    const bin = join(createRequire(import.meta.url).resolve('workerd/package.json'), '..', 'bin', 'workerd');
    if (!existsSync(bin)) return `no workerd binary at ${bin}`;
    execFileSync(bin, ['--version'], { timeout: 10_000 });
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

describe('Worker replica catch-up by ranges through a cache', () => {
  const t = tempDir('worker-ranges');
  const persist = join(t.dir, 'worker-state');
  let primary: PrimaryHandle;
  let proxy: CachingProxy;
  let worker: Unstable_DevWorker | null = null;

  const start = () =>
    unstable_dev(join(WORKER_DIR, 'src/index.ts'), {
      config: join(WORKER_DIR, 'wrangler.toml'),
      persistTo: persist,
      logLevel: 'none',
      vars: { PRIMARY_URL: proxy.url, DATABASES: 'app', EDGELITE_PRIMARY_TOKEN: TOKEN, EDGELITE_TOKENS: `read=${TOKEN}`, HEARTBEAT_TIMEOUT_MS: '3000' },
      experimental: { disableExperimentalWarning: true },
    });

  async function workerAt(): Promise<{ txid: number; checksum: string } | null> {
    const res = await worker!.fetch('/v1/db/app', { headers: { authorization: `Bearer ${TOKEN}` } });
    return res.status === 200 ? ((await res.json()) as { txid: number; checksum: string }) : null;
  }

  async function write(n: number): Promise<void> {
    const db = primary.store.require('app');
    for (let i = 0; i < n; i++) db.exec([{ sql: 'INSERT INTO t (v) VALUES (?)', params: ['w'.repeat(400 + ((i * 131) % 2000))] }]);
    await db.log.sync();
  }

  const caughtUp = async () => {
    const p = primary.store.require('app').position;
    const w = await workerAt();
    return w !== null && w.txid === p.txid && w.checksum === formatChecksum(p.checksum);
  };

  beforeAll(async () => {
    const why = workerdRuns();
    if (why) throw new Error(`wrangler's local runtime (workerd) cannot start here: ${why}`);
    const config = parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0', '--query-timeout-ms', '0'], {});
    primary = await startPrimary({ ...config, auth: parseAuthConfig(TOKEN, undefined), ranges: { rangeTxids: 32, rangeBytes: 48 * 1024 } }, silentLogger);
    proxy = await CachingProxy.start(primary.url);
    primary.store.create('app').db.exec([{ sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)', params: [] }]);
    await write(3);
  });

  afterAll(async () => {
    await worker?.stop();
    await proxy?.close();
    await primary?.close();
    t.cleanup();
  });

  it('restarted 300 txids behind, reads the sealed ranges by GET, then the stream, with no snapshot', async () => {
    worker = await start();
    await waitFor(caughtUp, 'the Worker to bootstrap', 60_000, 100);
    await worker.stop();
    worker = null;
    await write(300);

    const mark = { origin: proxy.origin.length, received: proxy.received.length };
    worker = await start();
    await waitFor(caughtUp, 'the Worker to catch up', 60_000, 100);
    const origin = proxy.origin.slice(mark.origin);
    const ranges = origin.filter((o) => o.method === 'GET' && o.path.includes('/changes/') && o.status === 200);
    expect(ranges.length).toBeGreaterThanOrEqual(20);
    expect(new Set(ranges.map((o) => o.path)).size).toBe(ranges.length);
    expect(origin.filter((o) => o.method === 'POST' && o.status === 409).length).toBeGreaterThanOrEqual(1);
    expect(proxy.received.slice(mark.received).filter((l) => l.includes('/snapshot'))).toEqual([]);
  });
});
