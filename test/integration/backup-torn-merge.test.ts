/**
 * A merged segment torn by a kill (a store whose PUTs are not atomic keeps what arrived,
 * docs/FORMAT.md#compaction-and-retention): a restore to a txid the merge covers goes through the
 * pieces the merge replaced, which are still kept for the grace period, and equals the primary at that
 * txid; with the pieces gone too, the damage is reported (BACKUP_CORRUPT naming the merge).
 */
import { mkdtempSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseBackupKey, type SegmentObject } from '../../shared/backup-layout.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { FileObjectStore } from '../../shared/node/file-object-store.ts';
import { restoreDatabase } from '../../primary/restore.ts';
import { HOUR, MINUTE, Simulation } from './backup-compaction-kit.ts';

const DB = 'app';
let dir: string;
let sim: Simulation;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'edgelite-torn-merge-'));
  sim = new Simulation({ dir, objects: new FileObjectStore(join(dir, 'bucket')), retentionMs: 8 * HOUR, compaction: { levelsMs: [5 * MINUTE, 30 * MINUTE], snapshotEveryMs: 12 * HOUR, graceMs: 10 * HOUR }, stepMs: [MINUTE, 2 * MINUTE] });
  sim.idleStretches = false;
  await sim.start(DB);
  await sim.runFor(DB, 40 * MINUTE);
});
afterAll(async () => {
  await sim?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('a restore goes around a torn merge through its pieces, and reports it when they are gone', async () => {
  const segments = (await sim.objects.list(`${DB}/`)).map(parseBackupKey).filter((o): o is SegmentObject => o?.kind === 'segment');
  const pieces = (m: SegmentObject) => segments.filter((x) => x !== m && m.minTxid <= x.minTxid && x.maxTxid <= m.maxTxid);
  const merge = segments.filter((m) => pieces(m).length >= 2).sort((a, b) => b.maxTxid - b.minTxid - (a.maxTxid - a.minTxid))[0];
  expect(merge, 'a merge whose pieces are still kept').toBeDefined();
  const file = join(dir, 'bucket', ...merge!.key.split('/'));
  truncateSync(file, Math.floor(statSync(file).size / 3));
  const want = sim.written.find((w) => w.txid === merge!.maxTxid)!;
  const out = join(dir, 'restored.db');
  const result = await restoreDatabase(sim.objects, { db: DB, target: { txid: want.txid }, out, force: true });
  expect(result.checksum).toBe(want.checksum);

  for (const p of pieces(merge!)) await sim.objects.delete(p.key);
  const err = await restoreDatabase(sim.objects, { db: DB, target: { txid: want.txid }, out, force: true }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(EdgeliteError);
  expect((err as EdgeliteError).code).toBe('BACKUP_CORRUPT');
  expect((err as EdgeliteError).details?.key).toBe(merge!.key);
});
