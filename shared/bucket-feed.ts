/**
 * BucketFeed reads what a primary's continuous backup put in a bucket (docs/FORMAT.md, its backup
 * objects section) for a replica that follows the bucket: one listing per round, what each followed
 * database needs next from it (a snapshot, or the segments continuing its position), and the objects
 * themselves, every one verified by the backup decoders (shared/backup-objects.ts) before a byte of it
 * is handed on. A damaged, truncated or missing object is counted and reported here (log, and the
 * per-database status the replica shows in /metrics and GET /v1/db/{name}), never passed on; the next
 * round reads the bucket again, so a later good object (a re-upload, a newer snapshot) moves on.
 *
 * Worker-safe: only the ObjectStore interface (S3 over fetch in a Worker, a directory on Node).
 */
import { catalog, chainFrom, type GenerationBackup, type SegmentObject, type SnapshotObject } from './backup-layout.ts';
import { corruptObject, decodeSegment, decodeSnapshot, type SnapshotHead } from './backup-objects.ts';
import { changeSetByteLength, readChangeSetHeader } from './changeset-format.ts';
import { EdgeliteError } from './errors.ts';
import type { Logger } from './log.ts';
import type { ObjectStore } from './object-store.ts';
import type { ChangeSet, Position, Txid } from './types.ts';

/** DEFAULT_SOURCE_INTERVAL_MS is how often a replica lists the bucket when it follows it (`--source-interval`). */
export const DEFAULT_SOURCE_INTERVAL_MS = 1000;

/** BucketFailure is the last object of a database the feed refused, and why. */
export interface BucketFailure {
  key: string;
  code: string;
  message: string;
  /** When (ms since the epoch). */
  at: number;
}

/** BucketDbStatus is what the bucket gave one database since start, and what it refused. */
export interface BucketDbStatus {
  /** Change sets from the bucket that the replica applied. */
  changeSets: number;
  /** Snapshots read from the bucket and handed to the replica to install. */
  snapshots: number;
  /** Objects refused: damaged, truncated, missing, or not continuing the replica's position. */
  refused: number;
  lastFailure: BucketFailure | null;
}

/** SegmentChangeSet is one verified change set of a segment with its encoded bytes, as the stream carries them. */
export interface SegmentChangeSet {
  changeSet: ChangeSet;
  bytes: Uint8Array;
}

/** BucketStep is what one database needs from the bucket now. */
export type BucketStep =
  | { kind: 'none' }
  | { kind: 'snapshot'; reason: string; snapshot: SnapshotObject }
  | { kind: 'segments'; segments: SegmentObject[]; generation: GenerationBackup };

/**
 * isStoreFailure tells a failure of the store itself (unreachable, refused, timed out: retry the round)
 * from one of the object read (BACKUP_CORRUPT and the decoders' codes: refuse the object).
 */
export function isStoreFailure(err: unknown): boolean {
  return err instanceof EdgeliteError && (err.code === 'UNAVAILABLE' || err.code === 'IO_ERROR');
}

export class BucketFeed {
  readonly #store: ObjectStore;
  readonly #logger: Logger;
  readonly #status = new Map<string, BucketDbStatus>();
  #listings = 0;

  constructor(store: ObjectStore, logger: Logger) {
    this.#store = store;
    this.#logger = logger;
  }

  /** description names the bucket for logs, never with credentials. */
  get description(): string {
    return this.#store.description;
  }

  /** listings counts the listings of the bucket done (one per round per database list). */
  get listings(): number {
    return this.#listings;
  }

  /** status is what the bucket gave `db` since start. */
  status(db: string): BucketDbStatus {
    const s = this.#status.get(db);
    return s ? { ...s } : { changeSets: 0, snapshots: 0, refused: 0, lastFailure: null };
  }

