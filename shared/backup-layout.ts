/**
 * The names of backup objects and what a listing says is restorable (docs/FORMAT.md, its backup objects section).
 * Every name is fixed-width lowercase hex, so keys sort by generation, then txid:
 *
 *   <db>/<generation: 8 hex>/<minTxid: 16 hex>-<maxTxid: 16 hex>-<maxTime: 12 hex>.changes   (a segment)
 *   <db>/<generation: 8 hex>/<txid: 16 hex>-<time: 12 hex>.snapshot                         (a snapshot)
 *
 * Times are the primary's commit time (ms since the epoch) of the last txid in the object, so a listing
 * alone gives the txid and time ranges restorable, without reading an object. Pure: Worker-safe.
 */
import { EdgeliteError } from './errors.ts';
import { formatTxid, TXID_HEX_WIDTH, type Generation, type Txid } from './types.ts';
import type { ObjectInfo } from './object-store.ts';

export const GENERATION_HEX_WIDTH = 8;
export const TIME_HEX_WIDTH = 12;
export const SEGMENT_SUFFIX = '.changes';
export const SNAPSHOT_SUFFIX = '.snapshot';

export interface SegmentObject {
  kind: 'segment';
  key: string;
  size: number;
  db: string;
  generation: Generation;
  minTxid: Txid;
  maxTxid: Txid;
  /** Commit time of maxTxid (ms). */
  time: number;
}

export interface SnapshotObject {
  kind: 'snapshot';
  key: string;
  size: number;
  db: string;
  generation: Generation;
  txid: Txid;
  /** Commit time of txid (ms). */
  time: number;
}

export type BackupObject = SegmentObject | SnapshotObject;

const hex = (n: number, width: number): string => n.toString(16).padStart(width, '0');

export function generationPrefix(db: string, generation: Generation): string {
  return `${db}/${hex(generation, GENERATION_HEX_WIDTH)}/`;
}

export function segmentKey(db: string, generation: Generation, minTxid: Txid, maxTxid: Txid, time: number): string {
  return `${generationPrefix(db, generation)}${formatTxid(minTxid)}-${formatTxid(maxTxid)}-${hex(time, TIME_HEX_WIDTH)}${SEGMENT_SUFFIX}`;
}

export function snapshotKey(db: string, generation: Generation, txid: Txid, time: number): string {
  return `${generationPrefix(db, generation)}${formatTxid(txid)}-${hex(time, TIME_HEX_WIDTH)}${SNAPSHOT_SUFFIX}`;
}

const T = `[0-9a-f]{${TXID_HEX_WIDTH}}`;
const KEY_PATTERN = new RegExp(
  `^([^/]+)/([0-9a-f]{${GENERATION_HEX_WIDTH}})/(?:(${T})-(${T})-([0-9a-f]{${TIME_HEX_WIDTH}})\\.changes|(${T})-([0-9a-f]{${TIME_HEX_WIDTH}})\\.snapshot)$`,
);

/** parseBackupKey reads a key named as above, or returns null for any other key (ignored by readers). */
export function parseBackupKey(o: ObjectInfo): BackupObject | null {
  const m = KEY_PATTERN.exec(o.key);
  if (!m) return null;
  const n = (s: string | undefined): number => Number.parseInt(s ?? '', 16);
  const base = { key: o.key, size: o.size, db: m[1] as string, generation: n(m[2]) };
  if (m[3] !== undefined) {
    const minTxid = n(m[3]);
    const maxTxid = n(m[4]);
    if (!(minTxid >= 1 && maxTxid >= minTxid && Number.isSafeInteger(maxTxid))) return null;
    return { kind: 'segment', ...base, minTxid, maxTxid, time: n(m[5]) };
  }
  const txid = n(m[6]);
  return Number.isSafeInteger(txid) ? { kind: 'snapshot', ...base, txid, time: n(m[7]) } : null;
}

/** RestorableRange: every change-set boundary from fromTxid to toTxid can be restored. */
export interface RestorableRange {
  fromTxid: Txid;
  toTxid: Txid;
  fromTime: number;
  toTime: number;
}

export interface GenerationBackup {
  generation: Generation;
  snapshots: SnapshotObject[];
  /** Segments by minTxid; of two with the same minTxid (a retried upload) the longer one. */
  segments: Map<Txid, SegmentObject>;
  ranges: RestorableRange[];
}

/** catalog groups a listing by database and generation (ascending) and works out the ranges. */
export function catalog(objects: readonly ObjectInfo[]): Map<string, GenerationBackup[]> {
  const byDb = new Map<string, Map<Generation, GenerationBackup>>();
  for (const o of objects) {
    const b = parseBackupKey(o);
    if (b === null) continue;
    let gens = byDb.get(b.db);
    if (!gens) byDb.set(b.db, (gens = new Map()));
    let g = gens.get(b.generation);
    if (!g) gens.set(b.generation, (g = { generation: b.generation, snapshots: [], segments: new Map(), ranges: [] }));
    if (b.kind === 'snapshot') g.snapshots.push(b);
    else if ((g.segments.get(b.minTxid)?.maxTxid ?? -1) < b.maxTxid) g.segments.set(b.minTxid, b);
  }
  const out = new Map<string, GenerationBackup[]>();
  for (const [db, gens] of [...byDb].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const list = [...gens.values()].sort((a, b) => a.generation - b.generation);
    for (const g of list) {
      g.snapshots.sort((a, b) => a.txid - b.txid);
      g.ranges = rangesOf(g);
    }
    out.set(db, list);
  }
  return out;
}

