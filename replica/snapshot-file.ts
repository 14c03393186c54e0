/**
 * A snapshot on its way into a replica: downloaded to a temporary file next to the database (never held
 * in memory whole), its checksum verified against the position while it arrives, then read back page
 * by page for the apply (PageApplier.restoreSnapshot, which verifies it once more) and removed.
 *
 * Memory stays bounded by CHUNK_BYTES on each side: the download collects the network's chunks into two
 * staging buffers of whole pages, one filled and hashed while the other is written; the apply reads the
 * file back into one reused buffer. Disk needs room for the image twice while it is applied (the temp file, and the WAL
 * the restore transaction writes before it is checkpointed into the database).
 *
 * The temp file is `<name>.db.snapshot-tmp`: the store opens only `*.db` files and removes every
 * `*.snapshot-tmp` when it starts (removeLeftoverSnapshots), so a file left by a killed process does
 * not accumulate. Every failure of a download (cut, abort, corrupt, checksum mismatch, full disk)
 * removes its file before it is reported.
 */
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseChecksum, lockPageNumber } from '../shared/checksum.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import { formatChecksum, type PageImage } from '../shared/types.ts';
import { isPageSize } from '../shared/page-size.ts';
import type { SnapshotHead, SnapshotSink } from '../shared/primary-client.ts';
import { DownloadProgress, type ProgressTerminal } from './snapshot-progress.ts';

export const SNAPSHOT_TEMP_SUFFIX = '.snapshot-tmp';
export { PROGRESS_MIN_BYTES, type ProgressTerminal } from './snapshot-progress.ts';

/** CHUNK_BYTES is how much is staged before a write, and read per read: a multiple of every page size. */
const CHUNK_BYTES = 1024 * 1024;

/** SnapshotSource is the part of PrimaryClient a download needs (a test may serve it another way). */
export interface SnapshotSource {
  snapshot(db: string, sink: SnapshotSink, signal?: AbortSignal, onProgress?: () => void): Promise<SnapshotHead>;
}

export interface DownloadOptions {
  signal?: AbortSignal;
  /** Called for every chunk received: the follower's watchdog counts it as contact. */
  onProgress?: () => void;
  logger: Logger;
  /**
   * Where a large download draws a progress bar when it is a terminal (README.md#progress): the replica
   * passes the stdout its log goes to when that is a TTY. Otherwise, or while another bar is drawn
   * there, progress goes to the logger as lines.
   */
  terminal?: ProgressTerminal | undefined;
}

/** snapshotTempPath is where the snapshot of the database file at `dbPath` is downloaded. */
export function snapshotTempPath(dbPath: string): string {
  return `${dbPath}${SNAPSHOT_TEMP_SUFFIX}`;
}

/**
 * removeLeftoverSnapshots deletes the temp files of downloads that a killed process left in `dir`, and
 * returns their names. Only for a directory no running download uses (the store calls it at start).
 */
export function removeLeftoverSnapshots(dir: string): string[] {
  const removed: string[] = [];
  for (const file of fs.readdirSync(dir)) {
    if (!file.endsWith(SNAPSHOT_TEMP_SUFFIX)) continue;
    fs.rmSync(join(dir, file), { force: true });
    removed.push(file);
  }
  return removed;
}

/**
 * downloadSnapshot downloads database `name` from `source` to the temp file `path` and verifies it:
 * length, and the checksum of its pages against the position (CHECKSUM_MISMATCH). Large downloads log
 * their progress. On any failure the file is removed before the error is thrown.
 */
export async function downloadSnapshot(source: SnapshotSource, name: string, path: string, options: DownloadOptions): Promise<SnapshotFile> {
  const sink = new FileSink(name, path, options.logger, options.terminal);
  try {
    const head = await source.snapshot(name, sink, options.signal, options.onProgress);
    const checksum = await sink.finish();
    return new SnapshotFile(path, head, checksum, options.logger);
  } catch (err) {
    await sink.discard();
    throw err;
  }
}

