/**
 * P11 object storage, three rows:
 *
 * - **Restore**: `edgelite restore s3://… --db big --out FILE` (the CLI, its own process) of a SIZE
 *   database (1 GiB; quick: 20 MB of incompressible rows) from s3rver on 127.0.0.1 (started here),
 *   against a plain download of the same bytes from the same server: curl GETting the snapshot object
 *   (signed with its own `--aws-sigv4`) to a file. The bucket is filled by the real backup code
 *   (PrimaryStore + BackupRunner, in this process). The restore's peak RSS goes in the notes.
 * - **P4 with backup**: POST /v1/db/bench/exec under 16 connections (P4's HTTP row) on two `edgelite
 *   primary` processes, one with `--backup s3://…` (interval 1 s) and one without, run alternately.
 * - **PUTs per hour**: DATABASES databases of which WRITTEN are written once a second each, backed up
 *   (PrimaryStore + BackupRunner, interval 1 s) to a file:// store wrapped to count PUTs, for a
 *   measured window after the first pass (every database's first snapshot) is done.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BackupRunner } from '../../../primary/backup.ts';
import { openObjectStore } from '../../../shared/node/open-object-store.ts';
import { parsePrimaryConfig } from '../../../primary/config.ts';
import { PrimaryStore } from '../../../primary/store.ts';
import { silentLogger } from '../../../shared/log.ts';
import { FileObjectStore } from '../../../shared/node/file-object-store.ts';
import { parseBackupTarget, type ObjectInfo, type ObjectStore } from '../../../shared/object-store.ts';
import { S3_BUCKET, startS3, type S3Server } from '../../integration/backup-kit.ts';
import { spawnNode } from '../../kit/spawn.ts';
import { buildDatabase, cpuSeconds, median, nowMs, postJson, REPO_ROOT, sleep, tempDir, type BenchContext, type Row, type ServerProcess } from './common.ts';
import { loadPost } from './load.ts';

const run = promisify(execFile);
const CLI = join(REPO_ROOT, 'bin', 'edgelite.mjs');


function storeOptions(dir: string) {
  const c = parsePrimaryConfig(['--data', dir], {});
  return { ...c, log: { retention: c.retention }, logger: silentLogger };
}

/** backUp uploads every database in `dataDir` once (first snapshots) with the real backup code. */
async function backUp(dataDir: string, objects: ObjectStore): Promise<void> {
  const backup = new BackupRunner(objects, { intervalMs: 60_000, logger: silentLogger });
  const store = new PrimaryStore(dataDir, { ...storeOptions(dataDir), logHold: (n) => backup.holdFor(n) }).open();
  try {
    backup.start(store);
    await backup.flush();
  } finally {
    await backup.close();
    store.close();
  }
}

async function restoreRow(ctx: BenchContext, s3: S3Server): Promise<Row> {
  const size = ctx.quick ? 20 * 2 ** 20 : 2 ** 30;
  const dir = tempDir(ctx, 'restore');
  const data = join(dir, 'data');
  mkdirSync(data);
  ctx.log(`P11 building a ${(size / 2 ** 20).toFixed(0)} MiB database`);
  buildDatabase(join(data, 'big.db'), size);
  const url = `s3://${S3_BUCKET}/p11-restore`;
  const objects = openObjectStore(parseBackupTarget(url, s3.env));
  const t0 = nowMs();
  await backUp(data, objects);
  ctx.log(`P11 uploaded its snapshot in ${((nowMs() - t0) / 1000).toFixed(1)} s`);
  const snapshot = (await objects.list('big/')).find((o) => o.key.endsWith('.snapshot'));
  if (!snapshot) throw new Error('no snapshot of big in the bucket');
  const objectUrl = `${s3.endpoint}/${S3_BUCKET}/p11-restore/${snapshot.key}`;
  const restoreSec: number[] = [];
  const downloadSec: number[] = [];
  const rssMiB: number[] = [];
  for (let i = 0; i < ctx.runs; i++) {
    const out = join(dir, `restored-${i}.db`);
    let t = nowMs();
    const r = await run('/usr/bin/time', ['-f', 'maxrss=%M', process.execPath, CLI, 'restore', url, '--db', 'big', '--out', out], { env: { ...process.env, ...s3.env }, maxBuffer: 16 * 2 ** 20 });
    restoreSec.push((nowMs() - t) / 1000);
    rssMiB.push(Number(/maxrss=(\d+)/.exec(r.stderr)?.[1] ?? Number.NaN) / 1024);
    t = nowMs();
    await run('curl', ['-sS', '--fail', '--aws-sigv4', 'aws:amz:us-east-1:s3', '-H', 'x-amz-content-sha256: UNSIGNED-PAYLOAD', '--user', 'S3RVER:S3RVER', '-o', join(dir, `download-${i}`), objectUrl], { maxBuffer: 2 ** 20 });
    downloadSec.push((nowMs() - t) / 1000);
    rmSync(out, { force: true });
    rmSync(join(dir, `download-${i}`), { force: true });
    ctx.log(`P11 run ${i + 1}: restore ${restoreSec.at(-1)!.toFixed(2)} s (peak RSS ${rssMiB.at(-1)!.toFixed(0)} MiB), curl GET ${downloadSec.at(-1)!.toFixed(2)} s`);
  }
  const restore = median(restoreSec);
  const download = median(downloadSec);
  const mib = snapshot.size / 2 ** 20;
  return {
    id: 'P11',
    scenario: `restore of a ${mib.toFixed(0)} MiB database from s3rver (edgelite restore, its own process)`,
    unit: 'MiB/s',
    edgelite: mib / restore,
    baseline: mib / download,
    baselineLabel: 'curl GET of the snapshot object, same server',
    ratio: download / restore,
    goal: '≥ 0.5×',
    met: download / restore >= 0.5,
    notes: [`restore ${restore.toFixed(2)} s (process start, list, GET, verify, write, fsync), download ${download.toFixed(2)} s; restore peak RSS ${median(rssMiB).toFixed(0)} MiB`],
  };
}

