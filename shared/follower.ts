/**
 * FollowerCore keeps a replica current, the one loop both replicas run (docs/ARCHITECTURE.md#the-data-path):
 * one stream to the primary for every followed database, resumed from the port's positions; consecutive
 * change sets of one database applied in batches; delta change sets rebuilt against the pending batch,
 * then the port's pages; snapshots when the primary asks for one or when the local copy diverged,
 * downloaded by a bounded queue (follower-snapshots.ts) while the session goes on; reconnects with
 * exponential backoff and jitter. What a replica provides is the port (follower-port.ts).
 *
 * The rules (docs/ARCHITECTURE.md#failure-rules), the same for the Node replica and the Worker:
 * - Re-snapshot only on a typed divergence (`divergenceOf(err)`: a delta whose base is not our page, an
 *   apply that fails verification), never on a wire code. A storage failure (IO_ERROR, DISK_FULL) ends
 *   the session and is retried after the backoff; a corrupt frame or change set ends the session and
 *   the next resumes from the stored position. Either way nothing of the failing frame is applied.
 * - Snapshots download beside the session, which they do not end: the rules in follower-snapshots.ts.
 * - The backoff resets after progress (a batch applied, a snapshot installed) or a session that lasted
 *   more than SESSION_RESET_MS; a session ended on purpose (Restart) reconnects at once.
 * - Two watchdogs end a session: no bytes for `heartbeatTimeoutMs` (heartbeats come every second), and
 *   bytes but no whole frame below MIN_FRAME_BYTES_PER_SEC (a length prefix corrupted upwards makes the
 *   decoder wait for bytes that never form the frame while heartbeats keep trickling in).
 */
import { compilePatterns, type DatabaseMatcher } from './db-pattern.ts';
import { divergenceOf, EdgeliteError } from './errors.ts';
import { backoffDelayMs, decodeStreamChangeSet } from './follower-decode.ts';
import type { AppliedCounts, FollowerCoreOptions, FollowerCoreState, FollowerFailure } from './follower-port.ts';
import { CORE_BOOTSTRAP_CONCURRENCY, JOIN_BATCH_MS, SnapshotQueue } from './follower-snapshots.ts';
import { runStreamSession, Sleeper, StreamWatchdog } from './follower-session.ts';
import type { Frame } from './frames.ts';
import type { ChangeSet, Position } from './types.ts';

export { MIN_FRAME_BYTES_PER_SEC } from './follower-session.ts';
/** SESSION_RESET_MS: a session that lasted longer than this ends a run of failures (backoff from the start). */
export const SESSION_RESET_MS = 10_000;
export { JOIN_BATCH_MS } from './follower-snapshots.ts';

/** Restart ends a session on purpose (installed snapshots join, the followed set changed): the next resumes at once. */
class Restart extends Error {}

export class FollowerCore {
  readonly #o: FollowerCoreOptions;
  #state: FollowerCoreState = 'stopped';
  #abort: AbortController | null = null;
  #loop: Promise<void> | null = null;
  readonly #watchdog = new StreamWatchdog();
  /** Whether the current session applied a batch or installed a snapshot (the backoff reset). */
  #progress = false;
  #connects = 0;
  #rejected = 0;
  #lastFailure: FollowerFailure | null = null;
  #lastFailureCode: string | null = null;
  readonly #sleeper = new Sleeper();
  /** Per database since start; kept here because a port may replace its database objects. */
  readonly #applied = new Map<string, AppliedCounts>();
  #databases: '*' | string[];
  /** Which databases this follower applies (names and patterns, shared/db-pattern.ts); null: every one. */
  #followed: DatabaseMatcher | null;
  /** Whether a session runs, since when, and who waits for it to end (follow()). */
  #inSession = false;
  #sessionStartedAt = 0;
  #sessionEnded: Array<() => void> = [];
  /** The snapshot downloads, and the databases installed since the session's request (they join the next). */
  readonly #snapshots: SnapshotQueue;
  readonly #joining = new Set<string>();

