/**
 * WorkerFollower keeps one Durable Object's database current, as the Node replica's Follower does: one
 * long-lived streaming fetch to the primary, resumed from the stored position; consecutive change sets
 * applied in batches; delta change sets rebuilt against the stored pages (a delta whose base is not the
 * stored page is refused like a failed apply); a snapshot when the primary asks for one or when an
 * apply fails verification; reconnects with exponential backoff and jitter; a stream with no bytes for
 * `heartbeatTimeoutMs` is dead. The object's alarm calls `start()` periodically, so a loop that ended (eviction, an exception)
 * is started again.
 */
import { EdgeliteError } from '../../../shared/errors.ts';
import { FrameDecoder, type Frame } from '../../../shared/frames.ts';
import type { ChangeSet } from '../../../shared/types.ts';
import { decodeStreamChangeSet, SnapshotAssembler } from './apply.ts';
import type { FollowerClient as WorkerPrimaryClient } from './client-bridge.ts';
import type { WorkerReplica } from './replica.ts';

export interface FollowerOptions {
  client: WorkerPrimaryClient;
  replica: WorkerReplica;
  heartbeatTimeoutMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  log: (event: Record<string, unknown>) => void;
}

export const BACKOFF_MIN_MS = 50;
export const BACKOFF_MAX_MS = 5000;
/**
 * STAGE_BATCH_BYTES: snapshot pages are written to storage in transactions of this size. Measured in
 * local workerd: one storage transaction per fetch chunk (or per page) staged a 20 MiB snapshot in
 * 10–18 s; batching is what makes it fast, at the cost of this much memory.
 */
export const STAGE_BATCH_BYTES = 4 * 1024 * 1024;

export type FollowerState = 'idle' | 'connecting' | 'streaming' | 'snapshotting' | 'waiting';

/** Restart ends a stream session on purpose (after a snapshot) so the next one resumes from the new position. */
class Restart extends Error {}

export class WorkerFollower {
  readonly #o: FollowerOptions;
  #loop: Promise<void> | null = null;
  #abort: AbortController | null = null;
  #lastBytesAt = 0;
  /** When the primary last answered (not when we last tried): what health reports. */
  #lastContactAt = 0;
  state: FollowerState = 'idle';
  connects = 0;
  /** Change sets or frames refused (corrupt, or failing verification): never applied. */
  rejected = 0;
  lastError: string | null = null;
  lastErrorCode: string | null = null;

  constructor(options: FollowerOptions) {
    this.#o = options;
  }

  get running(): boolean {
    return this.#loop !== null;
  }

  get lastContactMs(): number {
    return this.#lastContactAt === 0 ? Number.POSITIVE_INFINITY : Date.now() - this.#lastContactAt;
  }

