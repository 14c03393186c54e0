/**
 * WorkerFollower keeps one Durable Object's database current: the shared follower core
 * (shared/follower.ts, whose doc comment holds the rules, the same as the Node replica's) over this
 * object's port, WorkerFollowerPort: the stored pages (WorkerReplica, PageStore) and snapshots staged in
 * the page store's staging table. The object's alarm calls `start()` periodically, so a loop that is
 * not running (a new object, an eviction) is started again.
 */
import type { BucketFeed } from '../../../shared/bucket-feed.ts';
import { BucketSnapshots } from '../../../shared/bucket-snapshots.ts';
import { BucketStreamSource, streamPositions } from '../../../shared/bucket-source.ts';
import { FollowerCore } from '../../../shared/follower.ts';
import type { FollowerCoreState, FollowerPort, FollowerTimings, StreamSource } from '../../../shared/follower-port.ts';
import type { StreamPosition } from '../../../shared/frames.ts';
import type { Logger } from '../../../shared/log.ts';
import type { ChangeSet, Position } from '../../../shared/types.ts';
import { SnapshotAssembler } from './apply.ts';
import type { SnapshotHead, SnapshotSink } from '../../../shared/primary-client.ts';
import type { WorkerReplica } from './replica.ts';

/** SnapshotSource is the part of the primary client a snapshot download needs. */
export interface SnapshotSource {
  snapshot(db: string, sink: SnapshotSink, signal?: AbortSignal, onProgress?: () => void): Promise<SnapshotHead>;
}

export interface FollowerOptions extends FollowerTimings {
  client: StreamSource & SnapshotSource;
  replica: WorkerReplica;
  log: Logger;
  /** SOURCE_URL: bootstrap and catch up from the bucket, then take the tail from the primary (shared/bucket-source.ts). */
  bucket?: { feed: BucketFeed; intervalMs: number } | null;
}
/**
 * STAGE_BATCH_BYTES: snapshot pages are written to storage in transactions of this size. Measured in
 * local workerd: one storage transaction per fetch chunk (or per page) staged a 20 MiB snapshot in
 * 10–18 s; batching is what makes it fast, at the cost of this much memory.
 */
export const STAGE_BATCH_BYTES = 4 * 1024 * 1024;

/** FollowerState is what the object's /describe reports as `stream`. */
export type FollowerState = 'idle' | Exclude<FollowerCoreState, 'stopped'>;

export class WorkerFollower {
  readonly #core: FollowerCore;
  /** The bucket source (null without SOURCE_URL): what /describe reports of it. */
  readonly bucket: BucketStreamSource | null = null;

  constructor(options: FollowerOptions) {
    const { replica, client } = options;
    const log: Logger = (e) => options.log({ db: replica.name, ...e });
    let port: WorkerFollowerPort;
    let source: StreamSource = client;
    if (options.bucket) {
      const { feed, intervalMs } = options.bucket;
      port = new WorkerFollowerPort({ client: new BucketSnapshots({ feed, primary: client, local: () => replica.position, logger: log }), replica, log });
      const positions = (dbs: '*' | readonly string[]) => streamPositions(port, dbs);
      this.bucket = new BucketStreamSource({ feed, primary: client, positions, intervalMs, backoffMinMs: options.backoffMinMs, backoffMaxMs: options.backoffMaxMs, logger: log });
      source = this.bucket;
    } else {
      port = new WorkerFollowerPort({ client, replica, log });
    }
    this.#core = new FollowerCore({
      port,
      source,
      databases: [replica.name],
      heartbeatTimeoutMs: options.heartbeatTimeoutMs,
      backoffMinMs: options.backoffMinMs,
      backoffMaxMs: options.backoffMaxMs,
      logger: log,
    });
  }

  get state(): FollowerState {
    const s = this.#core.state;
    return s === 'stopped' ? 'idle' : s;
  }

  get connects(): number {
    return this.#core.connects;
  }

  /** rejected counts change sets refused (corrupt, failing verification) or failing to apply: never applied. */
  get rejected(): number {
    return this.#core.rejected;
  }

  /** lastError is the last failure as `CODE: message`. */
  get lastError(): string | null {
    const f = this.#core.lastFailure;
    return f ? `${f.code ?? f.name}: ${f.message}` : null;
  }

  /** lastErrorCode is the last failure's code until a snapshot is installed (DATABASE_NOT_FOUND at bootstrap). */
  get lastErrorCode(): string | null {
    return this.#core.lastFailureCode;
  }

  get running(): boolean {
    return this.#core.running;
  }

  get lastContactMs(): number {
    return this.#core.lastContactMs;
  }

  /** start runs the follow loop unless it is running. */
  start(): void {
    this.#core.start();
  }
}

/** WorkerFollowerPort is the Worker replica's side of the follower core (shared/follower-port.ts). */
export class WorkerFollowerPort implements FollowerPort {
  readonly #o: { client: SnapshotSource; replica: WorkerReplica; log: Logger };
  readonly #replica: WorkerReplica;

  constructor(o: { client: SnapshotSource; replica: WorkerReplica; log: Logger }) {
    this.#o = o;
    this.#replica = o.replica;
  }

  positions(): Record<string, Position | null> {
    return { [this.#replica.name]: this.#replica.position };
  }

  /** needsSnapshot: also when there is no stored position yet (the bootstrap). */
  needsSnapshot(): string | null {
    const r = this.#replica;
    return r.needsSnapshot ?? (r.position ? null : 'bootstrap');
  }

  readPage(_db: string, pgno: number): Uint8Array | null {
    return this.#replica.store.current(pgno);
  }

  apply(_db: string, batch: ChangeSet[]): boolean {
    this.#replica.apply(batch);
    return true;
  }

  markReady(): void {
    this.#replica.ready = true;
  }

  /** dropped clears the object's storage: the primary dropped its database. */
  dropped(): void {
    this.#replica.drop();
  }

  noteHeartbeat(_time: number, positions: Record<string, StreamPosition>): void {
    const p = positions[this.#replica.name];
    if (p) this.#replica.notePrimary(p);
  }

  /**
   * snapshot downloads a snapshot into the staging table in batches of STAGE_BATCH_BYTES (memory stays
   * bounded), verifies its length and checksum, and only then swaps it in. A failed download leaves
   * the old pages in place and `needsSnapshot` set.
   */
  async snapshot(name: string, reason: string, signal: AbortSignal, onProgress: () => void): Promise<void> {
    const replica = this.#replica;
    const store = replica.store;
    replica.needsSnapshot = reason;
    const started = Date.now();
    let assembler: SnapshotAssembler | null = null;
    let pages: Array<[number, Uint8Array]> = [];
    let bytes = 0;
    const onPage = (pgno: number, data: Uint8Array) => {
      pages.push([pgno, data]);
      bytes += data.length;
    };
    const sink: SnapshotSink = {
      open: async (head) => {
        assembler = new SnapshotAssembler(head.pageSize, head.length);
        store.beginStaging();
      },
      write: async (chunk) => {
        assembler!.push(chunk, onPage);
        if (bytes < STAGE_BATCH_BYTES) return;
        store.stage(pages);
        pages = [];
        bytes = 0;
      },
    };
    const head = await this.#o.client.snapshot(name, sink, signal, onProgress);
    store.stage(pages);
    const sum = (assembler as SnapshotAssembler | null)!.finish(head.position.checksum);
    replica.installSnapshot(head.position, head.databaseId, sum, Date.now());
    this.#o.log({ msg: 'snapshot applied', reason, txid: head.position.txid, bytes: head.length, ms: Date.now() - started });
  }
}
