/**
 * Group commit for the change-set log: one fdatasync makes durable every record appended before it
 * started, and every caller waiting at that moment shares it.
 *
 * A failed fdatasync poisons the instance for good. After such a failure Linux may have dropped the
 * dirty pages and marked them clean, so a retried fsync can succeed without the data being on disk
 * (the 2018 "fsyncgate" discussion; PostgreSQL now panics instead of retrying). The only honest way on
 * is to reopen the log, which re-reads what is really there.
 *
 * Also here: the directory fsyncs that make a created or deleted segment file itself durable.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EdgeliteError } from '../shared/errors.ts';
import type { Txid } from '../shared/types.ts';

/** LogFsync is the one seam to the disk's flush: tests inject it to count or fail fsyncs. */
export interface LogFsync {
  fdatasync(fd: number): Promise<void>;
  fdatasyncSync(fd: number): void;
  /** dirSync makes a directory's entries durable (absent: fsyncDir); a test counts or fails it. */
  dirSync?(dir: string): void;
}

export const NODE_FSYNC: LogFsync = {
  fdatasync: (fd) => new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve()))),
  fdatasyncSync: (fd) => fs.fdatasyncSync(fd),
};

/** SyncFile is the file a flush goes to: the log's current segment. */
export interface SyncFile {
  fd: number;
  path: string;
}

/** SyncHead tells the group commit where the log's appends end right now. */
export type SyncHead = () => { file: SyncFile | undefined; txid: Txid };

interface Waiter {
  target: Txid;
  resolve: () => void;
  reject: (err: EdgeliteError) => void;
}

export class GroupCommit {
  /** Highest txid known to be fsynced. */
  durableTxid: Txid = 0;
  /** fdatasync calls made, synchronous and asynchronous. */
  fsyncs = 0;
  /** The first failure; once set, nothing else is written or flushed. */
  failure: EdgeliteError | null = null;
  /** The file an asynchronous fdatasync is running on, which must stay open until it ends. */
  inFlight: SyncFile | null = null;
  /**
   * pendingDir is a directory that gained a segment whose entry is not durable yet: the next flush
   * fsyncs it before anything in that segment counts as durable (a created segment costs no fsync of
   * its own on the write that created it).
   */
  pendingDir: string | null = null;
  /**
   * The directory an asynchronous flush is fsyncing now: until that ends, a synchronous flush
   * (flushSync: a checkpoint, a close) fsyncs it itself before it counts anything as durable.
   */
  private dirInFlight: string | null = null;
  private waiters: Waiter[] = [];
  private scheduled = false;
  private stopped = false;

  constructor(
    private readonly fsync: LogFsync,
    private readonly head: SyncHead,
  ) {}

