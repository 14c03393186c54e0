/**
 * Checksums: a fast 64-bit hash, the page hash and the rolling database checksum (docs/FORMAT.md).
 *
 * The database checksum is the XOR over every page p of the database, except the lock page, of
 * `pageHash(p, data(p))`. XOR makes it incremental: applying a change set XORs out the old hash of each
 * page it touches and XORs in the new one, so both sides keep it current in O(pages changed).
 *
 * hash64 is our own design, pure JS on 32-bit integers (Math.imul), so it runs unchanged in Node and
 * workerd with no BigInt in the loop (~4 GB/s on 4 KiB pages here; see docs/FORMAT.md). Data is read as
 * little-endian u32 words in 32-byte stripes feeding four lane pairs; within a pair (a, b):
 *
 *   a = rotl(a + w0·P2, 13)·P1 + b        b = rotl(b + w1·P2 + a, 17)·P1
 *
 * For fixed input words this is a bijection of the pair's state, and for a fixed state a bijection of
 * the input words, so inputs of equal length that differ within a single stripe (any one flipped byte,
 * in particular) always hash differently; wider differences collide with probability ~2^-64. The last
 * partial stripe is zero-padded and the length is mixed in at the end, so padding cannot collide. It
 * is not a cryptographic hash: it guards against bugs, corruption and divergence, not an adversary.
 */
import { EdgeliteError } from './errors.ts';
import { isPageSize, lockPageNumber, PAGE_SIZE_RULE, pageSizeOf } from './page-size.ts';
import type { Checksum, PageImage } from './types.ts';

export { lockPageNumber } from './page-size.ts';

const P1 = 0x9e3779b1 | 0;
const P2 = 0x85ebca77 | 0;
const P3 = 0xc2b2ae3d | 0;
const P4 = 0x27d4eb2f | 0;
const P5 = 0x165667b1 | 0;
const IV = [P1, P2, P3, P4, P5, P1 ^ P3, P2 ^ P4, P3 ^ P5];

const STRIPE_BYTES = 32;
/** COPY_CHUNK bounds the scratch buffer used for unaligned input (a multiple of STRIPE_BYTES). */
const COPY_CHUNK = 64 * 1024;
const TWO_32 = 0x1_0000_0000;

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** state holds the eight lanes between absorb calls; out* hold the last result's halves. */
const state = new Int32Array(8);
const scratchWords = new Uint32Array(COPY_CHUNK / 4);
const tailBytes = new Uint8Array(STRIPE_BYTES);
const tailWords = new Uint32Array(STRIPE_BYTES / 4);
let outLo = 0;
let outHi = 0;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

/** absorb runs the stripes of words[from, to) (to − from a multiple of 8) through the lanes in `state`. */
function absorb(w: Uint32Array, from: number, to: number): void {
  let a = state[0]!, b = state[1]!, c = state[2]!, d = state[3]!;
  let e = state[4]!, f = state[5]!, g = state[6]!, h = state[7]!;
  for (let i = from; i < to; i += 8) {
    a = (Math.imul(rotl(a + Math.imul(w[i]!, P2), 13), P1) + b) | 0;
    b = Math.imul(rotl(b + Math.imul(w[i + 1]!, P2) + a, 17), P1);
    c = (Math.imul(rotl(c + Math.imul(w[i + 2]!, P2), 13), P1) + d) | 0;
    d = Math.imul(rotl(d + Math.imul(w[i + 3]!, P2) + c, 17), P1);
    e = (Math.imul(rotl(e + Math.imul(w[i + 4]!, P2), 13), P1) + f) | 0;
    f = Math.imul(rotl(f + Math.imul(w[i + 5]!, P2) + e, 17), P1);
    g = (Math.imul(rotl(g + Math.imul(w[i + 6]!, P2), 13), P1) + h) | 0;
    h = Math.imul(rotl(h + Math.imul(w[i + 7]!, P2) + g, 17), P1);
  }
  state[0] = a; state[1] = b; state[2] = c; state[3] = d;
  state[4] = e; state[5] = f; state[6] = g; state[7] = h;
}

/**
 * loadWordsLE reads `length` bytes of `src` from `offset` as little-endian u32 words into `dst`. It is
 * the path for unaligned input and for big-endian hosts, so both give the little-endian result.
 */
function loadWordsLE(src: Uint8Array, offset: number, length: number, dst: Uint32Array): void {
  const view = new DataView(src.buffer, src.byteOffset + offset, length);
  for (let i = 0, j = 0; i < length; i += 4, j++) dst[j] = view.getUint32(i, true);
}

