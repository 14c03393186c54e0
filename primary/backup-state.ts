/**
 * DbState is what the backup runner (primary/backup.ts) knows of one database's backup, and the
 * questions it asks of it: is the database ahead of its backup, does the backup hold a txid, how old
 * is the oldest change not uploaded.
 */
import type { Position, Txid } from '../shared/types.ts';
import type { CompactionState } from './backup-compact.ts';
import type { PrimaryDatabase } from './database.ts';

export interface DbState extends CompactionState {
  /** The generation the figures below are about; null until the store was listed for it. */
  generation: number | null;
  uploadedTxid: Txid;
  hasSnapshot: boolean;
  segmentsSinceSnapshot: number;
  bytesSinceSnapshot: number;
  pendingSince: number | null;
  failures: number;
  retryAt: number;
  errors: number;
  /** Commit time of the newest snapshot of the current generation. */
  snapshotTime: number;
  /** The last upload error's message (never a credential: errors name the store by its description). */
  lastError: string | null;
}

export function newDbState(): DbState {
  return {
    generation: null, uploadedTxid: 0, hasSnapshot: false, segmentsSinceSnapshot: 0, bytesSinceSnapshot: 0, pendingSince: null, failures: 0, retryAt: 0, errors: 0, lastError: null,
    objects: new Map(), snapshotTime: 0, supersededSince: new Map(), damaged: new Set(), verified: new Set(), dueAt: Infinity, relist: false, compactions: 0, deleted: 0, compactionErrors: 0,
  };
}

/**
 * holds: the backup holds txid `w.txid` of generation `w.generation`, in that generation or in a later
 * one (whose chain starts from a snapshot taken after the write: txids grow across generations).
 */
export function holds(s: DbState, w: { generation: number; txid: Txid }): boolean {
  return s.generation !== null && s.generation >= w.generation && s.hasSnapshot && s.uploadedTxid >= w.txid;
}

/** progressOf: what an upload moves when it does something. */
export function progressOf(s: DbState): string {
  return `${s.generation}:${s.hasSnapshot}:${s.uploadedTxid}`;
}

/**
 * oldestPending is the commit time of the oldest change not uploaded yet: the first log record after the
 * uploaded txid (one record read, then kept until the next upload). A database whose generation's
 * first snapshot is not uploaded yet counts from its last commit.
 */
export function oldestPending(db: PrimaryDatabase, s: DbState, now: number): number {
  if (s.generation !== db.position.generation || !s.hasSnapshot) return db.lastCommitTime || now;
  const first = db.log.iterateSince(db.position.generation, s.uploadedTxid, 1)?.[0];
  return first?.timestamp ?? now;
}

/** isBehind: the database has something the backup does not (a change, or its generation's first snapshot). */
export function isBehind(s: DbState, db: { readonly position: Position }): boolean {
  return s.generation !== db.position.generation || !s.hasSnapshot || db.position.txid > s.uploadedTxid;
}

/** recordUpload notes an object this runner wrote whole (it is known whole: see CompactionState.verified). */
export function recordUpload(s: DbState, key: string, size: number): void {
  s.objects.set(key, { key, size });
  s.verified.add(key);
  s.damaged.delete(key);
}
