/**
 * waitBackedUp is the write side of `--backup-ack` (README.md, "Backups and restore"): after a write
 * committed (and is as durable on the primary's disk as `--synchronous` says), it waits until the
 * backup holds its txid (BackupRunner.waitUploaded, which starts an upload at once and group-commits
 * the writes that arrive meanwhile). It returns null when the write may be acknowledged, or the
 * BACKUP_PENDING error to answer instead: the write is committed on the primary but not in the bucket
 * (`details.outcome: 'applied'`, so nobody sends it again), with its token, which stays valid for
 * read-your-writes (replicas get the change from the primary's stream, whatever the bucket does).
 * Creating a database (PUT, `token` null) waits the same way, for the database's first snapshot.
 */
import { EdgeliteError, type AppliedOutcome } from '../shared/errors.ts';
import type { Position } from '../shared/types.ts';
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
