/**
 * WalReader reads a database's `-wal` file and cuts it into committed transactions (docs/ARCHITECTURE.md#capture-rules), the way
 * SQLite's own recovery reads it: a frame counts only if its salts equal the header's and its cumulative
 * checksum matches; reading stops at the first frame that does not; frames after the last commit frame
 * (a transaction still being written, or torn by a crash) are left for a later read.
 *
 * It is called after every write the primary executes, so a read from a cursor touches only what is new:
 * the 32-byte header, the one frame header the cursor points at (to prove the WAL was not rewritten under
 * it) and the frames after it. Nothing before the cursor is re-read or re-checksummed.
 */
import fs from 'node:fs';
import { EdgeliteError } from '../shared/errors.ts';
import {
  parseFrameHeader,
  parseWalHeader,
  walChecksum,
  walFrameOffset,
  WAL_FRAME_HEADER_SIZE,
  WAL_HEADER_SIZE,
  type WalHeader,
} from './wal-format.ts';

export { parseWalHeader, walChecksum, type WalHeader } from './wal-format.ts';

/**
 * WalCursor is where reading stopped: just after the last commit frame read (`frame` = frames consumed,
 * 0 = none), with the running checksum after that frame (for frame 0: the header checksum). Plain
 * JSON-able numbers, persisted by the log.
 */
export interface WalCursor {
  salt1: number;
  salt2: number;
  pageSize: number;
  frame: number;
  checksum1: number;
  checksum2: number;
}

export interface WalTransaction {
  /** Database size in pages after this transaction. */
  commit: number;
  /** Last image of each page written, pgno ≤ commit, in ascending pgno order; each array is its own copy. */
  pages: Map<number, Uint8Array>;
  /** 1-based frame indexes of this transaction in this WAL. */
  firstFrame: number;
  lastFrame: number;
  /** Cursor just after this transaction's commit frame. */
  cursor: WalCursor;
}

/**
 * WalStart says how the file relates to the cursor given:
 * - 'continued': same salts and the cursor's frame still carries the cursor's checksum; read after it.
 *   Also returned, with nothing read, when the file is missing or shorter than a header (a TRUNCATE
 *   checkpoint or a clean close emptied it): nothing there contradicts the cursor, the next header decides.
 * - 'fresh': no cursor given; read from frame 1.
 * - 'restarted': header salt-1 is the cursor's plus one: SQLite restarted the WAL once; read from frame 1.
 *   This alone does not prove no committed frame after the cursor was lost in the old WAL: that is what
 *   the primary's read lock guarantees.
 * - 'mismatch': anything else (salt jump, cursor frame beyond the file or rewritten, page size changed);
 *   nothing is returned.
 */
export type WalStart = 'continued' | 'fresh' | 'restarted' | 'mismatch';

/**
 * WalStopReason says why reading stopped: 'end' (every byte after the last commit was read), 'invalid-frame'
 * (a whole frame failed its salt or checksum test: normal after a restart, where stale frames follow the new
 * ones), 'uncommitted-tail' (valid frames or a partial frame after the last commit), 'limit' (maxTransactions
 * or maxBytes reached: call again with the returned cursor). None of them is an error; a 'mismatch' start
 * reports 'invalid-frame'.
 */
export type WalStopReason = 'end' | 'invalid-frame' | 'uncommitted-tail' | 'limit';

export interface WalReadResult {
  /** null when the file is missing or shorter than 32 bytes. */
  header: WalHeader | null;
  start: WalStart;
  transactions: WalTransaction[];
  /**
   * Where the next read should resume: the last transaction's cursor; with no transaction, frame 0 of the
   * header's salts after 'fresh' or 'restarted' (so the restart is reported once), else the input cursor.
   */
  cursor: WalCursor | null;
  stoppedBy: WalStopReason;
}