  /** start runs the follow loop unless it is running. */
  start(): void {
    if (this.#loop) return;
    this.#loop = this.#run().finally(() => {
      this.#loop = null;
      this.state = 'idle';
    });
  }

  async #run(): Promise<void> {
    const { replica } = this.#o;
    let attempt = 0;
    for (;;) {
      const started = Date.now();
      try {
        if (!replica.position || replica.needsSnapshot) {
          await this.#snapshot(replica.needsSnapshot ?? 'bootstrap', undefined);
        }
        await this.#session();
      } catch (err) {
        if (err instanceof Restart) {
          attempt = 0;
          continue;
        }
        this.lastErrorCode = err instanceof EdgeliteError ? err.code : null;
        this.lastError = err instanceof Error ? `${this.lastErrorCode ?? err.name}: ${err.message}` : String(err);
        this.#o.log({ msg: 'stream ended', db: replica.name, error: this.lastError });
        if (Date.now() - started > 10_000) attempt = 0;
        const base = Math.min(this.#o.backoffMaxMs, this.#o.backoffMinMs * 2 ** Math.min(attempt, 20));
        attempt++;
        this.state = 'waiting';
        await new Promise((r) => setTimeout(r, base / 2 + Math.random() * (base / 2)));
      }
    }
  }

  async #session(): Promise<void> {
    const { client, replica } = this.#o;
    this.state = 'connecting';
    const abort = new AbortController();
    this.#abort = abort;
    this.#lastBytesAt = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - this.#lastBytesAt > this.#o.heartbeatTimeoutMs) abort.abort(new EdgeliteError('PRIMARY_UNAVAILABLE', 'no heartbeat from the primary'));
    }, Math.max(50, Math.floor(this.#o.heartbeatTimeoutMs / 4)));
    try {
      const body = await client.openStream(replica.name, replica.position, abort.signal);
      this.connects++;
      this.#lastContactAt = Date.now();
      this.state = 'streaming';
      const decoder = new FrameDecoder();
      const reader = body.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          this.#lastBytesAt = Date.now();
          this.#lastContactAt = this.#lastBytesAt;
          await this.#handle(decoder.push(value));
        }
      } finally {
        reader.releaseLock();
      }
      decoder.end();
      throw new EdgeliteError('PRIMARY_UNAVAILABLE', 'the primary closed the stream');
    } catch (err) {
      if (abort.signal.aborted && !(err instanceof Restart) && abort.signal.reason instanceof Error) throw abort.signal.reason;
      throw err;
    } finally {
      clearInterval(watchdog);
      abort.abort();
    }
  }

  /** #handle applies a chunk's frames, batching consecutive change sets. */
  async #handle(frames: Frame[]): Promise<void> {
    let batch: ChangeSet[] = [];
    const flush = async () => {
      if (batch.length > 0) await this.#apply(batch);
      batch = [];
    };
    for (const f of frames) {
      if (f.type === 'changeset') {
        if (f.db !== this.#o.replica.name) continue;
        const cs = await this.#decode(f.data, batch);
        if (batch.length > 0 && batch[batch.length - 1]!.maxTxid + 1 !== cs.minTxid) await flush();
        batch.push(cs);
        continue;
      }
      await flush();
      await this.#event(f);
    }
    await flush();
  }

  /**
   * #decode decodes a change set, a delta one against the batch not yet applied or else the stored
   * pages. A corrupt one ends the session (the stream resumes from the stored position). A delta whose
   * base is not our page means this replica is not where the primary thinks: nothing is applied and
   * it re-snapshots, as after a failed apply (the Node replica's Follower does the same).
   */
  async #decode(bytes: Uint8Array, pending: readonly ChangeSet[]): Promise<ChangeSet> {
    const { replica, log } = this.#o;
    try {
      return decodeStreamChangeSet(bytes, pending, (pgno) => replica.store.current(pgno));
    } catch (err) {
      this.rejected++;
      if (!(err instanceof EdgeliteError) || err.code !== 'CHECKSUM_MISMATCH') throw err;
      log({ msg: 'delta change set does not fit the stored pages; re-snapshotting', db: replica.name, code: err.code, error: err.message });
      this.lastError = `${err.code}: ${err.message}`;
      await this.#snapshot(err.message, this.#abort?.signal);
      throw new Restart();
    }
  }

  async #apply(batch: ChangeSet[]): Promise<void> {
    const { replica, log } = this.#o;
    if (replica.needsSnapshot) return;
    try {
      replica.apply(batch);
    } catch (err) {
      this.rejected++;
      const code = err instanceof EdgeliteError ? err.code : 'INTERNAL';
      log({ msg: 'apply rejected; re-snapshotting', db: replica.name, code, error: (err as Error).message });
      this.lastError = `${code}: ${(err as Error).message}`;
      await this.#snapshot((err as Error).message, this.#abort?.signal);
      throw new Restart();
    }
  }

  async #event(f: Frame): Promise<void> {
    const { replica, log } = this.#o;
    switch (f.type) {
      case 'snapshot-needed':
      case 'new-generation':
        if (f.db !== replica.name) return;
        await this.#snapshot(f.type === 'snapshot-needed' ? f.reason : `new generation ${f.generation}`, this.#abort?.signal);
        throw new Restart();
      case 'heartbeat': {
        const p = f.positions[replica.name];
        if (p) replica.notePrimary(p);
        return;
      }
      case 'ready':
        if (f.db === replica.name) replica.ready = true;
        return;
      case 'db-created':
      case 'db-dropped':
        log({ msg: `database ${f.type === 'db-created' ? 'created' : 'dropped'} on the primary`, db: f.db });
        return;
      case 'error':
        log({ msg: 'primary reported an error on the stream', code: f.code, error: f.message });
        return;
      case 'changeset':
        return;
    }
  }

  /**
   * #snapshot downloads a snapshot into the staging table page by page (memory stays bounded), verifies
   * its length and checksum, and only then swaps it in. A failed download leaves the old pages in place.
   * Inside a stream session it runs under the session's signal, and its bytes count as contact for the
   * heartbeat watchdog, so a long download is not mistaken for a dead stream.
   */
  async #snapshot(reason: string, signal: AbortSignal | undefined): Promise<void> {
    const { client, replica, log } = this.#o;
    this.state = 'snapshotting';
    replica.needsSnapshot = reason;
    const started = Date.now();
    const head = await client.snapshot(replica.name, signal);
    const assembler = new SnapshotAssembler(head.pageSize, head.length);
    const store = replica.store;
    store.beginStaging();
    const reader = head.body.getReader();
    let pages: Array<[number, Uint8Array]> = [];
    let bytes = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.#lastBytesAt = Date.now();
        this.#lastContactAt = this.#lastBytesAt;
        assembler.push(value, (pgno, data) => {
          pages.push([pgno, data]);
          bytes += data.length;
        });
        if (bytes >= STAGE_BATCH_BYTES) {
          store.stage(pages);
          pages = [];
          bytes = 0;
        }
      }
      store.stage(pages);
    } finally {
      reader.releaseLock();
    }
    const sum = assembler.finish(head.position.checksum);
    replica.installSnapshot(head.position, head.databaseId, sum, Date.now());
    this.lastErrorCode = null;
    log({ msg: 'snapshot applied', db: replica.name, reason, txid: head.position.txid, bytes: head.length, ms: Date.now() - started });
  }
}
