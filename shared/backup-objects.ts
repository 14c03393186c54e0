/**
 * The two kinds of backup object (docs/FORMAT.md, its backup objects section), encoded and decoded here so the
 * primary, `edgelite restore` and later a bucket-fed replica read them the same way. Every decode
 * verifies every checksum it passes and throws BACKUP_CORRUPT naming the key: damage is reported, never
 * applied.
 *
 * A **segment** is consecutive change sets of one generation, each in the change-set format
 * (docs/FORMAT.md) with its own checksums, back to back: one's length follows from its header, so no
 * framing is added. The key's txid range must be exactly what the segment holds, which also catches a
 * truncation at a change-set boundary.
 *
 * A **snapshot** is a SQLite image with its position:
 *
 * | offset | size | field |
 * |-------:|-----:|-------|
 * | 0  | 4 | magic `"ELSN"` |
 * | 4  | 2 | version = 1 |
 * | 6  | 2 | flags = 0 |
 * | 8  | 4 | page size |
 * | 12 | 4 | database id |
 * | 16 | 4 | generation |
 * | 20 | 8 | txid |
 * | 28 | 4 | page count |
 * | 32 | 8 | timestamp: commit time of txid (ms) |
 * | 40 | 8 | database checksum at txid |
 * | 48 | 16 | reserved, zero |
 * | 64 | page count × page size | the image |
 * | end − 8 | 8 | file checksum = hash64(bytes[0 .. end − 8)) |
 */
import { DatabaseChecksum, hash64 } from './checksum.ts';
import { decodeChangeSet } from './changeset.ts';
import { changeSetByteLength, HEADER_SIZE, readChangeSetHeader, writeU64 } from './changeset-format.ts';
import { EdgeliteError } from './errors.ts';
import { isPageSize } from './page-size.ts';
import { formatChecksum, type ChangeSet, type Checksum, type Generation, type Txid } from './types.ts';

export const SNAPSHOT_MAGIC = 'ELSN';
export const SNAPSHOT_VERSION = 1;
export const SNAPSHOT_HEADER_SIZE = 64;
export const SNAPSHOT_TRAILER_SIZE = 8;

const MAGIC = new TextEncoder().encode(SNAPSHOT_MAGIC);

/** SnapshotHead is a snapshot object's position and identity. */
export interface SnapshotHead {
  pageSize: number;
  databaseId: number;
  generation: Generation;
  txid: Txid;
  pageCount: number;
  timestamp: number;
  checksum: Checksum;
}

/** encodeSnapshot lays out head + image + file checksum; `image` is exactly pageCount pages. */
export function encodeSnapshot(head: SnapshotHead, image: Uint8Array): Uint8Array {
  if (image.length !== head.pageCount * head.pageSize) {
    throw new EdgeliteError('INTERNAL', `snapshot image of ${image.length} bytes is not ${head.pageCount} pages of ${head.pageSize}`);
  }
  const out = new Uint8Array(SNAPSHOT_HEADER_SIZE + image.length + SNAPSHOT_TRAILER_SIZE);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  view.setUint16(4, SNAPSHOT_VERSION);
  view.setUint32(8, head.pageSize);
  view.setUint32(12, head.databaseId);
  view.setUint32(16, head.generation);
  writeU64(view, 20, head.txid);
  view.setUint32(28, head.pageCount);
  writeU64(view, 32, head.timestamp);
  view.setBigUint64(40, head.checksum);
  out.set(image, SNAPSHOT_HEADER_SIZE);
  view.setBigUint64(out.length - SNAPSHOT_TRAILER_SIZE, hash64(out.subarray(0, out.length - SNAPSHOT_TRAILER_SIZE)));
  return out;
}

/**
 * decodeSnapshot checks the layout, the file checksum and the image's database checksum against the
 * head; `image` is a view into `bytes`.
 */
export function decodeSnapshot(key: string, bytes: Uint8Array): { head: SnapshotHead; image: Uint8Array } {
  const bad = (why: string): never => {
    throw corruptObject(key, why);
  };
  const head = decodeSnapshotHead(key, bytes, bytes.length);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const end = bytes.length - SNAPSHOT_TRAILER_SIZE;
  if (hash64(bytes.subarray(0, end)) !== view.getBigUint64(end)) bad('file checksum mismatch');
  const image = bytes.subarray(SNAPSHOT_HEADER_SIZE, end);
  const sum = image.length === 0 ? new DatabaseChecksum(head.pageSize) : DatabaseChecksum.fromFile(image);
  if (sum.value !== head.checksum) bad(`image checksum ${formatChecksum(sum.value)}, header says ${formatChecksum(head.checksum)}`);
  return { head, image };
}

