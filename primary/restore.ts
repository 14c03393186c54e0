/**
 * restoreDatabase rebuilds one database file from its backup objects (docs/FORMAT.md, its backup
 * objects section): the newest snapshot at or before the target, then the segments' change sets up to it, each
 * checked by the one verifier (shared/verify.ts: continuity, pre- and post-apply checksums) before its
 * pages are written to the file, and finally the whole file's checksum against the post-apply checksum
 * recorded for the target txid. It writes `<out>.restore-tmp` and renames it over `out` only once all of
 * that holds, so a damaged or truncated object is reported (BACKUP_CORRUPT), never applied.
 */
import { dirname } from 'node:path';
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, renameSync, rmSync } from 'node:fs';
import { catalog, planRestore, type GenerationBackup, type RestorePlan, type RestoreTarget, type SegmentObject } from '../shared/backup-layout.ts';
import { corruptObject, decodeSegment, decodeSnapshot, type SnapshotHead } from '../shared/backup-objects.ts';
import { DatabaseChecksum } from '../shared/checksum.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { ObjectStore } from '../shared/object-store.ts';
import { formatChecksum, type ChangeSet, type Position } from '../shared/types.ts';
import { verifyBatch, type VerifyBase } from '../shared/verify.ts';
import { fileChecksum, streamSnapshot, writeAll } from './restore-stream.ts';

export interface RestoreOptions {
  db: string;
  target: RestoreTarget;
  out: string;
  /** Replace an existing `out` (and drop its -wal/-shm). */
  force?: boolean;
  /** Hears each object as it is applied (`bytes`: its size). */
  onProgress?: (p: { key: string; done: number; total: number; bytes: number }) => void;
  /** Hears the bytes of objects as they arrive (a streamed snapshot piece by piece). */
  onBytes?: (n: number) => void;
  /** The database's generations from a listing already read (restoreAll's), instead of listing again. */
  listing?: readonly GenerationBackup[];
}

export interface RestoreResult {
  db: string;
  databaseId: number;
  generation: number;
  txid: number;
  checksum: string;
  /** Commit time of txid (ms). */
  timestamp: number;
  pageCount: number;
  pageSize: number;
  objects: number;
}

export async function restoreDatabase(objects: ObjectStore, o: RestoreOptions): Promise<RestoreResult> {
  const sidecars = [`${o.out}-wal`, `${o.out}-shm`, `${o.out}-journal`];
  if (!o.force && [o.out, ...sidecars].some((f) => existsSync(f))) {
    throw new EdgeliteError('DATABASE_EXISTS', `${o.out} exists: pass --force to replace it`);
  }
  let plan = planRestore(o.db, o.listing ?? catalog(await objects.list(`${o.db}/`)).get(o.db), o.target);
  const damaged = new Set<string>();
  for (;;) {
    try {
      return await restorePlanned(objects, o, plan, sidecars);
    } catch (err) {
      const key = err instanceof EdgeliteError && err.code === 'BACKUP_CORRUPT' ? err.details?.key : undefined;
      if (typeof key !== 'string' || !plan.segments.some((seg) => seg.key === key)) throw err;
      // A damaged segment may be a merge whose pieces are still kept (a kill cut the merge's upload on a
      // store whose PUTs are not atomic, docs/FORMAT.md#compaction-and-retention): the same target
      // through them, or the damage as reported.
      damaged.add(key);
      const rest = (await objects.list(`${o.db}/`)).filter((x) => !damaged.has(x.key));
      try {
        plan = planRestore(o.db, catalog(rest).get(o.db), plan.target);
      } catch {
        throw err;
      }
    }
  }
}

