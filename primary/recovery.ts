/**
 * chooseRecovery is what the primary does with a database when it opens it (docs/ARCHITECTURE.md#capture-rules,
 * docs/ARCHITECTURE.md#the-log-and-snapshots): continue the logged generation, or start a new one. It is a
 * pure function over what database.ts read, so every case can be listed in a table test; the reading,
 * the catch-up change set and the new generation stay in database.ts.
 *
 * The rule: the generation continues only when the WAL verifies from the logged cursor, or when the
 * database is exactly what the log says. Anything else (the database differs from the log, or a
 * database that never had a generation) starts a new generation: never guess.
 */
import type { WalStart } from './wal-reader.ts';

/** WalSinceLogged is how the `-wal` file reads from the logged cursor. */
export type WalSinceLogged =
  | {
      start: WalStart;
      /** Whether the file has a header (a missing or emptied WAL reads as 'continued' with none). */
      header: boolean;
      /** Committed transactions after the logged cursor (for 'continued' and 'restarted'; else 0). */
      transactions: number;
      /**
       * The checksum of the database file alone, without its WAL: read only for a 'restarted' WAL in a
       * generation that can continue (a whole-file read), else null.
       */
      fileChecksum: bigint | null;
    }
  /** The header is one SQLite ignores (WAL_INVALID); `message` says why. */
  | { start: 'invalid'; message: string };

export interface RecoveryInputs {
  /** The meta file's generation: 0 for a database that never had one (new, or its meta is gone). */
  generation: number;
  /** The checksum at the logged position: the log's last change set, else the generation start. */
  loggedChecksum: bigint;
  /** The checksum of the database as SQLite reads it now (file and WAL), under a write barrier. */
  currentChecksum: bigint;
  /** How the WAL reads from the logged cursor; null when nothing logged a cursor. */
  wal: WalSinceLogged | null;
}

/**
 * RecoveryDecision, one of:
 * - resume: continue at the logged position; the next capture reads from `cursor`: 'logged' (the
 *   logged cursor), 'none' (no cursor: the WAL is missing, empty or ignored, its next frames are fresh), or
 *   'wal-end' (the end of the WAL as it is now, read from its first frame).
 * - catch-up: continue, logging the WAL's transactions after the logged cursor as one change set from
 *   the logged checksum; `wal` says whether they follow the cursor or start a restarted WAL.
 * - new-generation: declare the current state a new snapshot point, for `reason`; the next capture
 *   reads from `cursor` ('wal-end', or 'none' when the header is one SQLite ignored at open).
 */
export type RecoveryDecision =
  | { action: 'resume'; cursor: 'logged' | 'none' | 'wal-end' }
  | { action: 'catch-up'; wal: 'continued' | 'restarted' }
  | { action: 'new-generation'; reason: string; cursor: 'wal-end' | 'none' };

export function chooseRecovery(i: RecoveryInputs): RecoveryDecision {
  const { wal } = i;
  const matches = i.currentChecksum === i.loggedChecksum;
  const fresh = (reason: string): RecoveryDecision => ({ action: 'new-generation', reason, cursor: wal?.start === 'invalid' ? 'none' : 'wal-end' });
  if (i.generation === 0) return fresh('created');
  if (wal?.start === 'invalid') {
    // SQLite ignored this WAL when it opened the database: what it reads is the file alone, and the
    // header it writes with its next frame starts the frames that follow.
    return matches ? { action: 'resume', cursor: 'none' } : fresh(wal.message);
  }
  if (wal?.start === 'continued') {
    if (wal.transactions > 0) return { action: 'catch-up', wal: 'continued' };
    if (matches) return { action: 'resume', cursor: wal.header ? 'logged' : 'none' };
  } else if (wal?.start === 'restarted' && wal.fileChecksum === i.loggedChecksum) {
    // The WAL restarted after everything in the old one was captured and checkpointed (we were killed
    // between a commit that restarted it and its capture): the file itself is the logged state, so the
    // new WAL's transactions are exactly what follows the logged position.
    if (wal.transactions > 0) return { action: 'catch-up', wal: 'restarted' };
    if (matches) return { action: 'resume', cursor: 'wal-end' };
  } else if (matches) {
    // The WAL was checkpointed away (clean shutdown, or a checkpoint with no new writes).
    return { action: 'resume', cursor: 'wal-end' };
  }
  return fresh(`database differs from the log (WAL ${wal?.start ?? 'absent'})`);
}
