/**
 * The replica's position, persisted in a JSON sidecar next to its database (`<db>-edgelite.json`), and
 * the rule that decides, on open, which recorded position the database file is really at.
 *
 * Layout (version 1; checksums as 16 hex digits, see formatChecksum):
 *
 *   { "version": 1,
 *     "databaseId": 1234, "pageSize": 4096, "header": { "cookieDelta": 0, "format": 514 },
 *     "committed": { "generation": 1, "txid": 42, "checksum": "…" } | null,
 *     "pending": { "from": PositionJSON | null, "to": PositionJSON,
 *                  "databaseId": …, "pageSize": …, "header": {…} } | null }
 *
 * The top-level databaseId, pageSize and header describe `committed` (null with it). `pending` is
 * written before a SQLite commit and cleared after it: a crash between the two leaves the file at
 * either `committed` or `pending.to`, and the from-scratch checksum of the file tells which (reconcile).
 *
 * The JSON is padded with spaces to RECORD_SIZE bytes, so every record overwrites the previous one
 * whole. Two ways to write it, measured on this machine's ext4 (test/bench/apply.bench.ts):
 * - durable: temp file, fdatasync, rename over the sidecar, fsync the directory. Survives an OS crash.
 * - not durable: one pwrite at offset 0 of the sidecar, kept open (~3 µs, against ~300 µs for a
 *   rename even without fsync: ext4 flushes a file renamed over another). A write of less than a page to a
 *   regular file is not torn by a process crash (SIGKILL), which is what this mode promises; after an
 *   OS crash the record may be stale or torn, and reconcile then finds no matching position and the
 *   replica re-snapshots: never a wrong position, since every position is checked against the file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { EdgeliteError } from '../shared/errors.ts';
import {
  formatChecksum,
  type Position,
  type PositionJSON,
  positionFromJSON,
  positionToJSON,
} from '../shared/types.ts';
import type { HeaderOverride } from './page1-header.ts';

export const POSITION_FILE_VERSION = 1;
export const POSITION_FILE_SUFFIX = '-edgelite.json';
/** RECORD_SIZE: every record is padded to this size (well within one page, so one write is whole). */
export const RECORD_SIZE = 1024;

/** ReplicaState is one state of the replica's database: whose it is, its layout and its position. */
export interface ReplicaState {
  databaseId: number;
  pageSize: number;
  position: Position;
  header: HeaderOverride;
}

/** PositionRecord is the sidecar's content. */
export interface PositionRecord {
  committed: ReplicaState | null;
  pending: { from: Position | null; to: ReplicaState } | null;
}

export interface WriteOptions {
  /** fsync the file and its directory, so the record survives an OS crash, not only a process crash. */
  durable: boolean;
}

/** positionFilePath is the sidecar of the database at `dbPath`. */
export function positionFilePath(dbPath: string): string {
  return `${dbPath}${POSITION_FILE_SUFFIX}`;
}

interface HeaderJSON {
  cookieDelta: number;
  format: number;
}

interface PositionFileJSON {
  version: typeof POSITION_FILE_VERSION;
  databaseId: number | null;
  pageSize: number | null;
  header: HeaderJSON | null;
  committed: PositionJSON | null;
  pending: { from: PositionJSON | null; to: PositionJSON; databaseId: number; pageSize: number; header: HeaderJSON } | null;
}

function toJSON(record: PositionRecord): PositionFileJSON {
  const c = record.committed;
  const p = record.pending;
  return {
    version: POSITION_FILE_VERSION,
    databaseId: c?.databaseId ?? null,
    pageSize: c?.pageSize ?? null,
    header: c ? { ...c.header } : null,
    committed: c ? positionToJSON(c.position) : null,
    pending: p
      ? {
          from: p.from ? positionToJSON(p.from) : null,
          to: positionToJSON(p.to.position),
          databaseId: p.to.databaseId,
          pageSize: p.to.pageSize,
          header: { ...p.to.header },
        }
      : null,
  };
}

function encode(record: PositionRecord): Buffer {
  const json = JSON.stringify(toJSON(record));
  if (json.length >= RECORD_SIZE) {
    throw new EdgeliteError('INTERNAL', `position record of ${json.length} bytes exceeds ${RECORD_SIZE}`);
  }
  return Buffer.from(`${json.padEnd(RECORD_SIZE - 1, ' ')}\n`);
}

/**
 * PositionWriter writes one sidecar again and again. Not durable, it keeps the file open, so a record
 * costs one pwrite; durable, every record is a temp file renamed over the sidecar.
 */
export class PositionWriter {
  readonly file: string;
  readonly #durable: boolean;
  #fd: number | null = null;

  constructor(file: string, options: WriteOptions) {
    this.file = file;
    this.#durable = options.durable;
  }