  /** wait resolves once a flush started after this call has covered everything appended before it. */
  wait(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const target = this.head().txid;
    if (target <= this.durableTxid) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ target, resolve, reject });
      this.schedule();
    });
  }

  /** flushSync fdatasyncs `file` now and records that everything up to `txid` is durable. */
  flushSync(file: SyncFile, txid: Txid): void {
    if (this.failure) throw this.failure;
    this.syncPendingDir();
    this.fsyncs++;
    try {
      this.fsync.fdatasyncSync(file.fd);
    } catch (err) {
      throw this.poison(ioError(`fdatasync of ${file.path} failed; the log refuses appends until it is reopened`, err));
    }
    this.markDurable(txid);
  }

  /** start begins an asynchronous flush of the head now, unless one is running (batched mode's timer). */
  start(): void {
    const { file, txid } = this.head();
    if (this.stopped || this.failure !== null || this.inFlight !== null || file === undefined) return;
    if (txid <= this.durableTxid) return this.markDurable(txid);
    // A new segment's directory entry first, then the data: both off the event loop (a first write to
    // each of thousands of tenants creates a segment; a synchronous directory fsync here held every
    // request for it). A segment created meanwhile leaves pendingDir set for the next flush.
    const dir = this.pendingDir;
    this.pendingDir = null;
    this.dirInFlight = dir;
    this.inFlight = file;
    this.fsyncs++;
    const entry = dir === null ? Promise.resolve() : this.dirSyncAsync(dir);
    entry.then(() => {
      this.dirInFlight = null;
      return this.fsync.fdatasync(file.fd);
    }).then(
      () => {
        this.inFlight = null;
        if (this.stopped) return;
        this.markDurable(txid);
        if (this.waiters.length > 0) this.schedule();
      },
      (err: unknown) => {
        this.inFlight = null;
        this.dirInFlight = null;
        if (!this.stopped) this.poison(err instanceof EdgeliteError ? err : ioError(`fdatasync of ${file.path} failed; the log refuses appends until it is reopened`, err));
      },
    );
  }

  /** dirSyncAsync is syncPendingDir's fsync off the event loop (a test's injected dirSync runs as it is). */
  private dirSyncAsync(dir: string): Promise<void> {
    const injected = this.fsync.dirSync;
    if (injected) {
      return Promise.resolve().then(() => {
        try {
          injected(dir);
        } catch (err) {
          throw err instanceof EdgeliteError ? err : ioError(`cannot fsync directory ${dir}`, err);
        }
      });
    }
    return new Promise((resolve, reject) => {
      fs.open(dir, 'r', (openErr, fd) => {
        if (openErr) return reject(ioError(`cannot fsync directory ${dir}`, openErr));
        fs.fsync(fd, (syncErr) => fs.close(fd, () => (syncErr ? reject(ioError(`cannot fsync directory ${dir}`, syncErr)) : resolve())));
      });
    });
  }

  /** syncPendingDir fsyncs pendingDir, or the directory an asynchronous flush is still fsyncing; a failure poisons the log (and is thrown). */
  private syncPendingDir(): void {
    const dir = this.pendingDir ?? this.dirInFlight;
    if (dir === null) return;
    try {
      (this.fsync.dirSync ?? fsyncDir)(dir);
    } catch (err) {
      throw this.poison(err instanceof EdgeliteError ? err : ioError(`cannot fsync directory ${dir}`, err));
    }
    this.pendingDir = null;
  }

  /** poison records a failure that makes the log unusable, and rejects everyone waiting. */
  poison(err: EdgeliteError): EdgeliteError {
    this.failure ??= err;
    this.rejectAll(this.failure);
    return this.failure;
  }

  /** stop abandons a running flush and rejects whoever still waits (the log is closing). */
  stop(err: EdgeliteError): void {
    this.stopped = true;
    this.rejectAll(err);
  }

  private schedule(): void {
    if (this.inFlight !== null || this.scheduled) return;
    this.scheduled = true;
    // setImmediate lets every append made in this turn of the event loop join the same flush.
    setImmediate(() => {
      this.scheduled = false;
      this.start();
    });
  }

  private markDurable(txid: Txid): void {
    if (txid > this.durableTxid) this.durableTxid = txid;
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.target <= this.durableTxid) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  private rejectAll(err: EdgeliteError): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }
}

/** ioError wraps a failed file operation; a full disk gets its own code. */
export function ioError(message: string, cause: unknown): EdgeliteError {
  const code = (cause as NodeJS.ErrnoException | null)?.code;
  const full = code === 'ENOSPC' || code === 'EDQUOT';
  const why = cause instanceof Error ? cause.message : String(cause);
  return new EdgeliteError(full ? 'DISK_FULL' : 'IO_ERROR', `${message}: ${why}`, { cause });
}

/** fsyncDir makes a directory's entries (a created or deleted segment) durable. */
export function fsyncDir(dir: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (err) {
    throw ioError(`cannot fsync directory ${dir}`, err);
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}

/** mkdirDurable creates `dir` and its missing parents, fsyncing each parent that gained an entry. */
export function mkdirDurable(dir: string): void {
  const first = fs.mkdirSync(dir, { recursive: true });
  if (first === undefined) return;
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    fsyncDir(path.dirname(d));
    if (d === path.resolve(first)) break;
  }
}
