/**
 * The on-disk record format of the change-set log (see log.ts) and the scanner that verifies a segment.
 *
 * A segment file is named by the minTxid of its first record in 16 hex digits (`0000000000000001.seg`)
 * and holds records back to back, with no file header: every record carries its own magic and version,
 * so a segment is valid from any record boundary. All integers are big-endian.
 *
 * Record layout:
 *
 * | offset        | size | field                                                            |
 * |---------------|------|------------------------------------------------------------------|
 * | 0             | 4    | magic `ELOG` (0x454c4f47)                                        |
 * | 4             | 2    | format version (1)                                               |
 * | 6             | 2    | flags (0; reserved)                                              |
 * | 8             | 4    | generation (u32)                                                 |
 * | 12            | 4    | meta length M (≤ 1 KiB)                                          |
 * | 16            | 4    | payload length P (≤ 1 GiB)                                       |
 * | 20            | 8    | min txid (u64)                                                   |
 * | 28            | 8    | max txid (u64)                                                   |
 * | 36            | 8    | timestamp, ms since the epoch (u64)                              |
 * | 44            | 8    | post checksum: the database checksum after this record (u64)     |
 * | 52            | 4    | reserved (0)                                                     |
 * | 56            | 4    | header CRC-32 over bytes 0–55                                    |
 * | 60            | M    | meta (opaque: the capture code's WAL cursor)                     |
 * | 60+M          | P    | payload (opaque: the encoded change set)                         |
 * | 60+M+P        | 4    | record CRC-32 over bytes 0 … 60+M+P−1                            |
 *
 * The header has its own CRC so that a damaged length field is recognised before it is used to find the
 * next record: that is what lets the scanner tell a torn tail from damage in the middle of the log.
 */
import { crc32 } from 'node:zlib';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EdgeliteError } from '../shared/errors.ts';
import { formatTxid, type Checksum, type Generation, type Txid } from '../shared/types.ts';
import { fsyncDir } from './log-sync.ts';

/** LogRecord is one entry of the log: fixed metadata plus opaque bytes the log never decodes. */
export interface LogRecord {
  generation: Generation;
  minTxid: Txid;
  maxTxid: Txid;
  /** Commit time on the primary, ms since the epoch. */
  timestamp: number;
  /** The database checksum after this record. */
  postChecksum: Checksum;
  /** Small opaque bytes the capture code stores with the record (its WAL cursor), ≤ MAX_META_BYTES. */
  meta: Uint8Array;
  /** The encoded change set, opaque here. */
  payload: Uint8Array;
}

/** RecordHeader is a record's fixed metadata as decoded from its header. */
export interface RecordHeader {
  generation: Generation;
  minTxid: Txid;
  maxTxid: Txid;
  timestamp: number;
  postChecksum: Checksum;
  metaLength: number;
  payloadLength: number;
}

export const RECORD_MAGIC = 0x454c4f47;
export const RECORD_VERSION = 1;
export const HEADER_SIZE = 60;
export const TRAILER_SIZE = 4;
export const RECORD_OVERHEAD = HEADER_SIZE + TRAILER_SIZE;
export const MAX_META_BYTES = 1024;
export const MAX_PAYLOAD_BYTES = 1024 * 1024 * 1024;
export const SEGMENT_SUFFIX = '.seg';
/** SCAN_BUFFER_BYTES bounds the memory the scanner reads through, whatever the record sizes. */
const SCAN_BUFFER_BYTES = 1024 * 1024;
const HEADER_CRC_OFFSET = 56;
const MAGIC_BYTES = Buffer.from([0x45, 0x4c, 0x4f, 0x47]);
const MAX_U64 = (1n << 64n) - 1n;

/** recordSize is the number of bytes a record with these lengths takes on disk. */
export function recordSize(metaLength: number, payloadLength: number): number {
  return RECORD_OVERHEAD + metaLength + payloadLength;
}

/** segmentFileName names the segment whose first record starts at `firstTxid`. */
export function segmentFileName(firstTxid: Txid): string {
  return `${formatTxid(firstTxid)}${SEGMENT_SUFFIX}`;
}

/** parseSegmentFileName returns the first txid a segment file name encodes, or null for other files. */
export function parseSegmentFileName(name: string): Txid | null {
  const m = /^([0-9a-f]{16})\.seg$/.exec(name);
  if (!m?.[1]) return null;
  const txid = Number.parseInt(m[1], 16);
  return Number.isSafeInteger(txid) ? txid : null;
}

/**
 * validateRecord throws BAD_REQUEST unless every field fits the format; the log calls it before
 * writing, so nothing it writes can fail its own decoder.
 */
