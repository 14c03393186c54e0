/**
 * Compaction levels and retention of a backup (docs/FORMAT.md#compaction-and-retention): given one
 * database's listing and a time, which segments to merge and which objects to delete. Pure and
 * Worker-safe; primary/backup.ts carries the plans out.
 *
 * Levels: a level-0 segment is one upload (one `--backup-interval`). Every level k ≥ 1 has a window
 * (COMPACTION_LEVELS_MS[k - 1]), aligned to the epoch, each a multiple of the one below. A segment
 * belongs to the window holding its time (the commit time of its last txid). Once a window is complete
 * (a segment of a later window is uploaded, so nothing more can land in it), the segments of the
 * current chain in it are merged into one, which keeps every change set as it was: a restore to every
 * txid stays possible. Windows are visited from the top level down, so a backlog is merged straight to
 * the top; only the newest, incomplete window of each level is split into the level below.
 *
 * Deletion: a segment whose whole txid range another segment holds is superseded, and deleted once it
 * has been superseded for `graceMs`; retention keeps, per generation, the newest snapshot at or before
 * `now - retentionMs - graceMs` and everything after it, and drops a whole generation once a later one
 * is restorable and nothing of it is that recent. So a reader that listed less than `graceMs` ago
 * still finds every object its listing named for any point that was inside the window then.
 */
import { catalog, chainFrom, parseBackupKey, segmentKey, type BackupObject, type GenerationBackup, type SegmentObject } from './backup-layout.ts';
import { corruptObject, decodeSegment, encodeSegment } from './backup-objects.ts';
import { changeSetByteLength, readChangeSetHeader } from './changeset-format.ts';
import { EdgeliteError } from './errors.ts';
import type { ObjectInfo } from './object-store.ts';
import type { ChangeSet, Generation } from './types.ts';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** The windows of levels 1, 2, ...: 10 s, 1 min, 10 min, 1 h, 6 h (level 0 is one upload). */
export const COMPACTION_LEVELS_MS: readonly number[] = [10 * SECOND, MINUTE, 10 * MINUTE, HOUR, 6 * HOUR];
/** A database that uploads takes a fresh snapshot once its newest one is this old (commit time). */
export const SNAPSHOT_EVERY_MS = 24 * HOUR;
/** A merge stops adding pieces at this many bytes, so a merged segment stays a bounded read. */
export const MERGED_SEGMENT_MAX_BYTES = 64 * 1024 * 1024;
/** A superseded or expired object is deleted only after this long (see the module comment). */
export const DELETE_GRACE_MS = 15 * MINUTE;

export interface CompactionPolicy {
  /** Windows of levels 1.. (ms), ascending, each a multiple of the one before. */
  levelsMs: readonly number[];
  snapshotEveryMs: number;
  maxSegmentBytes: number;
  graceMs: number;
  /** `--backup-retention` (ms). */
  retentionMs: number;
}

export function compactionPolicy(retentionMs: number, o: Partial<Omit<CompactionPolicy, 'retentionMs'>> = {}): CompactionPolicy {
  const p: CompactionPolicy = { levelsMs: COMPACTION_LEVELS_MS, snapshotEveryMs: SNAPSHOT_EVERY_MS, maxSegmentBytes: MERGED_SEGMENT_MAX_BYTES, graceMs: DELETE_GRACE_MS, retentionMs, ...o };
  const bad = (why: string): never => {
    throw new EdgeliteError('MISCONFIGURED', `backup compaction: ${why}`);
  };
  p.levelsMs.forEach((w, i) => {
    if (!Number.isSafeInteger(w) || w < 1) bad(`level window ${w} is not a positive whole number of ms`);
    const below = p.levelsMs[i - 1];
    if (below !== undefined && (w <= below || w % below !== 0)) bad(`level window ${w} is not a larger multiple of ${below}`);
  });
  for (const [name, v] of [['snapshotEveryMs', p.snapshotEveryMs], ['maxSegmentBytes', p.maxSegmentBytes], ['retentionMs', p.retentionMs]] as const) if (!(v >= 1)) bad(`${name} must be positive, got ${v}`);
  if (!(p.graceMs >= 0)) bad(`graceMs must not be negative, got ${p.graceMs}`);
  return p;
}

/**
 * restoreObjectBound is the most objects (snapshot included) a restore to any point reads once
 * compaction has caught up, with at most one upload per `intervalMs` and no merge cut short by
 * maxSegmentBytes: the top-level windows a snapshot period touches (+1 for the upload that takes the
 * next snapshot), fewer than the ratio of complete windows at each level inside the newest window
 * above, and the uploads of the newest level-1 window. 42 with the defaults and a 1 s interval.
 */