  /** list reads the backups of `databases` ('*': every database in the bucket), one listing per name. */
  async list(databases: '*' | readonly string[]): Promise<Map<string, GenerationBackup[]>> {
    if (databases === '*') {
      this.#listings++;
      return catalog(await this.#store.list(''));
    }
    const out = new Map<string, GenerationBackup[]>();
    for (const db of databases) {
      this.#listings++;
      const gens = catalog(await this.#store.list(`${db}/`)).get(db);
      if (gens) out.set(db, gens);
    }
    return out;
  }

  /**
   * newestSnapshot is the newest snapshot of the newest generation that has one: what a replica with
   * nothing, or in an older generation, starts from.
   */
  newestSnapshot(gens: readonly GenerationBackup[] | undefined): SnapshotObject | null {
    const g = [...(gens ?? [])].reverse().find((x) => x.snapshots.length > 0);
    return g?.snapshots.at(-1) ?? null;
  }

  /**
   * step says what a database at `position` needs from its backups `gens`: nothing (the bucket holds
   * nothing newer, or only a generation older than the copy's), its newest snapshot (no copy, an older
   * generation, or no segment continues the copy while a newer snapshot exists), or the chain of
   * segments continuing its txid.
   */
  step(gens: readonly GenerationBackup[] | undefined, position: Position | null): BucketStep {
    const snapshot = this.newestSnapshot(gens);
    if (snapshot === null) return { kind: 'none' };
    if (position === null) return { kind: 'snapshot', reason: 'bootstrap from the bucket', snapshot };
    if (position.generation < snapshot.generation) return { kind: 'snapshot', reason: `the bucket holds generation ${snapshot.generation}`, snapshot };
    if (position.generation > snapshot.generation) return { kind: 'none' };
    const g = gens!.find((x) => x.generation === snapshot.generation)!;
    const segments = chainFrom(g, position.txid);
    if (segments.length > 0) return { kind: 'segments', segments, generation: g };
    if (snapshot.txid > position.txid) return { kind: 'snapshot', reason: `no segment in the bucket continues txid ${position.txid}`, snapshot };
    return { kind: 'none' };
  }

  /**
   * segment reads a segment and returns its change sets after `txid`, each verified (checksums,
   * continuity, exactly the range its name says) with its own bytes. BACKUP_CORRUPT when the object is
   * missing, not its listed size, damaged, or holds a change set straddling `txid`.
   */
  async segment(seg: SegmentObject, txid: Txid): Promise<SegmentChangeSet[]> {
    const bytes = await this.#fetch(seg.key, seg.size);
    const changeSets = decodeSegment(seg.key, bytes, seg);
    const out: SegmentChangeSet[] = [];
    let at = 0;
    for (const cs of changeSets) {
      const h = readChangeSetHeader(bytes.subarray(at));
      const length = changeSetByteLength(h.pageSize, h.pageCount);
      if (cs.minTxid <= txid && txid < cs.maxTxid) throw corruptObject(seg.key, `change set ${cs.minTxid}..${cs.maxTxid} straddles txid ${txid}`);
      if (cs.maxTxid > txid) out.push({ changeSet: cs, bytes: bytes.subarray(at, at + length) });
      at += length;
    }
    return out;
  }

  /** snapshot reads and verifies a snapshot object (file checksum, image checksum, its name's position). */
  async snapshot(snap: SnapshotObject): Promise<{ head: SnapshotHead; image: Uint8Array }> {
    const decoded = decodeSnapshot(snap.key, await this.#fetch(snap.key, snap.size));
    const { head } = decoded;
    if (head.generation !== snap.generation || head.txid !== snap.txid) {
      throw corruptObject(snap.key, `holds generation ${head.generation} txid ${head.txid}, its name says ${snap.generation} txid ${snap.txid}`);
    }
    if (head.pageCount === 0) throw corruptObject(snap.key, 'holds no page');
    return decoded;
  }

  /** noteApplied counts change sets of `db` from the bucket that the replica applied. */
  noteApplied(db: string, changeSets: number): void {
    this.#entry(db).changeSets += changeSets;
  }

  /** noteSnapshot counts a snapshot of `db` read from the bucket. */
  noteSnapshot(db: string): void {
    this.#entry(db).snapshots++;
  }

  /**
   * noteRefused records an object of `db` that was not passed on: counted (every read of it), kept as
   * the database's last failure, and logged when it is not the failure logged last (a damaged object
   * read again every round logs once).
   */
  noteRefused(db: string, key: string, err: unknown): void {
    const code = err instanceof EdgeliteError ? err.code : 'INTERNAL';
    const message = err instanceof Error ? err.message : String(err);
    const s = this.#entry(db);
    s.refused++;
    const again = s.lastFailure !== null && s.lastFailure.key === key && s.lastFailure.message === message;
    s.lastFailure = { key, code, message, at: Date.now() };
    if (!again) this.#logger({ msg: 'bucket object refused, not applied', db, key, code, error: message });
  }

  async #fetch(key: string, listedSize: number): Promise<Uint8Array> {
    const bytes = await this.#store.get(key);
    if (bytes === null) throw corruptObject(key, 'listed but missing');
    if (bytes.length !== listedSize) throw corruptObject(key, `${bytes.length} bytes, listed as ${listedSize}`);
    return bytes;
  }

  #entry(db: string): BucketDbStatus {
    let s = this.#status.get(db);
    if (!s) this.#status.set(db, (s = { changeSets: 0, snapshots: 0, refused: 0, lastFailure: null }));
    return s;
  }
}
