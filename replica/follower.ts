/**
 * Follower keeps a replica current: one stream to the primary for every followed database, resumed
 * from the persisted positions; change sets applied in batches; snapshots fetched when the primary says
 * a position cannot be resumed or when an apply fails verification; reconnects with exponential
 * backoff and jitter; a connection with no bytes for `heartbeatTimeoutMs` is treated as dead.
 */
import { decodeChangeSet } from '../shared/changeset.ts';
import { decodeDeltaChangeSet, isDeltaChangeSet } from '../shared/changeset-delta.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { FrameDecoder, type Frame } from '../shared/frames.ts';
import type { Logger } from '../shared/log.ts';
import type { ChangeSet } from '../shared/types.ts';
import type { ReplicaDatabase } from './database.ts';
import type { PrimaryClient } from '../shared/primary-client.ts';
import { downloadSnapshot, snapshotTempPath } from './snapshot-file.ts';
import type { ReplicaStore } from './store.ts';

export interface FollowerOptions {
  client: PrimaryClient;
  store: ReplicaStore;
  /** What the stream follows at the start; a list can be changed later with follow(). */
  databases: '*' | string[];
  heartbeatTimeoutMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  logger: Logger;
}

export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 5000;
export const DEFAULT_BACKOFF_MIN_MS = 50;
export const DEFAULT_BACKOFF_MAX_MS = 5000;

/** MIN_FRAME_BYTES_PER_SEC: below this rate, bytes without a whole frame count as a stalled stream. */
const MIN_FRAME_BYTES_PER_SEC = 64 * 1024;

export type FollowerState = 'connecting' | 'streaming' | 'waiting' | 'stopped';

/**
 * Restart ends a stream session on purpose (after a snapshot, or when the followed set changed) so the
 * next one resumes from new positions.
 */
class Restart extends Error {}

export class Follower {
  readonly #o: FollowerOptions;
  #state: FollowerState = 'stopped';
  #abort: AbortController | null = null;
  #loop: Promise<void> | null = null;
  /** When the current session last received bytes: the session's watchdog clock, reset per attempt. */
  #lastBytesAt = 0;
  /** When the current session last decoded a whole frame, and the bytes received since. */
  #lastFrameAt = 0;
  #bytesSinceFrame = 0;
  /** Whether the current session got a valid heartbeat, ready or apply (see the backoff in #run). */
  #progress = false;
  /** When the primary last answered at all (any session): what lastContactMs reports. */
  #lastContactAt = 0;
  #connects = 0;
  #lastError: string | null = null;
  #wakeSleep: (() => void) | null = null;
  /**
   * Change sets and snapshots applied per database since start, for /metrics. Kept here, not on the
   * database, because store.recreate replaces the database object.
   */
  readonly #applied = new Map<string, { changeSets: number; snapshots: number }>();
  /** The followed set: the option's, until follow() changes it (lazy replicas). */
  #databases: '*' | string[];
  #followed: ReadonlySet<string> | null;
  /** Whether a session runs, whether it is inside a snapshot, and who waits for it to end (follow()). */
  #inSession = false;
  #snapshotting = false;
  #sessionEnded: Array<() => void> = [];

  constructor(options: FollowerOptions) {
    this.#o = options;
    this.#databases = options.databases;
    this.#followed = options.databases === '*' ? null : new Set(options.databases);
  }

  /** databases is the followed set as the next session will ask for it. */
  get databases(): '*' | readonly string[] {
    return this.#databases;
  }

