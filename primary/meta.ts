/**
 * DatabaseMeta is what the primary keeps beside a database's log: its id and where the current
 * generation started. Written atomically (temp file, fsync, rename, directory fsync).
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { EdgeliteError } from '../shared/errors.ts';
import { formatChecksum } from '../shared/types.ts';
import type { WalCursor } from './wal-reader.ts';

export interface DatabaseMeta {
  version: 1;
  databaseId: number;
  generation: number;
  /** Position where this generation starts (a snapshot point): txid, checksum (hex) and WAL cursor. */
  startTxid: number;
  startChecksum: string;
  startCursor: WalCursor | null;
  /** Why this generation started (for people reading the file). */
  reason: string;
}

/** newMeta is the meta of a database that has no generation yet (recovery starts generation 1). */
export function newMeta(): DatabaseMeta {
  return { version: 1, databaseId: newDatabaseId(), generation: 0, startTxid: 0, startChecksum: formatChecksum(0n), startCursor: null, reason: 'created' };
}

export function readMeta(path: string): DatabaseMeta | null {
  if (!existsSync(path)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new EdgeliteError('LOG_CORRUPT', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  const m = parsed as Partial<DatabaseMeta>;
  if (m.version !== 1 || typeof m.databaseId !== 'number' || typeof m.generation !== 'number' ||
      typeof m.startTxid !== 'number' || typeof m.startChecksum !== 'string') {
    throw new EdgeliteError('LOG_CORRUPT', `${path} is not an edgelite meta file`);
  }
  return m as DatabaseMeta;
}

export function writeMeta(path: string, meta: DatabaseMeta): void {
  writeFileDurably(path, `${JSON.stringify(meta, null, 2)}\n`);
}

/** writeFileDurably replaces `path` atomically and durably. */
export function writeFileDurably(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dfd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/** newDatabaseId picks a random non-zero u32. */
export function newDatabaseId(): number {
  const a = new Uint32Array(1);
  do crypto.getRandomValues(a);
  while (a[0] === 0);
  return a[0]!;
}
