/**
 * What the Worker replica applies, kept free of storage so it is plain logic. (A change set is verified
 * by the shared verifier, shared/verify.ts, and decoded by the follower core, shared/follower-decode.ts,
 * exactly as on the Node replica.)
 * - SnapshotAssembler turns a snapshot download, arriving in arbitrary chunks, into pages and the
 *   checksum of the whole image, so an image is verified without being held in memory at once.
 */
import { DatabaseChecksum } from '../../../shared/checksum.ts';
import { EdgeliteError } from '../../../shared/errors.ts';
import { isPageSize, lockPageNumber, PAGE_SIZE_RULE, pageSizeOf } from '../../../shared/page-size.ts';
import { formatChecksum } from '../../../shared/types.ts';
import type { VerifyBase } from '../../../shared/verify.ts';

export { type VerifiedBatch, verifyBatch } from '../../../shared/verify.ts';

/** ReplicaPosition is where the replica stands, with what identifies the database it follows. */
export type ReplicaPosition = VerifyBase;

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
    if (!isPageSize(pageSize)) throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot page size ${pageSize} is not ${PAGE_SIZE_RULE}`);
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
  const inHeader = pageSizeOf(page1);
  if (inHeader !== pageSize) {
    throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot header says ${inHeader}-byte pages, the response ${pageSize}`);
  }
}
