/**
 * restoreAll rebuilds a whole primary data directory from a backup (`edgelite restore URL --all --data
 * DIR`): every database the bucket holds, RESTORE_CONCURRENCY at a time, each with restoreDatabase
 * (restore.ts: every object verified, the result checked against the checksum recorded for its txid),
 * then its meta file (meta.ts), so that `edgelite primary --data DIR` starts it as a **new generation**
 * (docs/ARCHITECTURE.md#tokens-and-consistency):
 *
 * - generation = the highest generation the bucket holds for the database + 1, so the new history's
 *   uploads never mix with an old one's objects;
 * - starting at txid R + 1 (R: the restored txid) with R's checksum, keeping the database id, so a
 *   token for a write up to R is honoured and one after it is answered TOKEN_LOST;
 * - its generation starts: the bucket's generations up to the restored one (each at its first
 *   snapshot, never before its real start, so a loss can be missed but not invented), then the new one.
 *
 * One database failing (a damaged object, say) is reported and the others go on.
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { catalog, planRestore, type GenerationBackup, type RestorePlan, type RestoreTarget } from '../shared/backup-layout.ts';
import type { GenerationStart } from '../shared/consistency.ts';
import { EdgeliteError, toEdgeliteError } from '../shared/errors.ts';
import type { ObjectStore } from '../shared/object-store.ts';
import { formatTxid, validateDatabaseName } from '../shared/types.ts';
import { MAX_GENERATION_STARTS, metaPath, stateDir, writeMeta } from './meta.ts';
import { restoreDatabase, type RestoreResult } from './restore.ts';

/** RESTORE_CONCURRENCY is how many databases restore at once (each streams its objects one by one). */
export const RESTORE_CONCURRENCY = 4;

export type RestoreAllTarget = { time: number } | { latest: true };

/** RestoreAllProgress: what is done of the whole restore, for a progress bar. */
export interface RestoreAllProgress {
  bytes: number;
  totalBytes: number;
  objects: number;
  totalObjects: number;
  databases: number;
  totalDatabases: number;
}

/** RestoredDatabase is one database's outcome. */
export type RestoredDatabase =
  | { db: string; status: 'restored'; file: string; result: RestoreResult; startGeneration: number; startTxid: number; note?: string }
  | { db: string; status: 'failed'; error: EdgeliteError }
  | { db: string; status: 'skipped'; reason: string; message: string };

export interface RestoreAllOptions {
  dataDir: string;
  target: RestoreAllTarget;
  /** Restore into a directory that is not empty, replacing the databases the backup holds. */
  force?: boolean;
  concurrency?: number;
  /** The backup URL, recorded in each meta file's reason. */
  source: string;
  onProgress?: (p: Readonly<RestoreAllProgress>) => void;
  onDatabase?: (r: RestoredDatabase) => void;
}

interface Job {
  db: string;
  gens: readonly GenerationBackup[];
  target: RestoreTarget;
  plan: RestorePlan;
  note?: string;
}

/** restoreAll restores every database of the backup into `o.dataDir`; the outcomes in name order. */
export async function restoreAll(objects: ObjectStore, o: RestoreAllOptions): Promise<RestoredDatabase[]> {
  checkDataDir(o.dataDir, o.force === true);
  mkdirSync(o.dataDir, { recursive: true });
  const outcomes: RestoredDatabase[] = [];
  const report = (r: RestoredDatabase): void => {
    outcomes.push(r);
    o.onDatabase?.(r);
  };
  const jobs: Job[] = [];
  for (const [db, gens] of catalog(await objects.list(''))) {
    try {
      validateDatabaseName(db);
      const job = planJob(db, gens, o.target);
      if ('skip' in job) report({ db, status: 'skipped', ...job.skip });
      else jobs.push(job);
    } catch (err) {
      report({ db, status: 'failed', error: toEdgeliteError(err) });
    }
  }
  const progress: RestoreAllProgress = {
    bytes: 0,
    totalBytes: jobs.reduce((n, j) => n + j.plan.snapshot.size + j.plan.segments.reduce((m, s) => m + s.size, 0), 0),
    objects: 0,
    totalObjects: jobs.reduce((n, j) => n + 1 + j.plan.segments.length, 0),
    databases: 0,
    totalDatabases: jobs.length,
  };
  o.onProgress?.(progress);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      const got = { bytes: 0, objects: 0 };
      const planned = { bytes: job.plan.snapshot.size + job.plan.segments.reduce((m, s) => m + s.size, 0), objects: 1 + job.plan.segments.length };
      let outcome: RestoredDatabase;
      try {
        outcome = await restoreOne(objects, job, o, {
          object: () => {
            got.objects++;
            progress.objects++;
            o.onProgress?.(progress);
          },
          bytes: (n) => {
            got.bytes += n;
            progress.bytes += n;
            o.onProgress?.(progress);
          },
        });
      } catch (err) {
        outcome = { db: job.db, status: 'failed', error: toEdgeliteError(err) };
      }
      // Whatever this database did not fetch (it failed, or its target ended early) counts as done.
      progress.bytes += Math.max(0, planned.bytes - got.bytes);
      progress.objects += Math.max(0, planned.objects - got.objects);
      progress.databases++;
      o.onProgress?.(progress);
      report(outcome);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency ?? RESTORE_CONCURRENCY, jobs.length) }, worker));
  return outcomes.sort((a, b) => (a.db < b.db ? -1 : a.db > b.db ? 1 : 0));
}