/** startPrimary runs `edgelite primary` with `env` (the backup's credentials), stopped by the cleanup stack. */
async function startPrimary(ctx: BenchContext, args: string[], env: Record<string, string>): Promise<ServerProcess> {
  const p = await spawnNode([CLI, 'primary', ...args], env, { startTimeoutMs: 120_000 });
  const stop = ctx.cleanup.add(`edgelite primary (pid ${p.pid})`, async () => void (await p.stop()));
  return { url: p.url, pid: p.pid, stop };
}

async function p4Row(ctx: BenchContext): Promise<Row> {
  const dir = tempDir(ctx, 'p4-backup');
  // The bucket in a process of its own (on the bench's event loop it would slow the load generator),
  // at the lowest CPU priority and on tmpfs where there is one: in production it is another machine,
  // and what this row measures is the primary's cost of backing up, not the bucket server's CPU and
  // disk writes on the same two cores and disk (the primary's own CPU per transaction, with and
  // without, is in the row's notes).
  const shm: Record<string, string> = existsSync('/dev/shm') ? { EDGELITE_S3_ROOT: '/dev/shm' } : {};
  const bucket = await spawnNode([join(REPO_ROOT, 'bin', 'run-ts.mjs'), join(REPO_ROOT, 'test', 'bench', 's3rver-main.ts')], shm);
  setPriority(bucket.pid, 19);
  const stopBucket = ctx.cleanup.add(`s3rver (pid ${bucket.pid})`, async () => void (await bucket.stop()));
  const s3env = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_S3: bucket.url };
  const common = ['--listen', '127.0.0.1:0'];
  const off = await startPrimary(ctx, ['--data', join(dir, 'off'), ...common], {});
  const on = await startPrimary(ctx, ['--data', join(dir, 'on'), ...common, '--backup', `s3://${S3_BUCKET}/p11-p4`, '--backup-interval', '1s'], s3env);
  const value = 'x'.repeat(100);
  for (const p of [off, on]) {
    await postJson(`${p.url}/v1/db/bench`, undefined, 'PUT');
    await postJson(`${p.url}/v1/db/bench/exec`, { sql: 'CREATE TABLE w (id INTEGER PRIMARY KEY, v TEXT NOT NULL)' });
  }
  const body = () => JSON.stringify({ sql: 'INSERT INTO w (v) VALUES (?)', params: [value] });
  const durationSec = ctx.quick ? 1 : 10;
  const rates = { on: [] as number[], off: [] as number[] };
  /** The primary's own CPU (ms) per 1,000 transactions: what backing up costs it, whatever the bucket server takes. */
  const cpuPerK = { on: [] as number[], off: [] as number[] };
  for (let i = 0; i < ctx.runs; i++) {
    for (const [name, p] of i % 2 === 0 ? ([['off', off], ['on', on]] as const) : ([['on', on], ['off', off]] as const)) {
      const cpu = cpuSeconds(p.pid);
      const run = await loadPost({ url: p.url, path: '/v1/db/bench/exec', connections: 16, durationSec, body });
      rates[name].push(run.perSec);
      cpuPerK[name].push((1000 * 1000 * (cpuSeconds(p.pid) - cpu)) / (run.perSec * durationSec));
    }
    ctx.log(`P11 P4 run ${i + 1}: backup on ${Math.round(rates.on.at(-1)!)} txn/s, off ${Math.round(rates.off.at(-1)!)} txn/s`);
  }
  await on.stop();
  await off.stop();
  await stopBucket();
  const r = median(rates.on) / median(rates.off);
  return {
    id: 'P11',
    scenario: 'P4 HTTP exec, 16 connections, with --backup s3://… (interval 1 s)',
    unit: 'txn/s',
    edgelite: median(rates.on),
    baseline: median(rates.off),
    baselineLabel: 'the same primary without --backup',
    ratio: r,
    goal: '≥ 0.9×',
    met: r >= 0.9,
    notes: [
      `${durationSec} s per run, runs alternate which goes first; s3rver in a process of its own at nice 19 on the same 2 cores, its objects ${'EDGELITE_S3_ROOT' in shm ? 'on tmpfs' : 'on the same disk'}`,
      `the primary's CPU per 1,000 transactions: ${median(cpuPerK.on).toFixed(0)} ms with --backup, ${median(cpuPerK.off).toFixed(0)} ms without`,
    ],
  };
}

