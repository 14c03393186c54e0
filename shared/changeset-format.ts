/**
 * The change-set binary layout (format version 1), shared by the encoder and the decoder. All integers
 * are big-endian. docs/FORMAT.md carries the same table with the reasons behind it.
 *
 * Header (HEADER_SIZE = 64 bytes):
 *
 *   offset  size  field
 *        0     4  magic "ELCS"
 *        4     2  format version (u16) = 1
 *        6     2  flags (u16); bit 0 FLAG_COMPRESSED is reserved and rejected; other bits must be 0
 *        8     4  page size (u32): a power of two in 512..65536
 *       12     4  database id (u32), non-zero
 *       16     4  generation (u32)
 *       20     8  min txid (u64), ≥ 1, a safe integer
 *       28     8  max txid (u64), ≥ min txid, a safe integer
 *       36     4  commit (u32): database size in pages after apply, ≥ 1
 *       40     4  page count (u32): number of page entries that follow
 *       44     8  timestamp (u64): primary's commit time of max txid, ms since the epoch
 *       52     8  pre-apply database checksum (u64)
 *       60     4  reserved, must be zero
 *
 * Page section: page count entries of (pgno u32, page size bytes of data), pgno strictly ascending,
 * each in 1..commit and never the lock page. Entry data starts 4-aligned (64 + 4 + k·(4 + page size)),
 * so hashing a decoded page can use the aligned fast path.
 *
 * Trailer (TRAILER_SIZE = 16 bytes):
 *
 *   end−16     8  post-apply database checksum (u64)
 *    end−8     8  file checksum (u64) = hash64(every byte before this field)
 *
 * This file is kept apart from changeset.ts so the encoder and decoder can import it without an
 * import cycle through the entry point that re-exports them.
 */
import { EdgeliteError } from './errors.ts';
import { isPageSize, lockPageNumber, PAGE_SIZE_RULE } from './page-size.ts';
import type { ChangeSet, Checksum, Generation, PageImage, Txid } from './types.ts';

export const CHANGESET_MAGIC = 'ELCS';
export const CHANGESET_VERSION = 1;
/** FLAG_COMPRESSED is reserved: measured, per-change-set compression did not pay (docs/FORMAT.md). */
export const FLAG_COMPRESSED = 0x0001;
/** FLAG_DELTA: page entries may be deltas against the page's previous image (changeset-delta.ts). */
export const FLAG_DELTA = 0x0002;
export const HEADER_SIZE = 64;
export const TRAILER_SIZE = 16;
/** PAGE_ENTRY_OVERHEAD is the pgno in front of each page's data. */
export const PAGE_ENTRY_OVERHEAD = 4;

export const OFFSET = {
  magic: 0,
  version: 4,
  flags: 6,
  pageSize: 8,
  databaseId: 12,
  generation: 16,
  minTxid: 20,
  maxTxid: 28,
  commit: 36,
  pageCount: 40,
  timestamp: 44,
  preChecksum: 52,
  reserved: 60,
} as const;

const MAGIC_BYTES = [0x45, 0x4c, 0x43, 0x53]; // "ELCS"
const U32_MAX = 0xffffffff;
const U64_LIMIT = 1n << 64n;
const TWO_32 = 0x1_0000_0000;

/** ChangeSetHeader is every header field of a change set, as the decoder validated it. */
export interface ChangeSetHeader {
  databaseId: number;
  pageSize: number;
  generation: Generation;
  minTxid: Txid;
  maxTxid: Txid;
  commit: number;
  /** Number of page entries in the page section. */
  pageCount: number;
  timestamp: number;
  preChecksum: Checksum;
}

/** headerOf is the header a change set's fields make (the page count from its pages). */
export function headerOf(cs: ChangeSet): ChangeSetHeader {
  return {
    databaseId: cs.databaseId,
    pageSize: cs.pageSize,
    generation: cs.generation,
    minTxid: cs.minTxid,
    maxTxid: cs.maxTxid,
    commit: cs.commit,
    pageCount: cs.pages.length,
    timestamp: cs.timestamp,
    preChecksum: cs.preChecksum,
  };
}