/** mix64 is a bijection of the 64-bit value (hi, lo); it leaves its result in outLo/outHi. */
function mix64(lo: number, hi: number, rounds: number): void {
  for (let r = 0; r < rounds; r++) {
    lo = Math.imul(lo ^ (hi >>> 15), P2);
    hi = Math.imul(hi ^ (lo >>> 13), P3);
    lo ^= hi >>> 16;
    hi ^= lo >>> 17;
  }
  outLo = lo;
  outHi = hi;
}

/** hashParts computes hash64(data, seed) into outLo/outHi, without allocating a bigint. */
function hashParts(data: Uint8Array, seed: number): void {
  const length = data.length;
  const body = length - (length % STRIPE_BYTES);
  for (let i = 0; i < 8; i++) state[i] = (IV[i]! + seed) | 0;
  absorbStripes(data, 0, body);
  if (body < length) absorbTail(data.subarray(body));
  fold(length);
}

/** absorbTail runs a last partial stripe (under STRIPE_BYTES), zero-padded, through the lanes. */
function absorbTail(rest: Uint8Array): void {
  tailBytes.fill(0);
  tailBytes.set(rest);
  loadWordsLE(tailBytes, 0, STRIPE_BYTES, tailWords);
  absorb(tailWords, 0, 8);
}

/** fold turns the lanes and the input length into the result, in outLo/outHi. */
function fold(length: number): void {
  // Fold the four pairs one at a time through a bijection, so a difference in one pair survives.
  mix64(state[0]!, state[1]!, 1);
  mix64(outLo ^ state[2]!, outHi ^ state[3]!, 1);
  mix64(outLo ^ state[4]!, outHi ^ state[5]!, 1);
  mix64(outLo ^ state[6]!, outHi ^ state[7]!, 1);
  mix64(outLo ^ (length >>> 0), outHi ^ Math.floor(length / TWO_32), 3);
}

/** absorbStripes runs data[from, to) (to − from a multiple of STRIPE_BYTES) through the lanes. */
function absorbStripes(data: Uint8Array, from: number, to: number): void {
  if (to <= from) return;
  if (LITTLE_ENDIAN && ((data.byteOffset + from) & 3) === 0) {
    absorb(new Uint32Array(data.buffer, data.byteOffset + from, (to - from) >>> 2), 0, (to - from) >>> 2);
    return;
  }
  for (let off = from; off < to; off += COPY_CHUNK) {
    const n = Math.min(COPY_CHUNK, to - off);
    loadWordsLE(data, off, n, scratchWords);
    absorb(scratchWords, 0, n >>> 2);
  }
}

/**
 * Hash64 is hash64 over input that arrives in pieces (a streamed object): `update` each piece in order,
 * then `digest()` equals hash64 of them all concatenated, whatever the split. It keeps its own lanes
 * (the module's are shared with every other hash), so hashes may interleave.
 */
export class Hash64 {
  readonly #lanes = new Int32Array(8);
  readonly #carry = new Uint8Array(STRIPE_BYTES);
  #carried = 0;
  #length = 0;

  constructor(seed = 0) {
    for (let i = 0; i < 8; i++) this.#lanes[i] = (IV[i]! + (seed >>> 0)) | 0;
  }

