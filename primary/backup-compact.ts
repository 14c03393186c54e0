/**
 * compact carries out, for one database, what shared/backup-compaction.ts plans
 * (docs/FORMAT.md#compaction-and-retention): the merges due, then the deletions due. It works from the
 * listing the backup runner keeps in memory (primary/backup.ts), so it makes no request when nothing
 * is due. A failure is logged and counted (compactionErrors), never fails the upload that came
 * before it; the listing is read again before the next try. A segment found damaged is logged, left
 * out of merges for good, and supersedes nothing.
 */
import { catalog, chainFrom, parseBackupKey, type SegmentObject } from '../shared/backup-layout.ts';
import { mergeSegments, planDeletions, planMerges, type CompactionPolicy, type Merge } from '../shared/backup-compaction.ts';
import { corruptObject, decodeSegment } from '../shared/backup-objects.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import type { ObjectInfo, ObjectStore } from '../shared/object-store.ts';
import type { Generation } from '../shared/types.ts';

/** After a failed compaction step, try again this long later (clock ms) even without an upload. */
export const COMPACTION_RETRY_MS = 30_000;

/** CompactionState: what the runner keeps per database for compaction (part of its DbState). */
export interface CompactionState {
  /** The store's objects of this database, every generation: listed at load, then kept up to date. */
  objects: Map<string, ObjectInfo>;
  /** Since when (clock ms) each superseded segment still kept has been seen superseded. */
  supersededSince: Map<string, number>;
  /** Segments a merge or a check found damaged. */
  damaged: Set<string>;
  /**
   * Segments known whole: written by this runner or read back and decoded. A segment supersedes
   * nothing until it is in here (verifySuperseding), so a merge that a kill cut short on a store whose
   * PUTs are not atomic never causes the pieces it would replace to be deleted.
   */
  verified: Set<string>;
  /** When a deletion next falls due without new uploads (clock ms). */
  dueAt: number;
  /** The in-memory listing may be wrong (a step failed): list again before the next step. */
  relist: boolean;
  /** Segments in the chain from the newest snapshot, once compacted (the snapshot backstop counts them). */
  segmentsSinceSnapshot: number;
  compactions: number;
  deleted: number;
  compactionErrors: number;
}

export interface CompactOptions {
  policy: CompactionPolicy;
  clock: () => number;
  logger: Logger;
  /** Whether the runner is closing: no new merge is started then. */
  closing: () => boolean;
}

export async function compact(store: ObjectStore, name: string, generation: Generation, s: CompactionState, o: CompactOptions): Promise<void> {
  try {
    if (s.relist) {
      s.objects = new Map((await store.list(`${name}/`)).map((x) => [x.key, x]));
      s.relist = false;
    }
    for (const m of planMerges([...s.objects.values()], name, generation, o.policy, s.damaged)) {
      if (o.closing()) return;
      await merge(store, name, s, m, o.logger);
    }
    await verifySuperseding(store, name, s, o.logger);
    const g = catalog([...s.objects.values()]).get(name)?.find((x) => x.generation === generation);
    const newest = g?.snapshots.at(-1);
    if (g && newest) s.segmentsSinceSnapshot = chainFrom(g, newest.txid).length;
    const plan = planDeletions([...s.objects.values()], name, { now: o.clock(), policy: o.policy, current: generation, supersededSince: s.supersededSince, damaged: s.damaged });
    s.supersededSince = plan.supersededSince;
    s.dueAt = plan.nextAt;
    const counts = { superseded: 0, retention: 0 };
    for (const { object, reason } of plan.deletes) {
      await store.delete(object.key);
      s.objects.delete(object.key);
      s.deleted++;
      counts[reason]++;
    }
    if (plan.deletes.length > 0) {
      const keys = plan.deletes.map((d) => d.object.key).sort();
      o.logger({ msg: 'backup objects deleted', db: name, store: store.description, superseded: counts.superseded, expired: counts.retention, first: keys[0], last: keys.at(-1) });
    }
  } catch (err) {
    s.compactionErrors++;
    s.relist = true;
    s.dueAt = o.clock() + COMPACTION_RETRY_MS;
    o.logger({ msg: 'backup compaction failed', db: name, store: store.description, error: err instanceof Error ? err.message : String(err) });
  }
}

/** merge writes one merged segment; a damaged input is logged and left out of merges for good. */
async function merge(store: ObjectStore, name: string, s: CompactionState, m: Merge, logger: Logger): Promise<void> {
  let merged: ReturnType<typeof mergeSegments>;
  try {
    const bytes: Uint8Array[] = [];
    for (const input of m.inputs) {
      const b = await store.get(input.key);
      if (b === null) throw new EdgeliteError('NOT_FOUND', `backup object ${input.key} is listed but missing`);
      if (b.length !== input.size) throw corruptObject(input.key, `${b.length} bytes, listed as ${input.size}`);
      bytes.push(b);
    }
    merged = mergeSegments(m, bytes);
  } catch (err) {
    if (!(err instanceof EdgeliteError && err.code === 'BACKUP_CORRUPT')) throw err;
    const key = typeof err.details?.key === 'string' ? err.details.key : m.inputs.map((i) => i.key).join(',');
    s.damaged.add(key);
    s.compactionErrors++;
    logger({ msg: 'backup segment damaged: not merged', db: name, store: store.description, key, error: err.message });
    return;
  }
  await store.put(merged.object.key, merged.bytes);
  s.objects.set(merged.object.key, { key: merged.object.key, size: merged.object.size });
  s.verified.add(merged.object.key);
  s.damaged.delete(merged.object.key);
  s.compactions++;
}

/**
 * verifySuperseding reads back (size and decode) every segment of this database that holds the whole
 * range of another one still kept and that this runner has not written or checked: a merge left torn
 * by a kill (an earlier process's) is found here, marked damaged (it supersedes nothing: the pieces it
 * covers stay, and restores skip it, primary/restore.ts), and logged. One GET per such segment, once
 * per process: merges are few, and their pieces are deleted after the grace period.
 */
async function verifySuperseding(store: ObjectStore, name: string, s: CompactionState, logger: Logger): Promise<void> {
  // From the raw listing: the catalog keeps one segment per first txid, and a merge starts where its first piece did.
  const segments = [...s.objects.values()].map(parseBackupKey).filter((b): b is SegmentObject => b?.kind === 'segment' && b.db === name);
  for (const seg of segments) {
    if (s.verified.has(seg.key) || s.damaged.has(seg.key)) continue;
    if (!segments.some((x) => x !== seg && x.generation === seg.generation && seg.minTxid <= x.minTxid && x.maxTxid <= seg.maxTxid)) continue;
    const bytes = await store.get(seg.key);
    try {
      if (bytes === null) throw corruptObject(seg.key, 'listed but missing');
      if (bytes.length !== seg.size) throw corruptObject(seg.key, `${bytes.length} bytes, listed as ${seg.size}`);
      decodeSegment(seg.key, bytes, seg);
      s.verified.add(seg.key);
    } catch (err) {
      if (!(err instanceof EdgeliteError && err.code === 'BACKUP_CORRUPT')) throw err;
      s.damaged.add(seg.key);
      s.compactionErrors++;
      logger({ msg: 'backup segment damaged: it replaces nothing', db: name, store: store.description, key: seg.key, error: err.message });
    }
  }
}