/**
 * planJob picks what to restore of one database. At a time before its first backup it did not exist
 * yet: skipped. At a time after its last upload it had not changed since (uploads follow changes), so
 * its last upload is its state then: restored, with a note.
 */
function planJob(db: string, gens: readonly GenerationBackup[], target: RestoreAllTarget): Job | { skip: { reason: string; message: string } } {
  try {
    return { db, gens, target, plan: planRestore(db, gens, target) };
  } catch (err) {
    const reason = err instanceof EdgeliteError && err.code === 'NOT_RESTORABLE' ? err.details?.reason : undefined;
    if (!('time' in target) || (reason !== 'before-first-backup' && reason !== 'after-last-upload')) throw err;
    if (reason === 'before-first-backup') return { skip: { reason, message: (err as Error).message } };
    const latest: RestoreTarget = { latest: true };
    return { db, gens, target: latest, plan: planRestore(db, gens, latest), note: `${(err as Error).message}: restored that last upload` };
  }
}

async function restoreOne(objects: ObjectStore, job: Job, o: RestoreAllOptions, heard: { object(): void; bytes(n: number): void }): Promise<RestoredDatabase> {
  const file = join(o.dataDir, `${job.db}.db`);
  const result = await restoreDatabase(objects, { db: job.db, target: job.target, out: file, force: true, listing: job.gens, onProgress: () => heard.object(), onBytes: heard.bytes });
  const startGeneration = Math.max(...job.gens.map((g) => g.generation)) + 1;
  const startTxid = result.txid + 1;
  const generations: GenerationStart[] = job.gens
    .filter((g) => g.generation <= result.generation && g.snapshots.length > 0)
    .map((g) => ({ generation: g.generation, startTxid: g.snapshots[0]!.txid }));
  generations.push({ generation: startGeneration, startTxid });
  // The old state (log, meta) of a database replaced under --force describes another history.
  rmSync(stateDir(o.dataDir, job.db), { recursive: true, force: true });
  mkdirSync(stateDir(o.dataDir, job.db), { recursive: true });
  writeMeta(metaPath(o.dataDir, job.db), {
    version: 1,
    databaseId: result.databaseId,
    generation: startGeneration,
    startTxid,
    startChecksum: result.checksum,
    startCursor: null,
    reason: `restored from ${o.source}: txid ${formatTxid(result.txid)} of generation ${result.generation}`,
    generations: generations.slice(-MAX_GENERATION_STARTS),
  });
  return { db: job.db, status: 'restored', file, result, startGeneration, startTxid, ...(job.note === undefined ? {} : { note: job.note }) };
}

/** checkDataDir refuses a data directory that holds anything, unless `force`. */
function checkDataDir(dir: string, force: boolean): void {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new EdgeliteError('IO_ERROR', `cannot read ${dir}: ${(err as Error).message}`, { cause: err });
  }
  if (entries.length > 0 && !force) {
    throw new EdgeliteError('DATABASE_EXISTS', `${dir} is not empty: pass --force to restore into it (the databases the backup holds are replaced)`);
  }
}
