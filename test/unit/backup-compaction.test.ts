/**
 * The pure part of backup compaction and retention (shared/backup-compaction.ts), table by table:
 * which segments merge given a listing, which objects go given a listing and a time, the restore
 * bound, merging real encoded change sets; and the fewest-objects chain it relies on
 * (shared/backup-layout.ts: chainFrom, planRestore).
 */
import { describe, expect, it } from 'vitest';
import { catalog, chainFrom, planRestore, segmentKey, snapshotKey } from '../../shared/backup-layout.ts';
import {
  COMPACTION_LEVELS_MS,
  compactionPolicy,
  mergeSegments,
  planDeletions,
  planMerges,
  restoreObjectBound,
  SNAPSHOT_EVERY_MS,
  type CompactionPolicy,
  type Merge,
} from '../../shared/backup-compaction.ts';
import { decodeSegment, encodeSegment } from '../../shared/backup-objects.ts';
import { encodeChangeSet } from '../../shared/changeset.ts';
import type { ObjectInfo } from '../../shared/object-store.ts';
import type { ChangeSet } from '../../shared/types.ts';

const DB = 'app';
/** seg(min, max, time) / snap(txid, time): listing entries of generation 1 (or `gen`), 100 bytes a segment txid. */
const seg = (min: number, max: number, time: number, gen = 1): ObjectInfo => ({ key: segmentKey(DB, gen, min, max, time), size: 100 * (max - min + 1) });
const snap = (txid: number, time: number, gen = 1): ObjectInfo => ({ key: snapshotKey(DB, gen, txid, time), size: 5000 });
const range = (key: string): string => {
  const m = /\/([0-9a-f]{16})-([0-9a-f]{16})-/.exec(key) ?? /\/([0-9a-f]{16})-[0-9a-f]{12}\.snapshot$/.exec(key);
  return m ? (m[2] ? `${parseInt(m[1]!, 16)}-${parseInt(m[2], 16)}` : `snap@${parseInt(m[1]!, 16)}`) : key;
};
/** Level-0 segments of one txid each at the given times, txids from `from`. */
const l0 = (from: number, times: number[]): ObjectInfo[] => times.map((t, i) => seg(from + i, from + i, t));

/** Tiny levels for the tables: 10 ms and 60 ms windows. */
const policy = (o: Partial<CompactionPolicy> = {}): CompactionPolicy => compactionPolicy(1000, { levelsMs: [10, 60], graceMs: 5, snapshotEveryMs: 600, ...o });
const merges = (objects: ObjectInfo[], p = policy(), skip = new Set<string>()): string[] =>
  planMerges(objects, DB, 1, p, skip).map((m) => `L${m.level} ${m.inputs.map((i) => range(i.key)).join('+')} => ${range(m.output.key)}`);

describe('chainFrom and planRestore: the fewest objects', () => {
  const cases: Array<[string, ObjectInfo[], number, string[]]> = [
    ['pieces only', [seg(1, 3, 1), seg(4, 6, 2), seg(7, 9, 3)], 0, ['1-3', '4-6', '7-9']],
    ['a merged segment replaces its pieces', [seg(1, 3, 1), seg(4, 6, 2), seg(1, 6, 2), seg(7, 9, 3)], 0, ['1-6', '7-9']],
    ['from inside: the longest segment holding the next txid', [seg(1, 3, 1), seg(4, 6, 2), seg(1, 9, 3), seg(7, 9, 3)], 4, ['1-9']],
    ['a merged segment not reaching as far as a piece after it', [seg(1, 9, 3), seg(5, 12, 4), seg(10, 12, 4)], 6, ['5-12']],
    ['falls back to pieces where the merged one is missing', [seg(1, 3, 1), seg(4, 6, 2), seg(4, 9, 3)], 0, ['1-3', '4-9']],
    ['a retried upload: the longer of two with one minTxid', [seg(1, 3, 1), seg(1, 5, 2), seg(6, 6, 3)], 0, ['1-5', '6-6']],
    ['stops at a gap', [seg(1, 3, 1), seg(5, 6, 2)], 0, ['1-3']],
    ['nothing holds the next txid', [seg(3, 4, 1)], 0, []],
  ];
  it.each(cases)('%s', (_what, objects, from, want) => {
    const g = catalog(objects).get(DB)![0]!;
    expect(chainFrom(g, from).map((s) => range(s.key))).toEqual(want);
  });

  it('planRestore reads the merged segment, and the pieces when it is gone', () => {
    const pieces = [snap(0, 0), seg(1, 3, 1), seg(4, 6, 2), seg(7, 9, 3)];
    const plan = (objects: ObjectInfo[], txid: number) => planRestore(DB, catalog(objects).get(DB), { txid }).segments.map((s) => range(s.key));
    expect(plan([...pieces, seg(1, 9, 3)], 5)).toEqual(['1-9']);
    expect(plan(pieces, 5)).toEqual(['1-3', '4-6']);
    expect(plan([...pieces, seg(4, 9, 3)], 8)).toEqual(['1-3', '4-9']);
    // A snapshot inside a merged segment: continue with that segment, its earlier change sets skipped.
    expect(plan([snap(0, 0), snap(5, 2), seg(1, 9, 3)], 8)).toEqual(['1-9']);
  });
});