/** CountingStore is an ObjectStore that counts the PUTs it passes on. */
class CountingStore implements ObjectStore {
  readonly description: string;
  puts = 0;
  readonly #inner: ObjectStore;
  constructor(inner: ObjectStore) {
    this.#inner = inner;
    this.description = inner.description;
  }
  put(key: string, bytes: Uint8Array): Promise<void> {
    this.puts++;
    return this.#inner.put(key, bytes);
  }
  get(key: string): Promise<Uint8Array | null> {
    return this.#inner.get(key);
  }
  list(prefix: string): Promise<ObjectInfo[]> {
    return this.#inner.list(prefix);
  }
  delete(key: string): Promise<void> {
    return this.#inner.delete(key);
  }
}

async function putsRow(ctx: BenchContext): Promise<Row> {
  const databases = ctx.quick ? 50 : 1000;
  const written = ctx.quick ? 2 : 10;
  const windowSec = ctx.quick ? 3 : 60;
  const dir = tempDir(ctx, 'puts');
  const data = join(dir, 'data');
  const objects = new CountingStore(new FileObjectStore(join(dir, 'bucket')));
  const backup = new BackupRunner(objects, { intervalMs: 1000, logger: silentLogger });
  const store = new PrimaryStore(data, { ...storeOptions(data), logHold: (n) => backup.holdFor(n) }).open();
  try {
    for (let i = 0; i < databases; i++) store.create(`db${String(i).padStart(4, '0')}`).db.exec([{ sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)', params: [] }]);
    backup.start(store);
    await backup.flush(); // every database's first snapshot: not part of the steady state measured
    const writers = Array.from({ length: written }, (_, i) => store.require(`db${String(i).padStart(4, '0')}`));
    const before = objects.puts;
    const t = nowMs();
    let writes = 0;
    // Each written database once a second, spread over the second, paced by the clock (no drift).
    while (nowMs() - t < windowSec * 1000) {
      const db = writers[writes % written]!;
      db.exec([{ sql: 'INSERT INTO t (v) VALUES (?)', params: [`write ${writes}`] }]);
      writes++;
      await sleep(Math.max(0, t + (writes * 1000) / written - nowMs()));
    }
    const seconds = (nowMs() - t) / 1000;
    const puts = objects.puts - before;
    const perHour = (puts / seconds) * 3600;
    ctx.log(`P11 PUTs: ${puts} in ${seconds.toFixed(1)} s for ${writes} writes to ${written} of ${databases} databases`);
    return {
      id: 'P11',
      scenario: `backup PUTs per hour, ${databases} databases, ${written} written once a second (interval 1 s)`,
      unit: 'PUT/h',
      edgelite: perHour,
      baseline: null,
      baselineLabel: '',
      ratio: null,
      goal: 'printed (grows with the databases written, not with all)',
      met: null,
      notes: [`measured: ${puts} PUTs in ${seconds.toFixed(1)} s (${writes} writes), after the first pass's ${before} snapshot PUTs; file:// store counting PUTs`],
    };
  } finally {
    await backup.close();
    store.close();
  }
}

export async function runP11(ctx: BenchContext): Promise<Row[]> {
  const s3 = await startS3();
  const stop = ctx.cleanup.add('s3rver', () => s3.close());
  try {
    return [await restoreRow(ctx, s3), await p4Row(ctx), await putsRow(ctx)];
  } finally {
    await stop();
  }
}