export function restoreObjectBound(policy: Pick<CompactionPolicy, 'levelsMs' | 'snapshotEveryMs'>, intervalMs: number): number {
  const w = policy.levelsMs;
  const top = w.at(-1);
  if (top === undefined) return 1 + Math.ceil(policy.snapshotEveryMs / intervalMs) + 2;
  let inner = 0;
  for (let k = 1; k < w.length; k++) inner += w[k]! / w[k - 1]! - 1;
  return 1 + (Math.ceil(policy.snapshotEveryMs / top) + 2) + inner + (Math.ceil(w[0]! / intervalMs) + 1);
}

/** Merge: replace `inputs` (consecutive on the chain) by `output`, at `level`. */
export interface Merge {
  level: number;
  inputs: SegmentObject[];
  /** The merged segment as it will be named; its size is known once built (mergeSegments). */
  output: SegmentObject;
}

interface Timed {
  seg: SegmentObject;
  /** The segment's time, never before an earlier segment's (a clock stepping back cannot reorder windows). */
  t: number;
}

/**
 * planMerges lists the merges the current chains of `generation` are due (see the module comment).
 * Segments in `skip` (found damaged) are never merged. Empty when compaction has caught up.
 */
export function planMerges(objects: readonly ObjectInfo[], db: string, generation: Generation, policy: CompactionPolicy, skip: ReadonlySet<string> = new Set()): Merge[] {
  const g = catalog(objects).get(db)?.find((x) => x.generation === generation);
  if (!g) return [];
  const merges: Merge[] = [];
  const pack = (items: readonly Timed[], level: number): void => {
    let cur: SegmentObject[] = [];
    let bytes = 0;
    const done = (): void => {
      if (cur.length >= 2) merges.push({ level, inputs: cur, output: mergedObject(db, generation, cur) });
      cur = [];
      bytes = 0;
    };
    for (const { seg } of items) {
      if (skip.has(seg.key)) {
        done();
        continue;
      }
      if (cur.length > 0 && bytes + seg.size > policy.maxSegmentBytes) done();
      cur.push(seg);
      bytes += seg.size;
    }
    done();
  };
  const visit = (items: readonly Timed[], k: number, followed: boolean): void => {
    const window = policy.levelsMs[k];
    if (window === undefined || items.length < 2) return;
    const groups: Timed[][] = [];
    for (const it of items) {
      const last = groups.at(-1);
      if (last && Math.floor(last[0]!.t / window) === Math.floor(it.t / window)) last.push(it);
      else groups.push([it]);
    }
    groups.forEach((group, i) => {
      if (group.length < 2) return;
      if (i < groups.length - 1 || followed) pack(group, k + 1);
      else visit(group, k - 1, false);
    });
  };
  const runs = chainRuns(g);
  let t = -Infinity;
  runs.forEach((run, i) => {
    const items = run.map((seg) => ({ seg, t: (t = Math.max(t, seg.time)) }));
    visit(items, policy.levelsMs.length - 1, i < runs.length - 1);
  });
  return merges;
}

/**
 * chainRuns is what the snapshots of a generation restore through: from its oldest snapshot, the
 * chain with the fewest segments, and after a gap (a log that no longer reached the uploaded txid) the
 * chain of the first snapshot past it. Segments off these runs are superseded or unusable.
 */
function chainRuns(g: GenerationBackup): SegmentObject[][] {
  const runs: SegmentObject[][] = [];
  let reach = -1;
  for (const s of g.snapshots) {
    if (s.txid <= reach) continue;
    const chain = chainFrom(g, s.txid);
    reach = chain.at(-1)?.maxTxid ?? s.txid;
    if (chain.length > 0) runs.push(chain);
  }
  return runs;
}

function mergedObject(db: string, generation: Generation, inputs: readonly SegmentObject[]): SegmentObject {
  const first = inputs[0]!;
  const last = inputs.at(-1)!;
  return {
    kind: 'segment',
    key: segmentKey(db, generation, first.minTxid, last.maxTxid, last.time),
    size: inputs.reduce((n, s) => n + s.size, 0),
    db,
    generation,
    minTxid: first.minTxid,
    maxTxid: last.maxTxid,
    time: last.time,
  };
}

/**
 * mergeSegments builds a merge's output from its inputs' bytes: each input decoded and verified
 * (decodeSegment), the change sets kept as they were encoded, in txid order (a change set two inputs
 * both hold is kept once), and checked to continue each other: same database id and page size, the
 * pre-apply checksum equal to the previous post-apply one. Damage is BACKUP_CORRUPT naming the input.
 */