describe('planMerges', () => {
  const cases: Array<[string, ObjectInfo[], string[]]> = [
    ['no segments', [snap(0, 0)], []],
    ['the newest window is open: nothing merges', [snap(0, 0), ...l0(1, [1, 3, 5])], []],
    ['a complete window merges, the open one waits', [snap(0, 0), ...l0(1, [1, 3, 5, 12, 14])], ['L1 1-1+2-2+3-3 => 1-3']],
    ['a window of one segment has nothing to merge', [snap(0, 0), ...l0(1, [1, 12, 14])], []],
    // 0..59 is one complete level-2 window (something at 61 follows): merged whole, never through level 1.
    ['a complete top window merges straight to the top', [snap(0, 0), ...l0(1, [1, 5, 15, 25, 59, 61])], ['L2 1-1+2-2+3-3+4-4+5-5 => 1-5']],
    ['inside the open top window: complete lower windows', [snap(0, 0), seg(1, 5, 59), ...l0(6, [61, 65, 71, 75, 81])], ['L1 6-6+7-7 => 6-7', 'L1 8-8+9-9 => 8-9']],
    ['already merged pieces merge at the level above', [snap(0, 0), seg(1, 2, 9), seg(3, 4, 19), seg(5, 6, 29), seg(7, 7, 61)], ['L2 1-2+3-4+5-6 => 1-6']],
    ['caught up: a merged window is left alone', [snap(0, 0), seg(1, 6, 59), seg(7, 8, 69), seg(9, 9, 71)], []],
    ['superseded pieces next to their merge are not merged again', [snap(0, 0), ...l0(1, [1, 3]), seg(1, 2, 3), seg(3, 3, 12)], []],
    ['a clock stepping back keeps the window order', [snap(0, 0), ...l0(1, [1, 14, 3, 25])], ['L1 2-2+3-3 => 2-3']],
    ['across a gap the earlier run is complete', [snap(0, 0), ...l0(1, [1, 3]), snap(5, 4), ...l0(6, [5, 6])], ['L2 1-1+2-2 => 1-2']],
    ['segments before the first snapshot are not compacted', [...l0(1, [1, 3]), snap(2, 3), ...l0(3, [4, 12])], []],
  ];
  it.each(cases)('%s', (_what, objects, want) => {
    expect(merges(objects)).toEqual(want);
  });

  it('caps a merge at maxSegmentBytes and skips damaged segments', () => {
    const objects = [snap(0, 0), ...l0(1, [1, 2, 3, 4, 5, 6]), seg(7, 7, 12)];
    expect(merges(objects, policy({ maxSegmentBytes: 250 }))).toEqual(['L1 1-1+2-2 => 1-2', 'L1 3-3+4-4 => 3-4', 'L1 5-5+6-6 => 5-6']);
    const damaged = new Set([objects[3]!.key]); // txid 3
    expect(merges(objects, policy(), damaged)).toEqual(['L1 1-1+2-2 => 1-2', 'L1 4-4+5-5+6-6 => 4-6']);
  });

  it('reaches a fixed point: applying the plan leaves nothing to merge', () => {
    let objects: ObjectInfo[] = [snap(0, 0)];
    let t = 0;
    for (let txid = 1; txid <= 120; txid++) {
      t += 1 + (txid % 7);
      objects.push(seg(txid, txid, t));
      const plan = planMerges(objects, DB, 1, policy());
      objects = [...objects, ...plan.map((m) => ({ key: m.output.key, size: m.output.size }))];
      expect(planMerges(objects, DB, 1, policy())).toEqual([]);
    }
    const g = catalog(objects).get(DB)![0]!;
    const chain = chainFrom(g, 0);
    expect(chain.at(-1)!.maxTxid).toBe(120);
    expect(t).toBeLessThan(policy().snapshotEveryMs); // one snapshot period: the bound's premise
    expect(1 + chain.length).toBeLessThanOrEqual(restoreObjectBound(policy(), 1));
  });
});