/** changeSetOf assembles a decoded change set from its header, trailer checksum and pages. */
export function changeSetOf(h: ChangeSetHeader, postChecksum: Checksum, pages: PageImage[]): ChangeSet {
  return {
    databaseId: h.databaseId,
    pageSize: h.pageSize,
    generation: h.generation,
    minTxid: h.minTxid,
    maxTxid: h.maxTxid,
    commit: h.commit,
    timestamp: h.timestamp,
    preChecksum: h.preChecksum,
    postChecksum,
    pages,
  };
}

export function corrupt(message: string): EdgeliteError {
  return new EdgeliteError('CORRUPT_CHANGESET', `invalid change set: ${message}`);
}

/** changeSetByteLength is the encoded size of a change set with `pageCount` pages of `pageSize`. */
export function changeSetByteLength(pageSize: number, pageCount: number): number {
  return HEADER_SIZE + pageCount * (PAGE_ENTRY_OVERHEAD + pageSize) + TRAILER_SIZE;
}

function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= U32_MAX;
}

function isU64(c: unknown): c is bigint {
  return typeof c === 'bigint' && c >= 0n && c < U64_LIMIT;
}

/**
 * validateHeader checks every field against the rules in the offset table, throwing CORRUPT_CHANGESET.
 * The encoder and the decoder run the same checks, so neither can produce what the other rejects.
 */
export function validateHeader(h: ChangeSetHeader): void {
  const { pageSize } = h;
  if (!isPageSize(pageSize)) throw corrupt(`page size ${pageSize} is not ${PAGE_SIZE_RULE}`);
  if (!isU32(h.databaseId) || h.databaseId === 0) throw corrupt(`database id ${h.databaseId} is not a non-zero u32`);
  if (!isU32(h.generation)) throw corrupt(`generation ${h.generation} is not a u32`);
  if (!Number.isSafeInteger(h.minTxid) || h.minTxid < 1) throw corrupt(`min txid ${h.minTxid} is not a safe integer ≥ 1`);
  if (!Number.isSafeInteger(h.maxTxid) || h.maxTxid < h.minTxid) {
    throw corrupt(`max txid ${h.maxTxid} is not a safe integer ≥ min txid ${h.minTxid}`);
  }
  if (!isU32(h.commit) || h.commit < 1) throw corrupt(`commit ${h.commit} is not a u32 ≥ 1`);
  const storable = h.commit - (lockPageNumber(pageSize) <= h.commit ? 1 : 0);
  if (!isU32(h.pageCount) || h.pageCount > storable) {
    throw corrupt(`page count ${h.pageCount} does not fit a database of ${h.commit} pages`);
  }
  if (!Number.isSafeInteger(h.timestamp) || h.timestamp < 0) throw corrupt(`timestamp ${h.timestamp} is not a safe integer ≥ 0`);
  if (!isU64(h.preChecksum)) throw corrupt('pre-apply checksum is not a u64 bigint');
}

/** validateChecksum is the same check for the post-apply checksum, which lives in the trailer. */
export function validateChecksum(c: unknown, what: string): asserts c is bigint {
  if (!isU64(c)) throw corrupt(`${what} is not a u64 bigint`);
}

export function writeU64(view: DataView, offset: number, n: number): void {
  view.setUint32(offset, Math.floor(n / TWO_32));
  view.setUint32(offset + 4, n >>> 0);
}

function readU64(view: DataView, offset: number, what: string): number {
  const hi = view.getUint32(offset);
  const n = hi * TWO_32 + view.getUint32(offset + 4);
  if (!Number.isSafeInteger(n)) throw corrupt(`${what} ${view.getBigUint64(offset)} is above 2^53 − 1`);
  return n;
}

