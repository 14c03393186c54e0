/**
 * BucketStreamSource is the follower core's stream source (shared/follower-port.ts) for a replica fed
 * from the bucket (`--source`): the same frames the primary sends (shared/frames.ts), built from backup
 * objects, then the primary's own stream from the position they reached, so everything either gives
 * goes through the one core and verifier (docs/ARCHITECTURE.md#apply-rules). One session:
 *
 * 1. Catch up from the bucket (BucketFeed, which verifies every object first): per followed database,
 *    `snapshot-needed` when it has no copy, an older generation than the bucket's newest, or no segment
 *    continues it while a newer snapshot does (the port then reads the snapshot object, see
 *    bucket-snapshots.ts); else one chunk of `changeset` frames per segment continuing it.
 * 2. Open the primary's stream with the positions reached and pass its bytes on unchanged (the live
 *    tail). Positions are compared again when it answers: if the bucket moved the replica meanwhile,
 *    that stream is dropped and another opened from the new positions, so no change set arrives twice.
 * 3. With no primary, or while it cannot be reached: list the bucket every `intervalMs` and pass on what
 *    is new, with a heartbeat at least every BUCKET_HEARTBEAT_MS (the core's watchdog counts bytes), and
 *    retry the primary with the core's backoff (backoffDelayMs), taking its stream as soon as it answers.
 *
 * The heartbeats of bucket mode carry no positions: the bucket does not say where the primary is, so
 * the replica's lag grows from the commit time of the newest txid it holds (shared/lag.ts), which is
 * the truth as far as a reader of the bucket can know it. Worker-safe.
 */
import { compilePatterns, hasPattern, isPattern } from './db-pattern.ts';
import { isStoreFailure, type BucketFeed, type BucketStep } from './bucket-feed.ts';
import type { GenerationBackup } from './backup-layout.ts';
import { backoffDelayMs, readChunks } from './follower-decode.ts';
import type { FollowerPort, StreamBody, StreamSource } from './follower-port.ts';
import { encodeFrame, type Frame } from './frames.ts';
import type { Logger } from './log.ts';
import type { Position } from './types.ts';

/** BUCKET_HEARTBEAT_MS: while the source waits (the bucket's next round, the primary's answer), it sends a heartbeat this often. */
export const BUCKET_HEARTBEAT_MS = 1000;

/** FeedKind is what feeds the replica now: the primary's stream, or the bucket alone. */
export type FeedKind = 'primary' | 'bucket';

/** Positions are what a stream request carries (null: no copy, or one that needs a snapshot). */
type Positions = Record<string, Position | null>;

export interface BucketSourceOptions {
  feed: BucketFeed;
  /** The primary's stream (the primary client), or null: follow the bucket alone. */
  primary: StreamSource | null;
  /** Where the replica stands now, as the core asks for it (streamPositions over the port). */
  positions(databases: '*' | readonly string[]): Positions;
  intervalMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  logger: Logger;
}

/** streamPositions is the port's positions with a database that needs a snapshot at null, as the core sends them. */
export function streamPositions(port: Pick<FollowerPort, 'positions' | 'needsSnapshot'>, databases: '*' | readonly string[]): Positions {
  const out = port.positions(databases);
  for (const name of Object.keys(out)) if (port.needsSnapshot(name) !== null) out[name] = null;
  return out;
}

/** Attempt is one stream request to the primary, settled or not. */
interface Attempt {
  sent: Positions;
  /** Opened right after the primary answered, to confirm positions: the bucket is not read meanwhile. */
  confirm: boolean;
  abort: AbortController;
  settled: { ok: true; body: StreamBody } | { ok: false; err: unknown } | null;
  done: Promise<void>;
}

export class BucketStreamSource implements StreamSource {
  readonly #o: BucketSourceOptions;
  #feeding: FeedKind | null = null;
  #primaryStreams = 0;
  #primaryFailures = 0;
  #lastPrimaryError: string | null = null;
  #bucketDown = false;

  constructor(options: BucketSourceOptions) {
    this.#o = options;
  }

  /** feeding says what feeds the replica now (null until the first session decided). */
  get feeding(): FeedKind | null {
    return this.#feeding;
  }

  /** primaryStreams counts the primary streams taken (each a switch to the live tail). */
  get primaryStreams(): number {
    return this.#primaryStreams;
  }

