/**
 * Compaction levels and retention of the backup (docs/FORMAT.md#compaction-and-retention), over
 * simulated days of writes to a real primary store, on file:// and on a real S3-compatible server:
 * every restore plan stays within the documented bound, restores after compaction equal the primary
 * at that txid, retention removes what the window no longer needs while every point inside it still
 * restores, and an idle database costs no request.
 */
import { rejectedEdgelite } from '../helpers.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalog, parseBackupKey, planRestore } from '../../shared/backup-layout.ts';
import { compactionPolicy, restoreObjectBound } from '../../shared/backup-compaction.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { FileObjectStore } from '../../shared/node/file-object-store.ts';
import { parseBackupTarget, type ObjectStore } from '../../shared/object-store.ts';
import { openObjectStore } from '../../shared/node/open-object-store.ts';
import { DEFAULT_BACKUP_RETENTION_MS, parsePrimaryConfig } from '../../primary/config.ts';
import { renderMetrics } from '../../primary/metrics.ts';
import { restoreDatabase } from '../../primary/restore.ts';
import { integrityCheck } from '../kit/api.ts';
import { fileChecksum, pick, S3_BUCKET, startS3, type S3Server } from './backup-kit.ts';
import { HOUR, MINUTE, Simulation, type Recorded } from './backup-compaction-kit.ts';

const DB = 'app';
const IDLE = 'idle';
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'edgelite-backup-compaction-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));


/** Levels of 5 min, 30 min, 2 h and 6 h, a snapshot every 12 h; uploads 1..4 min apart. */
const COMPACTION = { levelsMs: [5 * MINUTE, 30 * MINUTE, 2 * HOUR, 6 * HOUR], snapshotEveryMs: 12 * HOUR, graceMs: 10 * MINUTE };
const STEP: [number, number] = [MINUTE, 4 * MINUTE];
const RETENTION = 8 * HOUR;
const BOUND = restoreObjectBound(compactionPolicy(RETENTION, COMPACTION), STEP[0]);