export interface WalReadOptions {
  /** Stop after this many transactions (at least 1). */
  maxTransactions?: number;
  /** Stop after the transaction that brings the WAL bytes consumed by this call to this many (≥ 1 transaction). */
  maxBytes?: number;
}

/** READ_CHUNK_BYTES bounds one readSync: big enough to amortise the call, small enough not to hold a large WAL. */
const READ_CHUNK_BYTES = 4 << 20;
/** FIRST_CHUNK_FRAMES: frames read first in a scan; later reads grow 4x up to READ_CHUNK_BYTES. */
const FIRST_CHUNK_FRAMES = 8;

/** PendingPage is a page of the transaction being read: still in the read buffer (an offset) or copied out. */
type PendingPage = number | Uint8Array;

export class WalReader {
  readonly path: string;
  #fd: number | null = null;
  #ino = -1;
  #dev = -1;
  #buf = new Uint8Array(0);
  readonly #small = new Uint8Array(WAL_HEADER_SIZE);

  /** The `-wal` file need not exist yet; it is opened on the first read that finds it. */
  constructor(walPath: string) {
    if (typeof walPath !== 'string' || walPath === '') {
      throw new EdgeliteError('INTERNAL', 'WalReader needs the path of a -wal file');
    }
    this.path = walPath;
  }