async function restorePlanned(objects: ObjectStore, o: RestoreOptions, plan: RestorePlan, sidecars: string[]): Promise<RestoreResult> {
  const total = 1 + plan.segments.length;
  const tmp = `${o.out}.restore-tmp`;
  const fd = openSync(tmp, 'w+');
  let head: SnapshotHead;
  let at: VerifyBase;
  let timestamp: number;
  /** The file was checked against `at` by reading it back (a streamed snapshot, no change set applied after it). */
  let onDisk = false;
  try {
    // A large snapshot streams to the file (restore-stream.ts); an object that cannot is read whole.
    let snap = await streamSnapshot(objects, plan.snapshot, fd, o.onBytes);
    // A streamed image's checksum was read back from the file: with no change set on top, the file is checked.
    onDisk = snap !== null;
    if (snap === null) {
      const { head, image } = decodeSnapshot(plan.snapshot.key, await fetchObject(objects, plan.snapshot.key, plan.snapshot.size));
      o.onBytes?.(plan.snapshot.size);
      writeAll(fd, image, 0);
      snap = { head, sum: image.length === 0 ? new DatabaseChecksum(head.pageSize) : DatabaseChecksum.fromFile(image) };
    }
    head = snap.head;
    const sum = snap.sum;
    if (head.generation !== plan.generation || head.txid !== plan.snapshot.txid) {
      throw corruptObject(plan.snapshot.key, `holds generation ${head.generation} txid ${head.txid}, its name says ${plan.generation} txid ${plan.snapshot.txid}`);
    }
    o.onProgress?.({ key: plan.snapshot.key, done: 1, total, bytes: plan.snapshot.size });
    at = { databaseId: head.databaseId, pageSize: head.pageSize, pageCount: head.pageCount, position: { generation: head.generation, txid: head.txid, checksum: head.checksum } };
    timestamp = head.timestamp;
    let done = 1;
    for (const seg of plan.segments) {
      const all = decodeSegment(seg.key, await fetchObject(objects, seg.key, seg.size), seg);
      o.onBytes?.(seg.size);
      const fresh = after(all, at.position.txid, seg);
      const batch = upToTarget(fresh, plan.target, seg);
      if (batch.length > 0) {
        const verified = verifyOrCorrupt(seg, () => verifyBatch(sum, at, batch));
        onDisk = false;
        for (const [pgno, data] of verified.pages) writeAll(fd, data, (pgno - 1) * head.pageSize);
        ftruncateSync(fd, verified.pageCount * head.pageSize);
        at = { ...at, pageCount: verified.pageCount, position: verified.position };
        timestamp = verified.timestamp;
      }
      o.onProgress?.({ key: seg.key, done: ++done, total, bytes: seg.size });
      if (batch.length < fresh.length) break;
    }
    if ('txid' in plan.target && at.position.txid !== plan.target.txid) {
      throw new EdgeliteError('NOT_RESTORABLE', `txid ${plan.target.txid} of database ${o.db} is not restorable: the backup reaches ${at.position.txid}`, { details: { reason: 'gap' } });
    }
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  try {
    if (!onDisk) verifyFile(fd, tmp, at.position, head.pageSize);
  } finally {
    closeSync(fd);
  }
  for (const f of sidecars) rmSync(f, { force: true });
  renameSync(tmp, o.out);
  fsyncDir(dirname(o.out));
  return {
    db: o.db,
    databaseId: head.databaseId,
    generation: at.position.generation,
    txid: at.position.txid,
    checksum: formatChecksum(at.position.checksum),
    timestamp,
    pageCount: at.pageCount,
    pageSize: head.pageSize,
    objects: total,
  };
}

/**
 * after drops the change sets a segment holds at or before `txid` (the first segment after a snapshot
 * may start before it, chainFrom in shared/backup-layout.ts). One that straddles `txid` cannot be cut.
 */
function after(changeSets: ChangeSet[], txid: number, seg: SegmentObject): ChangeSet[] {
  const straddling = changeSets.find((cs) => cs.minTxid <= txid && txid < cs.maxTxid);
  if (straddling) {
    throw new EdgeliteError('NOT_RESTORABLE', `the snapshot at txid ${txid} is inside change set ${straddling.minTxid}..${straddling.maxTxid} of ${seg.key}`, { details: { reason: 'not-a-boundary' } });
  }
  return changeSets.filter((cs) => cs.maxTxid > txid);
}

/** upToTarget is the prefix of a segment's change sets at or before the target. */
function upToTarget(changeSets: ChangeSet[], target: RestoreTarget, seg: SegmentObject): ChangeSet[] {
  if ('latest' in target) return changeSets;
  const out: ChangeSet[] = [];
  for (const cs of changeSets) {
    if ('txid' in target) {
      if (cs.minTxid > target.txid) break;
      if (cs.maxTxid > target.txid) {
        throw new EdgeliteError('NOT_RESTORABLE', `txid ${target.txid} is inside change set ${cs.minTxid}..${cs.maxTxid} of ${seg.key}: restore to ${cs.minTxid - 1} or ${cs.maxTxid}`, { details: { reason: 'not-a-boundary' } });
      }
    } else if (cs.timestamp > target.time) break;
    out.push(cs);
  }
  return out;
}

/** A change set that does not continue what the snapshot and the segments before it built is damage. */
function verifyOrCorrupt<T>(seg: SegmentObject, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw corruptObject(seg.key, err instanceof Error ? err.message : String(err), err);
  }
}

async function fetchObject(objects: ObjectStore, key: string, listedSize: number): Promise<Uint8Array> {
  const bytes = await objects.get(key);
  if (bytes === null) throw corruptObject(key, 'listed but missing');
  if (bytes.length !== listedSize) throw corruptObject(key, `${bytes.length} bytes, listed as ${listedSize}`);
  return bytes;
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** verifyFile re-reads what was written (in pieces) and checks it against the position's recorded checksum. */
function verifyFile(fd: number, path: string, position: Position, pageSize: number): void {
  const sum = fileChecksum(fd, pageSize);
  if (sum.value !== position.checksum) {
    rmSync(path, { force: true });
    throw new EdgeliteError('CHECKSUM_MISMATCH', `restored file has checksum ${formatChecksum(sum.value)}, txid ${position.txid} was ${formatChecksum(position.checksum)}`);
  }
}

/** BackupSummary is `edgelite backups` for one database. */
export interface BackupSummary {
  db: string;
  generations: Array<{
    generation: number;
    snapshots: number;
    segments: number;
    bytes: number;
    ranges: Array<{ fromTxid: number; toTxid: number; fromTime: string; toTime: string }>;
  }>;
}

/** listBackups reads one listing and says, per database and generation, what is restorable. */
export async function listBackups(objects: ObjectStore, db?: string): Promise<BackupSummary[]> {
  const all = catalog(await objects.list(db === undefined ? '' : `${db}/`));
  return [...all].map(([name, gens]) => ({
    db: name,
    generations: gens.map((g) => ({
      generation: g.generation,
      snapshots: g.snapshots.length,
      segments: g.segments.size,
      bytes: g.snapshots.reduce((n, s) => n + s.size, 0) + [...g.segments.values()].reduce((n, s) => n + s.size, 0),
      ranges: g.ranges.map((r) => ({ fromTxid: r.fromTxid, toTxid: r.toTxid, fromTime: new Date(r.fromTime).toISOString(), toTime: new Date(r.toTime).toISOString() })),
    })),
  }));
}
