/** openObjectStore turns a parsed backup target into its ObjectStore (Node side: file:// needs node:fs). */
import { FileObjectStore } from '../shared/node/file-object-store.ts';
import type { BackupTarget, ObjectStore } from '../shared/object-store.ts';
import { S3ObjectStore } from '../shared/object-store-s3.ts';

export function openObjectStore(target: BackupTarget): ObjectStore {
  return target.kind === 'file' ? new FileObjectStore(target.dir) : new S3ObjectStore(target.s3);
}