export function validateRecord(rec: LogRecord): void {
  const bad = (why: string): never => {
    throw new EdgeliteError('BAD_REQUEST', `invalid log record: ${why}`);
  };
  if (!Number.isInteger(rec.generation) || rec.generation < 0 || rec.generation > 0xffffffff) bad(`generation ${rec.generation} is not a u32`);
  if (!Number.isSafeInteger(rec.minTxid) || rec.minTxid < 1) bad(`minTxid ${rec.minTxid} is not a positive safe integer`);
  if (!Number.isSafeInteger(rec.maxTxid) || rec.maxTxid < rec.minTxid) bad(`maxTxid ${rec.maxTxid} is below minTxid ${rec.minTxid}`);
  if (!Number.isSafeInteger(rec.timestamp) || rec.timestamp < 0) bad(`timestamp ${rec.timestamp} is not a non-negative safe integer`);
  if (typeof rec.postChecksum !== 'bigint' || rec.postChecksum < 0n || rec.postChecksum > MAX_U64) bad('postChecksum is not a u64');
  if (!(rec.meta instanceof Uint8Array) || rec.meta.length > MAX_META_BYTES) bad(`meta must be a Uint8Array of at most ${MAX_META_BYTES} bytes`);
  if (!(rec.payload instanceof Uint8Array) || rec.payload.length > MAX_PAYLOAD_BYTES) bad(`payload must be a Uint8Array of at most ${MAX_PAYLOAD_BYTES} bytes`);
}

/**
 * encodeRecordInto writes the record at the start of `target` (which must hold recordSize bytes) and
 * returns its size. The caller writes it with one write, so header and payload are never split.
 */
export function encodeRecordInto(rec: LogRecord, target: Buffer): number {
  const m = rec.meta.length;
  const p = rec.payload.length;
  const size = recordSize(m, p);
  target.writeUInt32BE(RECORD_MAGIC, 0);
  target.writeUInt16BE(RECORD_VERSION, 4);
  target.writeUInt16BE(0, 6);
  target.writeUInt32BE(rec.generation, 8);
  target.writeUInt32BE(m, 12);
  target.writeUInt32BE(p, 16);
  target.writeBigUInt64BE(BigInt(rec.minTxid), 20);
  target.writeBigUInt64BE(BigInt(rec.maxTxid), 28);
  target.writeBigUInt64BE(BigInt(rec.timestamp), 36);
  target.writeBigUInt64BE(rec.postChecksum, 44);
  target.writeUInt32BE(0, 52);
  target.writeUInt32BE(crc32(target.subarray(0, HEADER_CRC_OFFSET)), HEADER_CRC_OFFSET);
  target.set(rec.meta, HEADER_SIZE);
  target.set(rec.payload, HEADER_SIZE + m);
  target.writeUInt32BE(crc32(target.subarray(0, size - TRAILER_SIZE)), size - TRAILER_SIZE);
  return size;
}

/** decodeHeader parses and verifies a record header; a string return says why it is not one. */
export function decodeHeader(buf: Buffer): RecordHeader | string {
  if (buf.length < HEADER_SIZE) return 'truncated header';
  if (buf.readUInt32BE(0) !== RECORD_MAGIC) return 'bad magic';
  if (buf.readUInt32BE(HEADER_CRC_OFFSET) !== crc32(buf.subarray(0, HEADER_CRC_OFFSET))) return 'header checksum mismatch';
  if (buf.readUInt16BE(4) !== RECORD_VERSION) return `unsupported record version ${buf.readUInt16BE(4)}`;
  const metaLength = buf.readUInt32BE(12);
  const payloadLength = buf.readUInt32BE(16);
  const minTxid = Number(buf.readBigUInt64BE(20));
  const maxTxid = Number(buf.readBigUInt64BE(28));
  const timestamp = Number(buf.readBigUInt64BE(36));
  if (metaLength > MAX_META_BYTES || payloadLength > MAX_PAYLOAD_BYTES) return 'length out of range';
  if (!Number.isSafeInteger(maxTxid) || !Number.isSafeInteger(timestamp) || minTxid < 1 || maxTxid < minTxid) {
    return 'txid or timestamp out of range';
  }
  return {
    generation: buf.readUInt32BE(8),
    minTxid,
    maxTxid,
    timestamp,
    postChecksum: buf.readBigUInt64BE(44),
    metaLength,
    payloadLength,
  };
}

/**
 * decodeRecord turns the full bytes of one record into a LogRecord, verifying both checksums; meta and
 * payload are views into `buf`.
 */