describe('planDeletions', () => {
  const p = policy({ retentionMs: 100, graceMs: 10 });
  const plan = (objects: ObjectInfo[], now: number, since: Array<[string, number]> = [], current: number | null = 1) => {
    const r = planDeletions(objects, DB, { now, policy: p, current, supersededSince: new Map(since) });
    return { deletes: r.deletes.map((d) => `${d.reason} ${d.object.generation}:${range(d.object.key)}`).sort(), superseded: [...r.supersededSince].map(([k, v]) => `${range(k)}@${v}`), nextAt: r.nextAt };
  };

  it('keeps a superseded segment for the grace period, then deletes it', () => {
    const objects = [snap(0, 0), seg(1, 1, 1), seg(2, 2, 2), seg(1, 2, 2), seg(3, 3, 12)];
    expect(plan(objects, 20)).toEqual({ deletes: [], superseded: ['1-1@20', '2-2@20'], nextAt: 30 });
    expect(plan(objects, 29, [[objects[1]!.key, 20], [objects[2]!.key, 20]])).toMatchObject({ deletes: [], nextAt: 30 });
    expect(plan(objects, 30, [[objects[1]!.key, 20], [objects[2]!.key, 20]])).toEqual({ deletes: ['superseded 1:1-1', 'superseded 1:2-2'], superseded: [], nextAt: Infinity });
    // A segment found damaged supersedes nothing.
    expect(plan([snap(0, 0), seg(1, 1, 1), seg(1, 2, 2)], 50, [[seg(1, 1, 1).key, 0]]).deletes).toEqual(['superseded 1:1-1']);
    const damaged = planDeletions([snap(0, 0), seg(1, 1, 1), seg(1, 2, 2)], DB, { now: 50, policy: p, current: 1, supersededSince: new Map([[seg(1, 1, 1).key, 0]]), damaged: new Set([seg(1, 2, 2).key]) });
    expect(damaged.deletes).toEqual([]);
    // A retried upload's shorter segment is superseded too.
    expect(plan([snap(0, 0), seg(1, 3, 3), seg(1, 5, 5)], 50, [[seg(1, 3, 3).key, 0]]).deletes).toEqual(['superseded 1:1-3']);
  });

  const day = [snap(0, 0), seg(1, 10, 50), snap(10, 50), seg(11, 20, 150), snap(20, 150), seg(21, 30, 250), snap(30, 250), seg(31, 31, 260)];
  const cases: Array<[string, ObjectInfo[], number, number | null, string[], number]> = [
    ['everything inside the window (now - retention - grace = 40)', day, 150, 1, [], 50 + 110],
    ['the newest snapshot at or before the window start stays, what is older goes', day, 270, 1, ['retention 1:0-snap', 'retention 1:1-10', 'retention 1:10-snap', 'retention 1:11-20'].map(fix), 250 + 110],
    ['long idle: the newest snapshot and its chain stay for ever', day, 100_000, 1, ['retention 1:0-snap', 'retention 1:1-10', 'retention 1:10-snap', 'retention 1:11-20', 'retention 1:20-snap', 'retention 1:21-30'].map(fix), Infinity],
    ['an old generation goes whole once a later one is restorable', [snap(0, 0, 1), seg(1, 5, 20, 1), snap(6, 30, 2), seg(7, 7, 300, 2)], 200, 2, ['retention 1:0-snap', 'retention 1:1-5'].map(fix), Infinity],
    ['an old generation stays while the later one has no snapshot', [snap(0, 0, 1), seg(1, 5, 20, 1), seg(7, 7, 300, 2)], 200, 2, [], Infinity],
    ['an old generation with points in the window stays until they leave it', [snap(0, 0, 1), seg(1, 5, 120, 1), snap(6, 130, 2)], 200, 2, [], 120 + 110],
    ['the current generation is never dropped whole', [snap(0, 0, 1), seg(1, 5, 20, 1), snap(6, 30, 2)], 500, 1, [], Infinity],
    ['segments no snapshot can use go', [seg(1, 2, 1), snap(2, 1), seg(3, 4, 2)], 5, 1, ['retention 1:1-2'], Infinity],
  ];
  function fix(s: string): string {
    return s.replace(/(\d+)-snap/, 'snap@$1');
  }
  it.each(cases)('%s', (_what, objects, now, current, want, nextAt) => {
    const r = plan(objects, now, [], current);
    expect(r.deletes).toEqual([...want].sort());
    expect(r.nextAt).toBe(nextAt);
  });

  it('after the deletions every point inside the window still has a restore plan; older points are before-first-backup', () => {
    const now = 270;
    const gone = new Set(planDeletions(day, DB, { now, policy: p, current: 1, supersededSince: new Map() }).deletes.map((d) => d.object.key));
    const left = catalog(day.filter((o) => !gone.has(o.key))).get(DB);
    for (const time of [160, 200, 250, 255, 260]) expect(planRestore(DB, left, { time }).snapshot.time).toBeLessThanOrEqual(time);
    for (const txid of [20, 25, 31]) expect(planRestore(DB, left, { txid }).snapshot.txid).toBeLessThanOrEqual(txid);
    expect(() => planRestore(DB, left, { txid: 19 })).toThrow(expect.objectContaining({ code: 'NOT_RESTORABLE', details: { reason: 'before-first-backup' } }));
  });
});

