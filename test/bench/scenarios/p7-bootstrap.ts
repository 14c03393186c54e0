/**
 * P7 bootstrap: a new replica of a SIZE database (1 GiB − 1 MiB; quick: 20 MB of incompressible rows) from
 * nothing to "position applied" through the snapshot endpoint, against a plain HTTP download of the same
 * file to disk (`curl -o FILE` from the bare node:http static server). The replica runs in this
 * process (startReplica, fresh data directory per run) so the clock starts at the call and stops when
 * its position equals the primary's; the primary is its own process. Reference downloads to /dev/null
 * (static file and the snapshot endpoint itself) go in the notes, to tell network/serving cost from the
 * replica's restore.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseReplicaConfig } from '../../../replica/config.ts';
import { startReplica } from '../../../replica/server.ts';
import { buildDatabase, getJson, median, nowMs, spawnBareServer, tempDir, waitUntil, type BenchContext, type Row } from './common.ts';
import { startPrimaryProcess } from './cluster.ts';

const run = promisify(execFile);
const NAME = 'big';


async function curlSeconds(url: string, out: string): Promise<number> {
  const t = nowMs();
  await run('curl', ['-sS', '--fail', '-o', out, url], { maxBuffer: 1024 * 1024 });
  return (nowMs() - t) / 1000;
}

interface SizeResult {
  bytes: number;
  replicaSec: number[];
  restoreMs: number[];
  plainSec: number[];
  plainNullSec: number[];
  snapshotNullSec: number[];
  primaryOpenSec: number;
}

/**
 * measureSize builds a database of about `target` bytes and bootstraps a fresh replica from it `runs`
 * times, each bounded by a timeout derived from the plain download. Returns the figures, or why a
 * bootstrap did not complete (what the replica logged).
 */
