/**
 * Measures the Worker replica in wrangler's local runtime: bootstrap (snapshot) and restart (reload
 * from storage) times, point-read cost inside the object and over HTTP, apply cost, and the workerd
 * process's resident memory, for a database of a chosen size and page-cache size. Not a test: run
 *   npx tsx test/worker/measure.ts [rows=20000] [cacheMb=32]
 * Each row is ~1 KiB, so rows/1000 ≈ MiB of database.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unstable_dev, type Unstable_DevWorker } from 'wrangler';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary } from '../../primary/server.ts';
import { tempDir } from '../helpers.ts';

const WORKER_DIR = fileURLToPath(new URL('../../deploy/worker/', import.meta.url));
const rows = Number(process.argv[2] ?? 20000);
const cacheMb = process.argv[3] ?? '32';

/** workerdRssMb sums the resident memory of the workerd processes started by this process's children. */
function workerdRssMb(): number {
  let kb = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('workerd')) continue;
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      if (!new RegExp(`^PPid:\\s+${process.pid}$`, 'm').test(status)) continue;
      kb += Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ESRCH') continue; // ended while we looked
      throw err;
    }
  }
  return Math.round(kb / 1024);
}

const t = tempDir('worker-measure');
const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
const exec = async (body: unknown) => {
  const r = await fetch(`${primary.url}/v1/db/app/exec`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return (await r.json()) as { token: string };
};
await fetch(`${primary.url}/v1/db/app`, { method: 'PUT' });
await exec({ sql: 'CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)' });
for (let i = 0; i < rows; i += 500) {
  await exec({ statements: Array.from({ length: Math.min(500, rows - i) }, (_, j) => ({ sql: 'INSERT INTO kv VALUES (?, ?)', params: [i + j, 'x'.repeat(1000)] })) });
}
const primaryInfo = (await (await fetch(`${primary.url}/v1/db/app`)).json()) as { pageCount: number; pageSize: number };
const persist = join(t.dir, 'state');
const start = () =>
  unstable_dev(join(WORKER_DIR, 'src/index.ts'), {
    config: join(WORKER_DIR, 'wrangler.toml'),
    persistTo: persist,
    logLevel: process.env.WORKER_LOGS ? 'log' : 'none',
    vars: { PRIMARY_URL: primary.url, ALLOW_NO_AUTH: 'true', PAGE_CACHE_MB: cacheMb, READ_WAIT_MS: '120000' },
    experimental: { disableExperimentalWarning: true },
  });
const post = (w: Unstable_DevWorker, path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`http://${w.address}:${w.port}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });
const describeApp = async (w: Unstable_DevWorker) => (await (await fetch(`http://${w.address}:${w.port}/v1/db/app`)).json()) as Record<string, any>;

async function timeFirstRead(w: Unstable_DevWorker): Promise<number> {
  const s = performance.now();
  const r = await post(w, '/v1/db/app/query', { sql: 'SELECT count(*) FROM kv' });
  if (r.status !== 200) throw new Error(`first read: ${r.status} ${await r.text()}`);
  return performance.now() - s;
}

let worker = await start();
const rssIdle = workerdRssMb();
const bootstrapMs = await timeFirstRead(worker);
const rssAfterSnapshot = workerdRssMb();
const scanStarted = performance.now();
await timeFirstRead(worker);
const fullScanMs = performance.now() - scanStarted;
const repeat = async (key: () => number, n: number) => {
  let total = 0;
  for (let i = 0; i < 10; i++) {
    const r = (await (await post(worker, '/v1/db/app/debug/repeat', { sql: 'SELECT v FROM kv WHERE k = ?', params: [key()], n: n / 10 })).json()) as { perQueryUs: number };
    total += r.perQueryUs;
  }
  return total / 10;
};
await repeat(() => 7, 20000); // warm-up: wasm code tiers up after its first calls
const hotUs = await repeat(() => 7, 20000);
const randomUs = await repeat(() => Math.floor(Math.random() * rows), 2000);
const rssAfterReads = workerdRssMb();
const http: number[] = [];
for (let i = 0; i < 500; i++) {
  const s = performance.now();
  await (await post(worker, '/v1/db/app/query', { sql: 'SELECT v FROM kv WHERE k = ?', params: [i % 100] })).arrayBuffer();
  http.push(performance.now() - s);
}
http.sort((a, b) => a - b);
const before = (await describeApp(worker)).apply;
let token = '';
const writeStarted = performance.now();
for (let i = 0; i < 300; i++) token = (await exec({ sql: 'UPDATE kv SET v = ? WHERE k = ?', params: ['y'.repeat(1000), i * 7 % rows] })).token;
const writeMs = (performance.now() - writeStarted) / 300;
await post(worker, '/v1/db/app/query', { sql: 'SELECT 1' }, { 'Edgelite-Token': token });
const after = (await describeApp(worker)).apply;
const described = await describeApp(worker);
await worker.stop();
worker = await start();
const restartMs = await timeFirstRead(worker);
const rebooted = await describeApp(worker);
await worker.stop();
await primary.close();
t.cleanup();
console.log(JSON.stringify({
  rows,
  dbMiB: Math.round((primaryInfo.pageCount * primaryInfo.pageSize) / 1048576 * 10) / 10,
  pageCacheMb: Number(cacheMb),
  bootstrapFirstReadMs: Math.round(bootstrapMs),
  restartFirstReadMs: Math.round(restartMs),
  fullScanMs: Math.round(fullScanMs),
  restartBootedFrom: rebooted.bootedFrom,
  restartSnapshots: rebooted.snapshots,
  pointReadHotInObjectUs: Math.round(hotUs * 10) / 10,
  pointReadRandomInObjectUs: Math.round(randomUs * 10) / 10,
  pointReadHttpMedianMs: Math.round(http[250]! * 100) / 100,
  pointReadHttpP99Ms: Math.round(http[495]! * 100) / 100,
  primaryWriteMeanMs: Math.round(writeMs * 100) / 100,
  applyMeanMs: Math.round(((after.applyMsTotal - before.applyMsTotal) / Math.max(1, after.applies - before.applies)) * 1000) / 1000,
  applies: after.applies - before.applies,
  cache: described.cache,
  isolateMemory: described.memory,
  storedMiB: Math.round(described.storedBytes / 1048576 * 10) / 10,
  workerdRssMb: { idle: rssIdle, afterSnapshot: rssAfterSnapshot, afterReads: rssAfterReads },
}));