  /** primaryFailures counts stream requests to the primary that failed while the bucket fed the replica. */
  get primaryFailures(): number {
    return this.#primaryFailures;
  }

  get lastPrimaryError(): string | null {
    return this.#lastPrimaryError;
  }

  openStream(databases: '*' | string[], positions: Positions, signal: AbortSignal): Promise<StreamBody> {
    return Promise.resolve(this.#session(databases, positions, signal));
  }

  async *#session(databases: '*' | string[], first: Positions, signal: AbortSignal): AsyncGenerator<Uint8Array> {
    const { primary, intervalMs, backoffMinMs, backoffMaxMs } = this.#o;
    let positions = first;
    let attempt: Attempt | null = null;
    let failures = 0;
    let nextAttemptAt = 0;
    let nextRoundAt = 0;
    let readySent = false;
    try {
      for (;;) {
        if (signal.aborted) return;
        if (attempt?.settled) {
          const { settled, sent } = attempt;
          if (settled.ok) {
            const now = this.#o.positions(databases);
            if (samePositions(sent, now)) {
              this.#take('primary');
              yield* readChunks(settled.body, attempt.abort.signal);
              return; // the core ends the session: the primary closed its stream
            }
            attempt.abort.abort(new Error('positions moved while the primary answered'));
            positions = now;
            attempt = this.#attempt(databases, now, signal, true);
          } else {
            attempt = null;
            failures++;
            nextAttemptAt = Date.now() + backoffDelayMs(failures - 1, backoffMinMs, backoffMaxMs);
            this.#primaryFailed(settled.err);
          }
        }
        if (attempt?.confirm !== true && Date.now() >= nextRoundAt) {
          nextRoundAt = Date.now() + intervalMs;
          yield* this.#round(databases, positions, signal);
          if (signal.aborted) return;
          positions = this.#o.positions(databases);
          if (primary === null) this.#take('bucket');
          if (!readySent && (primary === null || failures > 0)) {
            readySent = true;
            const ready = Object.keys(positions).filter((db) => positions[db] !== null);
            if (ready.length > 0) yield frames(ready.map((db) => ({ type: 'ready', db })));
          }
        }
        if (primary !== null && attempt === null && Date.now() >= nextAttemptAt) attempt = this.#attempt(databases, positions, signal, false);
        yield frames([{ type: 'heartbeat', time: Date.now(), positions: {} }]);
        await wake(Math.min(BUCKET_HEARTBEAT_MS, Math.max(0, nextRoundAt - Date.now())), attempt?.settled ? undefined : attempt?.done, signal);
      }
    } finally {
      attempt?.abort.abort(new Error('stream session ended'));
    }
  }