/**
 * decodeSnapshotHead checks and reads a snapshot's header from its first bytes (at least
 * SNAPSHOT_HEADER_SIZE of them) for an object of `length` bytes: what a streamed restore knows before
 * the image arrives. The file checksum and the image's checksum are the caller's to check.
 */
export function decodeSnapshotHead(key: string, first: Uint8Array, length: number): SnapshotHead {
  const bad = (why: string): never => {
    throw corruptObject(key, why);
  };
  if (length < SNAPSHOT_HEADER_SIZE + SNAPSHOT_TRAILER_SIZE) bad(`${length} bytes is shorter than a snapshot's header and trailer`);
  if (first.length < SNAPSHOT_HEADER_SIZE) bad(`${first.length} bytes read is shorter than a snapshot's header`);
  const view = new DataView(first.buffer, first.byteOffset, SNAPSHOT_HEADER_SIZE);
  if (MAGIC.some((b, i) => first[i] !== b)) bad('bad magic');
  if (view.getUint16(4) !== SNAPSHOT_VERSION || view.getUint16(6) !== 0) bad('unknown version or flags');
  const u64 = (o: number): number => view.getUint32(o) * 2 ** 32 + view.getUint32(o + 4);
  const head: SnapshotHead = {
    pageSize: view.getUint32(8),
    databaseId: view.getUint32(12),
    generation: view.getUint32(16),
    txid: u64(20),
    pageCount: view.getUint32(28),
    timestamp: u64(32),
    checksum: view.getBigUint64(40),
  };
  if (!isPageSize(head.pageSize)) bad(`invalid page size ${head.pageSize}`);
  const expected = SNAPSHOT_HEADER_SIZE + head.pageCount * head.pageSize + SNAPSHOT_TRAILER_SIZE;
  if (length !== expected) bad(`${length} bytes, its header says ${expected} (truncated or extended)`);
  return head;
}

/** isSnapshotStart says whether `first` begins with the snapshot magic (an encrypted object does not). */
export function isSnapshotStart(first: Uint8Array): boolean {
  return first.length >= MAGIC.length && MAGIC.every((b, i) => first[i] === b);
}

/** encodeSegment puts encoded change sets back to back. */
export function encodeSegment(payloads: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(payloads.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of payloads) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * decodeSegment splits and decodes (verifying each change set's checksums) a segment that its key says
 * holds `generation`, txids minTxid..maxTxid, and checks it holds exactly that, consecutively.
 */
export function decodeSegment(key: string, bytes: Uint8Array, expect: { generation: Generation; minTxid: Txid; maxTxid: Txid }): ChangeSet[] {
  const out: ChangeSet[] = [];
  let at = 0;
  let next = expect.minTxid;
  while (at < bytes.length) {
    let cs: ChangeSet;
    try {
      const rest = bytes.subarray(at);
      if (rest.length < HEADER_SIZE) throw new EdgeliteError('CORRUPT_CHANGESET', `${rest.length} trailing bytes`);
      const h = readChangeSetHeader(rest);
      const length = changeSetByteLength(h.pageSize, h.pageCount);
      cs = decodeChangeSet(rest.subarray(0, Math.min(length, rest.length)));
      at += length;
    } catch (err) {
      throw corruptObject(key, `change set at byte ${at}: ${err instanceof Error ? err.message : String(err)}`, err);
    }
    if (cs.generation !== expect.generation || cs.minTxid !== next) {
      throw corruptObject(key, `holds change set ${cs.minTxid}..${cs.maxTxid} of generation ${cs.generation} where ${next} of ${expect.generation} belongs`);
    }
    next = cs.maxTxid + 1;
    out.push(cs);
  }
  if (next !== expect.maxTxid + 1) throw corruptObject(key, `ends at txid ${next - 1}, its name says ${expect.maxTxid} (truncated)`);
  return out;
}

export function corruptObject(key: string, why: string, cause?: unknown): EdgeliteError {
  return new EdgeliteError('BACKUP_CORRUPT', `backup object ${key}: ${why}`, { details: { key }, ...(cause === undefined ? {} : { cause }) });
}
