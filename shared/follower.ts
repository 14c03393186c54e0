/**
 * FollowerCore keeps a replica current, the one loop both replicas run (docs/ARCHITECTURE.md#the-data-path):
 * one stream to the primary for every followed database, resumed from the port's positions; consecutive
 * change sets of one database applied in batches; delta change sets rebuilt against the pending batch,
 * then the port's pages; snapshots when the primary asks for one or when the local copy diverged;
 * reconnects with exponential backoff and jitter. What a replica provides is the port (follower-port.ts).
 *
 * The rules (docs/ARCHITECTURE.md#failure-rules), the same for the Node replica and the Worker:
 * - Re-snapshot only on a typed divergence (`divergenceOf(err)`: a delta whose base is not our page, an
 *   apply that fails verification), never on a wire code. A storage failure (IO_ERROR, DISK_FULL) ends
 *   the session and is retried after the backoff; a corrupt frame or change set ends the session and
 *   the next resumes from the stored position. Either way nothing of the failing frame is applied.
 * - A database whose port says it needs a snapshot is asked for with no position, so the primary
 *   answers `snapshot-needed`; nothing is applied to it meanwhile.
 * - The backoff resets after progress (a batch applied, a snapshot installed) or a session that lasted
 *   more than SESSION_RESET_MS; a session ended on purpose (Restart) reconnects at once.
 * - Two watchdogs end a session: no bytes for `heartbeatTimeoutMs` (heartbeats come every second), and
 *   bytes but no whole frame below MIN_FRAME_BYTES_PER_SEC (a length prefix corrupted upwards makes the
 *   decoder wait for bytes that never form the frame while heartbeats keep trickling in).
 */
import { compilePatterns, type DatabaseMatcher } from './db-pattern.ts';
import { divergenceOf, EdgeliteError } from './errors.ts';
import { backoffDelayMs, decodeStreamChangeSet, readChunks, untilAborted } from './follower-decode.ts';
import type { AppliedCounts, FollowerCoreOptions, FollowerCoreState, FollowerFailure } from './follower-port.ts';
import { FrameDecoder, type Frame } from './frames.ts';
import type { ChangeSet, Position } from './types.ts';

/** MIN_FRAME_BYTES_PER_SEC: below this rate, bytes without a whole frame count as a stalled stream. */
export const MIN_FRAME_BYTES_PER_SEC = 64 * 1024;
/** SESSION_RESET_MS: a session that lasted longer than this ends a run of failures (backoff from the start). */
export const SESSION_RESET_MS = 10_000;

/**
 * Restart ends a stream session on purpose (after a snapshot, or when the followed set changed) so the
 * next one resumes from new positions.
 */
class Restart extends Error {}

export class FollowerCore {
  readonly #o: FollowerCoreOptions;
  #state: FollowerCoreState = 'stopped';
  #abort: AbortController | null = null;
  #loop: Promise<void> | null = null;
  /** When the current session last received bytes, last decoded a whole frame, and the bytes since. */
  #lastBytesAt = 0;
  #lastFrameAt = 0;
  #bytesSinceFrame = 0;
  /** Whether the current session applied a batch or installed a snapshot (the backoff reset). */
  #progress = false;
  /** When the primary last answered at all (any session): what lastContactMs reports. */
  #lastContactAt = 0;
  #connects = 0;
  #rejected = 0;
  #lastFailure: FollowerFailure | null = null;
  #lastFailureCode: string | null = null;
  #wakeSleep: (() => void) | null = null;
  /** Per database since start; kept here because a port may replace its database objects. */
  readonly #applied = new Map<string, AppliedCounts>();
  #databases: '*' | string[];
  /** Which databases this follower applies (names and patterns, shared/db-pattern.ts); null: every one. */
  #followed: DatabaseMatcher | null;
  /** Whether a session runs, whether it is inside a snapshot, and who waits for it to end (follow()). */
  #inSession = false;
  #snapshotting = false;
  #sessionEnded: Array<() => void> = [];

  constructor(options: FollowerCoreOptions) {
    this.#o = options;
    this.#databases = options.databases === '*' ? '*' : [...options.databases];
    this.#followed = options.databases === '*' ? null : compilePatterns(options.databases);
  }

