/**
 * openSourceStore opens the object store a bucket-fed Node replica reads (`--source`): the one place it
 * is made, so a wrapper (decryption) goes around it here.
 */
import { FileObjectStore } from '../shared/node/file-object-store.ts';
import type { BackupTarget, ObjectStore } from '../shared/object-store.ts';
import { S3ObjectStore } from '../shared/object-store-s3.ts';

export function openSourceStore(target: BackupTarget): ObjectStore {
  return target.kind === 'file' ? new FileObjectStore(target.dir) : new S3ObjectStore(target.s3);
}
