/**
 * The checks PageApplier.restoreSnapshot runs on its input before it writes anything. (A change set's
 * checks are the shared verifier's, shared/verify.ts, the same on the Worker.)
 */
import { imagePages } from '../shared/checksum.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { isPageSize, pageSizeOf } from '../shared/page-size.ts';
import type { PageImage, Position } from '../shared/types.ts';

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
