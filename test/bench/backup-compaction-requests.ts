/**
 * `node bin/run-ts.mjs test/bench/backup-compaction-requests.ts [--hours N] [--idle N]`: the store
 * requests continuous backup with compaction and retention costs (docs/FORMAT.md#compaction-and-retention),
 * with the default levels and a 1 s interval, over simulated time: one database written every second
 * and `--idle` databases never written, on a file:// store. Prints requests per hour by kind, for the
 * written database and for the idle ones, and the most objects a restore to any point reads.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compactionPolicy, restoreObjectBound } from '../../shared/backup-compaction.ts';
import { FileObjectStore } from '../../shared/node/file-object-store.ts';
import { DEFAULT_BACKUP_RETENTION_MS } from '../../primary/config.ts';
import { HOUR, Simulation } from '../integration/backup-compaction-kit.ts';

const { values } = parseArgs({ options: { hours: { type: 'string', default: '1' }, idle: { type: 'string', default: '20' } } });
const hours = Number(values.hours);
const idle = Array.from({ length: Number(values.idle) }, (_, i) => `idle${i}`);
const dir = mkdtempSync(join(tmpdir(), 'edgelite-bench-compaction-'));
try {
  const sim = new Simulation({ dir, objects: new FileObjectStore(join(dir, 'bucket')), retentionMs: DEFAULT_BACKUP_RETENTION_MS, compaction: {}, stepMs: [1000, 1000], seed: 11 });
  await sim.start('busy', ...idle);
  const startAt = sim.requests.length;
  const started = performance.now();
  const end = sim.now + hours * HOUR;
  let maxPlan = 0;
  for (let i = 0; sim.now < end; i++) {
    sim.now += 1000;
    await sim.write('busy');
    await sim.runner.flush();
    if (i % 600 === 599) {
      const from = sim.written.at(-1)!;
      for (const w of [sim.written[1]!, sim.written[Math.floor(sim.written.length / 2)]!, from]) maxPlan = Math.max(maxPlan, await sim.restorePlanSize('busy', { txid: w.txid }));
    }
  }
  const requests = sim.requests.slice(startAt);
  const perHour = (db: (key: string) => boolean, op: string) => Math.round(requests.filter((r) => r.op === op && db(r.key)).length / hours);
  const busy = (k: string) => k.startsWith('busy/');
  const idleDb = (k: string) => !k.startsWith('busy/');
  console.log(`simulated ${hours} h in ${((performance.now() - started) / 1000).toFixed(1)} s: 1 database written every second, ${idle.length} idle`);
  for (const op of ['put', 'get', 'delete', 'list']) console.log(`  ${op.padEnd(6)} per hour: written ${perHour(busy, op)}, idle ${perHour(idleDb, op)}`);
  const st = sim.runner.status('busy');
  console.log(`  merged segments per hour: ${Math.round(st.compactions / hours)}; objects deleted per hour: ${Math.round(st.deleted / hours)}`);
  console.log(`  objects listed at the end: ${(await sim.objects.list('busy/')).length}; largest restore plan seen: ${maxPlan} objects (bound ${restoreObjectBound(compactionPolicy(1), 1000)})`);
  await sim.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
