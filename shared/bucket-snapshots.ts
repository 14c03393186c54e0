/**
 * The snapshot path of a replica fed from the bucket (`--source`, bucket-source.ts): BucketSnapshots is
 * the snapshot source a follower port downloads through (the Node port into its temp file, the
 * Worker's into its staging table). It reads the bucket's snapshot object instead of downloading one
 * from the primary when that brings the copy forward. Worker-safe.
 */
import type { SnapshotObject } from './backup-layout.ts';
import { isStoreFailure, type BucketFeed } from './bucket-feed.ts';
import { EdgeliteError } from './errors.ts';
import type { Logger } from './log.ts';
import type { SnapshotHead, SnapshotSink } from './primary-client.ts';
import type { Position } from './types.ts';

/** SnapshotSource is the part of the primary client a snapshot download needs (the shape both ports take). */
export interface SnapshotSource {
  snapshot(db: string, sink: SnapshotSink, signal?: AbortSignal, onProgress?: () => void): Promise<SnapshotHead>;
}

/** SINK_CHUNK_BYTES is how much of a bucket snapshot's image is handed to the sink per write. */
const SINK_CHUNK_BYTES = 1024 * 1024;

export interface BucketSnapshotsOptions {
  feed: BucketFeed;
  /** The primary's snapshots, or null (no --primary). */
  primary: SnapshotSource | null;
  /** Where the local copy of a database stands, or null. */
  local(db: string): Position | null;
  logger: Logger;
}

/**
 * BucketSnapshots is the port's snapshot source. The bucket's newest snapshot is taken when there is
 * no primary, or when it is newer than the local copy (a bootstrap, a new generation in the bucket);
 * otherwise (the copy diverged where the bucket cannot help) the primary's. Either one failing, the
 * other is tried. The object is verified whole (shared/bucket-feed.ts) before the sink sees a byte, so
 * a damaged one leaves the sink unopened for the primary's download.
 */
export class BucketSnapshots implements SnapshotSource {
  readonly #o: BucketSnapshotsOptions;

  constructor(options: BucketSnapshotsOptions) {
    this.#o = options;
  }

  async snapshot(db: string, sink: SnapshotSink, signal?: AbortSignal, onProgress?: () => void): Promise<SnapshotHead> {
    const { feed, primary } = this.#o;
    let snap: SnapshotObject | null;
    try {
      snap = feed.newestSnapshot((await feed.list([db])).get(db));
    } catch (err) {
      // The bucket unreachable: the primary's snapshot, if there is a primary.
      if (primary === null || !isStoreFailure(err)) throw err;
      this.#o.logger({ msg: 'bucket unreachable for a snapshot; downloading from the primary', db, error: (err as Error).message });
      snap = null;
    }
    const local = this.#o.local(db);
    const newer = snap !== null && (local === null || snap.generation > local.generation || (snap.generation === local.generation && snap.txid > local.txid));
    if (snap !== null && (primary === null || newer)) {
      try {
        return await this.#fromBucket(db, snap, sink, onProgress);
      } catch (err) {
        if (primary === null) throw err;
        this.#o.logger({ msg: 'bucket snapshot unusable; downloading from the primary', db, key: snap.key, error: (err as Error).message });
      }
      return primary.snapshot(db, sink, signal, onProgress);
    }
    if (primary === null) throw new EdgeliteError('NOT_RESTORABLE', `the bucket ${feed.description} holds no snapshot of database ${db}`, { details: { reason: 'no-backup' } });
    try {
      return await primary.snapshot(db, sink, signal, onProgress);
    } catch (err) {
      if (snap === null || !(err instanceof EdgeliteError) || err.code !== 'PRIMARY_UNAVAILABLE' || signal?.aborted) throw err;
      this.#o.logger({ msg: 'primary unreachable for a snapshot; taking the bucket one', db, key: snap.key });
      return this.#fromBucket(db, snap, sink, onProgress);
    }
  }

  async #fromBucket(db: string, snap: SnapshotObject, sink: SnapshotSink, onProgress?: () => void): Promise<SnapshotHead> {
    const { feed } = this.#o;
    let decoded;
    try {
      decoded = await feed.snapshot(snap);
    } catch (err) {
      if (!isStoreFailure(err)) feed.noteRefused(db, snap.key, err);
      throw err;
    }
    const { head, image } = decoded;
    const out: SnapshotHead = { position: { generation: head.generation, txid: head.txid, checksum: head.checksum }, databaseId: head.databaseId, pageSize: head.pageSize, length: image.length };
    await sink.open(out);
    for (let at = 0; at < image.length; at += SINK_CHUNK_BYTES) {
      await sink.write(image.subarray(at, Math.min(image.length, at + SINK_CHUNK_BYTES)));
      onProgress?.();
    }
    feed.noteSnapshot(db);
    this.#o.logger({ msg: 'snapshot read from the bucket', db, key: snap.key, txid: head.txid, generation: head.generation });
    return out;
  }
}
