/**
 * The one change-set verifier, used by both appliers (the Node replica's PageApplier and the Worker's
 * WorkerReplica) before they write anything (docs/ARCHITECTURE.md#apply-rules). A batch of consecutive
 * change sets is checked in two steps:
 *
 * 1. checkBatch, which hashes nothing and changes nothing: for each change set the database id,
 *    generation, page size and txid continuity (POSITION_MISMATCH), its structure (CORRUPT_CHANGESET:
 *    commit ≥ 1, every page number in 1..commit and not the lock page, every page the page size long),
 *    and its pre-apply checksum (CHECKSUM_MISMATCH): the first against the replica's checksum, each
 *    next one against the post-apply checksum of the one before, which is what the replica will hold.
 * 2. advanceBatch, which moves the replica's rolling checksum through the batch and checks each post-
 *    apply checksum (CHECKSUM_MISMATCH), merging the pages to write.
 *
 * `details.reason` names the check that failed. Every failure meaning "this copy is not where the
 * stream is" also carries a `divergence` (shared/errors.ts), which is what makes a follower re-snapshot
 * (docs/ARCHITECTURE.md#failure-rules); a structurally invalid change set carries none: it is a fault of
 * what arrived, not of the copy.
 */
import { DatabaseChecksum } from './checksum.ts';
import { type Divergence, EdgeliteError } from './errors.ts';
import { lockPageNumber } from './page-size.ts';
import { type ChangeSet, type Checksum, formatChecksum, type Position } from './types.ts';

/** VerifyBase is where the replica stands, with what identifies the database it follows. */
export interface VerifyBase {
  databaseId: number;
  pageSize: number;
  /** The database size in pages, which pages above a shrinking commit are dropped against. */
  pageCount: number;
  position: Position;
}

export interface VerifiedBatch {
  /** Page images to write, the last image per page, none above `pageCount`. */
  pages: Map<number, Uint8Array>;
  /** The database size in pages after the batch (the last change set's commit). */
  pageCount: number;
  position: Position;
  /** Primary commit time of the last change set (ms). */
  timestamp: number;
}

/**
 * checkBatch runs every check that needs no hashing on `changeSets` on top of `at`, whose database
 * checksum is `checksum`. Throws BAD_REQUEST for an empty batch, else as the module comment says.
 */
export function checkBatch(at: VerifyBase, checksum: Checksum, changeSets: readonly ChangeSet[]): void {
  if (changeSets.length === 0) throw new EdgeliteError('BAD_REQUEST', 'apply needs at least one change set');
  let txid = at.position.txid;
  for (const cs of changeSets) {
    checkPosition(cs, at, txid);
    checkStructure(cs);
    txid = cs.maxTxid;
  }
  let expected = checksum;
  for (const cs of changeSets) {
    if (cs.preChecksum !== expected) {
      const message = `change set ${cs.minTxid}..${cs.maxTxid} expects checksum ${formatChecksum(cs.preChecksum)}, replica has ${formatChecksum(expected)}`;
      throw diverged('CHECKSUM_MISMATCH', 'pre-checksum', message, { txid: cs.minTxid });
    }
    expected = cs.postChecksum;
  }
}

/**
 * advanceBatch applies a batch checkBatch passed to `sum` (the replica's rolling checksum), checking each
 * post-apply checksum, and returns the merged pages. `sum` is advanced in place, not on a copy, because
 * a copy costs O(database pages) per apply: after a throw it is ahead of the stored pages, and the
 * caller must rebuild or drop it.
 */
export function advanceBatch(sum: DatabaseChecksum, at: VerifyBase, changeSets: readonly ChangeSet[]): VerifiedBatch {
  const pages = new Map<number, Uint8Array>();
  let pageCount = at.pageCount;
  for (const cs of changeSets) {
    for (const page of cs.pages) {
      sum.setPage(page.pgno, page.data);
      pages.set(page.pgno, page.data);
    }
    sum.truncate(cs.commit);
    if (sum.value !== cs.postChecksum) {
      const message = `change set ${cs.minTxid}..${cs.maxTxid} gives checksum ${formatChecksum(sum.value)}, it claims ${formatChecksum(cs.postChecksum)}`;
      throw diverged('CHECKSUM_MISMATCH', 'post-checksum', message, { txid: cs.maxTxid });
    }
    if (cs.commit < pageCount) for (const pgno of pages.keys()) if (pgno > cs.commit) pages.delete(pgno);
    pageCount = cs.commit;
  }
  const last = changeSets[changeSets.length - 1]!;
  const position = { generation: at.position.generation, txid: last.maxTxid, checksum: sum.value };
  return { pages, pageCount, position, timestamp: last.timestamp };
}

/**
 * verifyBatch is checkBatch then advanceBatch, for a caller that drops `sum` on any failure: `sum` is
 * untouched when anything but the post-apply checksum fails.
 */
export function verifyBatch(sum: DatabaseChecksum, at: VerifyBase, changeSets: readonly ChangeSet[]): VerifiedBatch {
  checkBatch(at, sum.value, changeSets);
  return advanceBatch(sum, at, changeSets);
}

/** positionMismatch is the POSITION_MISMATCH a copy that cannot take what comes next throws. */
export function positionMismatch(divergence: Divergence, message: string): EdgeliteError {
  return diverged('POSITION_MISMATCH', divergence, message);
}

/** noPosition is what an applier with no position it can vouch for throws: it needs a snapshot. */
export function noPosition(message: string): EdgeliteError {
  return positionMismatch('no-position', message);
}

function checkPosition(cs: ChangeSet, at: VerifyBase, txid: number): void {
  if (cs.databaseId !== at.databaseId) {
    throw positionMismatch('database-id', `change set is for database ${cs.databaseId}, replica follows ${at.databaseId}`);
  }
  if (cs.generation !== at.position.generation) {
    throw positionMismatch('generation', `change set is from generation ${cs.generation}, replica is at ${at.position.generation}`);
  }
  if (cs.pageSize !== at.pageSize) {
    throw positionMismatch('page-size', `change set has page size ${cs.pageSize}, replica ${at.pageSize}`);
  }
  if (cs.minTxid !== txid + 1 || cs.maxTxid < cs.minTxid) {
    throw positionMismatch('txid', `change set ${cs.minTxid}..${cs.maxTxid} does not follow txid ${txid}`);
  }
}

function checkStructure(cs: ChangeSet): void {
  if (!Number.isInteger(cs.commit) || cs.commit < 1) throw corrupt(cs, `commit ${cs.commit}`);
  const lockPage = lockPageNumber(cs.pageSize);
  for (const { pgno, data } of cs.pages) {
    if (!Number.isInteger(pgno) || pgno < 1 || pgno > cs.commit || pgno === lockPage || data.length !== cs.pageSize) {
      throw corrupt(cs, `page ${pgno} of ${data.length} bytes (commit ${cs.commit})`);
    }
  }
}

function corrupt(cs: ChangeSet, what: string): EdgeliteError {
  return new EdgeliteError('CORRUPT_CHANGESET', `change set ${cs.minTxid}..${cs.maxTxid} has an invalid ${what}`);
}

function diverged(
  code: 'POSITION_MISMATCH' | 'CHECKSUM_MISMATCH',
  divergence: Divergence,
  message: string,
  details: Record<string, unknown> = {},
): EdgeliteError {
  return new EdgeliteError(code, message, { details: { reason: divergence, ...details }, divergence });
}