  /**
   * follow replaces the followed list and restarts the stream with it: the next session posts every
   * listed database's position, so the ones already here resume where they are and a new one (no
   * position) gets its snapshot. A snapshot in progress is not cut: its session ends right after it.
   * Resolves once no session that may still write to a database left out is running, so its files
   * can then be deleted.
   */
  follow(names: string[]): Promise<void> {
    if (this.#databases === '*') throw new EdgeliteError('INTERNAL', 'a follower of every database cannot change its list');
    this.#databases = [...names];
    this.#followed = new Set(names);
    if (!this.#inSession) {
      this.#wakeSleep?.(); // waiting to reconnect: do it now, with the new list
      return Promise.resolve();
    }
    const ended = new Promise<void>((resolve) => this.#sessionEnded.push(resolve));
    if (!this.#snapshotting) this.#abort?.abort(new Restart('followed databases changed'));
    return ended;
  }

  #follows(name: string): boolean {
    return this.#followed === null || this.#followed.has(name);
  }

  /** applied says how many change sets and snapshots this follower applied to `name` since start. */
  applied(name: string): { changeSets: number; snapshots: number } {
    return { ...(this.#applied.get(name) ?? { changeSets: 0, snapshots: 0 }) };
  }

  #count(name: string): { changeSets: number; snapshots: number } {
    let c = this.#applied.get(name);
    if (!c) this.#applied.set(name, (c = { changeSets: 0, snapshots: 0 }));
    return c;
  }

  get state(): FollowerState {
    return this.#state;
  }

  get connects(): number {
    return this.#connects;
  }

  get lastError(): string | null {
    return this.#lastError;
  }

  /** lastContactMs is how long ago the primary last sent anything (heartbeats arrive every second). */
  get lastContactMs(): number {
    return this.#lastContactAt === 0 ? Number.POSITIVE_INFINITY : Date.now() - this.#lastContactAt;
  }

  start(): void {
    if (this.#loop) return;
    this.#state = 'connecting';
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#state = 'stopped';
    this.#abort?.abort();
    this.#wakeSleep?.();
    await this.#loop;
    this.#loop = null;
  }

  async #run(): Promise<void> {
    let attempt = 0;
    while (this.#state !== 'stopped') {
      const started = Date.now();
      this.#progress = false;
      try {
        try {
          this.#inSession = true;
          await this.#session();
        } finally {
          this.#inSession = false;
          for (const resolve of this.#sessionEnded.splice(0)) resolve();
        }
      } catch (err) {
        if ((this.#state as FollowerState) === 'stopped') break;
        if (!(err instanceof Restart)) {
          this.#lastError = err instanceof Error ? err.message : String(err);
          this.#o.logger({ msg: 'stream ended', error: this.#lastError });
          // A session that made progress (an apply, a snapshot installed) ends a run of failures: after
          // a primary restart the first retry comes at the shortest backoff. One that failed at once
          // (an undecodable frame, a full disk) keeps backing off instead of retrying in a tight loop.
          if (this.#progress || Date.now() - started > 10_000) attempt = 0;
          const base = Math.min(this.#o.backoffMaxMs, this.#o.backoffMinMs * 2 ** Math.min(attempt, 20));
          attempt++;
          this.#state = 'waiting';
          await this.#sleep(base / 2 + Math.random() * (base / 2));
          continue;
        }
        attempt = 0;
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.#wakeSleep = null;
        resolve();
      }
      this.#wakeSleep = done;
    });
  }

  async #session(): Promise<void> {
    const { client, store } = this.#o;
    this.#state = 'connecting';
    const abort = new AbortController();
    this.#abort = abort;
    const watchdog = setInterval(() => {
      const now = Date.now();
      if (now - this.#lastBytesAt > this.#o.heartbeatTimeoutMs) abort.abort(new Error('no heartbeat from the primary'));
      // Bytes but no whole frame: a length prefix corrupted upwards makes the decoder wait for bytes
      // that never form the frame while heartbeats keep trickling in. A real large frame flows fast.
      const sinceFrame = now - this.#lastFrameAt;
      if (sinceFrame > this.#o.heartbeatTimeoutMs && this.#bytesSinceFrame < (MIN_FRAME_BYTES_PER_SEC * sinceFrame) / 1000) {
        abort.abort(new Error(`no whole frame from the primary for ${sinceFrame} ms`));
      }
    }, Math.max(50, Math.floor(this.#o.heartbeatTimeoutMs / 4)));
    this.#lastBytesAt = Date.now();
    this.#lastFrameAt = this.#lastBytesAt;
    this.#bytesSinceFrame = 0;
    try {
      const databases = this.#databases === '*' ? '*' : [...this.#databases];
      const body = await client.openStream(databases, store.positions(databases), abort.signal);
      this.#connects++;
      this.#state = 'streaming';
      this.#lastContactAt = Date.now();
      const decoder = new FrameDecoder();
      for await (const chunk of body) {
        this.#lastBytesAt = Date.now();
        this.#lastContactAt = this.#lastBytesAt;
        const frames = decoder.push(chunk);
        if (frames.length > 0) {
          this.#lastFrameAt = this.#lastBytesAt;
          this.#bytesSinceFrame = 0;
        } else {
          this.#bytesSinceFrame += chunk.byteLength;
        }
        await this.#handle(frames);
      }
      decoder.end();
      throw new EdgeliteError('PRIMARY_UNAVAILABLE', 'the primary closed the stream');
    } catch (err) {
      if (abort.signal.aborted && !(err instanceof Restart)) {
        throw abort.signal.reason instanceof Error ? abort.signal.reason : new Error('stream aborted');
      }
      throw err;
    } finally {
      clearInterval(watchdog);
      abort.abort();
    }
  }

  /** #handle applies a chunk's frames, batching consecutive change sets of one database. */
  async #handle(frames: Frame[]): Promise<void> {
    let batchDb: string | null = null;
    let batch: ChangeSet[] = [];
    const flush = async () => {
      if (batchDb && batch.length > 0) await this.#apply(batchDb, batch);
      batchDb = null;
      batch = [];
    };
    for (const f of frames) {
      if (f.type === 'changeset') {
        const cs = await this.#decode(f.db, f.data, batchDb === f.db ? batch : []);
        if (batchDb !== f.db || batch[batch.length - 1]!.maxTxid + 1 !== cs.minTxid) await flush();
        batchDb = f.db;
        batch.push(cs);
        continue;
      }
      await flush();
      await this.#event(f);
    }
    await flush();
  }

  /**
   * #decode decodes a change set; a delta one is rebuilt against the pages it changes, taken from the
   * batch not yet applied (newest first) or else from the local file. A delta whose base is not ours
   * means this replica is not where the primary thinks: re-snapshot.
   */
  async #decode(name: string, bytes: Uint8Array, pending: ChangeSet[]): Promise<ChangeSet> {
    if (!isDeltaChangeSet(bytes)) return decodeChangeSet(bytes);
    const db = this.#o.store.get(name);
    const base = (pgno: number): Uint8Array | null => {
      for (let i = pending.length - 1; i >= 0; i--) {
        const hit = pending[i]!.pages.find((p) => p.pgno === pgno);
        if (hit) return hit.data;
      }
      return db?.readPage(pgno) ?? null;
    };
    try {
      return decodeDeltaChangeSet(bytes, base);
    } catch (err) {
      if (!(err instanceof EdgeliteError) || err.code !== 'CHECKSUM_MISMATCH') throw err;
      this.#o.logger({ msg: 'delta change set does not fit the local pages; re-snapshotting', db: name, error: err.message });
      await this.#snapshot(name, err.message);
      throw new Restart();
    }
  }

  async #apply(name: string, batch: ChangeSet[]): Promise<void> {
    const db = this.#o.store.get(name);
    if (!db || db.needsSnapshot) return;
    try {
      db.apply(batch);
      this.#count(name).changeSets += batch.length;
      this.#progress = true;
    } catch (err) {
      if (!(err instanceof EdgeliteError) || !['CHECKSUM_MISMATCH', 'POSITION_MISMATCH'].includes(err.code)) throw err;
      this.#o.logger({ msg: 'apply rejected; re-snapshotting', db: name, code: err.code, error: err.message });
      await this.#snapshot(name, err.message);
      throw new Restart();
    }
  }

  async #event(f: Frame): Promise<void> {
    const { store, logger } = this.#o;
    switch (f.type) {
      case 'snapshot-needed':
      case 'new-generation':
        // A database just left out of the list (evicted) while this session ends: not worth a download.
        if (!this.#follows(f.db)) return;
        await this.#snapshot(f.db, f.type === 'snapshot-needed' ? f.reason : `new generation ${f.generation}`);
        throw new Restart();
      case 'db-created':
        logger({ msg: 'database created on the primary', db: f.db });
        return;
      case 'db-dropped':
        logger({ msg: 'database dropped on the primary; keeping the local copy read-only', db: f.db });
        return;
      case 'heartbeat':
        store.noteHeartbeat(f.time, f.positions);
        return;
      case 'ready': {
        const db = store.get(f.db);
        if (db) db.ready = true;
        return;
      }
      case 'error':
        logger({ msg: 'primary reported an error on the stream', code: f.code, error: f.message });
        return;
      case 'changeset':
        return;
    }
  }

  /**
   * #snapshot downloads a snapshot to a temp file (verified against its position as it arrives), applies
   * it from there and removes the file, whatever happens. A file of another page size takes a new
   * local file (store.recreate), fed from the same download.
   */
  async #snapshot(name: string, reason: string): Promise<void> {
    const { store } = this.#o;
    if (!this.#follows(name)) throw new Restart(`${name} is no longer followed`);
    const db = store.ensure(name);
    db.needsSnapshot = reason;
    this.#snapshotting = true;
    try {
      await this.#download(db, name, reason);
    } finally {
      this.#snapshotting = false;
    }
  }

  async #download(db: ReplicaDatabase, name: string, reason: string): Promise<void> {
    const { client, store, logger } = this.#o;
    const started = Date.now();
    // Snapshot bytes count as contact: the session's watchdog must not abort a download that is
    // flowing just because it takes longer than the heartbeat timeout (a large database).
    const alive = () => {
      this.#lastBytesAt = Date.now();
      this.#lastContactAt = this.#lastBytesAt;
      this.#lastFrameAt = this.#lastBytesAt;
    };
    const file = await downloadSnapshot(client, name, snapshotTempPath(db.path), { signal: this.#abort?.signal, onProgress: alive, logger });
    const downloaded = Date.now();
    const { position, databaseId, length } = file.head;
    try {
      try {
        db.restore(file.pages(), position, databaseId, Date.now());
      } catch (err) {
        if (!(err instanceof EdgeliteError) || err.details?.reason !== 'page-size') throw err;
        store.recreate(name).restore(file.pages(), position, databaseId, Date.now());
      }
    } finally {
      file.remove();
    }
    alive(); // the restore blocked the event loop; the watchdog must not count that time
    this.#progress = true;
    this.#count(name).snapshots++;
    const done = Date.now();
    logger({ msg: 'snapshot applied', db: name, reason, txid: position.txid, generation: position.generation, bytes: length, ms: done - started, downloadMs: downloaded - started, applyMs: done - downloaded });
  }
}

