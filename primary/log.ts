/**
 * ChangeSetLog is the primary's durable log of change sets for one database: append-only segment files
 * (format in log-segment.ts) plus an in-memory index of record metadata, so `since(txid)` finds its
 * starting record by binary search and reads payloads from disk by (segment, offset, length).
 *
 * Durability: `append` writes with one writeSync; `sync()` is group commit (log-sync.ts). A failed
 * fdatasync makes the instance refuse appends until the log is reopened. Only one process may write a
 * database's log (the primary owns its data directory).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EdgeliteError, toEdgeliteError } from '../shared/errors.ts';
import type { Generation, Txid } from '../shared/types.ts';
import { resolveLogOptions, type LogOptions, type ResolvedLogOptions } from './log-options.ts';
import { fsyncDir, GroupCommit, ioError, mkdirDurable } from './log-sync.ts';
import {
  decodeRecord,
  discontinuity,
  encodeRecordInto,
  loadSegments,
  logCorrupt,
  readFully,
  recordSize,
  segmentFileName,
  validateRecord,
  type LogRecord,
  type Segment,
} from './log-segment.ts';

export type { LogRecord } from './log-segment.ts';
export { NODE_FSYNC, type LogFsync } from './log-sync.ts';

export {
  DEFAULT_RETENTION_AGE_MS,
  DEFAULT_RETENTION_BYTES,
  DEFAULT_RETENTION_RECORDS,
  DEFAULT_SEGMENT_BYTES,
  DEFAULT_SYNC_INTERVAL_MS,
  resolveLogOptions,
  type LogOptions,
  type LogRetention,
} from './log-options.ts';

/** IndexEntry is what the log keeps in memory per record: metadata and where its bytes are. */
interface IndexEntry {
  generation: Generation;
  minTxid: Txid;
  maxTxid: Txid;
  segment: Segment;
  offset: number;
  size: number;
}

/** RecordInfo is a retained record's metadata, without its payload (catch-up ranges, primary/changes.ts). */
export interface RecordInfo {
  generation: Generation;
  minTxid: Txid;
  maxTxid: Txid;
  /** The record's size on disk. */
  size: number;
}

/** LogStats is a snapshot of the log's counters, for /metrics and tests. */
export interface LogStats {
  records: number;
  bytes: number;
  segments: number;
  firstTxid: Txid | null;
  lastTxid: Txid | null;
  /** Bytes of torn or corrupt tail truncated away when the log was opened. */
  recoveredBytes: number;
  /** fdatasync calls on segment files since open (directory fsyncs not counted). */
  fsyncs: number;
  durableTxid: Txid;
}

/** SCRATCH_KEEP_BYTES: records up to this size are encoded into one reused buffer. */
const SCRATCH_KEEP_BYTES = 4 * 1024 * 1024;

export class ChangeSetLog {
  private readonly segments: Segment[] = [];
  private entries: IndexEntry[] = [];
  private recovered = 0;
  private closed = false;
  private readonly commit: GroupCommit;
  private timer: NodeJS.Timeout | null = null;
  private scratch = Buffer.alloc(0);

  private constructor(
    readonly dir: string,
    private readonly opts: ResolvedLogOptions,
  ) {
    this.commit = new GroupCommit(opts.fsync, () => ({ file: this.segments.at(-1), txid: this.lastTxid() }));
  }

  /**
   * open creates `dir` if needed, then scans and verifies every record. A torn or corrupt tail of the
   * last segment (damage with no intact record after it) is truncated away and counted in
   * `stats().recoveredBytes`; any other damage throws LOG_CORRUPT with the path and offset.
   */
  static open(dir: string, options: LogOptions): ChangeSetLog {
    const log = new ChangeSetLog(dir, resolveLogOptions(options));
    let loaded: ReturnType<typeof loadSegments>;
    try {
      mkdirDurable(dir);
      loaded = loadSegments(dir);
    } catch (err) {
      throw err instanceof EdgeliteError ? err : ioError(`cannot open log ${dir}`, err);
    }
    log.segments.push(...loaded.segments);
    log.entries = loaded.records.map((r) => ({
      generation: r.generation,
      minTxid: r.minTxid,
      maxTxid: r.maxTxid,
      segment: r.segment,
      offset: r.offset,
      size: recordSize(r.metaLength, r.payloadLength),
    }));
    log.recovered = loaded.recoveredBytes;
    // What a crashed process wrote may still be only in the page cache (its last segment's directory
    // entry too): make it durable before saying so, unless a clean close already did.
    const current = log.segments.at(-1);
    const last = log.lastTxid();
    try {
      if (current && options.durableThrough !== undefined && last <= options.durableThrough) log.commit.durableTxid = last;
      else if (current) {
        log.commit.pendingDir = dir;
        log.commit.flushSync(current, last);
      }
    } catch (err) {
      for (const s of log.segments) fs.closeSync(s.fd);
      throw err;
    }
    return log;
  }