  /** databases is the followed set as the next session will ask for it. */
  get databases(): '*' | readonly string[] {
    return this.#databases;
  }

  get state(): FollowerCoreState {
    return this.#state;
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
    return this.#lastContactAt === 0 ? Number.POSITIVE_INFINITY : Date.now() - this.#lastContactAt;
  }

  /** applied says how many change sets and snapshots this follower applied to `name` since start. */
  applied(name: string): AppliedCounts {
    return { ...(this.#applied.get(name) ?? { changeSets: 0, snapshots: 0 }) };
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
    this.#followed = compilePatterns(names);
    if (!this.#inSession) {
      this.#wakeSleep?.(); // waiting to reconnect: do it now, with the new list
      return Promise.resolve();
    }
    const ended = new Promise<void>((resolve) => this.#sessionEnded.push(resolve));
    if (!this.#snapshotting) this.#abort?.abort(new Restart('followed databases changed'));
    return ended;
  }

  /**
   * reconnect ends the current session, a snapshot download included, and starts the next at once (a
   * wait between sessions is cut short): the primary moved (README.md#high-availability), so nothing
   * more is taken from the one this session talks to.
   */
  reconnect(reason: string): void {
    if (this.#inSession) this.#abort?.abort(new Restart(reason));
    else this.#wakeSleep?.();
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
    this.#wakeSleep?.();
    await this.#loop;
  }

  #follows(name: string): boolean {
    return this.#followed === null || this.#followed(name);
  }

  #stopped(): boolean {
    return this.#state === 'stopped';
  }

  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#stopped()) {
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
        if (this.#stopped()) break;
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

  #note(err: unknown): void {
    const code = err instanceof EdgeliteError ? err.code : null;
    this.#lastFailure = { code, name: err instanceof Error ? err.name : 'Error', message: err instanceof Error ? err.message : String(err) };
    this.#lastFailureCode = code;
  }

  #sleep(ms: number): Promise<void> {
    if (this.#stopped()) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wakeSleep = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wakeSleep = done;
    });
  }

  /** #alive records bytes from the primary: contact, and (for snapshot bytes) the watchdogs' clocks. */
  #alive(frame: boolean): void {
    this.#lastBytesAt = Date.now();
    this.#lastContactAt = this.#lastBytesAt;
    if (frame) {
      this.#lastFrameAt = this.#lastBytesAt;
      this.#bytesSinceFrame = 0;
    }
  }