async function measureSize(ctx: BenchContext, target: number, runs: number): Promise<SizeResult | { failure: string }> {
  const dir = tempDir(ctx, 'bootstrap');
  const dataDir = join(dir, 'primary');
  mkdirSync(dataDir);
  const file = join(dataDir, `${NAME}.db`);
  let t = nowMs();
  buildDatabase(file, target);
  const bytes = statSync(file).size;
  ctx.log(`P7 built a ${(bytes / 2 ** 20).toFixed(0)} MiB database in ${((nowMs() - t) / 1000).toFixed(1)} s`);
  t = nowMs();
  const primary = await startPrimaryProcess(ctx, dataDir);
  const primaryOpenSec = (nowMs() - t) / 1000;
  const want = (await getJson(`${primary.url}/v1/db/${NAME}`)).txid as number;
  const stat = await spawnBareServer(ctx, ['--static', file]);
  const r: SizeResult = { bytes, replicaSec: [], restoreMs: [], plainSec: [], plainNullSec: [], snapshotNullSec: [], primaryOpenSec };
  try {
    for (let i = 0; i < runs; i++) {
      const copy = join(dir, 'copy.db');
      r.plainSec.push(await curlSeconds(`${stat.url}/file`, copy));
      if (statSync(copy).size !== bytes) throw new Error(`plain download got ${statSync(copy).size} of ${bytes} bytes`);
      rmSync(copy);
      r.plainNullSec.push(await curlSeconds(`${stat.url}/file`, '/dev/null'));
      r.snapshotNullSec.push(await curlSeconds(`${primary.url}/v1/db/${NAME}/snapshot`, '/dev/null'));

      const replicaDir = join(dir, `replica-${i}`);
      const logs: Array<Record<string, unknown>> = [];
      const timeoutMs = Math.max(60_000, 10_000 * r.plainSec.at(-1)!);
      const started = nowMs();
      const replica = await startReplica(parseReplicaConfig(['--primary', primary.url, '--data', replicaDir, '--listen', '127.0.0.1:0', '--databases', NAME], {}), (e) => logs.push(e));
      try {
        await waitUntil(() => (replica.store.get(NAME)?.position?.txid ?? -1) >= want, 'the replica to bootstrap', timeoutMs, 2);
        r.replicaSec.push((nowMs() - started) / 1000);
      } catch (err) {
        const seen = [...new Set(logs.map((e) => `${String(e.msg)}${e.error ? `: ${String(e.error)}` : ''}`))];
        return { failure: `bootstrap of ${(bytes / 2 ** 20).toFixed(0)} MiB did not complete in ${(timeoutMs / 1000).toFixed(0)} s (${String(err)}); the replica logged ${logs.length} events: ${seen.join(' | ')}` };
      } finally {
        await replica.close();
        rmSync(replicaDir, { recursive: true, force: true });
      }
      const applied = logs.find((e) => e.msg === 'snapshot applied');
      if (typeof applied?.ms === 'number') r.restoreMs.push(applied.ms);
      ctx.log(`P7 run ${i + 1}: replica bootstrap ${r.replicaSec.at(-1)!.toFixed(2)} s, curl to file ${r.plainSec.at(-1)!.toFixed(2)} s, ` +
        `curl /dev/null ${r.plainNullSec.at(-1)!.toFixed(2)} s, snapshot endpoint to /dev/null ${r.snapshotNullSec.at(-1)!.toFixed(2)} s`);
    }
    return r;
  } finally {
    await stat.stop();
    await primary.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * FULL_BYTES: 1 GiB less 1 MiB, just below SQLite's lock page (offset 1 GiB). Before commit 783fad8 the
 * primary could not open a database reaching it; the size stays so figures compare across that fix
 * (docs/BENCHMARKS.md, P7).
 */
const FULL_BYTES = 2 ** 30 - 2 ** 20;

/** FALLBACK_BYTES: measured when the full size cannot bootstrap, so the row still has a figure. */
const FALLBACK_BYTES = 128 * 2 ** 20;

export async function runP7(ctx: BenchContext): Promise<Row[]> {
  const notes: string[] = [];
  let result = await measureSize(ctx, ctx.quick ? 20 * 1000 * 1000 : FULL_BYTES, ctx.runs);
  if ('failure' in result) {
    ctx.log(`P7: ${result.failure}`);
    notes.push(`LIMIT: ${result.failure}`);
    result = await measureSize(ctx, FALLBACK_BYTES, ctx.runs);
    if ('failure' in result) throw new Error(`${notes[0]}; at ${FALLBACK_BYTES / 2 ** 20} MiB too: ${result.failure}`);
    notes.push(`the figures are for ${(result.bytes / 2 ** 20).toFixed(0)} MiB instead`);
  }
  const r = result;
  const mbps = (sec: number) => r.bytes / 1e6 / sec;
  const el = mbps(median(r.replicaSec));
  const base = mbps(median(r.plainSec));
  return [
    {
      id: 'P7',
      scenario: `bootstrap a ${(r.bytes / 2 ** 20).toFixed(0)} MiB database (snapshot → position applied)`,
      unit: 'MB/s',
      edgelite: el,
      baseline: base,
      baselineLabel: 'curl -o FILE from node:http',
      ratio: el / base,
      goal: '≥ 0.7×',
      met: el / base >= 0.7,
      notes: [
        ...notes,
        `replica bootstrap ${median(r.replicaSec).toFixed(2)} s (follower's download + restore ${r.restoreMs.length ? (median(r.restoreMs) / 1000).toFixed(2) : '?'} s); plain download to a file ${median(r.plainSec).toFixed(2)} s`,
        `to /dev/null with curl: the static file ${mbps(median(r.plainNullSec)).toFixed(0)} MB/s, the snapshot endpoint ${mbps(median(r.snapshotNullSec)).toFixed(0)} MB/s`,
        `the primary process took ${r.primaryOpenSec.toFixed(1)} s to open the database (checksum of every page) before serving`,
      ],
    },
  ];
}
