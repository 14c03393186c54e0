/**
 * The change-set decoder: a state machine over one buffer, header → next()* → null. Every problem
 * throws EdgeliteError CORRUPT_CHANGESET. Layout: changeset-format.ts.
 *
 * Because the whole change set is in hand, header() checks the exact length and the file checksum
 * before any page is returned, so a caller applying pages as they come never sees a damaged one.
 *
 * Pages are returned as views into the given bytes, not copies: decoding costs no page copy, and page
 * data stays 4-aligned for hashing when the buffer is. A caller that reuses the buffer must copy first.
 */
import { hash64 } from './checksum.ts';
import {
  type ChangeSetHeader,
  changeSetByteLength,
  changeSetOf,
  corrupt,
  HEADER_SIZE,
  PAGE_ENTRY_OVERHEAD,
  readChangeSetHeader,
  TRAILER_SIZE,
  validatePageNumber,
} from './changeset-format.ts';
import { EdgeliteError } from './errors.ts';
import type { ChangeSet, Checksum, PageImage } from './types.ts';

export class ChangeSetDecoder {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #header: ChangeSetHeader | undefined;
  #offset = HEADER_SIZE;
  #read = 0;
  #lastPgno = 0;
  #postChecksum: Checksum | undefined;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** header validates the header, the total length and the file checksum; later calls return it again. */
  header(): ChangeSetHeader {
    if (this.#header !== undefined) return this.#header;
    const bytes = this.#bytes;
    if (bytes.length < HEADER_SIZE + TRAILER_SIZE) {
      throw corrupt(`${bytes.length} bytes is shorter than a header and a trailer`);
    }
    const h = readChangeSetHeader(bytes);
    const want = changeSetByteLength(h.pageSize, h.pageCount);
    if (bytes.length < want) throw corrupt(`truncated: ${bytes.length} bytes, the header implies ${want}`);
    if (bytes.length > want) throw corrupt(`${bytes.length - want} trailing bytes after the trailer`);
    const end = bytes.length;
    const stored = this.#view.getBigUint64(end - 8);
    const actual = hash64(bytes.subarray(0, end - 8));
    if (stored !== actual) throw corrupt('file checksum mismatch');
    this.#header = h;
    return h;
  }

  /** next returns the next page, or null after the last one (the trailer is then readable). */
  next(): PageImage | null {
    const h = this.header();
    if (this.#read === h.pageCount) {
      this.#postChecksum ??= this.#view.getBigUint64(this.#bytes.length - TRAILER_SIZE);
      return null;
    }
    const pgno = this.#view.getUint32(this.#offset);
    validatePageNumber(pgno, this.#lastPgno, h);
    const start = this.#offset + PAGE_ENTRY_OVERHEAD;
    this.#offset = start + h.pageSize;
    this.#read++;
    this.#lastPgno = pgno;
    return { pgno, data: this.#bytes.subarray(start, this.#offset) };
  }

  /** postChecksum is the trailer's post-apply checksum; readable once next() has returned null. */
  get postChecksum(): Checksum {
    if (this.#postChecksum === undefined) {
      throw new EdgeliteError('INTERNAL', 'change-set decoder misuse: postChecksum read before next() returned null');
    }
    return this.#postChecksum;
  }
}

/**
 * decodeChangeSet decodes and validates a whole change set (see ChangeSetDecoder). Page data are views
 * into `bytes`.
 */
export function decodeChangeSet(bytes: Uint8Array): ChangeSet {
  const decoder = new ChangeSetDecoder(bytes);
  const h = decoder.header();
  const pages: PageImage[] = [];
  for (let page = decoder.next(); page !== null; page = decoder.next()) pages.push(page);
  return changeSetOf(h, decoder.postChecksum, pages);
}
