/**
 * P9: the Cloudflare Worker replica in wrangler's local runtime (workerd) next to the Node replica, on
 * the same primary and data: point-read cost inside the replica (the Durable Object's wa-sqlite over its
 * page store, against better-sqlite3 on the Node replica's file) and the cost of applying a one-row
 * change set (the Durable Object's own apply timer, against the Node replica's apply timed around
 * ReplicaDatabase.apply). No goal: the issue asks for the figures side by side.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unstable_dev } from 'wrangler';
import { AUTH_DISABLED } from '../../../shared/auth.ts';
import { silentLogger } from '../../../shared/log.ts';
import { parsePrimaryConfig } from '../../../primary/config.ts';
import { startPrimary } from '../../../primary/server.ts';
import { parseReplicaConfig } from '../../../replica/config.ts';
import { startReplica } from '../../../replica/server.ts';
import type { ChangeSet } from '../../../shared/types.ts';
import { median, tempDir, waitUntil, type BenchContext, type Row } from './common.ts';

const WORKER_DIR = fileURLToPath(new URL('../../../deploy/worker/', import.meta.url));
const DB = 'p9';

export async function runP9(ctx: BenchContext): Promise<Row[]> {
  const rows = ctx.quick ? 2000 : 20000;
  const updates = ctx.quick ? 30 : 300;
  const dir = tempDir(ctx, 'p9');
  const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
  ctx.cleanup.add('P9 primary', () => primary.close());
  const exec = async (body: unknown): Promise<string> => {
    const r = await fetch(`${primary.url}/v1/db/${DB}/exec`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    if (r.status !== 200) throw new Error(`exec answered ${r.status}: ${await r.text()}`);
    return ((await r.json()) as { token: string }).token;
  };
  await fetch(`${primary.url}/v1/db/${DB}`, { method: 'PUT' });
  await exec({ sql: 'CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)' });
  for (let i = 0; i < rows; i += 500) {
    await exec({ statements: Array.from({ length: Math.min(500, rows - i) }, (_, j) => ({ sql: 'INSERT INTO kv VALUES (?, ?)', params: [i + j, 'x'.repeat(100)] })) });
  }

  const node = await startReplica({ ...parseReplicaConfig(['--primary', primary.url, '--data', join(dir, 'r'), '--listen', '127.0.0.1:0', '--databases', DB], {}) }, silentLogger);
  ctx.cleanup.add('P9 Node replica', () => node.close());
  const worker = await unstable_dev(join(WORKER_DIR, 'src/index.ts'), {
    config: join(WORKER_DIR, 'wrangler.toml'),
    persistTo: join(dir, 'worker-state'),
    logLevel: 'none',
    vars: { PRIMARY_URL: primary.url, ALLOW_NO_AUTH: 'true', READ_WAIT_MS: '120000' },
    experimental: { disableExperimentalWarning: true },
  });
  ctx.cleanup.add('P9 Worker', () => worker.stop());
  const wurl = `http://${worker.address}:${worker.port}`;
  const wpost = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${wurl}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });

  // Bootstrap both (the Worker's first read waits for its snapshot).
  const first = await wpost(`/v1/db/${DB}/query`, { sql: 'SELECT count(*) FROM kv' });
  if (first.status !== 200) throw new Error(`Worker first read: ${first.status} ${await first.text()}`);
  await waitUntil(() => node.store.get(DB)?.position?.txid === primary.store.get(DB)!.position.txid, 'the Node replica to bootstrap', 60_000, 10);

  // Point reads inside each replica.
  const key = () => Math.floor(Math.random() * rows);
  const repeat = async (n: number) => {
    const r = (await (await wpost(`/v1/db/${DB}/debug/repeat`, { sql: 'SELECT v FROM kv WHERE k = ?', params: [key()], n })).json()) as { perQueryUs: number };
    return r.perQueryUs;
  };
  await repeat(ctx.quick ? 2000 : 20000); // warm-up: wasm tiers up after its first calls
  const workerReads: number[] = [];
  for (let i = 0; i < 10; i++) workerReads.push(await repeat(ctx.quick ? 200 : 2000));
  const stmt = node.store.get(DB)!.prepare('SELECT v FROM kv WHERE k = ?');
  const nodeReads: number[] = [];
  for (let i = 0; i < 10; i++) {
    const n = ctx.quick ? 200 : 2000;
    const s = performance.now();
    for (let j = 0; j < n; j++) stmt.get(key());
    nodeReads.push(((performance.now() - s) * 1000) / n);
  }

  // Applies of one-row change sets: the Worker's own timer; the Node replica's timed around apply().
  const nodeDb = node.store.get(DB)!;
  const nodeApplies: number[] = [];
  const original = nodeDb.apply.bind(nodeDb);
  nodeDb.apply = (changeSets: ChangeSet[]) => {
    const s = performance.now();
    try {
      return original(changeSets);
    } finally {
      nodeApplies.push(performance.now() - s);
    }
  };
  const describe = async () => (await (await fetch(`${wurl}/v1/db/${DB}`)).json()) as { apply: { applies: number; applyMsTotal: number } };
  const before = (await describe()).apply;
  let token = '';
  for (let i = 0; i < updates; i++) token = await exec({ sql: 'UPDATE kv SET v = ? WHERE k = ?', params: [`u${i}`, key()] });
  const settled = await wpost(`/v1/db/${DB}/query`, { sql: 'SELECT 1' }, { 'Edgelite-Token': token });
  if (settled.status !== 200) throw new Error(`Worker did not reach the last write: ${settled.status}`);
  await waitUntil(() => (nodeDb.position?.txid ?? 0) >= primary.store.get(DB)!.position.txid, 'the Node replica to apply the updates', 30_000, 5);
  const after = (await describe()).apply;
  const workerApplyMs = (after.applyMsTotal - before.applyMsTotal) / Math.max(1, after.applies - before.applies);
  const nodeApplyMs = median(nodeApplies);

  const workerRead = median(workerReads);
  const nodeRead = median(nodeReads);
  const notes = [
    `${rows} rows of ~100 bytes; reads: mean per query of runs inside the Durable Object (debug/repeat) vs better-sqlite3 prepare().get() on the Node replica's file; medians of 10 runs`,
    `applies: ${after.applies - before.applies} Worker applies (its storage transaction included) and ${nodeApplies.length} Node applies for ${updates} one-row UPDATEs`,
    'local workerd through wrangler unstable_dev: in production the clock does not advance during execution, so these in-object timings are only measurable locally',
  ];
  const row = (id: string, scenario: string, unit: string, w: number, n: number): Row => ({
    id, scenario, unit, edgelite: w, baseline: n, baselineLabel: 'Node replica, same data', ratio: n / w, goal: '— (side by side)', met: null, notes: [],
  });
  const out = [
    row('P9', 'Worker replica point read inside the Durable Object', 'µs', workerRead, nodeRead),
    row('P9', 'Worker replica apply of a one-row change set', 'ms', workerApplyMs, nodeApplyMs),
  ];
  out[0]!.notes = notes;
  return out;
}
