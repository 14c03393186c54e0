/**
 * chooseRecovery (primary/recovery.ts): every case of what the primary does with a database at open,
 * as a table over plain data: what meta says, the checksum at the logged position and now, and how the
 * WAL reads from the logged cursor.
 */
import { describe, expect, it } from 'vitest';
import { chooseRecovery, type RecoveryDecision, type RecoveryInputs, type WalSinceLogged } from '../../primary/recovery.ts';

const LOGGED = 0x1111n;
const OTHER = 0x2222n;

const wal = (start: 'continued' | 'restarted' | 'fresh' | 'mismatch', transactions = 0, o: { header?: boolean; fileChecksum?: bigint | null } = {}): WalSinceLogged => ({
  start,
  header: o.header ?? true,
  transactions,
  fileChecksum: o.fileChecksum ?? null,
});
const invalid: WalSinceLogged = { start: 'invalid', message: 'bad WAL header checksum' };

const cases: Array<[string, RecoveryInputs, RecoveryDecision]> = [
  // A database with no generation yet always starts generation 1, whatever the files say.
  ['new database, no WAL', { generation: 0, loggedChecksum: 0n, currentChecksum: 0n, wal: null }, { action: 'new-generation', reason: 'created', cursor: 'wal-end' }],
  ['new database over an existing file', { generation: 0, loggedChecksum: 0n, currentChecksum: OTHER, wal: null }, { action: 'new-generation', reason: 'created', cursor: 'wal-end' }],
  ['meta lost, log and WAL continue', { generation: 0, loggedChecksum: LOGGED, currentChecksum: OTHER, wal: wal('continued', 3) }, { action: 'new-generation', reason: 'created', cursor: 'wal-end' }],
  ['new database, WAL header SQLite ignores', { generation: 0, loggedChecksum: 0n, currentChecksum: 0n, wal: invalid }, { action: 'new-generation', reason: 'created', cursor: 'none' }],

  // The WAL continues from the logged cursor.
  ['killed after commits it had not captured', { generation: 2, loggedChecksum: LOGGED, currentChecksum: OTHER, wal: wal('continued', 3) }, { action: 'catch-up', wal: 'continued' }],
  ['nothing new in the WAL', { generation: 2, loggedChecksum: LOGGED, currentChecksum: LOGGED, wal: wal('continued') }, { action: 'resume', cursor: 'logged' }],
  ['WAL missing or emptied (TRUNCATE, clean close)', { generation: 2, loggedChecksum: LOGGED, currentChecksum: LOGGED, wal: wal('continued', 0, { header: false }) }, { action: 'resume', cursor: 'none' }],
  ['WAL emptied after a write nobody captured', { generation: 2, loggedChecksum: LOGGED, currentChecksum: OTHER, wal: wal('continued', 0, { header: false }) }, { action: 'new-generation', reason: 'database differs from the log (WAL continued)', cursor: 'wal-end' }],
  ['WAL continues with nothing new, but the file changed', { generation: 2, loggedChecksum: LOGGED, currentChecksum: OTHER, wal: wal('continued') }, { action: 'new-generation', reason: 'database differs from the log (WAL continued)', cursor: 'wal-end' }],

  // The WAL restarted once (salt-1 + 1).
  ['killed between a commit that restarted the WAL and its capture', { generation: 2, loggedChecksum: LOGGED, currentChecksum: OTHER, wal: wal('restarted', 2, { fileChecksum: LOGGED }) }, { action: 'catch-up', wal: 'restarted' }],
  ['restarted WAL with no commit yet, file is the logged state', { generation: 2, loggedChecksum: LOGGED, currentChecksum: LOGGED, wal: wal('restarted', 0, { fileChecksum: LOGGED }) }, { action: 'resume', cursor: 'wal-end' }],
  ['restarted WAL with no commit, but the database differs', { generation: 2, loggedChecksum: LOGGED, currentChecksum: OTHER, wal: wal('restarted', 0, { fileChecksum: LOGGED }) }, { action: 'new-generation', reason: 'database differs from the log (WAL restarted)', cursor: 'wal-end' }],
  ['restarted over frames never captured (file differs)', { generation: 2, loggedChecksum: LOGGED, currentChecksum: OTHER, wal: wal('restarted', 1, { fileChecksum: OTHER }) }, { action: 'new-generation', reason: 'database differs from the log (WAL restarted)', cursor: 'wal-end' }],
  ['restarted, file differs, but the database is the logged state', { generation: 2, loggedChecksum: LOGGED, currentChecksum: LOGGED, wal: wal('restarted', 0, { fileChecksum: OTHER }) }, { action: 'resume', cursor: 'wal-end' }],

  // The WAL cannot be verified from the cursor, or there is no cursor.
  ['WAL rewritten (salt jump), database is the logged state', { generation: 2, loggedChecksum: LOGGED, currentChecksum: LOGGED, wal: wal('mismatch') }, { action: 'resume', cursor: 'wal-end' }],
  ['foreign TRUNCATE checkpoint and write while closed', { generation: 2, loggedChecksum: LOGGED, currentChecksum: OTHER, wal: wal('mismatch') }, { action: 'new-generation', reason: 'database differs from the log (WAL mismatch)', cursor: 'wal-end' }],
  ['no logged cursor, database is the generation start', { generation: 2, loggedChecksum: LOGGED, currentChecksum: LOGGED, wal: null }, { action: 'resume', cursor: 'wal-end' }],
  ['no logged cursor, database changed', { generation: 2, loggedChecksum: LOGGED, currentChecksum: OTHER, wal: null }, { action: 'new-generation', reason: 'database differs from the log (WAL absent)', cursor: 'wal-end' }],

  // A WAL header SQLite ignores (torn, or written over): SQLite reads the file alone.
  ['ignored WAL header, file is the logged state', { generation: 2, loggedChecksum: LOGGED, currentChecksum: LOGGED, wal: invalid }, { action: 'resume', cursor: 'none' }],
  ['ignored WAL header, file differs', { generation: 2, loggedChecksum: LOGGED, currentChecksum: OTHER, wal: invalid }, { action: 'new-generation', reason: 'bad WAL header checksum', cursor: 'none' }],
];

describe('chooseRecovery', () => {
  it.each(cases)('%s', (_name, inputs, decision) => {
    expect(chooseRecovery(inputs)).toEqual(decision);
  });

  it('never continues a generation when the WAL has transactions it cannot place', () => {
    // A mismatching or fresh WAL's transactions are not counted: only the checksum can continue it.
    for (const start of ['mismatch', 'fresh'] as const) {
      const d = chooseRecovery({ generation: 5, loggedChecksum: LOGGED, currentChecksum: OTHER, wal: wal(start, 4) });
      expect(d.action, start).toBe('new-generation');
    }
  });
});
