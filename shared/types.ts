/**
 * The vocabulary of edgelite, named once. Pure TypeScript: this folder runs in Node and in workerd, so
 * nothing here may import `node:*`, better-sqlite3 or undici.
 */
import { EdgeliteError } from './errors.ts';

/**
 * Txid is a per-database transaction id: strictly increasing by one per committed transaction, and it
 * keeps increasing across generations so tokens stay comparable. A u64 on the wire; a safe integer in
 * JS (2^53 txids is 285 years at a million transactions a second). The first transaction is txid 1;
 * txid 0 is the empty database before anything was captured.
 */
export type Txid = number;

/**
 * Generation counts the times a database's history had to start over from a snapshot (a WAL that could
 * not be verified, a restore). It only says "re-snapshot"; txids continue across it.
 */
export type Generation = number;

/**
 * Checksum is the rolling 64-bit database checksum: the XOR of the page hashes of every page (see
 * checksum.ts). Printed as 16 lowercase hex digits.
 */
export type Checksum = bigint;

/** Position is where a database stands. Compare all three fields, never the txid alone. */
export interface Position {
  generation: Generation;
  txid: Txid;
  checksum: Checksum;
}

/** PageImage is the full content of one database page after a transaction. */
export interface PageImage {
  /** 1-based SQLite page number. */
  pgno: number;
  data: Uint8Array;
}

/**
 * ChangeSet is one committed transaction, or a run of consecutive ones, as page images: applying its
 * pages and truncating the file to `commit` pages turns the database at position
 * (generation, minTxid - 1, preChecksum) into (generation, maxTxid, postChecksum).
 */
export interface ChangeSet {
  /** Random non-zero u32 the primary assigns when it first sees a database; a recreated one differs. */
  databaseId: number;
  pageSize: number;
  generation: Generation;
  minTxid: Txid;
  maxTxid: Txid;
  /** Database size in pages after apply; pages above it are removed. */
  commit: number;
  /** Primary's commit time of the last transaction, ms since the epoch. */
  timestamp: number;
  preChecksum: Checksum;
  postChecksum: Checksum;
  /** Sorted by pgno, no duplicates, none above `commit`, never the lock page. */
  pages: PageImage[];
}

export const TXID_HEX_WIDTH = 16;

/** formatTxid prints a txid the same way everywhere: 16 lowercase hex digits. */
export function formatTxid(txid: Txid): string {
  return txid.toString(16).padStart(TXID_HEX_WIDTH, '0');
}

/** parseTxid reads what formatTxid printed. */
export function parseTxid(text: string): Txid {
  if (!/^[0-9a-f]{16}$/.test(text)) {
    throw new EdgeliteError('BAD_REQUEST', `invalid txid "${text}": want 16 lowercase hex digits`);
  }
  const txid = Number.parseInt(text, 16);
  if (!Number.isSafeInteger(txid)) throw new EdgeliteError('BAD_REQUEST', `txid ${text} is out of range`);
  return txid;
}

/** formatChecksum prints a checksum as 16 lowercase hex digits. */
export function formatChecksum(checksum: Checksum): string {
  return BigInt.asUintN(64, checksum).toString(16).padStart(16, '0');
}

/** parseChecksum reads what formatChecksum printed. */
export function parseChecksum(text: string): Checksum {
  if (!/^[0-9a-f]{16}$/.test(text)) {
    throw new EdgeliteError('BAD_REQUEST', `invalid checksum "${text}": want 16 lowercase hex digits`);
  }
  return BigInt(`0x${text}`);
}

/** positionsEqual compares all three fields. */
export function positionsEqual(a: Position, b: Position): boolean {
  return a.generation === b.generation && a.txid === b.txid && a.checksum === b.checksum;
}

/** PositionJSON is a Position as it travels in JSON bodies. */
export interface PositionJSON {
  generation: Generation;
  txid: Txid;
  checksum: string;
}

export function positionToJSON(p: Position): PositionJSON {
  return { generation: p.generation, txid: p.txid, checksum: formatChecksum(p.checksum) };
}

export function positionFromJSON(p: PositionJSON): Position {
  return { generation: p.generation, txid: p.txid, checksum: parseChecksum(p.checksum) };
}

/**
 * DATABASE_NAME_PATTERN: a database name is a safe file name on every platform: letters, digits, `_`,
 * `-` and `.`, starting with a letter or digit, at most 64 characters. The file is `<name>.db`.
 */
export const DATABASE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const WINDOWS_RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;

/** validateDatabaseName throws INVALID_DATABASE_NAME unless `name` is safe as a file name. */
export function validateDatabaseName(name: unknown): string {
  if (typeof name !== 'string' || !DATABASE_NAME_PATTERN.test(name)) {
    throw new EdgeliteError(
      'INVALID_DATABASE_NAME',
      `invalid database name ${JSON.stringify(name)}: use 1-64 letters, digits, "_", "-" or ".", starting with a letter or digit`,
    );
  }
  if (name.includes('..') || name.endsWith('.') || WINDOWS_RESERVED.test(name)) {
    throw new EdgeliteError('INVALID_DATABASE_NAME', `invalid database name ${JSON.stringify(name)}`);
  }
  if (/-(wal|shm|journal)$/i.test(name)) {
    throw new EdgeliteError('INVALID_DATABASE_NAME', `database name ${JSON.stringify(name)} looks like a SQLite side file`);
  }
  return name;
}

/** concatBytes joins byte pieces into one array (the piece itself when there is one). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
