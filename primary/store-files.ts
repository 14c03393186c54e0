/**
 * The files of one database in the primary's data directory, read or removed without opening it
 * (docs/ARCHITECTURE.md#many-databases): a closed database's file served as its snapshot, and a dropped
 * database's files deleted.
 */
import { closeSync, fsyncSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileSignature, type ClosedRecord } from './closed-record.ts';
import { stateDir } from './meta.ts';

/**
 * CLOSED_IMAGE_MAX_BYTES: the largest closed database whose snapshot is its file read whole into memory
 * (a 1 MiB tenant is one read); a larger one is opened and streamed from a read transaction.
 */
export const CLOSED_IMAGE_MAX_BYTES = 4 * 1024 * 1024;

/**
 * readClosedImage returns a closed database's file as the snapshot at its closed record's position,
 * without opening SQLite (the first snapshots of thousands of closed tenants then cost a read each, not
 * an open and a close), or null when that cannot be vouched for: too large, a WAL present (it may hold
 * commits the file does not: the close deletes it after a full checkpoint), a size other than the
 * record's, or the file's signature other than the record's before or after the read (a foreign writer
 * meanwhile). The replica verifies the image's checksum against the position as for any snapshot.
 */
export function readClosedImage(path: string, record: ClosedRecord, maxBytes = CLOSED_IMAGE_MAX_BYTES): Uint8Array | null {
  const length = record.pageCount * record.pageSize;
  const untouched = () => fileSignature(`${path}-wal`) === null && fileSignature(path) === record.file;
  if (length === 0 || length > maxBytes || !untouched()) return null;
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch {
    return null;
  }
  return bytes.length === length && untouched() ? bytes : null;
}

/** removeFiles deletes a database's file, WAL, SHM and state directory (log and meta), durably. */
export function removeFiles(dataDir: string, name: string): void {
  const path = join(dataDir, `${name}.db`);
  for (const suffix of ['-wal', '-shm', '']) rmSync(`${path}${suffix}`, { force: true });
  rmSync(stateDir(dataDir, name), { recursive: true, force: true });
  const fd = openSync(dataDir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