  constructor(options: FollowerCoreOptions) {
    this.#o = options;
    this.#snapshots = new SnapshotQueue({
      concurrency: options.bootstrapConcurrency ?? CORE_BOOTSTRAP_CONCURRENCY,
      run: (db, reason, signal) => options.port.snapshot(db, reason, signal, () => this.#watchdog.alive(true)),
      done: (db, err) => this.#snapshotDone(db, err),
    });
    this.#databases = options.databases === '*' ? '*' : [...options.databases];
    this.#followed = options.databases === '*' ? null : compilePatterns(options.databases);
  }

  /** databases is the followed set as the next session will ask for it. */
  get databases(): '*' | readonly string[] {
    return this.#databases;
  }

  /** state is `snapshotting` while a session streams and snapshots download. */
  get state(): FollowerCoreState {
    return this.#state === 'streaming' && this.#snapshots.running > 0 ? 'snapshotting' : this.#state;
  }

  /** snapshots counts the downloads in progress and those waiting for a slot. */
  get snapshots(): { running: number; queued: number } {
    return { running: this.#snapshots.running, queued: this.#snapshots.queued };
  }

  /** running says whether the loop runs (from start() until stop() resolves). */
  get running(): boolean {
    return this.#loop !== null;
  }

  /** connects counts the streams opened to the primary. */
  get connects(): number {
    return this.#connects;
  }

  /** rejected counts change sets that failed to decode or to apply: none of them was applied. */
  get rejected(): number {
    return this.#rejected;
  }

  /** lastFailure is the last failure seen (kept after recovery: it says what happened last). */
  get lastFailure(): FollowerFailure | null {
    return this.#lastFailure;
  }

  /** lastFailureCode is lastFailure's code until a snapshot is installed (a bootstrap's DATABASE_NOT_FOUND). */
  get lastFailureCode(): string | null {
    return this.#lastFailureCode;
  }

  /** lastContactMs is how long ago the primary last sent anything (heartbeats arrive every second). */
  get lastContactMs(): number {
    return this.#watchdog.lastContactMs;
  }

  /** applied says how many change sets and snapshots this follower applied to `name` since start. */
  applied(name: string): AppliedCounts {
    return { ...(this.#applied.get(name) ?? { changeSets: 0, snapshots: 0 }) };
  }

  /**
   * follow replaces the followed list and restarts the stream with it: the next session posts every
   * listed database's position, so the ones already here resume where they are and a new one (no
   * position) gets its snapshot. A snapshot of a database still followed goes on; one of a database
   * left out is cut. Resolves once no session nor download that may still write to a database left
   * out is running, so its files can then be deleted. When the change only adds databases that have
   * no local copy (a lazy replica's first use), their snapshots start at once and the session is not
   * restarted for them: installed, they join it as every snapshot does (#join).
   */
  follow(names: string[]): Promise<void> {
    if (this.#databases === '*') throw new EdgeliteError('INTERNAL', 'a follower of every database cannot change its list');
    const before = this.#databases;
    this.#databases = [...names];
    this.#followed = compilePatterns(names);
    for (const db of this.#joining) if (!this.#follows(db)) this.#joining.delete(db);
    const cut = this.#snapshots.cancel((db) => !this.#follows(db), 'no longer followed');
    const kept = new Set(names);
    const removed = before.some((n) => !kept.has(n));
    const old = new Set(before);
    const added = names.filter((n) => !old.has(n));
    const bootstrapping = this.#bootstrapNew(added);
    if (!this.#inSession) {
      this.#sleeper.wake(); // waiting to reconnect: do it now, with the new list
      return cut;
    }
    // Only additions, each downloading its snapshot: the session goes on, and they join it once
    // installed (#join), as any snapshot does; restarting now would only cost the primary a session.
    if (!removed && bootstrapping === added.length) return cut;
    const ended = new Promise<void>((resolve) => this.#sessionEnded.push(resolve));
    this.#abort?.abort(new Restart('followed databases changed'));
    return Promise.all([ended, cut]).then(() => {});
  }

  /**
   * #bootstrapNew queues the snapshot of each newly followed database that has no local position yet
   * (a lazy replica's first use, docs/ARCHITECTURE.md#many-databases) at once: the primary would only
   * answer `snapshot-needed` for it once a restarted session's request reached it, a round trip
   * later. A database already here resumes from its position as before. Returns how many are downloading.
   */
  #bootstrapNew(added: string[]): number {
    if (added.length === 0 || !this.running || this.#isStopped) return 0;
    const positions = this.#o.port.positions(added);
    let queued = 0;
    for (const db of added) {
      if (positions[db] !== null || this.#joining.has(db)) continue;
      this.#snapshots.add(db, 'first use');
      if (this.#snapshots.has(db)) queued++;
    }
    return queued;
  }

  /**
   * reconnect ends the current session and every snapshot download, and starts the next session at
   * once (a wait between sessions is cut short): the primary moved (README.md#high-availability), so
   * nothing more is taken from the one this session talks to.
   */
  reconnect(reason: string): void {
    void this.#snapshots.cancel(() => true, reason);
    this.#joining.clear();
    if (this.#inSession) this.#abort?.abort(new Restart(reason));
    else this.#sleeper.wake();
  }

  start(): void {
    if (this.#loop) return;
    this.#state = 'connecting';
    this.#loop = this.#run().finally(() => {
      this.#loop = null;
      this.#state = 'stopped';
    });
  }

  async stop(): Promise<void> {
    this.#state = 'stopped';
    this.#abort?.abort();
    this.#sleeper.wake();
    await Promise.all([this.#loop, this.#snapshots.cancel(() => true, 'the follower stopped')]);
    this.#joining.clear();
  }

  get #isStopped(): boolean {
    return this.#state === 'stopped';
  }

  #follows(name: string): boolean {
    return this.#followed === null || this.#followed(name);
  }

  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#isStopped) {
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
        if (this.#isStopped) break;
        if (err instanceof Restart) {
          attempt = 0;
          await this.#sleep(0); // at once, but after pending timers: never a loop that starves the event loop
          continue;
        }
        this.#note(err);
        this.#o.logger({ msg: 'stream ended', code: this.#lastFailure!.code, error: this.#lastFailure!.message });
        if (this.#progress || Date.now() - started > SESSION_RESET_MS) attempt = 0;
        const delay = backoffDelayMs(attempt, this.#o.backoffMinMs, this.#o.backoffMaxMs);
        attempt++;
        this.#state = 'waiting';
        await this.#sleep(delay);
      }
    }
  }

  /** #reported records a failure the primary told of (an error frame, a drop): what the replica reports. */
  #reported(code: string, message: string): void {
    this.#lastFailure = { code, name: 'EdgeliteError', message };
    this.#lastFailureCode = code;
  }

  #note(err: unknown): void {
    const code = err instanceof EdgeliteError ? err.code : null;
    this.#lastFailure = { code, name: err instanceof Error ? err.name : 'Error', message: err instanceof Error ? err.message : String(err) };
    this.#lastFailureCode = code;
  }

  #sleep(ms: number): Promise<void> {
    return this.#isStopped ? Promise.resolve() : this.#sleeper.sleep(ms);
  }

  async #session(): Promise<void> {
    this.#state = 'connecting';
    const abort = new AbortController();
    this.#abort = abort;
    this.#sessionStartedAt = Date.now();
    const { heartbeatTimeoutMs, source } = this.#o;
    await runStreamSession({
      source,
      watchdog: this.#watchdog,
      heartbeatTimeoutMs,
      tickMs: Math.max(10, Math.floor(Math.min(heartbeatTimeoutMs, JOIN_BATCH_MS) / 4)),
      request: () => {
        const databases = this.#databases === '*' ? '*' : [...this.#databases];
        this.#joining.clear(); // their positions go in this request
        return { databases, positions: this.#positions(databases) };
      },
      opened: () => {
        this.#connects++;
        this.#state = 'streaming';
      },
      frames: (frames) => this.#handle(frames),
      tick: () => this.#join(),
    }, abort, (err) => err instanceof Restart);
  }

  /** #positions asks the port where each database stands; one that needs or awaits a snapshot goes with none. */
  #positions(databases: '*' | string[]): Record<string, Position | null> {
    const out = this.#o.port.positions(databases);
    for (const name of Object.keys(out)) if (this.#snapshots.has(name) || this.#o.port.needsSnapshot(name) !== null) out[name] = null;
    return out;
  }

  /** #waits says whether frames for `name` must be dropped: its snapshot is pending, or installed and not yet joined. */
  #waits(name: string): boolean {
    return this.#snapshots.has(name) || this.#joining.has(name);
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
        if (!this.#follows(f.db) || this.#waits(f.db)) continue;
        const cs = await this.#decode(f.db, f.data, batchDb === f.db ? batch : []);
        if (cs === null) continue; // diverged: its snapshot is queued
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

  /** #decode decodes one change set, or returns null when it diverged (a re-snapshot is queued). */
  async #decode(name: string, bytes: Uint8Array, pending: ChangeSet[]): Promise<ChangeSet | null> {
    try {
      return decodeStreamChangeSet(bytes, pending, (pgno) => this.#o.port.readPage(name, pgno));
    } catch (err) {
      if (this.#refused(name, err, 'delta change set does not fit the local pages; re-snapshotting')) return null;
      throw err;
    }
  }

  async #apply(name: string, batch: ChangeSet[]): Promise<void> {
    const { port } = this.#o;
    if (this.#waits(name) || port.needsSnapshot(name) !== null) return;
    try {
      if (!port.apply(name, batch)) return;
    } catch (err) {
      if (this.#refused(name, err, 'apply rejected; re-snapshotting')) return;
      throw err;
    }
    this.#count(name).changeSets += batch.length;
    this.#progress = true;
  }

  /**
   * #refused handles a change set that did not decode or apply: counted, noted, and on a divergence
   * re-snapshotted (true: its frames are dropped until it joins again); false: the caller rethrows.
   */
  #refused(name: string, err: unknown, msg: string): boolean {
    this.#rejected += 1;
    this.#note(err);
    const divergence = divergenceOf(err);
    if (divergence === null) return false;
    this.#o.logger({ msg, db: name, divergence, code: this.#lastFailure!.code, error: this.#lastFailure!.message });
    this.#snapshots.add(name, this.#lastFailure!.message);
    return true;
  }

  async #event(f: Frame): Promise<void> {
    const { port, logger } = this.#o;
    switch (f.type) {
      case 'snapshot-needed':
      case 'new-generation':
        // A database just left out of the list (evicted) while this session ends: not worth a download.
        // One installed since this session's request joins the next session, which asks again if need be.
        if (!this.#follows(f.db) || this.#joining.has(f.db)) return;
        this.#snapshots.add(f.db, f.type === 'snapshot-needed' ? f.reason : `new generation ${f.generation}`);
        return;
      case 'db-created':
        logger({ msg: 'database created on the primary', db: f.db });
        return;
      case 'db-dropped':
        // Until it is created again (a snapshot resets it): what a bootstrap of it would be told.
        this.#reported('DATABASE_NOT_FOUND', `database ${f.db} was dropped on the primary`);
        this.#joining.delete(f.db);
        await this.#snapshots.cancel((db) => db === f.db, 'dropped on the primary');
        if (port.dropped) {
          port.dropped(f.db);
          logger({ msg: 'database dropped on the primary; local copy deleted', db: f.db });
        } else {
          logger({ msg: 'database dropped on the primary; keeping the local copy read-only', db: f.db });
        }
        return;
      case 'heartbeat':
        port.noteHeartbeat(f.time, f.positions);
        return;
      case 'ready':
        if (this.#follows(f.db) && !this.#waits(f.db)) port.markReady(f.db);
        return;
      case 'error':
        // What the primary says (a followed database that does not exist yet) is what the replica reports.
        this.#reported(f.code, f.message);
        logger({ msg: 'primary reported an error on the stream', code: f.code, error: f.message });
        return;
      case 'changeset':
        return;
    }
  }

  /** #snapshotDone hears a download's end: installed, it joins the next session (#join); failed, the session ends. */
  #snapshotDone(name: string, err: unknown): void {
    this.#watchdog.alive(true); // installing blocked the event loop: the watchdogs must not count that time
    if (this.#isStopped) return;
    if (err !== null) {
      this.#note(err);
      this.#o.logger({ msg: 'snapshot failed', db: name, code: this.#lastFailure!.code, error: this.#lastFailure!.message });
      if (this.#inSession) this.#abort?.abort(err instanceof Error ? err : new EdgeliteError('PRIMARY_UNAVAILABLE', `snapshot of ${name} failed`));
      return;
    }
    this.#progress = true;
    this.#lastFailureCode = null;
    this.#count(name).snapshots++;
    if (this.#inSession && this.#follows(name)) {
      this.#joining.add(name);
      this.#join();
    }
  }

  /** #join restarts the session so installed snapshots join it: once no download is left, or JOIN_BATCH_MS into the session. */
  #join(): void {
    if (!this.#inSession || this.#joining.size === 0) return;
    if (this.#snapshots.idle || Date.now() - this.#sessionStartedAt >= JOIN_BATCH_MS) this.#abort?.abort(new Restart('snapshots installed'));
  }

  #count(name: string): AppliedCounts {
    return this.#applied.get(name) ?? this.#applied.set(name, { changeSets: 0, snapshots: 0 }).get(name)!;
  }
}
