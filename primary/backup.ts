/**
 * BackupRunner uploads every database's change sets to an object store as immutable segments, plus
 * snapshots (docs/FORMAT.md, its backup objects section). Every interval it visits the databases: one that has not
 * changed since its last upload costs nothing (no request), one that has uploads one segment with the
 * change sets since, so PUTs grow with the databases that changed, not with how many there are. A
 * database with no snapshot in its current generation (first backup, new generation) uploads one first,
 * and again once its newest snapshot is SNAPSHOT_EVERY_MS old, or SNAPSHOT_EVERY_BYTES of segments
 * were uploaded since it (or its chain has SNAPSHOT_EVERY_SEGMENTS segments, a backstop).
 *
 * After a database uploads, its segments are merged into compaction levels and what the retention
 * window no longer needs is deleted (shared/backup-compaction.ts decides, backup-compact.ts does it;
 * the rules are docs/FORMAT.md#compaction-and-retention). The runner keeps each database's listing in memory
 * (listed once, then updated with what it writes and deletes), so an idle database costs no request:
 * it is visited again only when a deletion falls due (a grace period ends, data leaves the window).
 *
 * The log keeps what is not uploaded: each database's log is pinned at its uploaded txid (`holdFor`,
 * the log's keepAfter option). A failed upload is logged (the store's description and the error, never
 * a credential), counted, and retried with exponential backoff.
 *
 * With `--backup-ack` a write is answered only once its txid is uploaded (waitUploaded): it starts an
 * upload of its database at once instead of waiting for the interval, and the writes that commit while
 * that upload is in flight share the next one. Uploads of one database, whether the interval's pass or
 * an ack started them, run one at a time (#exclusive).
 */
import { EdgeliteError } from '../shared/errors.ts';
import { chainFrom, segmentKey } from '../shared/backup-layout.ts';
import { compactionPolicy, type CompactionPolicy } from '../shared/backup-compaction.ts';
import { encodeSegment } from '../shared/backup-objects.ts';
import type { Logger } from '../shared/log.ts';
import type { ObjectStore } from '../shared/object-store.ts';
import type { Txid } from '../shared/types.ts';
import { AckWaiters, type BackupWait } from './backup-ack.ts';
import { compact } from './backup-compact.ts';
import { readBackedUp, snapshotObject } from './backup-io.ts';
import { holds, isBehind, newDbState, oldestPending, progressOf, recordUpload, type DbState } from './backup-state.ts';
import { DEFAULT_BACKUP_RETENTION_MS } from './config.ts';
import type { PrimaryDatabase } from './database.ts';
import type { PrimaryStore } from './store.ts';

/**
 * A new snapshot once the chain from the newest one has this many segments: a backstop, compaction
 * keeps the chain far shorter (shared/backup-compaction.ts, restoreObjectBound)...
 */
export const SNAPSHOT_EVERY_SEGMENTS = 1000;
/** ...or after this many bytes of segments, or once the newest is SNAPSHOT_EVERY_MS old (backup-compaction.ts). */
export const SNAPSHOT_EVERY_BYTES = 256 * 1024 * 1024;
/** One segment holds about this many bytes of change sets at most (always at least one change set). */
export const SEGMENT_MAX_BYTES = 16 * 1024 * 1024;
/** How many databases upload at once in a pass, so one slow PUT does not hold up the others. */
export const BACKUP_CONCURRENCY = 8;
/** close waits at most this long for its last pass, so an unreachable store cannot hold up a shutdown. */
export const BACKUP_CLOSE_MS = 5000;
/** Retry backoff after a failed upload: doubles from the interval up to this. */
export const BACKUP_MAX_BACKOFF_MS = 30_000;
/** With `--backup-ack`, while writes wait for a database, a failed upload is retried at least this often. */
export const ACK_MAX_RETRY_MS = 1000;

export interface BackupOptions {
  intervalMs: number;
  logger: Logger;
  snapshotEverySegments?: number;
  snapshotEveryBytes?: number;
  /** `--backup-retention` (ms): DEFAULT_BACKUP_RETENTION_MS when absent. */
  retentionMs?: number;
  /** Tests: smaller level windows, grace period, snapshot period (shared/backup-compaction.ts). */
  compaction?: Partial<Omit<CompactionPolicy, 'retentionMs'>>;
  /** The clock compaction and retention read (ms); tests run days of simulated time. Date.now by default. */
  clock?: () => number;
}

/** BackupStatus is one database's backup figures, for GET /v1/db/{name} and /metrics. */
export interface BackupStatus {
  /** Highest txid restorable from the store in the current generation (0: none yet). */
  uploadedTxid: Txid;
  /** How long the oldest change not yet uploaded has been waiting (ms); 0 when all is uploaded. */
  lagMs: number;
  errors: number;
  /** Merged segments written (compaction levels). */
  compactions: number;
  /** Objects deleted: superseded by a merge, or out of the retention window. */
  deleted: number;
  /** Failed merges or deletions (logged; retried on the next upload or when due). */
  compactionErrors: number;
}