export function decodeRecord(buf: Buffer): LogRecord | string {
  const header = decodeHeader(buf);
  if (typeof header === 'string') return header;
  const size = recordSize(header.metaLength, header.payloadLength);
  if (buf.length !== size) return `record is ${buf.length} bytes, header says ${size}`;
  if (buf.readUInt32BE(size - TRAILER_SIZE) !== crc32(buf.subarray(0, size - TRAILER_SIZE))) return 'record checksum mismatch';
  const metaEnd = HEADER_SIZE + header.metaLength;
  return {
    generation: header.generation,
    minTxid: header.minTxid,
    maxTxid: header.maxTxid,
    timestamp: header.timestamp,
    postChecksum: header.postChecksum,
    meta: buf.subarray(HEADER_SIZE, metaEnd),
    payload: buf.subarray(metaEnd, metaEnd + header.payloadLength),
  };
}

/** readFully reads `length` bytes at `position`, looping over short reads; returns the bytes read. */
export function readFully(fd: number, target: Buffer, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, target, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** SegmentReader reads a segment through one bounded buffer, so scanning never holds a whole file. */
class SegmentReader {
  private readonly buf = Buffer.allocUnsafe(SCAN_BUFFER_BYTES);
  private start = 0;
  private end = 0;

  constructor(
    private readonly fd: number,
    private readonly size: number,
  ) {}

  /** view returns `length` (≤ SCAN_BUFFER_BYTES) bytes at `offset`; valid until the next call. */
  view(offset: number, length: number): Buffer {
    if (offset < this.start || offset + length > this.end) {
      const n = readFully(this.fd, this.buf, Math.min(SCAN_BUFFER_BYTES, this.size - offset), offset);
      this.start = offset;
      this.end = offset + n;
      if (n < length) throw new EdgeliteError('IO_ERROR', `short read at offset ${offset}: the segment shrank while scanning`);
    }
    return this.buf.subarray(offset - this.start, offset - this.start + length);
  }

  /** crc computes the CRC-32 of `length` bytes at `offset`, in chunks. */
  crc(offset: number, length: number): number {
    let value = 0;
    for (let done = 0; done < length; ) {
      const n = Math.min(SCAN_BUFFER_BYTES, length - done);
      value = crc32(this.view(offset + done, n), value);
      done += n;
    }
    return value;
  }

  /** checkAt returns the header of an intact record at `offset`, or why there is none. */
  checkAt(offset: number): RecordHeader | string {
    if (this.size - offset < HEADER_SIZE) return 'truncated header';
    const header = decodeHeader(this.view(offset, HEADER_SIZE));
    if (typeof header === 'string') return header;
    const size = recordSize(header.metaLength, header.payloadLength);
    if (offset + size > this.size) return `record of ${size} bytes runs past the end of the segment`;
    const crc = this.crc(offset, size - TRAILER_SIZE);
    if (this.view(offset + size - TRAILER_SIZE, TRAILER_SIZE).readUInt32BE(0) !== crc) return 'record checksum mismatch';
    return header;
  }
}

/** ScannedRecord is a verified record's header and where it starts in its segment. */
export interface ScannedRecord extends RecordHeader {
  offset: number;
}

/** SegmentScan is what scanSegment found: the intact prefix, and the first damage if any. */
export interface SegmentScan {
  records: ScannedRecord[];
  /** Bytes of intact records from the start of the segment. */
  validBytes: number;
  damage: { offset: number; reason: string } | null;
}

/** scanSegment verifies every record of a segment from the start, stopping at the first damage. */
export function scanSegment(fd: number, size: number): SegmentScan {
  const reader = new SegmentReader(fd, size);
  const records: ScannedRecord[] = [];
  let offset = 0;
  while (offset < size) {
    const header = reader.checkAt(offset);
    if (typeof header === 'string') return { records, validBytes: offset, damage: { offset, reason: header } };
    records.push({ ...header, offset });
    offset += recordSize(header.metaLength, header.payloadLength);
  }
  return { records, validBytes: offset, damage: null };
}

/**
 * findIntactRecordAfter returns the offset of the first intact record that starts after `offset`, or
 * null. Damage followed by an intact record is damage in the middle of the log, never a torn tail: a
 * torn write can only lose the end of the file.
 */
export function findIntactRecordAfter(fd: number, size: number, offset: number): number | null {
  const reader = new SegmentReader(fd, size);
  let pos = offset + 1;
  while (pos + HEADER_SIZE <= size) {
    const chunkLength = Math.min(SCAN_BUFFER_BYTES, size - pos);
    const i = reader.view(pos, chunkLength).indexOf(MAGIC_BYTES);
    if (i < 0) {
      pos += chunkLength - (MAGIC_BYTES.length - 1);
      continue;
    }
    if (typeof reader.checkAt(pos + i) !== 'string') return pos + i;
    pos += i + 1;
  }
  return null;
}

/** Segment is one open segment file of a log. */
export interface Segment {
  firstTxid: Txid;
  path: string;
  fd: number;
  size: number;
  records: number;
  /** Timestamp of the segment's newest record: retention by age drops whole segments. */
  lastTimestamp: number;
}

/** LoadedRecord is a verified record and the segment holding it. */
export interface LoadedRecord extends ScannedRecord {
  segment: Segment;
}

/** LoadedLog is a verified log directory, its segments left open (the last one read-write). */
export interface LoadedLog {
  segments: Segment[];
  records: LoadedRecord[];
  recoveredBytes: number;
}

/**
 * loadSegments opens and verifies every segment of `dir` in txid order. Damage in the last segment
 * with no intact record after it is a torn tail: it is truncated away (and fsynced), and an empty last
 * segment is deleted. Any other damage, a file whose name disagrees with its first record, or records
 * that do not follow each other throw LOG_CORRUPT naming the path and offset.
 */
export function loadSegments(dir: string): LoadedLog {
  const names = fs.readdirSync(dir).filter((n) => parseSegmentFileName(n) !== null).sort();
  const out: LoadedLog = { segments: [], records: [], recoveredBytes: 0 };
  try {
    for (const [i, name] of names.entries()) {
      const isLast = i === names.length - 1;
      const file = path.join(dir, name);
      const fd = fs.openSync(file, isLast ? 'r+' : 'r');
      const seg: Segment = { firstTxid: parseSegmentFileName(name) ?? 0, path: file, fd, size: fs.fstatSync(fd).size, records: 0, lastTimestamp: 0 };
      out.segments.push(seg);
      const scan = scanSegment(fd, seg.size);
      if (scan.damage) {
        const intactAfter = isLast ? findIntactRecordAfter(fd, seg.size, scan.damage.offset) : scan.damage.offset;
        if (intactAfter !== null) throw logCorrupt(file, scan.damage.offset, scan.damage.reason);
        fs.ftruncateSync(fd, scan.validBytes);
        fs.fdatasyncSync(fd);
        out.recoveredBytes += seg.size - scan.validBytes;
        seg.size = scan.validBytes;
      }
      if (scan.records.length === 0) {
        if (!isLast) throw logCorrupt(file, 0, 'empty segment before the last one');
        out.segments.pop();
        fs.closeSync(fd);
        fs.unlinkSync(file);
        fsyncDir(dir);
        // The segment before becomes the one appended to: it needs a writable descriptor.
        const prev = out.segments.at(-1);
        if (prev) {
          fs.closeSync(prev.fd);
          prev.fd = fs.openSync(prev.path, 'r+');
        }
        break;
      }
      if (scan.records[0]?.minTxid !== seg.firstTxid) throw logCorrupt(file, 0, `first record starts at txid ${scan.records[0]?.minTxid}, not the txid in the file name`);
      for (const r of scan.records) {
        const prev = out.records.at(-1);
        const why = prev ? discontinuity(prev, r) : null;
        if (why !== null) throw logCorrupt(file, r.offset, why);
        out.records.push({ ...r, segment: seg });
        seg.records++;
        seg.lastTimestamp = r.timestamp;
      }
    }
  } catch (err) {
    for (const s of out.segments) closeQuietly(s.fd);
    throw err;
  }
  return out;
}

/**
 * discontinuity says why `next` cannot follow `prev`, or null: the next txid in the same generation,
 * or a higher generation whose txids are still higher.
 */
export function discontinuity(prev: { generation: number; maxTxid: number }, next: { generation: number; minTxid: number }): string | null {
  if (next.generation === prev.generation) {
    return next.minTxid === prev.maxTxid + 1 ? null : `txid ${next.minTxid} does not follow ${prev.maxTxid} in generation ${prev.generation}`;
  }
  if (next.generation < prev.generation) return `generation ${next.generation} is below the log's generation ${prev.generation}`;
  return next.minTxid > prev.maxTxid ? null : `generation ${next.generation} starts at txid ${next.minTxid}, not above ${prev.maxTxid}`;
}

export function logCorrupt(file: string, offset: number, reason: string): EdgeliteError {
  return new EdgeliteError('LOG_CORRUPT', `log segment ${file} is corrupt at offset ${offset}: ${reason}`, { details: { path: file, offset, reason } });
}

/** closeQuietly closes an fd on a path that is already failing, keeping the first error. */
function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch (err) {
    // The error being thrown explains the failure; a close error on the way out would only mask it.
    void err;
  }
}