export function mergeSegments(merge: Merge, bytes: readonly Uint8Array[]): { object: SegmentObject; bytes: Uint8Array } {
  const parts: Uint8Array[] = [];
  let prev: ChangeSet | null = null;
  let next = merge.output.minTxid;
  merge.inputs.forEach((input, i) => {
    const raw = bytes[i]!;
    const changeSets = decodeSegment(input.key, raw, input);
    let at = 0;
    for (const cs of changeSets) {
      const h = readChangeSetHeader(raw.subarray(at));
      const length = changeSetByteLength(h.pageSize, h.pageCount);
      const encoded = raw.subarray(at, at + length);
      at += length;
      if (cs.maxTxid < next) continue;
      if (cs.minTxid !== next) throw corruptObject(input.key, `change set ${cs.minTxid}..${cs.maxTxid} does not continue txid ${next - 1}`);
      if (prev && (cs.databaseId !== prev.databaseId || cs.pageSize !== prev.pageSize || cs.preChecksum !== prev.postChecksum)) {
        throw corruptObject(input.key, `change set ${cs.minTxid}..${cs.maxTxid} does not continue change set ${prev.minTxid}..${prev.maxTxid} (database id, page size or checksum)`);
      }
      parts.push(encoded);
      prev = cs;
      next = cs.maxTxid + 1;
    }
  });
  if (next !== merge.output.maxTxid + 1) throw corruptObject(merge.inputs.at(-1)!.key, `the merge ends at txid ${next - 1}, not ${merge.output.maxTxid}`);
  const out = encodeSegment(parts);
  return { object: { ...merge.output, size: out.length }, bytes: out };
}

export type DeleteReason = 'superseded' | 'retention';

export interface DeletionPlan {
  deletes: Array<{ object: BackupObject; reason: DeleteReason }>;
  /** Since when (clock ms) each superseded segment still kept has been seen superseded. */
  supersededSince: Map<string, number>;
  /** The earliest time this plan can have more to delete without new uploads (Infinity: never). */
  nextAt: number;
}

export interface DeletionInput {
  now: number;
  policy: CompactionPolicy;
  /** The database's current generation: never dropped whole. */
  current: Generation | null;
  /** supersededSince of the previous plan (empty after a restart: the grace period starts again). */
  supersededSince: ReadonlyMap<string, number>;
  /** Segments found damaged: they supersede nothing (what they cover stays). */
  damaged?: ReadonlySet<string>;
}

/** planDeletions says which of one database's objects no restore inside the window needs any more. */
export function planDeletions(objects: readonly ObjectInfo[], db: string, o: DeletionInput): DeletionPlan {
  const { now, policy } = o;
  const windowStart = now - policy.retentionMs - policy.graceMs;
  const keep = policy.retentionMs + policy.graceMs;
  const gens = catalog(objects).get(db) ?? [];
  const all = objects.map(parseBackupKey).filter((b): b is BackupObject => b !== null && b.db === db);
  const deletes = new Map<string, { object: BackupObject; reason: DeleteReason }>();
  const supersededSince = new Map<string, number>();
  let nextAt = Infinity;
  const drop = (object: BackupObject, reason: DeleteReason): void => void deletes.set(object.key, { object, reason });
  gens.forEach((g, i) => {
    const objs = all.filter((b) => b.generation === g.generation);
    const newest = objs.reduce((t, b) => Math.max(t, b.time), -Infinity);
    const end = g.ranges.at(-1)?.toTime ?? newest;
    const replaced = g.generation !== o.current && gens.slice(i + 1).some((x) => x.ranges.length > 0);
    if (replaced) {
      if (Math.max(end, newest) < windowStart) {
        for (const b of objs) drop(b, 'retention');
        return;
      }
      nextAt = Math.min(nextAt, Math.max(end, newest) + keep);
    }
    const anchor = [...g.snapshots].reverse().find((s) => s.time <= windowStart) ?? g.snapshots[0];
    if (anchor) {
      for (const b of objs) if (b.kind === 'snapshot' ? b.txid < anchor.txid : b.maxTxid <= anchor.txid) drop(b, 'retention');
      const after = g.snapshots.find((s) => s.txid > anchor.txid && s.time > windowStart);
      if (after) nextAt = Math.min(nextAt, after.time + keep);
    }
    const segments = objs.filter((b): b is SegmentObject => b.kind === 'segment' && !deletes.has(b.key)).sort((a, b) => a.minTxid - b.minTxid || b.maxTxid - a.maxTxid);
    let reach = -Infinity;
    for (const s of segments) {
      if (s.maxTxid <= reach) {
        const since = o.supersededSince.get(s.key) ?? now;
        if (now - since >= policy.graceMs) drop(s, 'superseded');
        else {
          supersededSince.set(s.key, since);
          nextAt = Math.min(nextAt, since + policy.graceMs);
        }
      }
      if (!o.damaged?.has(s.key)) reach = Math.max(reach, s.maxTxid);
    }
  });
  return { deletes: [...deletes.values()], supersededSince, nextAt };
}