export class BackupRunner {
  readonly objects: ObjectStore;
  readonly #opts: Required<BackupOptions>;
  readonly #policy: CompactionPolicy;
  readonly #clock: () => number;
  readonly #states = new Map<string, DbState>();
  #store: PrimaryStore | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #running: Promise<void> | null = null;
  #closing = false;
  #closed = false;
  /** Writes waiting for their txid to be uploaded (`--backup-ack`), per database. */
  readonly #waiters = new AckWaiters();
  /** Databases whose ack upload loop (#ackUploads) is running. */
  readonly #ackUploading = new Set<string>();
  /** Per database, the tail of its uploads: one at a time (#exclusive), whoever started it. */
  readonly #locks = new Map<string, Promise<void>>();

  constructor(objects: ObjectStore, opts: BackupOptions) {
    this.objects = objects;
    this.#opts = { snapshotEverySegments: SNAPSHOT_EVERY_SEGMENTS, snapshotEveryBytes: SNAPSHOT_EVERY_BYTES, ...opts, retentionMs: opts.retentionMs ?? DEFAULT_BACKUP_RETENTION_MS, compaction: opts.compaction ?? {}, clock: opts.clock ?? Date.now };
    this.#policy = compactionPolicy(this.#opts.retentionMs, this.#opts.compaction);
    this.#clock = this.#opts.clock;
  }

  /** holdFor is the log pin of database `name`: retention keeps every txid above what is uploaded. */
  holdFor(name: string): () => Txid {
    return () => {
      const s = this.#states.get(name);
      const db = this.#store?.info(name);
      return s && db && s.generation === db.position.generation ? s.uploadedTxid : 0;
    };
  }

  /** start begins the interval loop over `store`'s databases. */
  start(store: PrimaryStore): void {
    this.#store = store;
    this.#schedule(0);
  }

  status(name: string): BackupStatus {
    const info = this.#store?.info(name);
    if (!info) return { uploadedTxid: 0, lagMs: 0, errors: 0, compactions: 0, deleted: 0, compactionErrors: 0 };
    const s = this.#state(name);
    const behind = isBehind(s, info);
    const now = this.#clock();
    // Only a database the backup is behind on is opened (its log says when the oldest pending change was).
    const db = behind && s.pendingSince === null ? this.#store?.get(name) : undefined;
    if (db) s.pendingSince = oldestPending(db, s, now);
    const { compactions, deleted, compactionErrors } = s;
    return { uploadedTxid: s.uploadedTxid, lagMs: behind ? Math.max(0, now - (s.pendingSince ?? now)) : 0, errors: s.errors, compactions, deleted, compactionErrors };
  }