/**
 * chainFrom is the run of segments continuing txid `from` with the fewest objects: each one holds the
 * next txid needed and, of those that do, reaches furthest (a merged segment over the pieces it
 * replaced, docs/FORMAT.md#compaction-and-retention; pieces still serve where no merged one exists).
 * The first one holds txid `from + 1` and may start before it: a periodic snapshot is taken at the
 * database's position, which writes may have moved past the segment uploaded just before it, and a
 * merged segment starts where its first piece did; a restore skips what the snapshot already holds.
 */
export function chainFrom(g: GenerationBackup, from: Txid): SegmentObject[] {
  return chainIn(sortedSegments(g), from);
}

function sortedSegments(g: GenerationBackup): SegmentObject[] {
  return [...g.segments.values()].sort((a, b) => a.minTxid - b.minTxid);
}

/** chainIn is chainFrom over segments sorted by minTxid: the greedy interval cover, optimal in count. */
function chainIn(sorted: readonly SegmentObject[], from: Txid): SegmentObject[] {
  const chain: SegmentObject[] = [];
  let next = from + 1;
  let i = 0;
  for (;;) {
    let best: SegmentObject | undefined;
    for (; i < sorted.length && sorted[i]!.minTxid <= next; i++) {
      const s = sorted[i]!;
      if (s.maxTxid >= next && (best === undefined || s.maxTxid > best.maxTxid)) best = s;
    }
    if (best === undefined) return chain;
    chain.push(best);
    next = best.maxTxid + 1;
  }
}

function rangesOf(g: GenerationBackup): RestorableRange[] {
  const ranges: RestorableRange[] = [];
  const sorted = sortedSegments(g);
  for (const s of g.snapshots) {
    const chain = chainIn(sorted, s.txid);
    const end = chain.at(-1);
    const r = { fromTxid: s.txid, toTxid: end?.maxTxid ?? s.txid, fromTime: s.time, toTime: end?.time ?? s.time };
    const last = ranges.at(-1);
    if (last && r.fromTxid <= last.toTxid) {
      if (r.toTxid > last.toTxid) Object.assign(last, { toTxid: r.toTxid, toTime: r.toTime });
    } else ranges.push(r);
  }
  return ranges;
}

export type RestoreTarget = { txid: Txid } | { time: number } | { latest: true };

/** RestorePlan: download `snapshot`, then apply the change sets of `segments` up to the target. */
export interface RestorePlan {
  db: string;
  generation: Generation;
  snapshot: SnapshotObject;
  segments: SegmentObject[];
  target: RestoreTarget;
}

/**
 * planRestore picks the generation, the newest snapshot at or before the target with an unbroken chain
 * of segments to it, and those segments. Throws NOT_RESTORABLE (details.reason: no-backup,
 * before-first-backup, after-last-upload, gap) when the listing cannot reach the target.
 */
export function planRestore(db: string, gens: readonly GenerationBackup[] | undefined, target: RestoreTarget): RestorePlan {
  const usable = (gens ?? []).filter((g) => g.ranges.length > 0);
  if (usable.length === 0) throw notRestorable('no-backup', `the backup holds no restorable state of database ${db}`);
  const first = usable[0]!.ranges[0]!;
  const newest = usable.at(-1)!;
  const last = newest.ranges.at(-1)!;
  const at = (txid: Txid | null, time: number | null): ((r: RestorableRange) => boolean) =>
    txid !== null ? (r) => r.fromTxid <= txid && txid <= r.toTxid : (r) => r.fromTime <= time! && time! <= r.toTime;
  let txid: Txid | null = null;
  let time: number | null = null;
  if ('txid' in target) txid = target.txid;
  else if ('time' in target) time = target.time;
  else txid = last.toTxid;
  const what = txid !== null ? `txid ${txid}` : `time ${new Date(time!).toISOString()}`;
  const before = txid !== null ? txid < first.fromTxid : time! < first.fromTime;
  const after = txid !== null ? txid > last.toTxid : time! > last.toTime;
  if (before) throw notRestorable('before-first-backup', `${what} of database ${db} is before its first backup (txid ${first.fromTxid}, ${iso(first.fromTime)})`);
  if (after) throw notRestorable('after-last-upload', `${what} of database ${db} is after its last upload (txid ${last.toTxid}, ${iso(last.toTime)})`);
  // The newest generation holding the target wins: txids keep growing across generations.
  const g = [...usable].reverse().find((x) => x.ranges.some(at(txid, time)));
  if (!g) throw notRestorable('gap', `${what} of database ${db} falls between restorable ranges`);
  const snaps = g.snapshots.filter((s) => (txid !== null ? s.txid <= txid : s.time <= time!)).reverse();
  for (const snapshot of snaps) {
    const chain = chainFrom(g, snapshot.txid);
    const segments: SegmentObject[] = [];
    let reached = txid !== null ? snapshot.txid === txid : false;
    for (const seg of chain) {
      if (reached) break;
      segments.push(seg);
      reached = txid !== null ? seg.maxTxid >= txid : seg.time > time!;
    }
    if (reached || (time !== null && (chain.at(-1)?.time ?? snapshot.time) >= time)) {
      return { db, generation: g.generation, snapshot, segments, target: txid !== null ? { txid } : { time: time! } };
    }
  }
  throw notRestorable('gap', `${what} of database ${db} is not reachable from any snapshot`);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function notRestorable(reason: string, message: string): EdgeliteError {
  return new EdgeliteError('NOT_RESTORABLE', message, { details: { reason } });
}