  /**
   * append writes one record synchronously to the current segment (rolling to a new one past
   * segmentBytes). It does not wait for the disk: call sync() before acknowledging. Throws
   * POSITION_MISMATCH unless the record continues the log (next txid in the same generation, or a
   * higher generation with a higher txid), BAD_REQUEST for a malformed record.
   */
  append(rec: LogRecord): void {
    this.assertUsable();
    validateRecord(rec);
    const last = this.entries.at(-1);
    const why = last ? discontinuity(last, rec) : null;
    if (why !== null) throw new EdgeliteError('POSITION_MISMATCH', `cannot append to log ${this.dir}: ${why}`);
    const size = recordSize(rec.meta.length, rec.payload.length);
    let seg = this.segments.at(-1);
    const full = seg !== undefined && seg.size > 0 && seg.size + size > this.opts.segmentBytes;
    // An empty segment (left by a failed write) is reused only if its name still fits the record.
    if (seg === undefined || full || (seg.size === 0 && seg.firstTxid !== rec.minTxid)) seg = this.roll(rec.minTxid);
    const buf = this.encode(rec, size);
    this.write(seg, buf);
    this.entries.push({ generation: rec.generation, minTxid: rec.minTxid, maxTxid: rec.maxTxid, segment: seg, offset: seg.size, size });
    seg.size += size;
    seg.records++;
    seg.lastTimestamp = rec.timestamp;
    if (this.opts.sync === 'normal' && this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.commit.start();
      }, this.opts.syncIntervalMs);
      this.timer.unref();
    }
  }

  /**
   * sync resolves once an fdatasync covering every record appended before the call has completed.
   * Callers arriving while one runs share the next one. Rejects with IO_ERROR if an fsync failed.
   */
  sync(): Promise<void> {
    if (this.closed) return Promise.reject(closedError(this.dir));
    return this.commit.wait();
  }

  /** syncNow fdatasyncs everything appended, synchronously (before checkpoints and on shutdown). */
  syncNow(): void {
    this.assertUsable();
    const seg = this.segments.at(-1);
    const target = this.lastTxid();
    if (seg !== undefined && target > this.commit.durableTxid) this.commit.flushSync(seg, target);
  }

  /** durableTxid is the highest maxTxid known to be fsynced (0 when the log is empty). */
  get durableTxid(): Txid {
    return this.commit.durableTxid;
  }

  /** firstTxid is the oldest retained record's minTxid. */
  get firstTxid(): Txid | null {
    return this.entries[0]?.minTxid ?? null;
  }

  /** last returns the newest record, payload read from disk, or null for an empty log. */
  last(): LogRecord | null {
    const e = this.entries.at(-1);
    return e ? this.read(e) : null;
  }

  /**
   * since returns every record after `txid` in `generation`, starting exactly at txid+1 ([] when
   * caught up), or null when the caller needs a snapshot: the generation is not the log's newest, or
   * txid is older than retention, ahead of the log, or inside a compacted record's range.
   */
  since(generation: Generation, txid: Txid): LogRecord[] | null {
    return this.collect(generation, txid, Number.POSITIVE_INFINITY);
  }

  /**
   * iterateSince is since() bounded to about `limitBytes` of records on disk: it returns the longest
   * run that fits, but always at least one record so a caller looping on it makes progress.
   */
  iterateSince(generation: Generation, txid: Txid, limitBytes: number): LogRecord[] | null {
    if (!(limitBytes > 0)) throw new EdgeliteError('BAD_REQUEST', `limitBytes must be positive, got ${limitBytes}`);
    return this.collect(generation, txid, limitBytes);
  }

  private collect(generation: Generation, txid: Txid, limitBytes: number): LogRecord[] | null {
    this.assertOpen();
    if (!Number.isSafeInteger(txid)) throw new EdgeliteError('BAD_REQUEST', `txid must be a safe integer, got ${txid}`);
    const last = this.entries.at(-1);
    if (last === undefined || last.generation !== generation || txid > last.maxTxid) return null;
    if (txid === last.maxTxid) return [];
    const start = this.indexOfMinTxid(txid + 1);
    if (start < 0 || this.entries[start]?.generation !== generation) return null;
    const out: LogRecord[] = [];
    let bytes = 0;
    for (let i = start; i < this.entries.length; i++) {
      const e = this.entries[i] as IndexEntry;
      if (out.length > 0 && bytes + e.size > limitBytes) break;
      bytes += e.size;
      out.push(this.read(e));
    }
    return out;
  }

  /**
   * index lists the retained records of `generation` that hold any txid in fromTxid..toTxid, oldest
   * first, from memory (no payload is read).
   */
  index(generation: Generation, fromTxid: Txid, toTxid: Txid): RecordInfo[] {
    this.assertOpen();
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.entries[mid] as IndexEntry).maxTxid < fromTxid) lo = mid + 1;
      else hi = mid;
    }
    const out: RecordInfo[] = [];
    for (let i = lo; i < this.entries.length; i++) {
      const e = this.entries[i] as IndexEntry;
      if (e.minTxid > toTxid) break;
      if (e.generation === generation) out.push({ generation: e.generation, minTxid: e.minTxid, maxTxid: e.maxTxid, size: e.size });
    }
    return out;
  }

  /**
   * readRange reads the records of `generation` from the one starting at fromTxid through the one ending
   * at toTxid, or null unless both are retained record boundaries of that generation.
   */
  readRange(generation: Generation, fromTxid: Txid, toTxid: Txid): LogRecord[] | null {
    this.assertOpen();
    const start = this.indexOfMinTxid(fromTxid);
    if (start < 0) return null;
    const out: LogRecord[] = [];
    for (let i = start; i < this.entries.length; i++) {
      const e = this.entries[i] as IndexEntry;
      if (e.generation !== generation || e.maxTxid > toTxid) return null;
      out.push(this.read(e));
      if (e.maxTxid === toTxid) return out;
    }
    return null;
  }

  /**
   * prune applies retention: while the log holds more records or bytes than allowed, or its oldest
   * segment's newest record is older than maxAgeMs before `now`, it deletes the oldest whole segment.
   * The newest segment is always kept, and so is any segment the keepAfter option pins. Returns the number of records removed.
   */
  prune(now: number = Date.now()): number {
    this.assertOpen();
    const { maxRecords, maxBytes, maxAgeMs } = this.opts.retention;
    let removed = 0;
    let bytes = this.totalBytes();
    while (this.segments.length > 1) {
      const oldest = this.segments[0] as Segment;
      const over = this.entries.length - removed > maxRecords || bytes > maxBytes || oldest.lastTimestamp < now - maxAgeMs;
      if (!over || oldest === this.commit.inFlight || this.pinned(removed + oldest.records - 1)) break;
      try {
        fs.unlinkSync(oldest.path);
      } catch (err) {
        throw ioError(`cannot delete log segment ${oldest.path}`, err);
      }
      fs.closeSync(oldest.fd);
      this.segments.shift();
      removed += oldest.records;
      bytes -= oldest.size;
    }
    if (removed > 0) {
      this.entries = this.entries.slice(removed);
      fsyncDir(this.dir);
    }
    return removed;
  }

  stats(): LogStats {
    return {
      records: this.entries.length,
      bytes: this.totalBytes(),
      segments: this.segments.length,
      firstTxid: this.firstTxid,
      lastTxid: this.entries.at(-1)?.maxTxid ?? null,
      recoveredBytes: this.recovered,
      fsyncs: this.commit.fsyncs,
      durableTxid: this.commit.durableTxid,
    };
  }

  /**
   * close fsyncs what was appended and closes the files. An fsync still running in the background
   * is abandoned; its waiters were settled by the final sync.
   */
  close(): void {
    if (this.closed) return;
    try {
      if (this.commit.failure === null) this.syncNow();
    } finally {
      this.closed = true;
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.commit.stop(this.commit.failure ?? closedError(this.dir));
      for (const s of this.segments) fs.closeSync(s.fd);
    }
  }

  /** pinned tells whether entry `i` is held by the keepAfter option (not uploaded yet). */
  private pinned(i: number): boolean {
    const keep = this.opts.keepAfter;
    return keep !== null && (this.entries[i]?.maxTxid ?? 0) > keep();
  }

  private lastTxid(): Txid {
    return this.entries.at(-1)?.maxTxid ?? 0;
  }

  private totalBytes(): number {
    return this.segments.reduce((sum, s) => sum + s.size, 0);
  }

  /** indexOfMinTxid binary-searches the entry that starts exactly at `txid`, or -1. */
  private indexOfMinTxid(txid: Txid): number {
    let lo = 0;
    let hi = this.entries.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const m = (this.entries[mid] as IndexEntry).minTxid;
      if (m === txid) return mid;
      if (m < txid) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  private read(e: IndexEntry): LogRecord {
    const buf = Buffer.allocUnsafe(e.size);
    let n: number;
    try {
      n = readFully(e.segment.fd, buf, e.size, e.offset);
    } catch (err) {
      throw ioError(`cannot read log segment ${e.segment.path} at offset ${e.offset}`, err);
    }
    const rec = n === e.size ? decodeRecord(buf) : `short read: ${n} of ${e.size} bytes`;
    if (typeof rec === 'string') throw logCorrupt(e.segment.path, e.offset, rec);
    if (rec.minTxid !== e.minTxid || rec.maxTxid !== e.maxTxid) throw logCorrupt(e.segment.path, e.offset, 'record does not match the index');
    return rec;
  }

  private encode(rec: LogRecord, size: number): Buffer {
    if (size > SCRATCH_KEEP_BYTES) {
      const buf = Buffer.allocUnsafe(size);
      encodeRecordInto(rec, buf);
      return buf;
    }
    if (this.scratch.length < size) this.scratch = Buffer.allocUnsafe(Math.min(SCRATCH_KEEP_BYTES, Math.max(size, this.scratch.length * 2, 64 * 1024)));
    encodeRecordInto(rec, this.scratch);
    return this.scratch.subarray(0, size);
  }

  /** write puts a whole record at the end of `seg`; on failure it cuts the partial record off again. */
  private write(seg: Segment, buf: Buffer): void {
    let done = 0;
    try {
      while (done < buf.length) done += fs.writeSync(seg.fd, buf, done, buf.length - done, seg.size + done);
    } catch (err) {
      try {
        fs.ftruncateSync(seg.fd, seg.size);
      } catch (truncErr) {
        this.commit.poison(ioError(`cannot cut a partial record off ${seg.path}; reopen the log`, truncErr));
      }
      throw ioError(`cannot append to log segment ${seg.path}`, err);
    }
  }

  /**
   * roll makes the segment for a record starting at `firstTxid` current. It fsyncs the one before, so
   * only the last segment can ever have a torn tail, and drops it instead if it is empty.
   */
  private roll(firstTxid: Txid): Segment {
    const prev = this.segments.at(-1);
    if (prev?.size === 0) {
      this.segments.pop();
      fs.closeSync(prev.fd);
      fs.unlinkSync(prev.path);
    } else if (prev) {
      this.commit.flushSync(prev, this.lastTxid());
    }
    const file = path.join(this.dir, segmentFileName(firstTxid));
    let fd: number;
    try {
      fd = fs.openSync(file, 'wx+');
    } catch (err) {
      throw ioError(`cannot create log segment ${file}`, err);
    }
    const seg: Segment = { firstTxid, path: file, fd, size: 0, records: 0, lastTimestamp: 0 };
    this.segments.push(seg);
    // Its directory entry becomes durable with the first flush of its records (GroupCommit.pendingDir).
    this.commit.pendingDir = this.dir;
    return seg;
  }

  private assertOpen(): void {
    if (this.closed) throw closedError(this.dir);
  }

  private assertUsable(): void {
    this.assertOpen();
    if (this.commit.failure) throw this.commit.failure;
  }
}

function closedError(dir: string): EdgeliteError {
  return new EdgeliteError('UNAVAILABLE', `log ${dir} is closed`);
}
