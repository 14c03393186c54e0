/**
 * The checks PageApplier runs before it writes anything, and the typed errors they raise: a change set's
 * fields against the replica's state, and a snapshot's input.
 */
import { imagePages, lockPageNumber } from '../shared/checksum.ts';
import { type Divergence, EdgeliteError } from '../shared/errors.ts';
import { type ChangeSet, formatChecksum, type PageImage, type Position } from '../shared/types.ts';
import { formatOf, type HeaderOverride, isPageSize, pageSizeOf, WAL_FORMAT } from './page-source.ts';
import type { ReplicaState } from './position-file.ts';

/**
 * snapshotInput validates what restoreSnapshot is given and opens its pages: the page size (from the
 * image header, or the first page), the first page and the iterator for the rest.
 */
export function snapshotInput(
  image: Uint8Array | Iterable<PageImage>,
  position: Position,
  databaseId: number,
): { pageSize: number; first: IteratorResult<PageImage>; iterator: Iterator<PageImage> } {
  if (!Number.isInteger(databaseId) || databaseId <= 0 || databaseId > 0xffffffff) {
    throw new EdgeliteError('BAD_REQUEST', `invalid database id ${databaseId}: want a non-zero u32`);
  }
  if (![position.generation, position.txid].every((n) => Number.isSafeInteger(n) && n >= 0)) {
    throw new EdgeliteError('BAD_REQUEST', `invalid snapshot position ${JSON.stringify({ ...position, checksum: undefined })}`);
  }
  let pages: Iterable<PageImage> = image as Iterable<PageImage>;
  let pageSize: number | null = null;
  if (image instanceof Uint8Array) {
    pageSize = image.length >= 100 ? pageSizeOf(image) : 0;
    if (!isPageSize(pageSize) || image.length % pageSize !== 0) {
      throw new EdgeliteError('BAD_REQUEST', `snapshot of ${image.length} bytes is not a database file`);
    }
    pages = imagePages(image, pageSize);
  }
  const iterator = pages[Symbol.iterator]();
  const first = iterator.next();
  if (first.done) throw new EdgeliteError('BAD_REQUEST', 'snapshot has no pages');
  pageSize ??= first.value.data.length;
  if (!isPageSize(pageSize)) throw new EdgeliteError('BAD_REQUEST', `snapshot page of ${pageSize} bytes`);
  return { pageSize, first, iterator };
}

export function preChecksumMismatch(cs: ChangeSet, actual: bigint): EdgeliteError {
  const message = `change set ${cs.minTxid}..${cs.maxTxid} expects checksum ${formatChecksum(cs.preChecksum)}, replica has ${formatChecksum(actual)}`;
  return new EdgeliteError('CHECKSUM_MISMATCH', message, { details: { reason: 'pre-checksum', txid: cs.minTxid }, divergence: 'pre-checksum' });
}

/** checkChangeSet checks what needs no checksum; returns the txid the change set ends at. */
export function checkChangeSet(cs: ChangeSet, state: ReplicaState, txid: number): number {
  if (cs.databaseId !== state.databaseId) {
    throw mismatch('database-id', `change set is for database ${cs.databaseId}, replica follows ${state.databaseId}`);
  }
  if (cs.generation !== state.position.generation) {
    throw mismatch('generation', `change set is from generation ${cs.generation}, replica is at ${state.position.generation}`);
  }
  if (cs.pageSize !== state.pageSize) {
    throw mismatch('page-size', `change set has page size ${cs.pageSize}, replica ${state.pageSize}`);
  }
  if (cs.minTxid !== txid + 1 || cs.maxTxid < cs.minTxid) {
    throw mismatch('txid', `change set ${cs.minTxid}..${cs.maxTxid} does not follow txid ${txid}`);
  }
  const lockPage = lockPageNumber(cs.pageSize);
  if (!Number.isInteger(cs.commit) || cs.commit < 1) throw corrupt(cs, `commit ${cs.commit}`);
  for (const { pgno, data } of cs.pages) {
    if (!Number.isInteger(pgno) || pgno < 1 || pgno > cs.commit || pgno === lockPage || data.length !== cs.pageSize) {
      throw corrupt(cs, `page ${pgno} of ${data.length} bytes (commit ${cs.commit})`);
    }
  }
  return cs.maxTxid;
}

export function corrupt(cs: ChangeSet, what: string): EdgeliteError {
  return new EdgeliteError('CORRUPT_CHANGESET', `change set ${cs.minTxid}..${cs.maxTxid} has an invalid ${what}`);
}

export function mismatch(reason: Divergence, message: string): EdgeliteError {
  return new EdgeliteError('POSITION_MISMATCH', message, { details: { reason }, divergence: reason });
}

export function needsOverride(page1: Uint8Array, header: HeaderOverride): boolean {
  return header.cookieDelta !== 0 || formatOf(page1) !== WAL_FORMAT;
}
