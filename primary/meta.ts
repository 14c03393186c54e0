/**
 * DatabaseMeta is what the primary keeps beside a database's log: its id and where the current
 * generation started. Written atomically (temp file, fsync, rename, directory fsync).
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { GenerationStart } from '../shared/consistency.ts';
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
  /**
   * The generations this database went through, oldest first, the current one last (at most
   * MAX_GENERATION_STARTS): what a token from an older generation is checked against (TOKEN_LOST,
   * docs/ARCHITECTURE.md#tokens-and-consistency). Absent in files written before it: the current
   * generation's start alone.
   */
  generations?: GenerationStart[];
}

/** MAX_GENERATION_STARTS bounds the history kept in the meta file (an older token's loss may then go unnoticed). */
export const MAX_GENERATION_STARTS = 64;

/** stateDir is where the primary keeps a database's meta file and log: `<dataDir>/.edgelite/<name>`. */
export function stateDir(dataDir: string, name: string): string {
  return join(dataDir, '.edgelite', name);
}

/** metaPath is the meta file of database `name` in a data directory. */
export function metaPath(dataDir: string, name: string): string {
  return join(stateDir(dataDir, name), 'meta.json');
}

/** generationStarts is the meta's generation history, with the current generation last. */
export function generationStarts(meta: DatabaseMeta): GenerationStart[] {
  const list = (meta.generations ?? []).filter((g) => g.generation < meta.generation);
  if (meta.generation > 0) list.push({ generation: meta.generation, startTxid: meta.startTxid });
  return list.slice(-MAX_GENERATION_STARTS);
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
