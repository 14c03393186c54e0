/**
 * Follower keeps the Node replica current: the shared follower core (shared/follower.ts, whose doc
 * comment holds the rules) over this replica's port, NodeFollowerPort: its store of SQLite files
 * (replica/store.ts), snapshots downloaded to a temp file (snapshot-file.ts) and a new local file when
 * a snapshot has another page size (store.recreate). With a bucket source (`--source`) the core's stream
 * source is a BucketStreamSource (shared/bucket-source.ts) around the primary client, and the port's
 * snapshots come from the bucket first (shared/bucket-snapshots.ts).
 */
import { EdgeliteError } from '../shared/errors.ts';
import type { BucketFeed } from '../shared/bucket-feed.ts';
import { BucketSnapshots } from '../shared/bucket-snapshots.ts';
import { BucketStreamSource, streamPositions } from '../shared/bucket-source.ts';
import { FollowerCore } from '../shared/follower.ts';
import type { FollowerPort, FollowerTimings, StreamSource } from '../shared/follower-port.ts';
import type { StreamPosition } from '../shared/frames.ts';
import type { Logger } from '../shared/log.ts';
import type { ChangeSet, Position } from '../shared/types.ts';
import type { PrimaryClient } from '../shared/primary-client.ts';
import { downloadSnapshot, snapshotTempPath, type ProgressTerminal, type SnapshotSource } from './snapshot-file.ts';
import type { ReplicaStore } from './store.ts';

export { DEFAULT_BACKOFF_MAX_MS, DEFAULT_BACKOFF_MIN_MS, DEFAULT_HEARTBEAT_TIMEOUT_MS } from '../shared/follower-port.ts';
/** `--bootstrap-concurrency`: snapshots the Node replica downloads at once (shared/follower-snapshots.ts). */
export const DEFAULT_BOOTSTRAP_CONCURRENCY = 8;

export interface FollowerOptions extends FollowerTimings {
  /** The primary, or null for a replica that follows a bucket alone (`bucket` is then required). */
  client: PrimaryClient | null;
  /** A bucket to bootstrap and catch up from (`--source`), listed every `intervalMs` while it feeds. */
  bucket?: { feed: BucketFeed; intervalMs: number } | null;
  store: ReplicaStore;
  /** What the stream follows at the start; a list can be changed later with follow(). */
  databases: '*' | string[];
  logger: Logger;
  /** How many snapshots download at once (default DEFAULT_BOOTSTRAP_CONCURRENCY). */
  bootstrapConcurrency?: number;
  /** Where a large snapshot download draws its progress bar, if a terminal (replica/snapshot-file.ts). */
  terminal?: ProgressTerminal | undefined;
}

/** FollowerState is what /health and /metrics report; a snapshot is part of `streaming` here. */
export type FollowerState = 'connecting' | 'streaming' | 'waiting' | 'stopped';

export class Follower {
  readonly #core: FollowerCore;
  /** The bucket source (null without --source) and its feed: what /metrics and GET /v1/db report of it. */
  readonly bucket: BucketStreamSource | null;
  readonly feed: BucketFeed | null;