  update(data: Uint8Array): this {
    this.#length += data.length;
    state.set(this.#lanes);
    let at = 0;
    if (this.#carried > 0) {
      at = Math.min(STRIPE_BYTES - this.#carried, data.length);
      this.#carry.set(data.subarray(0, at), this.#carried);
      this.#carried += at;
      if (this.#carried === STRIPE_BYTES) {
        absorbStripes(this.#carry, 0, STRIPE_BYTES);
        this.#carried = 0;
      }
    }
    const end = at + Math.floor((data.length - at) / STRIPE_BYTES) * STRIPE_BYTES;
    absorbStripes(data, at, end);
    if (end < data.length) {
      this.#carry.set(data.subarray(end), this.#carried);
      this.#carried += data.length - end;
    }
    this.#lanes.set(state);
    return this;
  }

  digest(): bigint {
    state.set(this.#lanes);
    if (this.#carried > 0) absorbTail(this.#carry.subarray(0, this.#carried));
    fold(this.#length);
    return toBigint(outLo, outHi);
  }
}

function toBigint(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/**
 * hash64 is a fast non-cryptographic 64-bit hash of `data`, as an unsigned bigint. `seed` is a u32.
 * The result is the same on every host (words are little-endian) and for any byteOffset.
 */
export function hash64(data: Uint8Array, seed = 0): bigint {
  hashParts(data, seed >>> 0);
  return toBigint(outLo, outHi);
}

/** Page-1 header bytes the pager rewrites on its own (change counter, version-valid-for, version). */
const PAGE1_VOLATILE: ReadonlyArray<readonly [number, number]> = [[24, 28], [92, 100]];
let page1Scratch = new Uint8Array(0);

/** pageHashParts is pageHash into outLo/outHi. */
function pageHashParts(pgno: number, data: Uint8Array): void {
  if (pgno !== 1) {
    hashParts(data, pgno);
    return;
  }
  if (page1Scratch.length !== data.length) page1Scratch = new Uint8Array(data.length);
  page1Scratch.set(data);
  for (const [from, to] of PAGE1_VOLATILE) page1Scratch.fill(0, from, Math.min(to, data.length));
  hashParts(page1Scratch, 1);
}

/**
 * pageHash is the 64-bit hash of (pgno ‖ data): hash64 of the page with the page number as seed. For
 * page 1, bytes 24–27 (file change counter) and 92–99 (version-valid-for, SQLite version) are hashed as
 * if zero, because each SQLite library that writes page 1 rewrites them with its own values (docs/FORMAT.md).
 * `data` is never modified.
 */
export function pageHash(pgno: number, data: Uint8Array): bigint {
  pageHashParts(pgno >>> 0, data);
  return toBigint(outLo, outHi);
}

function misuse(message: string): EdgeliteError {
  return new EdgeliteError('INTERNAL', message);
}

/** MAX_PAGE_NUMBER is SQLite's largest page number (a u32 on disk and on the wire). */
const MAX_PAGE_NUMBER = 0xffffffff;

/**
 * DatabaseChecksum keeps the per-page hashes of one database in memory (8 bytes a page) and their XOR,
 * so applying a change set costs O(pages changed). Pages never set contribute nothing, which is also
 * what the lock page contributes. Misuse (a bad page number or size) throws EdgeliteError INTERNAL: it is
 * a bug in the caller, since change sets are validated before they get here.
 */
export class DatabaseChecksum {
  readonly #pageSize: number;
  readonly #lockPage: number;
  #pageCount = 0;
  #lo: Uint32Array;
  #hi: Uint32Array;
  #valueLo = 0;
  #valueHi = 0;

  constructor(pageSize: number) {
    if (!isPageSize(pageSize)) throw misuse(`invalid page size ${pageSize}: want ${PAGE_SIZE_RULE}`);
    this.#pageSize = pageSize;
    this.#lockPage = lockPageNumber(pageSize);
    this.#lo = new Uint32Array(64);
    this.#hi = new Uint32Array(64);
  }

  /** value is the database checksum: 0n for an empty database. */
  get value(): Checksum {
    return toBigint(this.#valueLo, this.#valueHi);
  }

  get pageCount(): number {
    return this.#pageCount;
  }

  get pageSize(): number {
    return this.#pageSize;
  }

  /** setPage replaces the hash of `pgno` with that of `data`, growing pageCount to `pgno` if needed. */
  setPage(pgno: number, data: Uint8Array): void {
    if (!Number.isInteger(pgno) || pgno < 1 || pgno > MAX_PAGE_NUMBER) throw misuse(`invalid page number ${pgno}`);
    if (pgno === this.#lockPage) throw misuse(`page ${pgno} is the lock page and is never stored`);
    if (data.length !== this.#pageSize) {
      throw misuse(`page ${pgno} has ${data.length} bytes, want the page size ${this.#pageSize}`);
    }
    this.#reserve(pgno);
    pageHashParts(pgno, data);
    this.#valueLo ^= this.#lo[pgno]! ^ outLo;
    this.#valueHi ^= this.#hi[pgno]! ^ outHi;
    this.#lo[pgno] = outLo;
    this.#hi[pgno] = outHi;
    if (pgno > this.#pageCount) this.#pageCount = pgno;
  }

  /**
   * truncate sets the database size to `pageCount` pages, XORing out the hashes of pages above it. A
   * larger count just grows the size: pages in between contribute nothing until set (the lock page is
   * such a page when a database grows past 1 GiB).
   */
  truncate(pageCount: number): void {
    if (!Number.isInteger(pageCount) || pageCount < 0 || pageCount > MAX_PAGE_NUMBER) {
      throw misuse(`invalid page count ${pageCount}`);
    }
    const stored = Math.min(this.#pageCount, this.#lo.length - 1);
    for (let p = pageCount + 1; p <= stored; p++) {
      this.#valueLo ^= this.#lo[p]!;
      this.#valueHi ^= this.#hi[p]!;
      this.#lo[p] = 0;
      this.#hi[p] = 0;
    }
    this.#pageCount = pageCount;
  }

  /** pageHashAt is the stored hash of one page, or null for a page not set (or above the size). */
  pageHashAt(pgno: number): Checksum | null {
    if (!Number.isInteger(pgno) || pgno < 1 || pgno > this.#pageCount || pgno >= this.#lo.length) return null;
    const lo = this.#lo[pgno]!;
    const hi = this.#hi[pgno]!;
    return lo === 0 && hi === 0 ? null : toBigint(lo, hi);
  }

  /** apply sets every page of a change set, then truncates to its commit size; returns the new value. */
  apply(pages: Iterable<PageImage>, commit: number): Checksum {
    for (const page of pages) this.setPage(page.pgno, page.data);
    this.truncate(commit);
    return this.value;
  }

  clone(): DatabaseChecksum {
    const copy = new DatabaseChecksum(this.#pageSize);
    copy.#pageCount = this.#pageCount;
    copy.#lo = this.#lo.slice();
    copy.#hi = this.#hi.slice();
    copy.#valueLo = this.#valueLo;
    copy.#valueHi = this.#valueHi;
    return copy;
  }

  /**
   * toBytes serialises the per-page hashes (docs/FORMAT.md#page-hash-file): u32 page size, u32 page
   * count, then each page's hash as two u32 (lo, hi), little-endian, pages 1..pageCount. 8 bytes a page.
   */
  toBytes(): Uint8Array {
    const out = new Uint8Array(8 + this.#pageCount * 8);
    const view = new DataView(out.buffer);
    view.setUint32(0, this.#pageSize, true);
    view.setUint32(4, this.#pageCount, true);
    const stored = Math.min(this.#pageCount, this.#lo.length - 1);
    for (let p = 1; p <= stored; p++) {
      view.setUint32(8 * p, this.#lo[p]!, true);
      view.setUint32(8 * p + 4, this.#hi[p]!, true);
    }
    return out;
  }

  /** fromBytes is the inverse of toBytes; the value is the XOR of the stored hashes. INTERNAL on a malformed image. */
  static fromBytes(bytes: Uint8Array): DatabaseChecksum {
    if (bytes.length < 8) throw misuse(`page-hash image of ${bytes.length} bytes has no header`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const pageSize = view.getUint32(0, true);
    const pageCount = view.getUint32(4, true);
    if (bytes.length !== 8 + pageCount * 8) throw misuse(`page-hash image of ${bytes.length} bytes does not hold ${pageCount} pages`);
    const sum = new DatabaseChecksum(pageSize);
    sum.#reserve(pageCount);
    let lo = 0;
    let hi = 0;
    for (let p = 1; p <= pageCount; p++) {
      const l = view.getUint32(8 * p, true);
      const h = view.getUint32(8 * p + 4, true);
      sum.#lo[p] = l;
      sum.#hi[p] = h;
      lo ^= l;
      hi ^= h;
    }
    sum.#pageCount = pageCount;
    sum.#valueLo = lo;
    sum.#valueHi = hi;
    return sum;
  }

  static fromPages(pageSize: number, pages: Iterable<PageImage>): DatabaseChecksum {
    const sum = new DatabaseChecksum(pageSize);
    for (const page of pages) sum.setPage(page.pgno, page.data);
    return sum;
  }

  /**
   * fromFile computes the checksum of a whole database file image. The page size comes from the header
   * (offset 16, big-endian u16, 1 meaning 65536); pageCount is file.length / pageSize. An empty file has
   * no page size: use `new DatabaseChecksum(pageSize)` for it. Throws INTERNAL on an image that is not
   * a whole number of pages of a valid page size.
   */
  static fromFile(file: Uint8Array): DatabaseChecksum {
    if (file.length < 100) throw misuse(`a database image of ${file.length} bytes has no SQLite header`);
    const pageSize = pageSizeOf(file);
    if (!isPageSize(pageSize)) throw misuse(`database header has invalid page size ${pageSize}`);
    if (file.length % pageSize !== 0) {
      throw misuse(`database image of ${file.length} bytes is not a whole number of ${pageSize}-byte pages`);
    }
    const sum = new DatabaseChecksum(pageSize);
    sum.#reserve(file.length / pageSize);
    sum.apply(imagePages(file, pageSize), file.length / pageSize);
    return sum;
  }

  #reserve(pgno: number): void {
    if (pgno < this.#lo.length) return;
    let size = this.#lo.length;
    while (size <= pgno) size *= 2;
    const lo = new Uint32Array(size);
    const hi = new Uint32Array(size);
    lo.set(this.#lo);
    hi.set(this.#hi);
    this.#lo = lo;
    this.#hi = hi;
  }
}

/**
 * imagePages yields the pages of a database file image as views into it, skipping the lock page.
 * `lockPage` is a parameter only so tests can check the skip without a 1 GiB image.
 */
export function* imagePages(
  file: Uint8Array,
  pageSize: number,
  lockPage: number = lockPageNumber(pageSize),
): Generator<PageImage> {
  const count = Math.floor(file.length / pageSize);
  for (let pgno = 1; pgno <= count; pgno++) {
    if (pgno === lockPage) continue;
    yield { pgno, data: file.subarray((pgno - 1) * pageSize, pgno * pageSize) };
  }
}
