/**
 * The closed record (docs/ARCHITECTURE.md#many-databases): what the primary writes beside a database's
 * log when it closes it (idle, or at shutdown), so that a closed database costs no connection, descriptor
 * or page cache, and opening it again is cheap:
 *
 * - `closed.json`: its position, commit time, size and the file signatures of `<name>.db` and its WAL
 *   taken under the close's write barrier (nothing else could commit meanwhile);
 * - `pages`: its per-page hashes at that position (DatabaseChecksum.toBytes, docs/FORMAT.md#page-hash-file).
 *
 * On open, a record whose signatures still match the files (and whose position is the log's) is trusted:
 * the checksum comes from `pages` instead of a read of every page. Any other change (a foreign writer, a
 * crash while open) falls back to full recovery, which may then diff the file against `pages` to log one
 * change set instead of starting a new generation. `closed.json` is deleted when the database opens
 * (dropClosedRecord: asynchronously; the signatures keep a record not yet deleted from being trusted).
 */
import { readFileSync, renameSync, rm, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseChecksum } from '../shared/checksum.ts';
import type { GenerationStart } from '../shared/consistency.ts';
import { parseChecksum, type Position } from '../shared/types.ts';
import type { DbInfo } from './store.ts';

/** FileSignature identifies one version of a file: inode, size, and mtime/ctime in ns (ctime cannot be set back). */
export type FileSignature = string | null;

export interface ClosedRecord {
  version: 1;
  databaseId: number;
  generation: number;
  txid: number;
  /** The database checksum at (generation, txid), hex. */
  checksum: string;
  /** Commit time of the newest captured transaction (ms). */
  timestamp: number;
  pageSize: number;
  pageCount: number;
  /** The generation history (DatabaseMeta's), for token checks while closed. */
  generations: GenerationStart[];
  /** Signatures of `<name>.db` and `<name>.db-wal` at close (null: absent). */
  file: FileSignature;
  wal: FileSignature;
}

export function closedRecordPath(stateDir: string): string {
  return join(stateDir, 'closed.json');
}

export function pageHashPath(stateDir: string): string {
  return join(stateDir, 'pages');
}

/** fileSignature of `path` now, or null when it does not exist. */
export function fileSignature(path: string): FileSignature {
  const st = statSync(path, { bigint: true, throwIfNoEntry: false });
  return st ? `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : null;
}

/**
 * unchangedSince: the database file and its WAL are as the record left them. A WAL that was deleted
 * since (SQLite deletes it when the last connection closes, after checkpointing nothing new) is
 * unchanged too, as long as the database file is.
 */
export function unchangedSince(record: ClosedRecord, dbPath: string): boolean {
  if (fileSignature(dbPath) !== record.file) return false;
  const wal = fileSignature(`${dbPath}-wal`);
  return wal === null || wal === record.wal;
}

/**
 * walUntouchedSinceOpen: the WAL is as it was before our connections opened (`before`, its signature
 * then). Opening a WAL database creates an empty WAL when there is none, so "absent before, empty now"
 * is untouched too; a foreign commit meanwhile would have written frames (docs/ARCHITECTURE.md#many-databases).
 */
export function walUntouchedSinceOpen(before: FileSignature, walPath: string): boolean {
  const now = fileSignature(walPath);
  return now === before || (before === null && (now === null || now.split(':')[1] === '0'));
}

/** A closed database's info, made once per record: streams' heartbeats and the status page read every one each second. */
const closedInfos = new WeakMap<ClosedRecord, DbInfo>();

export function recordInfo(name: string, r: ClosedRecord): DbInfo {
  let info = closedInfos.get(r);
  if (!info) {
    info = { name, databaseId: r.databaseId, position: recordPosition(r), pageSize: r.pageSize, pageCount: r.pageCount, lastCommitTime: r.timestamp, generations: r.generations };
    closedInfos.set(r, info);
  }
  return info;
}

export function recordPosition(record: ClosedRecord): Position {
  return { generation: record.generation, txid: record.txid, checksum: parseChecksum(record.checksum) };
}

/** readClosedRecord returns the record, or null when there is none or it cannot be read (then: full recovery). */
export function readClosedRecord(stateDir: string): ClosedRecord | null {
  let raw: string;
  try {
    raw = readFileSync(closedRecordPath(stateDir), 'utf8');
  } catch {
    return null;
  }
  try {
    const r = JSON.parse(raw) as ClosedRecord;
    const ints = [r.databaseId, r.generation, r.txid, r.timestamp, r.pageSize, r.pageCount];
    if (r.version !== 1 || !ints.every(Number.isSafeInteger) || typeof r.checksum !== 'string' || !Array.isArray(r.generations)) return null;
    parseChecksum(r.checksum);
    return r;
  } catch {
    return null; // a torn or foreign file: never trusted
  }
}

/**
 * writeClosedRecord writes the page hashes, then the record, each through a temp file and a rename.
 * Neither is fsynced: both are hints checked on use (the signatures against the files, the hashes
 * against the position and its checksum), so one lost in a crash costs a full recovery, never a wrong
 * state; and a shutdown closing thousands of databases does not wait for thousands of fsyncs.
 */
export function writeClosedRecord(stateDir: string, record: ClosedRecord, checksum: DatabaseChecksum): void {
  atomicWrite(pageHashPath(stateDir), withPosition(checksum.toBytes(), record));
  atomicWrite(closedRecordPath(stateDir), new TextEncoder().encode(JSON.stringify(record)));
}

/**
 * dropClosedRecord: the database is open now; a record left on disk would describe a past state. The
 * unlink runs off the event loop (a metadata write the journal makes slow, on the path of every first
 * request to a closed tenant). Until it lands, or if it fails, the record is still never trusted wrongly:
 * any commit of ours changes the WAL's or the file's signature (the open creates an empty WAL where the
 * close left none), and its position must also be the log's. An unlink that lands after the next close
 * removes that close's record: a full recovery at the next open, never a wrong state.
 */
export function dropClosedRecord(stateDir: string): void {
  rm(closedRecordPath(stateDir), { force: true }, () => {});
}

/**
 * readPageHashes returns the hashes stored for exactly `pos` (generation, txid, checksum), or null
 * (absent, another position, damaged).
 */
export function readPageHashes(stateDir: string, pos: Position): DatabaseChecksum | null {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(pageHashPath(stateDir));
  } catch {
    return null;
  }
  if (bytes.length < POSITION_BYTES) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== PAGES_MAGIC) return null;
  const generation = view.getUint32(4, true);
  const txid = Number(view.getBigUint64(8, true));
  const checksum = view.getBigUint64(16, true);
  if (generation !== pos.generation || txid !== pos.txid || checksum !== pos.checksum) return null;
  try {
    const sum = DatabaseChecksum.fromBytes(bytes.subarray(POSITION_BYTES));
    return sum.value === pos.checksum ? sum : null;
  } catch {
    return null;
  }
}

const PAGES_MAGIC = 0x45504831; // "EPH1"
const POSITION_BYTES = 24;

function withPosition(hashes: Uint8Array, r: ClosedRecord): Uint8Array {
  const out = new Uint8Array(POSITION_BYTES + hashes.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, PAGES_MAGIC, true);
  view.setUint32(4, r.generation, true);
  view.setBigUint64(8, BigInt(r.txid), true);
  view.setBigUint64(16, parseChecksum(r.checksum), true);
  out.set(hashes, POSITION_BYTES);
  return out;
}

function atomicWrite(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}