  constructor(options: FollowerOptions) {
    const { client, store, logger } = options;
    let port: NodeFollowerPort;
    let source: StreamSource;
    if (options.bucket) {
      const { feed, intervalMs } = options.bucket;
      port = new NodeFollowerPort(new BucketSnapshots({ feed, primary: client, local: (db) => store.get(db)?.position ?? null, logger }), store, logger, options.terminal);
      const positions = (dbs: '*' | readonly string[]) => streamPositions(port, dbs);
      const bucket = new BucketStreamSource({ feed, primary: client, positions, intervalMs, backoffMinMs: options.backoffMinMs, backoffMaxMs: options.backoffMaxMs, logger });
      source = bucket;
      this.bucket = bucket;
      this.feed = feed;
    } else {
      if (client === null) throw new EdgeliteError('INTERNAL', 'a follower needs a primary or a bucket');
      port = new NodeFollowerPort(client, store, logger, options.terminal);
      source = client;
      this.bucket = null;
      this.feed = null;
    }
    this.#core = new FollowerCore({
      port,
      source,
      databases: options.databases,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs,
      backoffMinMs: options.backoffMinMs,
      backoffMaxMs: options.backoffMaxMs,
      logger: options.logger,
      bootstrapConcurrency: options.bootstrapConcurrency ?? DEFAULT_BOOTSTRAP_CONCURRENCY,
    });
  }

  /** databases is the followed set as the next session will ask for it. */
  get databases(): '*' | readonly string[] {
    return this.#core.databases;
  }

  /** follow replaces the followed list (lazy replicas); see FollowerCore.follow. */
  follow(names: string[]): Promise<void> {
    return this.#core.follow(names);
  }

  /** reconnect ends the stream session now and opens the next at once (the lease holder changed); see FollowerCore.reconnect. */
  reconnect(reason: string): void {
    this.#core.reconnect(reason);
  }

  /** applied says how many change sets and snapshots this follower applied to `name` since start. */
  applied(name: string): { changeSets: number; snapshots: number } {
    return this.#core.applied(name);
  }

  get state(): FollowerState {
    const s = this.#core.state;
    return s === 'snapshotting' ? 'streaming' : s;
  }

  get connects(): number {
    return this.#core.connects;
  }

  /** snapshots counts the snapshot downloads running and queued (--bootstrap-concurrency bounds the first). */
  get snapshots(): { running: number; queued: number } {
    return this.#core.snapshots;
  }

  get lastError(): string | null {
    return this.#core.lastFailure?.message ?? null;
  }

  /** lastContactMs is how long ago the primary last sent anything (heartbeats arrive every second). */
  get lastContactMs(): number {
    return this.#core.lastContactMs;
  }

  start(): void {
    this.#core.start();
  }

  stop(): Promise<void> {
    return this.#core.stop();
  }
}

/** NodeFollowerPort is the Node replica's side of the follower core (shared/follower-port.ts). */
export class NodeFollowerPort implements FollowerPort {
  readonly #client: SnapshotSource;
  readonly #store: ReplicaStore;
  readonly #logger: Logger;
  readonly #terminal: ProgressTerminal | undefined;

  constructor(client: SnapshotSource, store: ReplicaStore, logger: Logger, terminal?: ProgressTerminal) {
    this.#client = client;
    this.#store = store;
    this.#logger = logger;
    this.#terminal = terminal;
  }

  positions(databases: '*' | readonly string[]): Record<string, Position | null> {
    return this.#store.positions(databases === '*' ? '*' : [...databases]);
  }

  needsSnapshot(db: string): string | null {
    return this.#store.get(db)?.needsSnapshot ?? null;
  }

  readPage(db: string, pgno: number): Uint8Array | null {
    return this.#store.get(db)?.readPage(pgno) ?? null;
  }

  apply(db: string, batch: ChangeSet[]): boolean {
    const local = this.#store.get(db);
    if (!local) return false;
    local.apply(batch);
    return true;
  }

  markReady(db: string): void {
    const local = this.#store.get(db);
    if (local) local.ready = true;
  }

  /** dropped deletes the local copy of a database the primary dropped (store.drop: file, WAL, SHM, sidecar). */
  dropped(db: string): void {
    this.#store.drop(db);
  }

  noteHeartbeat(time: number, positions: Record<string, StreamPosition>): void {
    this.#store.noteHeartbeat(time, positions);
  }

  /**
   * snapshot downloads a snapshot to a temp file (verified against its position as it arrives), takes
   * it (the file itself when there is no local file yet, else its pages: ReplicaDatabase.takeSnapshot)
   * and removes the temp name, whatever happens. A file of another page size takes a new local file
   * (store.recreate), fed from the same download.
   */
  async snapshot(name: string, reason: string, signal: AbortSignal, onProgress: () => void): Promise<void> {
    const store = this.#store;
    const db = store.ensure(name);
    db.needsSnapshot = reason;
    const started = Date.now();
    const file = await downloadSnapshot(this.#client, name, snapshotTempPath(db.path), { signal, onProgress, logger: this.#logger, terminal: this.#terminal });
    const downloaded = Date.now();
    const { position, length } = file.head;
    let how: 'file' | 'pages';
    try {
      try {
        how = db.takeSnapshot(file, Date.now());
      } catch (err) {
        if (!(err instanceof EdgeliteError) || err.details?.reason !== 'page-size') throw err;
        how = store.recreate(name).takeSnapshot(file, Date.now());
      }
    } finally {
      file.remove();
    }
    const done = Date.now();
    this.#logger({ msg: 'snapshot applied', db: name, reason, how, txid: position.txid, generation: position.generation, bytes: length, ms: done - started, downloadMs: downloaded - started, applyMs: done - downloaded });
  }
}
