/**
 * adoptCopies turns a candidate's replicated files into primary databases when it takes over the lease
 * (README.md#high-availability, docs/ARCHITECTURE.md#high-availability). Each copy, at (generation g,
 * txid T) of the old primary's history, becomes a database whose meta file (meta.ts) starts
 * **generation G > g at txid T + 1** with the file's own checksum, the way `restore --all` starts a
 * restored database (restore-all.ts):
 * - txids continue: the new primary's first write is T + 2, and a write of the old primary at T or
 *   before is in the new history;
 * - a token of the old primary for a txid ≥ T + 1 (a write this copy never received) is answered
 *   TOKEN_LOST (docs/ARCHITECTURE.md#tokens-and-consistency), never satisfied by a different write that
 *   took the same txid here;
 * - G is at least the lease epoch, so generations of different epochs do not collide: an old primary that
 *   started a generation of its own just before it was cut off used a number below this epoch.
 * The file itself is not rewritten: the primary opens it as it is (recovery.ts resumes, since the meta's
 * checksum is the file's).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { formatChecksum, formatTxid } from '../shared/types.ts';
import { databaseChecksum } from './db-read.ts';
import { MAX_GENERATION_STARTS, metaPath, stateDir, writeMeta } from './meta.ts';
import { openReader } from './sqlite.ts';

export interface ReplicatedCopy {
  name: string;
  databaseId: number;
  generation: number;
  txid: number;
}

export interface AdoptedDatabase extends ReplicatedCopy {
  /** The generation the primary starts it in, and its start txid (T + 1). */
  startGeneration: number;
  startTxid: number;
  checksum: string;
}

export function adoptCopies(dataDir: string, copies: readonly ReplicatedCopy[], epoch: number, reason: string, busyTimeoutMs = 5000): AdoptedDatabase[] {
  return copies.map((c) => {
    const conn = openReader(join(dataDir, `${c.name}.db`), busyTimeoutMs);
    let checksum: bigint;
    try {
      conn.exec('BEGIN');
      checksum = databaseChecksum(conn, Number(conn.pragma('page_size', { simple: true }))).value;
      conn.exec('COMMIT');
    } finally {
      conn.close();
    }
    const startGeneration = Math.max(c.generation + 1, epoch);
    const startTxid = c.txid + 1;
    rmSync(stateDir(dataDir, c.name), { recursive: true, force: true });
    mkdirSync(stateDir(dataDir, c.name), { recursive: true });
    writeMeta(metaPath(dataDir, c.name), {
      version: 1,
      databaseId: c.databaseId,
      generation: startGeneration,
      startTxid,
      startChecksum: formatChecksum(checksum),
      startCursor: null,
      reason: `${reason}: promoted from txid ${formatTxid(c.txid)} of generation ${c.generation}`,
      generations: [{ generation: startGeneration, startTxid }].slice(-MAX_GENERATION_STARTS),
    });
    return { ...c, startGeneration, startTxid, checksum: formatChecksum(checksum) };
  });
}