/** isEmptyFile says whether `path` is a file of 0 bytes with no WAL beside it holding frames. */
export function isEmptyFile(path: string): boolean {
  const size = (p: string) => fs.statSync(p, { throwIfNoEntry: false })?.size ?? 0;
  return fs.existsSync(path) && size(path) === 0 && size(`${path}-wal`) === 0;
}

/** What PageApplier.installFile needs of a downloaded snapshot to take the file itself as the database. */
export interface InstallableSnapshot {
  readonly path: string;
  readonly head: SnapshotHead;
  /** The page hashes taken while it arrived: their value is the head's checksum (verified). */
  readonly checksum: DatabaseChecksum;
  page1(): Uint8Array;
  /** preparePage1 writes page 1 in place if `local` differs from it, then fsyncs the file if `durable`. */
  preparePage1(local: Uint8Array, durable: boolean): void;
}

/**
 * SnapshotFile is a downloaded, verified snapshot: its position and its pages, read from the file on
 * demand, or the file itself taken as the database (InstallableSnapshot). remove() deletes its name;
 * call it once the pages are applied (or will not be); a file installed keeps the database's name.
 */
export class SnapshotFile implements InstallableSnapshot {
  readonly path: string;
  readonly head: SnapshotHead;
  readonly checksum: DatabaseChecksum;
  readonly #logger: Logger;
  #fd: number | null;

  constructor(path: string, head: SnapshotHead, checksum: DatabaseChecksum, logger: Logger) {
    this.path = path;
    this.head = head;
    this.checksum = checksum;
    this.#logger = logger;
    this.#fd = fs.openSync(path, 'r');
  }

  page1(): Uint8Array {
    const page = new Uint8Array(this.head.pageSize);
    this.#read(page, page.length, 0);
    return page;
  }

  preparePage1(local: Uint8Array, durable: boolean): void {
    const same = Buffer.from(this.page1()).equals(local);
    if (same && !durable) return;
    let fd: number | null = null;
    try {
      fd = fs.openSync(this.path, 'r+');
      if (!same) fs.writeSync(fd, local, 0, local.length, 0);
      if (durable) fs.fsyncSync(fd);
    } catch (err) {
      throw ioError(`preparing snapshot file ${this.path} as a database`, err);
    } finally {
      if (fd !== null) fs.closeSync(fd);
    }
  }

  /**
   * pages yields the image's pages in ascending order, skipping the lock page, read CHUNK_BYTES at a
   * time. Each page's `data` is a view into a buffer that is reused: it holds the page only until the
   * next page is pulled (copy it to keep it). Each call starts again from page 1.
   */
  *pages(): Generator<PageImage> {
    const { pageSize, length } = this.head;
    const lockPage = lockPageNumber(pageSize);
    const buffer = new Uint8Array(Math.min(CHUNK_BYTES, length));
    for (let offset = 0; offset < length; ) {
      const n = Math.min(buffer.length, length - offset);
      this.#read(buffer, n, offset);
      for (let at = 0; at < n; at += pageSize) {
        const pgno = (offset + at) / pageSize + 1;
        if (pgno !== lockPage) yield { pgno, data: buffer.subarray(at, at + pageSize) };
      }
      offset += n;
    }
  }