describe('compaction and retention over two simulated days (file://)', () => {
  let sim: Simulation;
  const plans: number[] = [];

  beforeAll(async () => {
    sim = new Simulation({ dir: join(dir, 'file'), objects: new FileObjectStore(join(dir, 'file', 'bucket')), retentionMs: RETENTION, compaction: COMPACTION, stepMs: STEP, seed: 3 });
    await sim.start(DB, IDLE);
  });
  afterAll(() => sim?.close());

  /** checkPlans: restore plans for random points (txids and times) are within the bound; two restores match. */
  const checkPlans = async (): Promise<void> => {
    const from = catalog(await sim.objects.list(`${DB}/`)).get(DB)![0]!.ranges[0]!.fromTxid;
    const restorable = sim.written.filter((w) => w.txid >= from);
    for (const w of pick(restorable, 12, sim.rand(1000) + 1)) {
      plans.push(await sim.restorePlanSize(DB, { txid: w.txid }));
      plans.push(await sim.restorePlanSize(DB, { time: w.time }));
    }
    for (const [i, w] of pick(restorable, 2, sim.rand(1000) + 1).entries()) {
      const r = await sim.restoreAndCompare(DB, w, `mid-${i}`);
      expect([r.txid, r.file]).toEqual([w.txid, w.checksum]);
    }
  };

  it(`a simulated day: every restore plan reads at most ${BOUND} objects, and restores equal the primary`, async () => {
    await sim.runFor(DB, 24 * HOUR, checkPlans, 60);
    await checkPlans();
    expect(plans.length).toBeGreaterThan(100);
    expect(Math.max(...plans)).toBeLessThanOrEqual(BOUND);
    const uploads = sim.requests.filter((r) => r.op === 'put' && r.key.startsWith(`${DB}/`) && r.key.endsWith('.changes')).length;
    const status = sim.runner.status(DB);
    expect(status.compactions).toBeGreaterThan(50);
    expect(status.deleted).toBeGreaterThan(uploads / 2); // superseded pieces went once their grace ended
    expect(status.compactionErrors).toBe(0);
    const listed = await sim.objects.list(`${DB}/`);
    expect(listed.length).toBeLessThan(uploads / 4);

    // Retention (8 h) already acts on the first day: the points still restorable are the recent ones.
    const from = catalog(listed).get(DB)![0]!.ranges[0]!.fromTxid;
    expect(from).toBeGreaterThan(sim.written[0]!.txid);
    for (const [i, w] of pick(sim.written.filter((x) => x.txid >= from), 20, 9).entries()) {
      const r = await sim.restoreAndCompare(DB, w, `day-${i}`);
      expect([r.txid, r.checksum, r.file]).toEqual([w.txid, w.checksum, w.checksum]);
      if (i < 3) expect(integrityCheck(r.out)).toBe('ok');
    }
  }, 600_000);

  it('a reader that listed just before merges and deletions still finds every object it listed, for the grace period', async () => {
    sim.idleStretches = false;
    await sim.runFor(DB, 20 * MINUTE); // recent points past the newest snapshot, in windows still open
    const listing = await sim.objects.list(`${DB}/`);
    const frozen: ObjectStore = {
      description: 'a listing taken earlier',
      list: async (prefix) => listing.filter((o) => o.key.startsWith(prefix)),
      get: (key) => sim.objects.get(key),
      put: () => Promise.reject(new Error('read only')),
      delete: () => Promise.reject(new Error('read only')),
    };
    const recent = sim.written.slice(-10);
    const planned = new Set<string>();
    for (const w of recent) {
      const plan = planRestore(DB, catalog(listing).get(DB), { txid: w.txid });
      for (const o of [plan.snapshot, ...plan.segments]) planned.add(o.key);
    }
    const superseded = async (): Promise<string[]> => {
      const segs = (await sim.objects.list(`${DB}/`)).map((o) => parseBackupKey(o)!).filter((o) => o.kind === 'segment');
      return [...planned].filter((k) => {
        const p = parseBackupKey({ key: k, size: 0 });
        return p?.kind === 'segment' && segs.some((o) => o.key !== k && o.minTxid <= p.minTxid && p.maxTxid <= o.maxTxid);
      });
    };
    // Upload by upload until a merge supersedes pieces that listing's plans read...
    for (let i = 0; i < 100 && (await superseded()).length === 0; i++) await sim.runFor(DB, 1);
    expect((await superseded()).length).toBeGreaterThan(0);
    // ...then for most of the grace period: merges go on, every object listed is still there.
    await sim.runFor(DB, COMPACTION.graceMs - 2 * STEP[1]);
    const now = new Set((await sim.objects.list(`${DB}/`)).map((o) => o.key));
    expect([...planned].filter((k) => !now.has(k))).toEqual([]);
    for (const [i, w] of recent.entries()) {
      const r = await restoreDatabase(frozen, { db: DB, target: { txid: w.txid }, out: join(dir, `frozen-${i}.db`) });
      expect([r.txid, fileChecksum(join(dir, `frozen-${i}.db`))]).toEqual([w.txid, w.checksum]);
    }
    // Past the grace period the pieces merged since are gone: that old listing must be read again.
    await sim.runFor(DB, COMPACTION.graceMs + 10 * MINUTE);
    sim.idleStretches = true;
    const still = new Set((await sim.objects.list(`${DB}/`)).map((o) => o.key));
    const gone = [...planned].filter((k) => !still.has(k));
    expect(gone.length).toBeGreaterThan(0);
    const w = recent.find((x) => {
      const plan = planRestore(DB, catalog(listing).get(DB), { txid: x.txid });
      return plan.segments.some((o) => gone.includes(o.key)) && still.has(plan.snapshot.key);
    })!;
    const err = await rejectedEdgelite(restoreDatabase(frozen, { db: DB, target: { txid: w.txid }, out: join(dir, 'frozen-late.db') }));
    expect([err.code, /listed but missing/.test(err.message)]).toEqual(['BACKUP_CORRUPT', true]);
    const fresh = await sim.restoreAndCompare(DB, w, 'relisted');
    expect([fresh.txid, fresh.file]).toEqual([w.txid, w.checksum]);
  }, 600_000);

  it('retention: after the window moved past old data it is gone, every point inside still restores, older ones are before-first-backup', async () => {
    await sim.runFor(DB, 24 * HOUR);
    const windowStart = sim.now - RETENTION;
    const [g, ...more] = catalog(await sim.objects.list(`${DB}/`)).get(DB)!;
    expect(more).toEqual([]);
    const first = g!.ranges[0]!;
    expect(g!.ranges).toHaveLength(1);
    // The newest snapshot at or before the window's start is kept, nothing older: snapshots come every
    // 12 h, so the first restorable point is at most 12 h (and the grace period) before the window.
    expect(first.fromTime).toBeLessThanOrEqual(windowStart);
    expect(first.fromTime).toBeGreaterThan(windowStart - 12 * HOUR - COMPACTION.graceMs - STEP[1]);
    expect(g!.snapshots.map((s) => s.time).every((t) => t >= first.fromTime)).toBe(true);
    expect([...g!.segments.values()].every((s) => s.time > first.fromTime)).toBe(true);
    expect(sim.written[1]!.time).toBeLessThan(first.fromTime - 24 * HOUR);

    const inside = sim.written.filter((w) => w.time >= windowStart);
    for (const [i, w] of pick(inside, 12, 4).entries()) {
      const r = await sim.restoreAndCompare(DB, w, `kept-${i}`);
      expect([r.txid, r.file]).toEqual([w.txid, w.checksum]);
    }
    const at = inside[Math.floor(inside.length / 2)]!;
    const byTime = await restoreDatabase(sim.objects, { db: DB, target: { time: at.time }, out: join(dir, 'by-time.db') });
    expect(byTime.txid).toBe(at.txid);

    const gone: Recorded[] = sim.written.filter((w) => w.txid < first.fromTxid);
    expect(gone.length).toBeGreaterThan(sim.written.length / 3);
    for (const w of [gone[0]!, gone[Math.floor(gone.length / 2)]!, gone.at(-1)!]) {
      const err = await rejectedEdgelite(restoreDatabase(sim.objects, { db: DB, target: { txid: w.txid }, out: join(dir, 'gone.db') }));
      expect([err.code, err.details?.reason]).toEqual(['NOT_RESTORABLE', 'before-first-backup']);
    }
    const err = await rejectedEdgelite(restoreDatabase(sim.objects, { db: DB, target: { time: gone[0]!.time }, out: join(dir, 'gone.db') }));
    expect([err.code, err.details?.reason]).toEqual(['NOT_RESTORABLE', 'before-first-backup']);

    const logged = sim.lines.filter((l) => l.msg === 'backup objects deleted' && l.db === DB);
    // Every deletion is logged: three 12-hourly snapshots and the segments before each went by age.
    expect(logged.reduce((n, l) => n + (l.expired as number), 0)).toBeGreaterThanOrEqual(6);
    expect(logged.reduce((n, l) => n + (l.expired as number) + (l.superseded as number), 0)).toBe(sim.runner.status(DB).deleted);
    const metrics = renderMetrics(sim.store, null, sim.runner);
    expect(metrics).toContain(`edgelite_backup_deleted_objects_total{db="${DB}"} ${sim.runner.status(DB).deleted}`);
    expect(metrics).toContain(`edgelite_backup_compactions_total{db="${DB}"} ${sim.runner.status(DB).compactions}`);
  }, 600_000);

  it('an idle database gets no PUTs and no deletes (nor any other request) after its first snapshot', async () => {
    const idle = sim.requests.filter((r) => r.key.startsWith(`${IDLE}/`));
    // Its first pass: one listing, one snapshot. Two simulated days later: nothing more.
    expect(idle.map((r) => r.op)).toEqual(['list', 'put']);
    expect(sim.runner.status(IDLE)).toMatchObject({ compactions: 0, deleted: 0, errors: 0 });
    const [g] = catalog(await sim.objects.list(`${IDLE}/`)).get(IDLE)!;
    expect(g!.snapshots).toHaveLength(1);
  });
});

