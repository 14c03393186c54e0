/**
 * The change-set encoder: a small state machine, header → page* → finish, writing into one buffer
 * allocated at the header (the page count fixes the size). Layout: changeset-format.ts.
 */
import { hash64 } from './checksum.ts';
import {
  type ChangeSetHeader,
  changeSetByteLength,
  corrupt,
  HEADER_SIZE,
  PAGE_ENTRY_OVERHEAD,
  TRAILER_SIZE,
  validateChecksum,
  headerOf,
  validateHeader,
  validatePageNumber,
  writeHeader,
} from './changeset-format.ts';
import { EdgeliteError } from './errors.ts';
import type { ChangeSet } from './types.ts';

/** EncodeOptions: `compress` is reserved; true is refused until the format supports it. */
export interface EncodeOptions {
  compress?: boolean;
}

type EncoderState = 'new' | 'pages' | 'finished';

function misuse(message: string): EdgeliteError {
  return new EdgeliteError('INTERNAL', `change-set encoder misuse: ${message}`);
}

/**
 * ChangeSetEncoder validates everything it writes: invalid content (a bad field, pages out of order,
 * a page of the wrong size, the lock page, fewer or more pages than the header said) throws
 * CORRUPT_CHANGESET, and calls out of order throw INTERNAL. A rejected call changes nothing.
 */
export class ChangeSetEncoder {
  #state: EncoderState = 'new';
  #header: ChangeSetHeader | undefined;
  #bytes = new Uint8Array(0);
  #view = new DataView(this.#bytes.buffer);
  #offset = 0;
  #written = 0;
  #lastPgno = 0;

  /** header validates and writes the header and allocates the whole change set. */
  header(h: ChangeSetHeader): void {
    if (this.#state !== 'new') throw misuse('header() called twice');
    validateHeader(h);
    this.#state = 'pages';
    this.#header = { ...h };
    this.#bytes = new Uint8Array(changeSetByteLength(h.pageSize, h.pageCount));
    this.#view = new DataView(this.#bytes.buffer);
    writeHeader(this.#bytes, this.#header);
    this.#offset = HEADER_SIZE;
  }

  /** page appends one page; pages must come in strictly ascending pgno order. */
  page(pgno: number, data: Uint8Array): void {
    const h = this.#requirePages('page()');
    if (this.#written === h.pageCount) throw corrupt(`more pages than the header's page count of ${h.pageCount}`);
    validatePageNumber(pgno, this.#lastPgno, h);
    if (data.length !== h.pageSize) throw corrupt(`page ${pgno} has ${data.length} bytes, want ${h.pageSize}`);
    this.#view.setUint32(this.#offset, pgno);
    this.#bytes.set(data, this.#offset + PAGE_ENTRY_OVERHEAD);
    this.#offset += PAGE_ENTRY_OVERHEAD + h.pageSize;
    this.#written++;
    this.#lastPgno = pgno;
  }

  /** finish writes the trailer (post-apply checksum, then the file checksum) and returns the bytes. */
  finish(postChecksum: bigint): Uint8Array {
    const h = this.#requirePages('finish()');
    if (this.#written !== h.pageCount) throw corrupt(`${this.#written} pages written, the header said ${h.pageCount}`);
    validateChecksum(postChecksum, 'post-apply checksum');
    this.#state = 'finished';
    const end = this.#bytes.length;
    this.#view.setBigUint64(end - TRAILER_SIZE, postChecksum);
    this.#view.setBigUint64(end - 8, hash64(this.#bytes.subarray(0, end - 8)));
    return this.#bytes;
  }

  #requirePages(call: string): ChangeSetHeader {
    if (this.#state === 'new' || this.#header === undefined) throw misuse(`${call} before header()`);
    if (this.#state === 'finished') throw misuse(`${call} after finish()`);
    return this.#header;
  }
}

/** encodeChangeSet encodes a whole change set; see ChangeSetEncoder for what it rejects. */
export function encodeChangeSet(cs: ChangeSet, opts: EncodeOptions = {}): Uint8Array {
  if (opts.compress === true) {
    throw new EdgeliteError('INTERNAL', 'change-set compression is reserved in format version 1 and not supported');
  }
  const encoder = new ChangeSetEncoder();
  encoder.header(headerOf(cs));
  for (const page of cs.pages) encoder.page(page.pgno, page.data);
  return encoder.finish(cs.postChecksum);
}