  /** #attempt opens the primary's stream from `sent`, on its own signal (dropped when not taken). */
  #attempt(databases: '*' | string[], sent: Positions, signal: AbortSignal, confirm: boolean): Attempt {
    const abort = new AbortController();
    const onAbort = () => abort.abort(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    const a: Attempt = { sent, confirm, abort, settled: null, done: Promise.resolve() };
    const list = databases === '*' ? '*' : [...databases];
    a.done = this.#o.primary!.openStream(list, { ...sent }, abort.signal).then(
      (body) => {
        a.settled = { ok: true, body };
      },
      (err: unknown) => {
        a.settled = { ok: false, err };
      },
    );
    void a.done.finally(() => signal.removeEventListener('abort', onAbort));
    return a;
  }

  /** #round reads the bucket once and yields what each followed database needs from it. */
  async *#round(databases: '*' | string[], positions: Positions, signal: AbortSignal): AsyncGenerator<Uint8Array> {
    const { feed, logger } = this.#o;
    let backups: Map<string, GenerationBackup[]>;
    try {
      // Patterns (README.md#database-patterns): list the whole bucket and keep what matches.
      backups = databases !== '*' && hasPattern(databases) ? filterBackups(await feed.list('*'), compilePatterns(databases)) : await feed.list(databases);
    } catch (err) {
      if (!isStoreFailure(err)) throw err;
      if (!this.#bucketDown) logger({ msg: 'bucket unreachable; retrying every interval', bucket: feed.description, error: (err as Error).message });
      this.#bucketDown = true;
      return;
    }
    if (this.#bucketDown) logger({ msg: 'bucket reachable again', bucket: feed.description });
    this.#bucketDown = false;
    const names = databases === '*' || hasPattern(databases) ? [...new Set([...backups.keys(), ...Object.keys(positions), ...(databases === '*' ? [] : databases.filter((e) => !isPattern(e)))])].sort() : databases;
    for (const db of names) {
      if (signal.aborted) return;
      const gens = backups.get(db);
      const position = positions[db] ?? null;
      const step = feed.step(gens, position);
      if (step.kind === 'snapshot') {
        // The core installs it through the port (which reads the snapshot object) and starts a new session.
        yield frames([{ type: 'snapshot-needed', db, reason: step.reason }]);
        return;
      }
      if (step.kind === 'segments') {
        const next = yield* this.#segments(db, position!, step, gens!);
        if (next !== null) {
          yield frames([{ type: 'snapshot-needed', db, reason: next }]);
          return;
        }
      }
    }
  }

  /**
   * #segments yields one chunk of change-set frames per segment continuing `position`. A refused
   * object ends the run (what follows it would not continue the copy); if a newer snapshot covers it,
   * returns the reason to take that snapshot. A chunk the core did not apply (the database now needs a
   * snapshot) ends it too.
   */
  async *#segments(db: string, position: Position, step: Extract<BucketStep, { kind: 'segments' }>, gens: GenerationBackup[]): AsyncGenerator<Uint8Array, string | null> {
    const { feed, logger } = this.#o;
    let txid = position.txid;
    for (const seg of step.segments) {
      let got;
      try {
        got = await feed.segment(seg, txid);
      } catch (err) {
        if (isStoreFailure(err)) {
          logger({ msg: 'bucket read failed; retrying next round', db, key: seg.key, error: (err as Error).message });
          return null;
        }
        feed.noteRefused(db, seg.key, err);
        const snap = feed.newestSnapshot(gens);
        return snap !== null && snap.generation === position.generation && snap.txid >= seg.maxTxid ? `segment ${seg.key} is damaged; a newer snapshot covers it` : null;
      }
      if (got.length === 0) continue;
      yield frames(got.map((c) => ({ type: 'changeset', db, data: c.bytes })));
      // Resumed: the core has handled the chunk. Count what it applied.
      const last = got.at(-1)!.changeSet.maxTxid;
      const now = this.#o.positions([db])[db] ?? null;
      if (now === null || now.generation !== position.generation || now.txid < last) return null;
      feed.noteApplied(db, got.length);
      // What the bucket applied, it fed: say so now, not only once a primary attempt has failed.
      this.#take('bucket');
      txid = last;
    }
    return null;
  }

  #take(kind: FeedKind): void {
    if (kind === 'primary') this.#primaryStreams++;
    if (this.#feeding === kind) return;
    this.#feeding = kind;
    this.#o.logger(kind === 'primary' ? { msg: 'taking the live tail from the primary' } : { msg: 'following the bucket', bucket: this.#o.feed.description, interval: this.#o.intervalMs });
  }

  #primaryFailed(err: unknown): void {
    this.#primaryFailures++;
    this.#lastPrimaryError = err instanceof Error ? err.message : String(err);
    if (this.#feeding !== 'bucket') this.#o.logger({ msg: 'primary unreachable; following the bucket', error: this.#lastPrimaryError });
    this.#take('bucket');
  }
}

function frames(list: Frame[]): Uint8Array {
  const encoded = list.map(encodeFrame);
  const out = new Uint8Array(encoded.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of encoded) {
    out.set(f, at);
    at += f.length;
  }
  return out;
}

function samePositions(a: Positions, b: Positions): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    const x = a[k] ?? null;
    const y = b[k] ?? null;
    if (x === null || y === null) {
      if (x !== y) return false;
    } else if (x.generation !== y.generation || x.txid !== y.txid || x.checksum !== y.checksum) return false;
  }
  return true;
}

/** wake resolves after `ms`, when `settled` does, or when `signal` aborts, whichever is first. */
function wake(ms: number, settled: Promise<void> | undefined, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    void settled?.then(done);
  });
}

function filterBackups(all: Map<string, GenerationBackup[]>, wanted: (name: string) => boolean): Map<string, GenerationBackup[]> {
  return new Map([...all].filter(([name]) => wanted(name)));
}
