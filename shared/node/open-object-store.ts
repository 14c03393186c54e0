/**
 * The Node side of opening a backup store: a parsed target (shared/object-store.ts) becomes its
 * ObjectStore (file:// needs node:fs), encrypted with a keyring or plaintext without one
 * (shared/object-crypt.ts), and `--encryption-key-file` is read here, at the edge.
 */
import { readFileSync } from 'node:fs';
import { EdgeliteError } from '../errors.ts';
import { withKeyring } from '../object-crypt.ts';
import { parseKeyring, type Keyring } from '../object-keyring.ts';
import type { BackupTarget, ObjectStore } from '../object-store.ts';
import { S3ObjectStore } from '../object-store-s3.ts';
import { FileObjectStore } from './file-object-store.ts';

/** openObjectStore: with a keyring every object is sealed on put and opened on get; without, an encrypted object read fails BACKUP_KEY_MISMATCH. */
export function openObjectStore(target: BackupTarget, keyring: Keyring | null = null): ObjectStore {
  return withKeyring(target.kind === 'file' ? new FileObjectStore(target.dir) : new S3ObjectStore(target.s3), keyring);
}

/** readKeyring reads `--encryption-key-file PATH`; a file that cannot be read or parsed is MISCONFIGURED naming it. */
export function readKeyring(path: string): Keyring {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new EdgeliteError('MISCONFIGURED', `--encryption-key-file ${path}: ${code === 'ENOENT' ? 'no such file' : `cannot read it (${code ?? String(err)})`}`, { cause: err });
  }
  return parseKeyring(text, path);
}
