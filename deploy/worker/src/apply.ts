/**
 * Verification of what the Worker replica applies, kept free of storage so it is plain logic:
 * - verifyBatch checks consecutive change sets against the replica's position and rolling checksum
 *   exactly as the Node replica's PageApplier does (database id, generation, page size, txid continuity,
 *   pre-apply checksum, post-apply checksum after each change set) and returns the merged pages to write.
 * - SnapshotAssembler turns a snapshot download, arriving in arbitrary chunks, into pages and the
 *   checksum of the whole image, so an image is verified without being held in memory at once.
 */
import { DatabaseChecksum, lockPageNumber } from '../../../shared/checksum.ts';
import { type Divergence, EdgeliteError } from '../../../shared/errors.ts';
import { type ChangeSet, formatChecksum, type Position } from '../../../shared/types.ts';

/** ReplicaPosition is where the replica stands, with what identifies the database it follows. */
export interface ReplicaPosition {
  databaseId: number;
  pageSize: number;
  pageCount: number;
  position: Position;
}

export interface VerifiedBatch {
  /** Page images to write, last image per page, none above `pageCount`. */
  pages: Map<number, Uint8Array>;
  pageCount: number;
  position: Position;
  /** Primary commit time of the last change set (ms). */
  timestamp: number;
}

/**
 * verifyBatch verifies `changeSets` on top of `at`, advancing `sum` (the replica's in-memory checksum)
 * as it goes. Throws POSITION_MISMATCH or CHECKSUM_MISMATCH (`details.reason` says which check) and
 * nothing may then be written. `sum` is advanced in place instead of on a copy, because copying costs
 * O(database pages) per apply; so after a throw `sum` no longer matches the stored pages and the caller
 * must discard it (the replica re-snapshots, which rebuilds it).
 */
export function verifyBatch(sum: DatabaseChecksum, at: ReplicaPosition, changeSets: readonly ChangeSet[]): VerifiedBatch {
  if (changeSets.length === 0) throw new EdgeliteError('BAD_REQUEST', 'apply needs at least one change set');
  const pages = new Map<number, Uint8Array>();
  let txid = at.position.txid;
  let pageCount = at.pageCount;
  for (const cs of changeSets) {
    checkChangeSet(cs, at, txid);
    if (cs.preChecksum !== sum.value) {
      throw new EdgeliteError('CHECKSUM_MISMATCH', `change set ${cs.minTxid}..${cs.maxTxid} expects checksum ${formatChecksum(cs.preChecksum)}, replica has ${formatChecksum(sum.value)}`, { details: { reason: 'pre-checksum', txid: cs.minTxid }, divergence: 'pre-checksum' });
    }
    for (const page of cs.pages) {
      sum.setPage(page.pgno, page.data);
      pages.set(page.pgno, page.data);
    }
    sum.truncate(cs.commit);
    if (sum.value !== cs.postChecksum) {
      throw new EdgeliteError('CHECKSUM_MISMATCH', `change set ${cs.minTxid}..${cs.maxTxid} gives checksum ${formatChecksum(sum.value)}, it claims ${formatChecksum(cs.postChecksum)}`, { details: { reason: 'post-checksum', txid: cs.maxTxid }, divergence: 'post-checksum' });
    }
    if (cs.commit < pageCount) for (const pgno of pages.keys()) if (pgno > cs.commit) pages.delete(pgno);
    txid = cs.maxTxid;
    pageCount = cs.commit;
  }
  const last = changeSets[changeSets.length - 1]!;
  return { pages, pageCount, position: { generation: at.position.generation, txid, checksum: last.postChecksum }, timestamp: last.timestamp };
}