  /** write replaces the sidecar's record whole (see the module comment for the two modes). */
  write(record: PositionRecord): void {
    const bytes = encode(record);
    try {
      if (this.#durable) writeDurably(this.file, bytes);
      else fs.writeSync(this.#fd ?? this.#open(bytes.length), bytes, 0, bytes.length, 0);
    } catch (err) {
      this.close();
      const code = (err as NodeJS.ErrnoException).code === 'ENOSPC' ? 'DISK_FULL' : 'IO_ERROR';
      throw new EdgeliteError(code, `writing position file ${this.file}: ${(err as Error).message}`, { cause: err });
    }
  }

  close(): void {
    if (this.#fd === null) return;
    const fd = this.#fd;
    this.#fd = null;
    fs.closeSync(fd);
  }

  /** open opens the sidecar for writing in place, cut to one record if something longer was there. */
  #open(size: number): number {
    const fd = fs.openSync(this.file, fs.constants.O_WRONLY | fs.constants.O_CREAT, 0o644);
    this.#fd = fd;
    if (fs.fstatSync(fd).size > size) fs.ftruncateSync(fd, size);
    return fd;
  }
}

/** writePositionFile writes one record (PositionWriter.write). */
export function writePositionFile(file: string, record: PositionRecord, options: WriteOptions): void {
  const writer = new PositionWriter(file, options);
  try {
    writer.write(record);
  } finally {
    writer.close();
  }
}

function writeDurably(file: string, bytes: Buffer): void {
  const temp = `${file}.tmp`;
  const fd = fs.openSync(temp, 'w');
  try {
    fs.writeSync(fd, bytes);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
  fsyncPath(path.dirname(file));
}

/** fsyncPath fsyncs a file or a directory by its path (a directory: so the names made in it survive an OS crash). */
export function fsyncPath(target: string): void {
  const fd = fs.openSync(target, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * readPositionFile returns the sidecar's record, or null when there is none. A sidecar that cannot be
 * parsed throws EdgeliteError IO_ERROR: the caller decides (PageApplier treats it as "no position").
 */
export function readPositionFile(file: string): PositionRecord | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new EdgeliteError('IO_ERROR', `reading position file ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return parseRecord(JSON.parse(text) as unknown);
  } catch (err) {
    throw new EdgeliteError('IO_ERROR', `position file ${file} is malformed: ${(err as Error).message}`, { cause: err });
  }
}

function parseRecord(json: unknown): PositionRecord {
  const o = object(json, 'record');
  if (o.version !== POSITION_FILE_VERSION) throw new Error(`unsupported version ${JSON.stringify(o.version)}`);
  const committed = o.committed === null ? null : state(o, o.committed, 'committed');
  let pending: PositionRecord['pending'] = null;
  if (o.pending !== null) {
    const p = object(o.pending, 'pending');
    pending = { from: p.from === null ? null : position(p.from, 'pending.from'), to: state(p, p.to, 'pending.to') };
  }
  return { committed, pending };
}

function state(owner: Record<string, unknown>, pos: unknown, what: string): ReplicaState {
  const h = object(owner.header, `${what} header`);
  return {
    databaseId: integer(owner.databaseId, `${what} databaseId`),
    pageSize: integer(owner.pageSize, `${what} pageSize`),
    position: position(pos, what),
    header: { cookieDelta: integer(h.cookieDelta, 'cookieDelta'), format: integer(h.format, 'format') },
  };
}

function position(json: unknown, what: string): Position {
  const p = object(json, what);
  return positionFromJSON({
    generation: integer(p.generation, `${what}.generation`),
    txid: integer(p.txid, `${what}.txid`),
    checksum: String(p.checksum),
  });
}

function object(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what} is not an object`);
  return v as Record<string, unknown>;
}

function integer(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new Error(`${what} is not a non-negative integer`);
  return v;
}

/** LocalDatabase is what reconcile needs to know about the database file as it is on disk. */
export interface LocalDatabase {
  pageSize: number | null;
  pageCount: number;
  /** The from-scratch checksum of the file, with page 1 read back through `header` (toPrimaryPage1). */
  checksumWith(header: HeaderOverride): bigint;
}

export interface Reconciled {
  state: ReplicaState | null;
  /** Which record the file matched; 'none' means the replica needs a snapshot. */
  source: 'committed' | 'pending' | 'none';
  reason: string;
}

/**
 * reconcile decides where the database file stands: at `committed` if its checksum says so, else at
 * `pending.to` (a crash after the SQLite commit, before the sidecar's second write), else nowhere
 * known. Never a guess: a position is only returned when the file's checksum equals it.
 */
export function reconcile(record: PositionRecord | null, local: LocalDatabase): Reconciled {
  if (record === null) {
    const reason = local.pageCount > 0 ? `database has ${local.pageCount} pages but no position file` : 'empty database';
    return { state: null, source: 'none', reason };
  }
  const seen: string[] = [];
  const candidates = [
    ['committed', record.committed],
    ['pending', record.pending?.to ?? null],
  ] as const;
  for (const [source, candidate] of candidates) {
    if (candidate === null) continue;
    if (candidate.pageSize !== local.pageSize) {
      seen.push(`${source} wants page size ${candidate.pageSize}, file has ${local.pageSize ?? 'none'}`);
      continue;
    }
    const actual = local.checksumWith(candidate.header);
    if (actual === candidate.position.checksum) return { state: candidate, source, reason: `file matches ${source} position` };
    seen.push(`${source} checksum ${formatChecksum(candidate.position.checksum)}, file ${formatChecksum(actual)}`);
  }
  if (seen.length === 0) return { state: null, source: 'none', reason: 'position file records no position' };
  return { state: null, source: 'none', reason: `file matches no recorded position (${seen.join('; ')})` };
}
