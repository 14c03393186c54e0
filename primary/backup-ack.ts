/**
 * waitBackedUp is the write side of `--backup-ack` (README.md, "Backups and restore"): after a write
 * committed (and is as durable on the primary's disk as `--synchronous` says), it waits until the
 * backup holds its txid (BackupRunner.waitUploaded, which starts an upload at once and group-commits
 * the writes that arrive meanwhile). It returns null when the write may be acknowledged, or the
 * BACKUP_PENDING error to answer instead: the write is committed on the primary but not in the bucket
 * (`details.outcome: 'applied'`, so nobody sends it again), with its token, which stays valid for
 * read-your-writes (replicas get the change from the primary's stream, whatever the bucket does).
 * Creating a database (PUT, `token` null) waits the same way, for the database's first snapshot.
 *
 * AckWaiters keeps the waiting writes for the runner (primary/backup.ts): it answers them; the runner
 * uploads and says when a txid is held.
 */
import { EdgeliteError, type AppliedOutcome } from '../shared/errors.ts';
import type { Position, Txid } from '../shared/types.ts';
import type { BackupRunner } from './backup.ts';

export async function waitBackedUp(backup: BackupRunner, timeoutMs: number, name: string, position: Position, token: string | null, signal?: AbortSignal): Promise<EdgeliteError | null> {
  const w = await backup.waitUploaded(name, position.generation, position.txid, timeoutMs, signal);
  if (w.uploaded) return null;
  const why = w.reason === 'timeout' ? `not in the backup after ${w.waitedMs} ms${w.failedUploads > 0 ? ` (${w.failedUploads} failed uploads)` : ''}` : w.reason === 'closed' ? 'the backup stopped before it was uploaded' : 'the request ended before it was uploaded';
  const what = token === null ? `database ${name} was created on the primary` : `the write was committed on the primary (txid ${position.txid})`;
  return new EdgeliteError('BACKUP_PENDING', `${what} but is ${why}; it stays and uploads later: do not send it again`, {
    details: {
      outcome: 'applied' satisfies AppliedOutcome,
      reason: w.reason,
      ...(token === null ? {} : { token }),
      generation: position.generation,
      txid: position.txid,
      uploadedTxid: w.uploadedTxid,
      failedUploads: w.failedUploads,
      waitedMs: w.waitedMs,
    },
  });
}

/** BackupWait is how a `--backup-ack` wait ended (waitUploaded). */
export interface BackupWait {
  /** The backup holds the awaited txid (or a later state of a later generation, which contains it). */
  uploaded: boolean;
  /** Why not: the bound passed, the caller gave up (its signal), or the backup closed. */
  reason?: 'timeout' | 'aborted' | 'closed';
  /** The database's uploaded txid when the wait ended. */
  uploadedTxid: Txid;
  /** Uploads of this database that failed while the write waited. */
  failedUploads: number;
  waitedMs: number;
}

export interface AckWaiter {
  generation: number;
  txid: Txid;
  done: (uploaded: boolean, reason?: BackupWait['reason']) => void;
}


/** What a wait needs from the runner: its figures, whether the backup holds a txid, a way to start an upload. */
export interface AckWaitOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** The backup is closing: answer `closed` at once. */
  closing: boolean;
  figures: () => { uploadedTxid: Txid; errors: number };
  holds: (w: { generation: number; txid: Txid }) => boolean;
  /** Start (or join) an upload of the database now. */
  upload: () => void;
}

/** AckWaiters: the writes waiting for their txid to be in the bucket, per database. */
export class AckWaiters {
  readonly #byDb = new Map<string, Set<AckWaiter>>();

  count(name: string): number {
    return this.#byDb.get(name)?.size ?? 0;
  }

  /**
   * wait resolves once `o.holds` says the backup holds `at` (uploaded: true), or, with uploaded: false,
   * after `o.timeoutMs`, when `o.signal` aborts, or when the backup closes (closeAll).
   */
  wait(name: string, at: { generation: number; txid: Txid }, o: AckWaitOptions): Promise<BackupWait> {
    const started = performance.now();
    const errorsBefore = o.figures().errors;
    return new Promise<BackupWait>((resolve) => {
      let set = this.#byDb.get(name);
      if (!set) this.#byDb.set(name, (set = new Set()));
      const waiters = set;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = (): void => w.done(false, 'aborted');
      const w: AckWaiter = {
        ...at,
        done: (uploaded, reason) => {
          if (!waiters.delete(w)) return;
          clearTimeout(timer);
          o.signal?.removeEventListener('abort', onAbort);
          const f = o.figures();
          resolve({ uploaded, ...(reason ? { reason } : {}), uploadedTxid: f.uploadedTxid, failedUploads: f.errors - errorsBefore, waitedMs: Math.round(performance.now() - started) });
        },
      };
      waiters.add(w);
      if (o.holds(w)) return w.done(true);
      if (o.closing) return w.done(false, 'closed');
      if (o.signal?.aborted) return w.done(false, 'aborted');
      o.signal?.addEventListener('abort', onAbort, { once: true });
      timer = setTimeout(() => w.done(false, 'timeout'), o.timeoutMs);
      o.upload();
    });
  }

  /** wake answers every waiter of `name` whose txid the backup now holds. */
  wake(name: string, holds: (w: AckWaiter) => boolean): void {
    for (const w of [...(this.#byDb.get(name) ?? [])]) if (holds(w)) w.done(true);
  }

  /** closeAll answers every waiter `closed`. */
  closeAll(): void {
    for (const set of this.#byDb.values()) for (const w of [...set]) w.done(false, 'closed');
  }
}
