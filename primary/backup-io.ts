/**
 * The backup runner's (primary/backup.ts) reads and writes of one database's objects, apart from the
 * segments: what it reads when it picks up a generation, and the snapshot objects it writes.
 */
import { EdgeliteError } from '../shared/errors.ts';
import { catalog, snapshotKey, type GenerationBackup, type SegmentObject, type SnapshotObject } from '../shared/backup-layout.ts';
import { corruptObject, decodeSegment, decodeSnapshot, encodeSnapshot } from '../shared/backup-objects.ts';
import type { Logger } from '../shared/log.ts';
import type { ObjectInfo, ObjectStore } from '../shared/object-store.ts';
import type { Txid } from '../shared/types.ts';
import type { PrimaryDatabase } from './database.ts';

/**
 * readBackedUp is what a runner picking up a database's generation (after a restart, say) reads first:
 * the database's listing, every generation (compaction and retention work from it), and that
 * generation's catalog, after dropping a torn last object (dropTorn).
 */
export async function readBackedUp(objects: ObjectStore, name: string, generation: number, logger: Logger): Promise<{ listed: ObjectInfo[]; g: GenerationBackup | undefined }> {
  const listAll = async (): Promise<{ listed: ObjectInfo[]; g: GenerationBackup | undefined }> => {
    const listed = await objects.list(`${name}/`);
    return { listed, g: catalog(listed).get(name)?.find((x) => x.generation === generation) };
  };
  const first = await listAll();
  return first.g && (await dropTorn(objects, name, first.g, logger)) ? listAll() : first;
}

/**
 * dropTorn checks the object uploaded last in a generation this runner picks up (after a restart,
 * say), and deletes it if it is damaged. An upload the primary died in may have left a torn object on
 * a store whose PUTs are not atomic (S3 and file:// are; some S3-compatible servers, s3rver among
 * them, keep what arrived); continuing the chain past it would make every later txid unrestorable.
 * Only the last one can be torn: the uploads of one database run one after another. Deleted, its
 * change sets upload again from the log, which kept them (they were above the uploaded txid).
 */
async function dropTorn(objects: ObjectStore, name: string, g: GenerationBackup, logger: Logger): Promise<boolean> {
  let last: SegmentObject | SnapshotObject | undefined = g.snapshots.at(-1);
  for (const seg of g.segments.values()) if (last === undefined || seg.maxTxid > (last.kind === 'segment' ? last.maxTxid : last.txid)) last = seg;
  if (last === undefined) return false;
  const bytes = await objects.get(last.key);
  try {
    if (bytes === null || bytes.length !== last.size) throw corruptObject(last.key, bytes === null ? 'listed but missing' : `${bytes.length} bytes, listed as ${last.size}`);
    if (last.kind === 'segment') decodeSegment(last.key, bytes, last);
    else if (decodeSnapshot(last.key, bytes).head.txid !== last.txid) throw corruptObject(last.key, 'holds another txid than its name');
    return false;
  } catch (err) {
    if (!(err instanceof EdgeliteError && err.code === 'BACKUP_CORRUPT')) throw err;
    logger({ msg: 'backup: deleting a damaged last object (an upload cut short)', db: name, key: last.key, store: objects.description, error: err.message });
    await objects.delete(last.key);
    return true;
  }
}

/**
 * snapshotObject is the snapshot object of database `name` at its current position: its key, bytes
 * (the image is read whole: about the database's size in memory), txid and commit time. Throws
 * UNAVAILABLE when the database is no longer in `generation` (a new one started during the backup).
 */
export function snapshotObject(name: string, db: PrimaryDatabase, generation: number | null): { key: string; bytes: Uint8Array; txid: Txid; timestamp: number } {
  const view = db.beginSnapshot();
  const timestamp = db.lastCommitTime;
  try {
    if (view.position.generation !== generation) throw new EdgeliteError('UNAVAILABLE', `database ${name} started a new generation during its backup`);
    const image = view.pageCount === 0 ? new Uint8Array(0) : view.readPages(1, view.pageCount);
    const bytes = encodeSnapshot(
      { pageSize: view.pageSize, databaseId: view.databaseId, generation: view.position.generation, txid: view.position.txid, pageCount: view.pageCount, timestamp, checksum: view.position.checksum },
      image,
    );
    return { key: snapshotKey(name, view.position.generation, view.position.txid, timestamp), bytes, txid: view.position.txid, timestamp };
  } finally {
    view.end();
  }
}
