/**
 * The seam between the one follower core (follower.ts) and a replica: what a replica provides so the
 * core can keep it current (docs/ARCHITECTURE.md#the-data-path). The Node replica implements it over
 * its store of SQLite files (replica/follower.ts), the Worker over its Durable Object's page store
 * (deploy/worker/src/follower.ts); a unit test over a fake. Worker-safe: no Node imports.
 */
import type { StreamPosition } from './frames.ts';
import type { Logger } from './log.ts';
import type { ChangeSet, Position } from './types.ts';

/**
 * FollowerPort is what a replica must provide. Every method but `snapshot` is synchronous: the core
 * calls them between frames, and SQLite work is synchronous.
 */
export interface FollowerPort {
  /** positions says where each followed database stands (`'*'`: every local one), for the stream request. */
  positions(databases: '*' | readonly string[]): Record<string, Position | null>;
  /**
   * needsSnapshot says why a database's copy cannot take change sets (a snapshot was cut, its stored
   * pages failed verification at boot), or null. The core asks for such a database with no position,
   * so the primary answers `snapshot-needed`, and applies nothing to it until then.
   */
  needsSnapshot(db: string): string | null;
  /** readPage returns the committed local image of a page (a delta change set's base), or null. */
  readPage(db: string, pgno: number): Uint8Array | null;
  /**
   * apply applies consecutive change sets of one database in one transaction. Returns false when there
   * is no local copy to apply them to. A verification failure throws an error carrying a `divergence`
   * (shared/errors.ts); anything else thrown (IO_ERROR, DISK_FULL, CORRUPT_CHANGESET) is not one.
   */
  apply(db: string, batch: ChangeSet[]): boolean;
  /**
   * snapshot downloads and installs a snapshot of `db` (the port owns the download and where it is
   * staged), or throws and leaves `needsSnapshot(db)` set. `onProgress` is called as bytes arrive: the
   * core's watchdog counts them as contact. `signal` aborts the download when the session ends.
   */
  snapshot(db: string, reason: string, signal: AbortSignal, onProgress: () => void): Promise<void>;
  /** markReady records that a database caught up with the primary (the `ready` frame). */
  markReady(db: string): void;
  /**
   * dropped hears that the primary dropped a database (the `db-dropped` frame, DELETE /v1/db/{name}):
   * the replica deletes its copy (the Node replica its files, the Worker its object's storage). A port
   * without it keeps the copy, read-only.
   */
  dropped?(db: string): void;
  /** noteHeartbeat records what the primary's heartbeat says of each database (for lag). */
  noteHeartbeat(time: number, positions: Record<string, StreamPosition>): void;
}

/** StreamBody is a stream response body: Node's client yields an async iterable, fetch a ReadableStream. */
export type StreamBody = AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>;

/** StreamSource opens the replication stream (the primary client's `openStream`). */
export interface StreamSource {
  openStream(databases: '*' | string[], positions: Record<string, Position | null>, signal: AbortSignal): Promise<StreamBody>;
}

export interface FollowerCoreOptions extends FollowerTimings {
  port: FollowerPort;
  source: StreamSource;
  /** What the stream follows at the start; a list can be changed later with follow(). */
  databases: '*' | string[];
  logger: Logger;
  /** How many snapshots download at once (follower-snapshots.ts); default CORE_BOOTSTRAP_CONCURRENCY (1). */
  bootstrapConcurrency?: number;
}

/** FollowerTimings are the core's clocks, which each replica's configuration sets. */
export interface FollowerTimings {
  /** A session with no bytes for this long is dead; one with bytes but no whole frame too (follower.ts). */
  heartbeatTimeoutMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
}

export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 5000;
export const DEFAULT_BACKOFF_MIN_MS = 50;
export const DEFAULT_BACKOFF_MAX_MS = 5000;

/** FollowerCoreState: `waiting` is the backoff between sessions; `stopped` before start and after stop. */
export type FollowerCoreState = 'stopped' | 'connecting' | 'streaming' | 'snapshotting' | 'waiting';

/** AppliedCounts are what the core applied to one database since start (the Node replica's /metrics). */
export interface AppliedCounts {
  changeSets: number;
  snapshots: number;
}

/** FollowerFailure is the last failure the core saw: a session's end, a refused change set, an error frame. */
export interface FollowerFailure {
  /** The EdgeliteError code (or the stream's error frame code); null for another error. */
  code: string | null;
  /** The error's name (`Error`, `TypeError`) when there is no code. */
  name: string;
  message: string;
}