  /** remove closes and deletes the file. A failure is logged, not thrown: the next start removes it. */
  remove(): void {
    try {
      if (this.#fd !== null) fs.closeSync(this.#fd);
      this.#fd = null;
      fs.rmSync(this.path, { force: true });
    } catch (err) {
      this.#logger({ msg: 'could not remove a snapshot temp file; the next start removes it', path: this.path, error: (err as Error).message });
    }
  }

  #read(buffer: Uint8Array, n: number, offset: number): void {
    if (this.#fd === null) throw new EdgeliteError('UNAVAILABLE', `snapshot file ${this.path} was removed`);
    let got = 0;
    while (got < n) {
      let read: number;
      try {
        read = fs.readSync(this.#fd, buffer, got, n - got, offset + got);
      } catch (err) {
        throw new EdgeliteError('IO_ERROR', `reading snapshot file ${this.path}: ${(err as Error).message}`, { cause: err });
      }
      if (read === 0) throw new EdgeliteError('IO_ERROR', `snapshot file ${this.path} ends at ${offset + got} of ${this.head.length} bytes`);
      got += read;
    }
  }
}

/**
 * FileSink writes a download to its temp file through two staging buffers of whole pages, hashing each
 * page on the way (lock page excluded, as everywhere), so the checksum is known when the last byte is.
 * One buffer fills (and is hashed) while the other is written: at most one write is in flight, and the
 * network is read meanwhile (docs/BENCHMARKS.md#p7-bootstrap-by-file: awaiting each write before
 * receiving the next chunk left the replica idle almost half of a 1 GiB download). Memory stays at
 * two CHUNK_BYTES buffers; a write's failure is reported by the next write(), finish() or discarded.
 */
class FileSink implements SnapshotSink {
  readonly #name: string;
  readonly #path: string;
  readonly #logger: Logger;
  #file: FileHandle | null = null;
  #head: SnapshotHead | null = null;
  #sum: DatabaseChecksum | null = null;
  /** The buffer being filled, and the other one (being written while #inFlight is set). */
  #staging = new Uint8Array(0);
  #spare = new Uint8Array(0);
  #fill = 0;
  /** Bytes of the staging buffer already hashed (whole pages, hashed as they arrive). */
  #hashed = 0;
  /** File offset of the staging buffer's first byte: bytes handed to writes so far (whole pages). */
  #offset = 0;
  /** The write in flight: resolves to its error, never rejects (so no failure goes unobserved). */
  #inFlight: Promise<EdgeliteError | null> | null = null;
  #progress: DownloadProgress | null = null;
  readonly #terminal: ProgressTerminal | undefined;

  constructor(name: string, path: string, logger: Logger, terminal?: ProgressTerminal) {
    this.#name = name;
    this.#path = path;
    this.#logger = logger;
    this.#terminal = terminal;
  }

  async open(head: SnapshotHead): Promise<void> {
    const { pageSize, length, databaseId } = head;
    if (!isPageSize(pageSize) || !Number.isSafeInteger(length) || length <= 0 || length % pageSize !== 0) {
      throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot of ${this.#name}: ${length} bytes is not a whole number of ${pageSize}-byte pages`);
    }
    if (!Number.isInteger(databaseId) || databaseId <= 0) throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot of ${this.#name} has database id ${databaseId}`);
    this.#head = head;
    this.#sum = new DatabaseChecksum(pageSize);
    this.#staging = new Uint8Array(Math.min(CHUNK_BYTES, length));
    this.#spare = new Uint8Array(this.#staging.length);
    try {
      this.#file = await open(this.#path, 'w');
    } catch (err) {
      throw ioError(`creating snapshot file ${this.#path}`, err);
    }
    this.#progress = new DownloadProgress(this.#name, length, this.#logger, this.#terminal);
  }

  async write(chunk: Uint8Array): Promise<void> {
    for (let at = 0; at < chunk.byteLength; ) {
      const n = Math.min(this.#staging.length - this.#fill, chunk.byteLength - at);
      this.#staging.set(chunk.subarray(at, at + n), this.#fill);
      this.#fill += n;
      at += n;
      if (this.#fill === this.#staging.length) await this.#flush();
    }
    // Hashed while the rest is still on its way, not all at once when the buffer is full.
    this.#hash();
    this.#progress?.note(this.#offset + this.#fill);
  }

  /** finish writes what is staged, closes the file, checks the checksum against the position and returns it. */
  async finish(): Promise<DatabaseChecksum> {
    const head = this.#head;
    if (this.#file === null || this.#sum === null || head === null) throw new EdgeliteError('INTERNAL', `snapshot of ${this.#name} finished before it opened`);
    await this.#flush();
    await this.#settle();
    const file = this.#file;
    this.#file = null;
    try {
      await file.close();
    } catch (err) {
      throw ioError(`closing snapshot file ${this.#path}`, err);
    }
    if (this.#offset !== head.length) throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot of ${this.#name} has ${this.#offset} of ${head.length} bytes`);
    if (this.#sum.value !== head.position.checksum) {
      const message = `snapshot of ${this.#name} has checksum ${formatChecksum(this.#sum.value)}, position says ${formatChecksum(head.position.checksum)}`;
      throw new EdgeliteError('CHECKSUM_MISMATCH', message, { details: { reason: 'snapshot-checksum' } });
    }
    this.#progress?.done();
    return this.#sum;
  }

  /**
   * discard waits for the write in flight, closes and deletes the file after a failed download. Its own
   * failures are logged, not thrown, so that the download's error is the one reported (the next start
   * removes a file left).
   */
  async discard(): Promise<void> {
    this.#progress?.stop();
    const inFlight = this.#inFlight;
    this.#inFlight = null;
    await inFlight; // its error, if any, is the download's or comes after it
    const file = this.#file;
    this.#file = null;
    const failed = (err: unknown) =>
      this.#logger({ msg: 'could not remove a snapshot temp file; the next start removes it', path: this.#path, error: (err as Error).message });
    await file?.close().catch(failed);
    try {
      fs.rmSync(this.#path, { force: true });
    } catch (err) {
      failed(err);
    }
  }

  /** #hash hashes the whole pages staged since the last call (lock page excluded). */
  #hash(): void {
    const { pageSize } = this.#head!;
    const sum = this.#sum!;
    const lockPage = lockPageNumber(pageSize);
    for (let at = this.#hashed; at + pageSize <= this.#fill; at += pageSize) {
      const pgno = (this.#offset + at) / pageSize + 1;
      if (pgno !== lockPage) sum.setPage(pgno, this.#staging.subarray(at, at + pageSize));
      this.#hashed = at + pageSize;
    }
  }

  /**
   * #flush hashes what is staged and starts its write once the previous write is done (reporting that
   * one's error), then stages into the other buffer.
   */
  async #flush(): Promise<void> {
    if (this.#fill % this.#head!.pageSize !== 0) {
      throw new EdgeliteError('CORRUPT_CHANGESET', `snapshot of ${this.#name} ends inside a page (${this.#offset + this.#fill} bytes)`);
    }
    this.#hash();
    await this.#settle();
    if (this.#fill === 0) return;
    this.#inFlight = this.#writeOut(this.#staging, this.#fill, this.#offset);
    this.#offset += this.#fill;
    [this.#staging, this.#spare] = [this.#spare, this.#staging];
    this.#fill = 0;
    this.#hashed = 0;
  }

  /** #settle waits for the write in flight and throws its error. */
  async #settle(): Promise<void> {
    const inFlight = this.#inFlight;
    if (inFlight === null) return;
    const err = await inFlight;
    this.#inFlight = null;
    if (err) throw err;
  }

  async #writeOut(buffer: Uint8Array, n: number, position: number): Promise<EdgeliteError | null> {
    try {
      for (let at = 0; at < n; ) {
        const { bytesWritten } = await this.#file!.write(buffer, at, n - at, position + at);
        at += bytesWritten;
      }
      return null;
    } catch (err) {
      return ioError(`writing snapshot file ${this.#path}`, err);
    }
  }
}

function ioError(what: string, err: unknown): EdgeliteError {
  const code = (err as { code?: unknown }).code;
  return new EdgeliteError(code === 'ENOSPC' ? 'DISK_FULL' : 'IO_ERROR', `${what}: ${(err as Error).message}`, { cause: err });
}