/** writeHeader writes a validated header into the first HEADER_SIZE bytes of `bytes`. */
export function writeHeader(bytes: Uint8Array, h: ChangeSetHeader, flags = 0): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  bytes.set(MAGIC_BYTES, OFFSET.magic);
  view.setUint16(OFFSET.version, CHANGESET_VERSION);
  view.setUint16(OFFSET.flags, flags);
  view.setUint32(OFFSET.pageSize, h.pageSize);
  view.setUint32(OFFSET.databaseId, h.databaseId);
  view.setUint32(OFFSET.generation, h.generation);
  writeU64(view, OFFSET.minTxid, h.minTxid);
  writeU64(view, OFFSET.maxTxid, h.maxTxid);
  view.setUint32(OFFSET.commit, h.commit);
  view.setUint32(OFFSET.pageCount, h.pageCount);
  writeU64(view, OFFSET.timestamp, h.timestamp);
  view.setBigUint64(OFFSET.preChecksum, h.preChecksum);
  view.setUint32(OFFSET.reserved, 0);
}

/**
 * readChangeSetHeader reads and validates the header fields only (magic, version, flags, reserved bytes,
 * every field's bounds), for logs and routers that must not decode pages. It needs only the first
 * HEADER_SIZE bytes; it does not check the total length or the file checksum (decodeChangeSet does).
 */
export function readChangeSetHeader(bytes: Uint8Array): ChangeSetHeader {
  return readHeaderWithFlags(bytes, 0);
}

/** changeSetFlags reads the flags field (after checking the magic), to route a delta change set. */
export function changeSetFlags(bytes: Uint8Array): number {
  if (bytes.length < HEADER_SIZE) throw corrupt(`${bytes.length} bytes is shorter than the ${HEADER_SIZE}-byte header`);
  return (bytes[OFFSET.flags]! << 8) | bytes[OFFSET.flags + 1]!;
}

/** readHeaderWithFlags is readChangeSetHeader for a caller that accepts the flags in `allowed`. */
export function readHeaderWithFlags(bytes: Uint8Array, allowed: number): ChangeSetHeader {
  if (bytes.length < HEADER_SIZE) throw corrupt(`${bytes.length} bytes is shorter than the ${HEADER_SIZE}-byte header`);
  for (let i = 0; i < MAGIC_BYTES.length; i++) {
    if (bytes[OFFSET.magic + i] !== MAGIC_BYTES[i]) throw corrupt(`bad magic: not an ${CHANGESET_MAGIC} change set`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  const version = view.getUint16(OFFSET.version);
  if (version !== CHANGESET_VERSION) throw corrupt(`unsupported format version ${version}, want ${CHANGESET_VERSION}`);
  const flags = view.getUint16(OFFSET.flags);
  if ((flags & FLAG_COMPRESSED) !== 0) throw corrupt('the compressed flag is reserved and not supported');
  if ((flags & ~allowed) !== 0) {
    if ((flags & FLAG_DELTA) !== 0) throw corrupt('a delta change set needs the base pages to decode: use decodeDeltaChangeSet');
    throw corrupt(`unknown flags 0x${flags.toString(16)}`);
  }
  if (view.getUint32(OFFSET.reserved) !== 0) throw corrupt('reserved header bytes are not zero');
  const header: ChangeSetHeader = {
    databaseId: view.getUint32(OFFSET.databaseId),
    pageSize: view.getUint32(OFFSET.pageSize),
    generation: view.getUint32(OFFSET.generation),
    minTxid: readU64(view, OFFSET.minTxid, 'min txid'),
    maxTxid: readU64(view, OFFSET.maxTxid, 'max txid'),
    commit: view.getUint32(OFFSET.commit),
    pageCount: view.getUint32(OFFSET.pageCount),
    timestamp: readU64(view, OFFSET.timestamp, 'timestamp'),
    preChecksum: view.getBigUint64(OFFSET.preChecksum),
  };
  validateHeader(header);
  return header;
}

/**
 * validatePageNumber checks one page entry's number against the previous one (0 before the first) and
 * the header: strictly ascending, in 1..commit, never the lock page.
 */
export function validatePageNumber(pgno: number, previous: number, h: ChangeSetHeader): void {
  if (!Number.isInteger(pgno) || pgno < 1) throw corrupt(`page number ${pgno} is not a positive integer`);
  if (pgno <= previous) throw corrupt(`page ${pgno} follows page ${previous}: pages must be strictly ascending`);
  if (pgno > h.commit) throw corrupt(`page ${pgno} is above the commit size of ${h.commit} pages`);
  if (pgno === lockPageNumber(h.pageSize)) throw corrupt(`page ${pgno} is the lock page`);
}