  /**
   * read returns the transactions committed after `from` (from frame 1 when null), within `opts`. It throws
   * WAL_INVALID for a header SQLite would ignore and IO_ERROR when the file cannot be read; every other
   * state of the file is a result (see WalStart, WalStopReason).
   */
  read(from: WalCursor | null, opts: WalReadOptions = {}): WalReadResult {
    if (from !== null) checkCursor(from);
    const maxTransactions = limit(opts.maxTransactions, 'maxTransactions');
    const maxBytes = limit(opts.maxBytes, 'maxBytes');
    const size = this.#open();
    if (size < WAL_HEADER_SIZE || this.#pread(this.#small, WAL_HEADER_SIZE, 0) < WAL_HEADER_SIZE) {
      return { header: null, start: from ? 'continued' : 'fresh', transactions: [], cursor: from, stoppedBy: 'end' };
    }
    const header = parseWalHeader(this.#small);
    const headerCursor: WalCursor = {
      salt1: header.salt1,
      salt2: header.salt2,
      pageSize: header.pageSize,
      frame: 0,
      checksum1: header.checksum1,
      checksum2: header.checksum2,
    };
    const mismatch: WalReadResult = { header, start: 'mismatch', transactions: [], cursor: from, stoppedBy: 'invalid-frame' };

    let start: WalStart;
    let base: WalCursor;
    if (from === null) {
      start = 'fresh';
      base = headerCursor;
    } else if (from.pageSize !== header.pageSize) {
      return mismatch;
    } else if (from.salt1 === header.salt1 && from.salt2 === header.salt2) {
      if (!this.#verifyCursor(from, header, size)) return mismatch;
      start = 'continued';
      base = from;
    } else if (header.salt1 === ((from.salt1 + 1) >>> 0)) {
      start = 'restarted';
      base = headerCursor;
    } else {
      return mismatch;
    }

    const { transactions, stoppedBy } = this.#scan(header, base, size, maxTransactions, maxBytes);
    const last = transactions[transactions.length - 1];
    const cursor = last ? last.cursor : start === 'continued' ? from : headerCursor;
    return { header, start, transactions, cursor, stoppedBy };
  }

  close(): void {
    if (this.#fd === null) return;
    const fd = this.#fd;
    this.#fd = null;
    fs.closeSync(fd);
  }

  /** #verifyCursor: the cursor's frame is still in the file, with the cursor's salts and running checksum. */
  #verifyCursor(from: WalCursor, header: WalHeader, size: number): boolean {
    if (from.frame === 0) return from.checksum1 === header.checksum1 && from.checksum2 === header.checksum2;
    const end = walFrameOffset(from.frame + 1, header.pageSize);
    if (size < end) return false;
    const at = walFrameOffset(from.frame, header.pageSize);
    if (this.#pread(this.#small, WAL_FRAME_HEADER_SIZE, at) < WAL_FRAME_HEADER_SIZE) return false;
    const fh = parseFrameHeader(this.#small);
    return (
      fh.commit !== 0 &&
      fh.salt1 === header.salt1 &&
      fh.salt2 === header.salt2 &&
      fh.checksum1 === from.checksum1 &&
      fh.checksum2 === from.checksum2
    );
  }

  /** #scan verifies frames after `base` and groups them into transactions, within the call's limits. */
  #scan(
    header: WalHeader,
    base: WalCursor,
    size: number,
    maxTransactions: number,
    maxBytes: number,
  ): { transactions: WalTransaction[]; stoppedBy: WalStopReason } {
    const { pageSize, bigEndianChecksums: be, salt1, salt2 } = header;
    const frameSize = WAL_FRAME_HEADER_SIZE + pageSize;
    const framesPerChunk = Math.max(1, Math.floor(READ_CHUNK_BYTES / frameSize));
    const transactions: WalTransaction[] = [];
    let frame = base.frame;
    let s1 = base.checksum1;
    let s2 = base.checksum2;
    let firstFrame = frame + 1;
    let pending = new Map<number, PendingPage>();
    let consumedBytes = 0;
    // Start small and grow: after a restart the file keeps its old length, and most of what follows
    // the new frames is stale (old salts), which the first invalid frame ends. Sizing the first read by
    // the file length read up to 4 MiB per capture (measured: 0.12x raw write throughput).
    let chunkFrames = Math.min(FIRST_CHUNK_FRAMES, framesPerChunk);

    for (;;) {
      const offset = walFrameOffset(frame + 1, pageSize);
      const whole = Math.floor((size - offset) / frameSize);
      if (whole <= 0) return { transactions, stoppedBy: size > offset ? 'uncommitted-tail' : 'end' };
      const want = Math.min(whole, chunkFrames) * frameSize;
      chunkFrames = Math.min(chunkFrames * 4, framesPerChunk);
      const buf = this.#buffer(want);
      const got = Math.floor(this.#pread(buf, want, offset) / frameSize);
      if (got === 0) return { transactions, stoppedBy: 'uncommitted-tail' }; // the file shrank under us

      for (let i = 0; i < got; i++) {
        const at = i * frameSize;
        const fh = parseFrameHeader(buf, at);
        if (fh.pgno === 0 || fh.salt1 !== salt1 || fh.salt2 !== salt2) return { transactions, stoppedBy: 'invalid-frame' };
        [s1, s2] = walChecksum(be, buf.subarray(at, at + 8), s1, s2);
        [s1, s2] = walChecksum(be, buf.subarray(at + WAL_FRAME_HEADER_SIZE, at + frameSize), s1, s2);
        if (s1 !== fh.checksum1 || s2 !== fh.checksum2) return { transactions, stoppedBy: 'invalid-frame' };
        frame++;
        pending.set(fh.pgno, at + WAL_FRAME_HEADER_SIZE);
        if (fh.commit === 0) continue;

        transactions.push({
          commit: fh.commit,
          pages: materialize(pending, buf, pageSize, fh.commit),
          firstFrame,
          lastFrame: frame,
          cursor: { salt1, salt2, pageSize, frame, checksum1: s1, checksum2: s2 },
        });
        consumedBytes += (frame - firstFrame + 1) * frameSize;
        firstFrame = frame + 1;
        pending = new Map();
        if (transactions.length >= maxTransactions || consumedBytes >= maxBytes) {
          return { transactions, stoppedBy: 'limit' };
        }
      }
      const next = offset + got * frameSize;
      if (got * frameSize < want || size - next < frameSize) {
        return { transactions, stoppedBy: pending.size > 0 || size > next ? 'uncommitted-tail' : 'end' };
      }
      // The buffer is about to be reused: copy out the pages of the transaction still open.
      for (const [pgno, page] of pending) {
        if (typeof page === 'number') pending.set(pgno, buf.slice(page, page + pageSize));
      }
    }
  }

  /** #buffer returns the reusable read buffer, grown to at least `n` bytes. */
  #buffer(n: number): Uint8Array {
    if (this.#buf.byteLength < n) {
      this.#buf = new Uint8Array(Math.min(Math.max(n, this.#buf.byteLength * 2), Math.max(n, READ_CHUNK_BYTES)));
    }
    return this.#buf;
  }

  /**
   * #open makes sure the fd is open on the file now at the path (a -wal deleted by a clean close and
   * created again is a new file) and returns its size, or -1 when there is none.
   */
  #open(): number {
    const st = this.#io('stat', () => fs.statSync(this.path, { throwIfNoEntry: false }));
    if (st === undefined) {
      this.close();
      return -1;
    }
    if (this.#fd !== null && (st.ino !== this.#ino || st.dev !== this.#dev)) this.close();
    if (this.#fd === null) {
      let fd: number;
      try {
        fd = fs.openSync(this.path, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return -1;
        throw ioError('open', this.path, err);
      }
      this.#fd = fd;
      const fst = this.#io('fstat', () => fs.fstatSync(fd));
      this.#ino = fst.ino;
      this.#dev = fst.dev;
      return fst.size;
    }
    return st.size;
  }

  /** #pread reads up to `length` bytes at `position` into `buf`; fewer only at the end of the file. */
  #pread(buf: Uint8Array, length: number, position: number): number {
    const fd = this.#fd;
    if (fd === null) throw new EdgeliteError('INTERNAL', `WAL ${this.path} is not open`);
    let done = 0;
    while (done < length) {
      const n = this.#io('read', () => fs.readSync(fd, buf, done, length - done, position + done));
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  #io<T>(op: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw ioError(op, this.path, err);
    }
  }
}

/**
 * materialize builds a transaction's page map: pages above the commit size dropped (the file shrank),
 * ascending pgno, every page its own copy.
 */
function materialize(
  pending: Map<number, PendingPage>,
  buf: Uint8Array,
  pageSize: number,
  commit: number,
): Map<number, Uint8Array> {
  const pgnos = [...pending.keys()].filter((p) => p <= commit).sort((a, b) => a - b);
  const pages = new Map<number, Uint8Array>();
  for (const pgno of pgnos) {
    const page = pending.get(pgno)!;
    pages.set(pgno, typeof page === 'number' ? buf.slice(page, page + pageSize) : page);
  }
  return pages;
}

function ioError(op: string, path: string, err: unknown): EdgeliteError {
  const message = err instanceof Error ? err.message : String(err);
  return new EdgeliteError('IO_ERROR', `WAL ${op} ${path}: ${message}`, { cause: err });
}

function limit(value: number | undefined, name: string): number {
  if (value === undefined) return Infinity;
  if (!Number.isInteger(value) || value < 1) {
    throw new EdgeliteError('INTERNAL', `WalReader.read option ${name} must be a positive integer, got ${value}`);
  }
  return value;
}

const U32_FIELDS = ['salt1', 'salt2', 'checksum1', 'checksum2'] as const;

/** checkCursor rejects a cursor that could not have come from read() (it is persisted and read back). */
function checkCursor(c: WalCursor): void {
  const bad =
    U32_FIELDS.some((k) => !Number.isInteger(c[k]) || c[k] < 0 || c[k] > 0xffffffff) ||
    !Number.isInteger(c.frame) ||
    c.frame < 0 ||
    !Number.isInteger(c.pageSize);
  if (bad) throw new EdgeliteError('INTERNAL', `invalid WAL cursor ${JSON.stringify(c)}`);
}