  async #session(): Promise<void> {
    this.#state = 'connecting';
    const abort = new AbortController();
    this.#abort = abort;
    const { heartbeatTimeoutMs } = this.#o;
    const watchdog = setInterval(() => {
      const now = Date.now();
      if (now - this.#lastBytesAt > heartbeatTimeoutMs) abort.abort(new EdgeliteError('PRIMARY_UNAVAILABLE', 'no heartbeat from the primary'));
      const sinceFrame = now - this.#lastFrameAt;
      if (sinceFrame > heartbeatTimeoutMs && this.#bytesSinceFrame < (MIN_FRAME_BYTES_PER_SEC * sinceFrame) / 1000) {
        abort.abort(new EdgeliteError('PRIMARY_UNAVAILABLE', `no whole frame from the primary for ${sinceFrame} ms`));
      }
    }, Math.max(10, Math.floor(heartbeatTimeoutMs / 4)));
    this.#lastBytesAt = Date.now();
    this.#lastFrameAt = this.#lastBytesAt;
    this.#bytesSinceFrame = 0;
    try {
      const databases = this.#databases === '*' ? '*' : [...this.#databases];
      const body = await untilAborted(this.#o.source.openStream(databases, this.#positions(databases), abort.signal), abort.signal);
      this.#connects++;
      this.#state = 'streaming';
      this.#lastContactAt = Date.now();
      const decoder = new FrameDecoder();
      for await (const chunk of readChunks(body, abort.signal)) {
        const frames = decoder.push(chunk);
        this.#alive(frames.length > 0);
        if (frames.length === 0) this.#bytesSinceFrame += chunk.byteLength;
        await this.#handle(frames);
      }
      decoder.end();
      throw new EdgeliteError('PRIMARY_UNAVAILABLE', 'the primary closed the stream');
    } catch (err) {
      if (abort.signal.aborted && !(err instanceof Restart)) {
        const reason: unknown = abort.signal.reason;
        throw reason instanceof Error ? reason : new EdgeliteError('PRIMARY_UNAVAILABLE', 'stream aborted');
      }
      throw err;
    } finally {
      clearInterval(watchdog);
      abort.abort();
    }
  }

  /** #positions asks the port where each database stands; one that needs a snapshot goes with none. */
  #positions(databases: '*' | string[]): Record<string, Position | null> {
    const out = this.#o.port.positions(databases);
    for (const name of Object.keys(out)) if (this.#o.port.needsSnapshot(name) !== null) out[name] = null;
    return out;
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
        if (!this.#follows(f.db)) continue;
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

  async #decode(name: string, bytes: Uint8Array, pending: ChangeSet[]): Promise<ChangeSet> {
    try {
      return decodeStreamChangeSet(bytes, pending, (pgno) => this.#o.port.readPage(name, pgno));
    } catch (err) {
      await this.#refused(name, err, 'delta change set does not fit the local pages; re-snapshotting');
      throw err;
    }
  }

  async #apply(name: string, batch: ChangeSet[]): Promise<void> {
    const { port } = this.#o;
    if (port.needsSnapshot(name) !== null) return;
    try {
      if (!port.apply(name, batch)) return;
    } catch (err) {
      await this.#refused(name, err, 'apply rejected; re-snapshotting');
      throw err;
    }
    this.#count(name).changeSets += batch.length;
    this.#progress = true;
  }

  /**
   * #refused handles a change set that did not decode or apply: counted, noted, and on a divergence
   * re-snapshotted (ending the session with Restart). Otherwise the caller rethrows: the session ends.
   */
  async #refused(name: string, err: unknown, msg: string): Promise<void> {
    this.#rejected += 1;
    this.#note(err);
    const divergence = divergenceOf(err);
    if (divergence === null) return;
    this.#o.logger({ msg, db: name, divergence, code: this.#lastFailure!.code, error: this.#lastFailure!.message });
    await this.#snapshot(name, this.#lastFailure!.message);
    throw new Restart();
  }

  async #event(f: Frame): Promise<void> {
    const { port, logger } = this.#o;
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
        // Until it is created again (a snapshot resets it): what a bootstrap of it would be told.
        this.#lastFailure = { code: 'DATABASE_NOT_FOUND', name: 'EdgeliteError', message: `database ${f.db} was dropped on the primary` };
        this.#lastFailureCode = 'DATABASE_NOT_FOUND';
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
        if (this.#follows(f.db)) port.markReady(f.db);
        return;
      case 'error':
        // What the primary says (a followed database that does not exist yet) is what the replica reports.
        this.#lastFailure = { code: f.code, name: 'EdgeliteError', message: f.message };
        this.#lastFailureCode = f.code;
        logger({ msg: 'primary reported an error on the stream', code: f.code, error: f.message });
        return;
      case 'changeset':
        return;
    }
  }

  async #snapshot(name: string, reason: string): Promise<void> {
    if (!this.#follows(name)) throw new Restart(`${name} is no longer followed`);
    const signal = this.#abort!.signal;
    this.#state = 'snapshotting';
    this.#snapshotting = true;
    try {
      await this.#o.port.snapshot(name, reason, signal, () => this.#alive(true));
    } finally {
      this.#snapshotting = false;
    }
    this.#alive(true); // installing blocked the event loop: the watchdogs must not count that time
    this.#progress = true;
    this.#lastFailureCode = null;
    this.#count(name).snapshots++;
    if (!this.#stopped()) this.#state = 'streaming';
  }

  #count(name: string): AppliedCounts {
    let c = this.#applied.get(name);
    if (!c) this.#applied.set(name, (c = { changeSets: 0, snapshots: 0 }));
    return c;
  }
}