describe('compaction and retention on S3 (s3rver)', () => {
  let s3: S3Server;
  let sim: Simulation;

  beforeAll(async () => {
    s3 = await startS3();
    const objects = openObjectStore(parseBackupTarget(`s3://${S3_BUCKET}/compaction`, s3.env));
    sim = new Simulation({ dir: join(dir, 's3'), objects, retentionMs: 2 * HOUR, compaction: { ...COMPACTION, snapshotEveryMs: 3 * HOUR }, stepMs: STEP, seed: 5 });
    await sim.start(DB);
  }, 60_000);
  afterAll(async () => {
    await sim?.close();
    await s3?.close();
  });

  it('merges, deletes and still restores every point inside the window', async () => {
    await sim.runFor(DB, 9 * HOUR);
    const status = sim.runner.status(DB);
    expect(status.compactions).toBeGreaterThan(10);
    expect(status.compactionErrors).toBe(0);
    const deleted = sim.requests.filter((r) => r.op === 'delete').map((r) => r.key);
    expect(deleted.length).toBe(status.deleted);
    const listed = new Set((await sim.objects.list(`${DB}/`)).map((o) => o.key));
    expect(deleted.filter((k) => listed.has(k))).toEqual([]);
    const [g] = catalog([...listed].map((key) => ({ key, size: 0 }))).get(DB)!;
    expect(g!.ranges).toHaveLength(1);
    const first = g!.ranges[0]!;
    const windowStart = sim.now - 2 * HOUR;
    expect(first.fromTime).toBeLessThanOrEqual(windowStart);
    const inside = sim.written.filter((w) => w.time >= windowStart);
    for (const [i, w] of pick(inside, 8, 2).entries()) {
      expect(await sim.restorePlanSize(DB, { txid: w.txid })).toBeLessThanOrEqual(restoreObjectBound(compactionPolicy(1, { ...COMPACTION, snapshotEveryMs: 3 * HOUR }), STEP[0]));
      const r = await sim.restoreAndCompare(DB, w, `s3-${i}`);
      expect([r.txid, r.file]).toEqual([w.txid, w.checksum]);
    }
    const err = await rejectedEdgelite(restoreDatabase(sim.objects, { db: DB, target: { txid: sim.written[1]!.txid }, out: join(dir, 's3-gone.db') }));
    expect([err.code, err.details?.reason]).toEqual(['NOT_RESTORABLE', 'before-first-backup']);
  }, 600_000);
});

describe('--backup-retention', () => {
  const parse = (...flags: string[]) => parsePrimaryConfig(['--data', dir, ...flags], {});
  it('takes a duration (7d, 12h, ...), defaults to 7 days, and is refused without --backup', () => {
    expect(parse('--backup', 'file:///tmp/b').backup).toMatchObject({ retentionMs: DEFAULT_BACKUP_RETENTION_MS });
    expect(DEFAULT_BACKUP_RETENTION_MS).toBe(7 * 24 * HOUR);
    expect(parse('--backup', 'file:///tmp/b', '--backup-retention', '12h').backup).toMatchObject({ retentionMs: 12 * HOUR });
    expect(parse('--backup', 'file:///tmp/b', '--backup-retention', '30d').backup).toMatchObject({ retentionMs: 30 * 24 * HOUR });
    expect(() => parse('--backup-retention', '7d')).toThrow(/--backup-retention needs --backup/);
    expect(() => parse('--backup', 'file:///tmp/b', '--backup-retention', 'a week')).toThrow(/--backup-retention wants a duration/);
    expect(() => parse('--backup', 'file:///tmp/b', '--backup-retention', '0d')).toThrow(/--backup-retention wants a duration/);
  });
});