  /** flush runs passes until every database is uploaded to its current txid, or a pass fails. */
  async flush(): Promise<void> {
    for (;;) {
      await this.#running;
      const store = this.#store;
      if (!store) return;
      const behind = store.names().filter((n) => {
        const db = store.info(n);
        return db !== undefined && isBehind(this.#state(n), db);
      });
      if (behind.length === 0) return;
      const errorsBefore = new Map(behind.map((name) => [name, this.#state(name).errors]));
      await this.#pass(true);
      // Failed: a database the pass left behind after an error of its own (an ack upload failing
      // meanwhile for one that then caught up is not a failure of the flush).
      const failed = behind.filter((name) => {
        const db = store.info(name);
        const s = this.#state(name);
        return db !== undefined && isBehind(s, db) && s.errors > errorsBefore.get(name)!;
      });
      if (failed.length > 0) {
        throw new EdgeliteError('UNAVAILABLE', `backup flush failed for ${failed.map((name) => `${name} (${this.#state(name).lastError ?? 'unknown error'})`).join(', ')}`);
      }
    }
  }

  /** maintain runs one pass now: uploads, merges and whatever deletion is due (tests drive a simulated clock with it). */
  maintain(): Promise<void> {
    return this.#pass(true);
  }

  /** close stops the loop and makes one last pass (errors are logged), waiting at most BACKUP_CLOSE_MS. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, BACKUP_CLOSE_MS)));
    await Promise.race([this.#pass(true), timeout]);
    clearTimeout(timer);
    this.#closed = true;
    this.#waiters.closeAll();
  }

  /**
   * waitUploaded is `--backup-ack`: it resolves once the backup holds txid `txid` of `generation` of
   * database `name` (uploaded: true), or, with uploaded: false, after `timeoutMs`, when `signal`
   * aborts, or when the backup closes. It never waits for the next interval: it starts an upload of
   * that database at once, and the writes that commit while one is in flight share the next (group
   * commit: one segment PUT per upload, whatever the number of writes waiting).
   */
  waitUploaded(name: string, generation: number, txid: Txid, timeoutMs: number, signal?: AbortSignal): Promise<BackupWait> {
    const s = this.#state(name);
    return this.#waiters.wait(name, { generation, txid }, {
      timeoutMs,
      closing: this.#closing,
      figures: () => ({ uploadedTxid: s.uploadedTxid, errors: s.errors }),
      holds: (w) => holds(s, w),
      upload: () => void this.#ackUploads(name),
      ...(signal ? { signal } : {}),
    });
  }

  /**
   * #ackUploads uploads database `name` again and again while writes wait for it: each upload takes
   * every change set committed so far, so the writes that arrive during one go in the next. One loop
   * per database (a second call returns at once: the running loop takes its waiter too). After a
   * failed upload it waits for the retry backoff, but at most ACK_MAX_RETRY_MS while writes wait: an
   * unreachable store gets one attempt a second, and writes succeed again soon after it is back. It
   * stops when an upload makes no progress (its waiters then hear from the interval's passes, or time out).
   */
  async #ackUploads(name: string): Promise<void> {
    if (this.#ackUploading.has(name)) return;
    this.#ackUploading.add(name);
    try {
      while (!this.#closing && this.#waiters.count(name) > 0) {
        const db = this.#store?.get(name);
        if (!db) break;
        const s = this.#state(name);
        const wait = s.failures > 0 ? Math.min(s.retryAt - Date.now(), ACK_MAX_RETRY_MS) : 0;
        if (wait > 0) {
          await new Promise<void>((r) => setTimeout(r, wait).unref());
          if (this.#closing || this.#waiters.count(name) === 0) break;
        }
        const before = progressOf(s);
        const seen = `${db.position.generation}:${db.position.txid}`;
        try {
          await this.#exclusive(name, () => this.#backUp(name, db, s));
          s.failures = 0;
          s.retryAt = 0;
        } catch (err) {
          this.#failed(name, s, err);
          continue;
        }
        // Nothing to upload and nothing committed since: every write captured so far is held (and its
        // waiter woken); a write committed after this starts a loop of its own.
        if (progressOf(s) === before && seen === `${db.position.generation}:${db.position.txid}`) break;
      }
    } finally {
      this.#ackUploading.delete(name);
    }
  }

  /** #exclusive runs one upload of database `name` after the one in flight, then wakes its waiters. */
  #exclusive(name: string, fn: () => Promise<void>): Promise<void> {
    const run = (this.#locks.get(name) ?? Promise.resolve()).then(fn).finally(() => this.#wake(name));
    const tail = run.catch(() => undefined);
    this.#locks.set(name, tail);
    void tail.then(() => {
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    });
    return run;
  }

  /** #wake answers every waiter of `name` whose txid the backup now holds. */
  #wake(name: string): void {
    const s = this.#state(name);
    this.#waiters.wake(name, (w) => holds(s, w));
  }

  /** #failed counts a failed upload, logs it (the store's description, never a credential) and sets its retry backoff. */
  #failed(name: string, s: DbState, err: unknown): void {
    s.errors++;
    s.lastError = err instanceof Error ? err.message : String(err);
    s.failures++;
    const backoff = Math.min(BACKUP_MAX_BACKOFF_MS, this.#opts.intervalMs * 2 ** Math.min(s.failures, 16));
    s.retryAt = Date.now() + backoff * (0.5 + Math.random() / 2);
    this.#opts.logger({ msg: 'backup upload failed', db: name, store: this.objects.description, error: err instanceof Error ? err.message : String(err), retryInMs: Math.round(s.retryAt - Date.now()) });
  }

  #schedule(ms: number): void {
    if (this.#closing) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#pass(false).finally(() => this.#schedule(this.#opts.intervalMs));
    }, ms);
    this.#timer.unref();
  }

  #pass(ignoreBackoff: boolean): Promise<void> {
    const run = async (): Promise<void> => {
      const names = this.#store?.names() ?? [];
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < names.length) {
          const name = names[next++]!;
          const info = this.#store?.info(name);
          if (!info || this.#closed) continue;
          const s = this.#state(name);
          if (!ignoreBackoff && Date.now() < s.retryAt) continue;
          // A closed database with nothing new for the bucket costs no open.
          if (!isBehind(s, info) && !this.#store?.peek(name)) continue;
          const db = this.#store?.get(name);
          if (!db) continue;
          try {
            await this.#exclusive(name, () => this.#backUp(name, db, s));
            s.failures = 0;
          } catch (err) {
            this.#failed(name, s, err);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(BACKUP_CONCURRENCY, names.length) }, worker));
    };
    const p = (this.#running ?? Promise.resolve()).then(run);
    this.#running = p;
    return p;
  }

  /**
   * forget is called when database `name` is dropped (PrimaryStore.drop), once the store no longer
   * holds it: it waits for the upload in flight, then drops what the runner knows of the name, so a
   * database later created under it starts with a snapshot of its own. The objects stay in the bucket.
   */
  async forget(name: string): Promise<void> {
    await this.#locks.get(name);
    this.#states.delete(name);
  }

  #state(name: string): DbState {
    let s = this.#states.get(name);
    if (!s) {
      s = newDbState();
      this.#states.set(name, s);
    }
    return s;
  }

  /** #backUp brings one database's backup up to its current position, if it is behind. */
  async #backUp(name: string, db: PrimaryDatabase, s: DbState): Promise<void> {
    const generation = db.position.generation;
    if (s.generation !== generation) await this.#load(name, generation, s);
    let changed = !s.hasSnapshot;
    if (!s.hasSnapshot) s.uploadedTxid = Math.max(s.uploadedTxid, await this.#snapshot(name, db, s));
    if (db.position.txid > s.uploadedTxid && db.position.generation === generation) {
      const records = db.log.iterateSince(generation, s.uploadedTxid, SEGMENT_MAX_BYTES);
      if (records === null) {
        // The log no longer reaches the uploaded txid (it cannot while pinned, but a new generation may
        // have started under us): a snapshot restarts the chain.
        s.hasSnapshot = false;
        return;
      }
      const last = records.at(-1);
      if (last) {
        const bytes = encodeSegment(records.map((r) => r.payload));
        const key = segmentKey(name, generation, records[0]!.minTxid, last.maxTxid, last.timestamp);
        await this.objects.put(key, bytes);
        recordUpload(s, key, bytes.length);
        changed = true;
        s.uploadedTxid = last.maxTxid;
        s.segmentsSinceSnapshot++;
        s.bytesSinceSnapshot += bytes.length;
      }
    }
    const daily = changed && this.#clock() - s.snapshotTime >= this.#policy.snapshotEveryMs;
    if (daily || s.segmentsSinceSnapshot >= this.#opts.snapshotEverySegments || s.bytesSinceSnapshot >= this.#opts.snapshotEveryBytes) {
      await this.#snapshot(name, db, s);
    }
    // What is still pending after this upload is read again from the log when the lag is next asked for.
    s.pendingSince = null;
    if (!this.#closing && s.generation !== null && (changed || this.#clock() >= s.dueAt)) {
      await compact(this.objects, name, s.generation, s, { policy: this.#policy, clock: this.#clock, logger: this.#opts.logger, closing: () => this.#closing });
    }
  }

  /** #load reads what the store already holds of this database (after a restart, say), every generation. */
  async #load(name: string, generation: number, s: DbState): Promise<void> {
    const { listed, g } = await readBackedUp(this.objects, name, generation, this.#opts.logger);
    const newest = g?.snapshots.at(-1);
    Object.assign(s, { generation, uploadedTxid: 0, hasSnapshot: false, segmentsSinceSnapshot: 0, bytesSinceSnapshot: 0 });
    Object.assign(s, { objects: new Map(listed.map((o) => [o.key, o])), snapshotTime: newest?.time ?? 0, supersededSince: new Map(), dueAt: -Infinity, relist: false });
    if (!g || !newest) return;
    const range = g.ranges.at(-1)!;
    if (range.toTxid > (this.#store?.get(name)?.position.txid ?? 0)) {
      // Another history under the same name and generation (a data directory recreated or restored, a
      // lost tail): continuing it would upload change sets that do not follow what is there.
      s.generation = null;
      throw new EdgeliteError('POSITION_MISMATCH', `the backup of ${name} generation ${generation} reaches txid ${range.toTxid}, ahead of the database: not backing it up (move that generation's objects away)`);
    }
    const since = chainFrom(g, newest.txid);
    Object.assign(s, {
      uploadedTxid: range.toTxid,
      hasSnapshot: true,
      segmentsSinceSnapshot: since.length,
      bytesSinceSnapshot: since.reduce((n, x) => n + x.size, 0),
    });
  }

  /** #snapshot uploads an image of the database at its current position and returns its txid. */
  async #snapshot(name: string, db: PrimaryDatabase, s: DbState): Promise<Txid> {
    const { key, bytes, txid, timestamp } = snapshotObject(name, db, s.generation);
    await this.objects.put(key, bytes);
    recordUpload(s, key, bytes.length);
    s.snapshotTime = timestamp;
    s.hasSnapshot = true;
    s.segmentsSinceSnapshot = 0;
    s.bytesSinceSnapshot = 0;
    return txid;
  }
}