describe('restoreObjectBound and the policy', () => {
  it('is 42 with the defaults and a 1 s interval', () => {
    expect(COMPACTION_LEVELS_MS).toEqual([10_000, 60_000, 600_000, 3_600_000, 21_600_000]);
    expect(SNAPSHOT_EVERY_MS).toBe(86_400_000);
    expect(restoreObjectBound(compactionPolicy(1), 1000)).toBe(42);
    // 1 snapshot + (600/60 + 2) top windows + (60/10 - 1) + (10/1 + 1) level-0 segments.
    expect(restoreObjectBound(policy(), 1)).toBe(1 + 12 + 5 + 11);
  });

  it('refuses levels that do not nest, and non-positive sizes', () => {
    expect(() => compactionPolicy(1, { levelsMs: [10, 25] })).toThrow(/not a larger multiple of 10/);
    expect(() => compactionPolicy(1, { levelsMs: [10, 10] })).toThrow(/not a larger multiple/);
    expect(() => compactionPolicy(1, { levelsMs: [0] })).toThrow(/positive/);
    expect(() => compactionPolicy(0)).toThrow(/retentionMs must be positive/);
    expect(() => compactionPolicy(1, { graceMs: -1 })).toThrow(/graceMs/);
  });
});

describe('mergeSegments', () => {
  const PAGE = 512;
  const cs = (txid: number): ChangeSet => ({
    databaseId: 7,
    pageSize: PAGE,
    generation: 1,
    minTxid: txid,
    maxTxid: txid,
    commit: 2,
    timestamp: 1000 + txid,
    preChecksum: BigInt(txid),
    postChecksum: BigInt(txid + 1),
    pages: [{ pgno: 1 + (txid % 2), data: new Uint8Array(PAGE).fill(txid) }],
  });
  const piece = (min: number, max: number, change: (c: ChangeSet) => ChangeSet = (c) => c) => {
    const sets = Array.from({ length: max - min + 1 }, (_, i) => change(cs(min + i)));
    const bytes = encodeSegment(sets.map((c) => encodeChangeSet(c)));
    const object = catalog([{ key: segmentKey(DB, 1, min, max, 1000 + max), size: bytes.length }]).get(DB)![0]!.segments.get(min)!;
    return { object, bytes };
  };
  const mergeOf = (parts: Array<ReturnType<typeof piece>>): Merge => {
    const next = parts.at(-1)!.object.maxTxid + 1;
    const objects = [snap(0, 0), ...parts.map((p) => ({ key: p.object.key, size: p.object.size })), seg(next, next, 9_999_999)];
    const m = planMerges(objects, DB, 1, compactionPolicy(1, { levelsMs: [1_000_000] }))[0]!;
    expect(m.inputs.map((i) => i.key)).toEqual(parts.map((p) => p.object.key));
    return m;
  };

  it('keeps every change set as it was encoded, once, in txid order', () => {
    const parts = [piece(1, 3), piece(4, 4), piece(5, 8)];
    const merged = mergeSegments(mergeOf(parts), parts.map((p) => p.bytes));
    expect(merged.object).toMatchObject({ minTxid: 1, maxTxid: 8, time: 1008, size: merged.bytes.length });
    expect(merged.bytes).toEqual(encodeSegment(parts.map((p) => p.bytes)));
    expect(decodeSegment(merged.object.key, merged.bytes, merged.object)).toEqual(Array.from({ length: 8 }, (_, i) => cs(i + 1)));
  });

  it('refuses damage, naming the object: a flipped byte, a change set that does not continue the one before', () => {
    const parts = [piece(1, 3), piece(4, 6)];
    const m = mergeOf(parts);
    const flipped = Uint8Array.from(parts[1]!.bytes, (b, i) => (i === 100 ? b ^ 1 : b));
    expect(() => mergeSegments(m, [parts[0]!.bytes, flipped])).toThrow(expect.objectContaining({ code: 'BACKUP_CORRUPT', details: { key: parts[1]!.object.key } }));
    const otherHistory = piece(4, 6, (c) => ({ ...c, preChecksum: c.preChecksum + 100n }));
    expect(() => mergeSegments(m, [parts[0]!.bytes, otherHistory.bytes])).toThrow(/does not continue change set 3..3/);
  });
});