function checkChangeSet(cs: ChangeSet, at: ReplicaPosition, txid: number): void {
  if (cs.databaseId !== at.databaseId) {
    throw mismatch('database-id', `change set is for database ${cs.databaseId}, replica follows ${at.databaseId}`);
  }
  if (cs.generation !== at.position.generation) {
    throw mismatch('generation', `change set is from generation ${cs.generation}, replica is at ${at.position.generation}`);
  }
  if (cs.pageSize !== at.pageSize) throw mismatch('page-size', `change set has page size ${cs.pageSize}, replica ${at.pageSize}`);
  if (cs.minTxid !== txid + 1) throw mismatch('txid', `change set ${cs.minTxid}..${cs.maxTxid} does not follow txid ${txid}`);
}

function mismatch(reason: Divergence, message: string): EdgeliteError {
  return new EdgeliteError('POSITION_MISMATCH', message, { details: { reason }, divergence: reason });
}

/**
 * SnapshotAssembler cuts a snapshot body into pages (skipping the lock page, which the file holds as
 * zeros and the checksum excludes) and keeps the running checksum, which is what
 * `DatabaseChecksum.fromFile(image)` computes for the whole image.
 */
export class SnapshotAssembler {
  readonly pageSize: number;
  readonly #expectedBytes: number;
  readonly #lockPage: number;
  readonly #sum: DatabaseChecksum;
  readonly #page: Uint8Array;
  #filled = 0;
  #received = 0;
  #pgno = 1;

  constructor(pageSize: number, expectedBytes: number) {
    if (!Number.isInteger(pageSize) || pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
      throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot page size ${pageSize} is not a power of two in 512..65536`);
    }
    if (!Number.isSafeInteger(expectedBytes) || expectedBytes < pageSize || expectedBytes % pageSize !== 0) {
      throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot of ${expectedBytes} bytes is not a whole number of ${pageSize}-byte pages`);
    }
    this.pageSize = pageSize;
    this.#expectedBytes = expectedBytes;
    this.#lockPage = lockPageNumber(pageSize);
    this.#sum = new DatabaseChecksum(pageSize);
    this.#page = new Uint8Array(pageSize);
  }

  get pageCount(): number {
    return this.#expectedBytes / this.pageSize;
  }

  /** push consumes a chunk and calls `onPage` for every page it completes (the data is a fresh copy). */
  push(chunk: Uint8Array, onPage: (pgno: number, data: Uint8Array) => void): void {
    this.#received += chunk.length;
    if (this.#received > this.#expectedBytes) {
      throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot is longer than the announced ${this.#expectedBytes} bytes`);
    }
    let at = 0;
    while (at < chunk.length) {
      const n = Math.min(this.pageSize - this.#filled, chunk.length - at);
      this.#page.set(chunk.subarray(at, at + n), this.#filled);
      this.#filled += n;
      at += n;
      if (this.#filled === this.pageSize) {
        const pgno = this.#pgno++;
        this.#filled = 0;
        if (pgno === this.#lockPage) continue;
        const data = this.#page.slice();
        if (pgno === 1) checkHeaderPageSize(data, this.pageSize);
        this.#sum.setPage(pgno, data);
        onPage(pgno, data);
      }
    }
  }

  /** finish checks the length and that the image's checksum is `expected`; returns the checksum state. */
  finish(expected: bigint): DatabaseChecksum {
    if (this.#received !== this.#expectedBytes) {
      throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot was cut at ${this.#received} of ${this.#expectedBytes} bytes`);
    }
    this.#sum.truncate(this.pageCount);
    if (this.#sum.value !== expected) {
      throw new EdgeliteError('CHECKSUM_MISMATCH', `snapshot checksum is ${formatChecksum(this.#sum.value)}, its headers say ${formatChecksum(expected)}`, { details: { reason: 'snapshot-checksum' } });
    }
    return this.#sum;
  }
}

function checkHeaderPageSize(page1: Uint8Array, pageSize: number): void {
  const raw = (page1[16]! << 8) | page1[17]!;
  const inHeader = raw === 1 ? 65536 : raw;
  if (inHeader !== pageSize) {
    throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot header says ${inHeader}-byte pages, the response ${pageSize}`);
  }
}
