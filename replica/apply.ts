/**
 * PageApplier applies change sets and snapshots to a replica's SQLite file through `sqlite_dbpage`
 * (DESIGN §5), verifying checksums before and after, and keeps the replica's position crash-safe in a
 * sidecar (position-file.ts).
 *
 * How a write is done, and why (each fact measured on this machine, see test/unit/apply.test.ts):
 * - One dedicated writer connection, in unsafe mode (sqlite_dbpage refuses writes in defensive mode),
 *   that only ever writes pages: its btree-level state (schema, page count) goes stale under its own
 *   page writes, so it never reads a table or asks PRAGMA page_count; the page count comes from the
 *   change sets.
 * - Every write is ONE autocommit statement, `INSERT INTO sqlite_dbpage SELECT … FROM edgelite_pages()`,
 *   fed by a table-valued function over a JS generator. Within an explicit BEGIN…COMMIT the truncation
 *   row is lost: the release of each statement's savepoint re-reads the page count from the new page 1,
 *   and the truncation (applied at commit only if below that count) is skipped; and page 1 written in
 *   one statement makes the next statement re-read the schema mid-transaction (SQLITE_CORRUPT). One
 *   statement is one transaction: readers see all pages of an apply or none.
 * - Rows go in ascending page order, then page 1, then the truncation row `(commit + 1, NULL)`, because
 *   a page written after the truncation row cancels it.
 * - Page 1 is written as toLocalPage1 makes it (bytes 18–19 = 2 for WAL; schema cookie raised after a
 *   snapshot, see HeaderOverride), and hashed as the primary sent it, so checksums stay the primary's.
 */
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { DatabaseChecksum, imagePages, lockPageNumber } from '../shared/checksum.ts';
import { EdgeliteError, type ErrorCode } from '../shared/errors.ts';
import { type ChangeSet, formatChecksum, type PageImage, type Position } from '../shared/types.ts';
import {
  formatOf,
  type HeaderOverride,
  NO_OVERRIDE,
  pageSizeOf,
  readLocalPages,
  schemaCookieOf,
  toLocalPage1,
  toPrimaryPage1,
  WAL_FORMAT,
} from './page-source.ts';
import {
  type PositionRecord,
  positionFilePath,
  type Reconciled,
  readPositionFile,
  reconcile,
  type ReplicaState,
  writePositionFile,
} from './position-file.ts';

export interface ApplierOptions {
  /** Page size for a replica file created empty, so it can be put in WAL mode at once. */
  pageSizeHint?: number;
  /**
   * fsync the position sidecar (and run SQLite with synchronous=FULL). Off by default: a process crash
   * loses nothing either way, and after an OS crash a replica whose file matches no recorded position
   * re-snapshots. Measured cost in the bench (test/bench/apply.bench.ts).
   */
  durable?: boolean;
  /** Where open() reports why it could not restore a position. Default console.warn. */
  log?: (message: string) => void;
}

export const DEFAULT_DURABLE = false;
export const WRITER_BUSY_TIMEOUT_MS = 5000;
/** WAL_SIZE_LIMIT: after a checkpoint restarts the WAL, it is truncated back to this size. */
export const WAL_SIZE_LIMIT = 4 * 1024 * 1024;
const KNOWN_OPTIONS = ['pageSizeHint', 'durable', 'log'];
const PAGES_FUNCTION = 'edgelite_pages';

/** A row for sqlite_dbpage: a page image, or `[n, null]` to truncate the file to n - 1 pages. */
type Row = [number, Uint8Array | null];

export interface CheckpointResult {
  /** True when a reader kept the checkpoint from finishing (it never waits for readers). */
  busy: boolean;
  walFrames: number;
  checkpointedFrames: number;
}

export class PageApplier {
  readonly path: string;
  readonly #writer: Database.Database;
  readonly #write: Database.Statement;
  readonly #positionFile: string;
  readonly #durable: boolean;
  readonly #log: (message: string) => void;
  #rows: Iterable<Row> = [];
  #state: ReplicaState | null;
  #sum: DatabaseChecksum | null;
  #pageSize: number | null;
  #pageCount: number;
  /** The schema cookie of the page 1 in the file (after HeaderOverride). */
  #localCookie: number;
  #recovery: Reconciled;
  #closed = false;

  private constructor(path: string, writer: Database.Database, options: ApplierOptions) {
    this.path = path;
    this.#writer = writer;
    this.#positionFile = positionFilePath(path);
    this.#durable = options.durable ?? DEFAULT_DURABLE;
    const rows = () => this.#rows;
    writer.table(PAGES_FUNCTION, { columns: ['pgno', 'data'], rows: function* () { yield* rows(); } });
    this.#write = writer.prepare(`INSERT INTO sqlite_dbpage(pgno, data) SELECT pgno, data FROM ${PAGES_FUNCTION}()`);
    const local = readFromScratch(path);
    let record: PositionRecord | null = null;
    const log = options.log ?? ((message: string) => console.warn(message));
    this.#log = log;
    try {
      record = readPositionFile(this.#positionFile);
    } catch (err) {
      log(`edgelite: ${path}: ignoring position file: ${(err as Error).message}`);
    }
    const page1 = local.page1;
    const sum = local.sum;
    this.#recovery = reconcile(record, {
      pageSize: local.pageSize,
      pageCount: local.pageCount,
      checksumWith(header) {
        if (!sum || !page1) return 0n;
        sum.setPage(1, toPrimaryPage1(page1, header));
        return sum.value;
      },
    });
    this.#state = this.#recovery.state;
    if (sum && page1) sum.setPage(1, toPrimaryPage1(page1, this.#state?.header ?? NO_OVERRIDE));
    this.#sum = sum;
    this.#pageSize = local.pageSize;
    this.#pageCount = local.pageCount;
    this.#localCookie = page1 ? schemaCookieOf(page1) : 0;
    if (this.#recovery.source === 'none' && (record !== null || local.pageCount > 0)) {
      log(`edgelite: ${path}: no position, a snapshot is needed: ${this.#recovery.reason}`);
    }
    if (record !== null && (this.#recovery.source !== 'committed' || record.pending !== null)) {
      this.#persist({ committed: this.#state, pending: null });
    }
  }

  /**
   * open opens (creating if absent) the replica database at `path` and reconciles its from-scratch
   * checksum with the position sidecar: the position is the recorded one the file really matches, or
   * null (a snapshot is needed; `recovery.reason` says why).
   */
  static open(path: string, options: ApplierOptions = {}): PageApplier {
    for (const key of Object.keys(options)) {
      if (!KNOWN_OPTIONS.includes(key)) throw new EdgeliteError('BAD_REQUEST', `unknown PageApplier option "${key}"`);
    }
    const hint = options.pageSizeHint;
    if (hint !== undefined && !isPageSize(hint)) {
      throw new EdgeliteError('BAD_REQUEST', `invalid pageSizeHint ${hint}: want a power of two in 512..65536`);
    }
    let writer: Database.Database;
    try {
      writer = new Database(path, { timeout: WRITER_BUSY_TIMEOUT_MS });
    } catch (err) {
      throw sqliteError(err, `opening ${path}`);
    }
    try {
      writer.unsafeMode(true);
      writer.pragma(`synchronous = ${options.durable ?? DEFAULT_DURABLE ? 'FULL' : 'NORMAL'}`);
      writer.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`);
      // An empty file takes its page size from the first snapshot, unless told now: the WAL switch
      // writes page 1 and fixes the page size.
      if (fs.statSync(path).size > 0) setWalMode(writer);
      else if (hint !== undefined) setWalMode(writer, hint);
      return new PageApplier(path, writer, options);
    } catch (err) {
      writer.close();
      throw err instanceof EdgeliteError ? err : sqliteError(err, `opening ${path}`);
    }
  }

  /** position is where the replica stands; null when it has no data it can vouch for. */
  get position(): Position | null {
    return this.#state?.position ?? null;
  }

  get databaseId(): number | null {
    return this.#state?.databaseId ?? null;
  }

  get pageSize(): number | null {
    return this.#pageSize;
  }

  get pageCount(): number {
    return this.#pageCount;
  }

  /** checksum is the database checksum as the primary computes it (page 1 as the primary has it). */
  get checksum(): bigint {
    return this.#sum?.value ?? 0n;
  }

  /** headerOverride says how the file's page 1 differs from the primary's (see toPrimaryPage1). */
  get headerOverride(): HeaderOverride {
    return this.#state?.header ?? NO_OVERRIDE;
  }

  /** recovery tells how open() found the position. */
  get recovery(): Reconciled {
    return this.#recovery;
  }

  /**
   * apply applies consecutive change sets in one write transaction (pages merged: last image wins,
   * pages above the final commit dropped) and returns the new position. Before anything is written it
   * checks database id, generation, page size, txid continuity and the pre-apply checksum (POSITION_MISMATCH
   * or CHECKSUM_MISMATCH, `details.reason` saying which check), and each post-apply checksum computed
   * on a copy of the in-memory checksum (CHECKSUM_MISMATCH). On any error the file and position are
   * unchanged.
   */
  apply(changeSets: readonly ChangeSet[]): Position {
    this.#checkOpen();
    const state = this.#state;
    if (state === null || this.#sum === null) throw mismatch('no-position', 'replica has no position: it needs a snapshot');
    if (changeSets.length === 0) throw new EdgeliteError('BAD_REQUEST', 'apply needs at least one change set');
    const sum = this.#sum.clone();
    const merged = new Map<number, Uint8Array>();
    let txid = state.position.txid;
    let commit = this.#pageCount;
    for (const cs of changeSets) {
      checkChangeSet(cs, state, txid);
      if (cs.preChecksum !== sum.value) {
        throw new EdgeliteError('CHECKSUM_MISMATCH', `change set ${cs.minTxid}..${cs.maxTxid} expects checksum ${formatChecksum(cs.preChecksum)}, replica has ${formatChecksum(sum.value)}`, { details: { reason: 'pre-checksum', txid: cs.minTxid } });
      }
      for (const page of cs.pages) {
        sum.setPage(page.pgno, page.data);
        merged.set(page.pgno, page.data);
      }
      sum.truncate(cs.commit);
      if (sum.value !== cs.postChecksum) {
        throw new EdgeliteError('CHECKSUM_MISMATCH', `change set ${cs.minTxid}..${cs.maxTxid} gives checksum ${formatChecksum(sum.value)}, it claims ${formatChecksum(cs.postChecksum)}`, { details: { reason: 'post-checksum', txid: cs.maxTxid } });
      }
      if (cs.commit < commit) for (const pgno of merged.keys()) if (pgno > cs.commit) merged.delete(pgno);
      txid = cs.maxTxid;
      commit = cs.commit;
    }
    const last = changeSets[changeSets.length - 1]!;
    const primaryPage1 = merged.get(1);
    const header = primaryPage1 ? { cookieDelta: state.header.cookieDelta, format: formatOf(primaryPage1) } : state.header;
    const localPage1 = primaryPage1 && needsOverride(primaryPage1, header) ? toLocalPage1(primaryPage1, header) : primaryPage1;
    const rows: Row[] = [];
    for (const pgno of [...merged.keys()].sort((a, b) => a - b)) if (pgno !== 1) rows.push([pgno, merged.get(pgno)!]);
    if (localPage1) rows.push([1, localPage1]);
    if (commit < this.#pageCount) rows.push([commit + 1, null]);
    const to: ReplicaState = { ...state, header, position: { generation: state.position.generation, txid, checksum: last.postChecksum } };
    this.#persist({ committed: state, pending: { from: state.position, to } });
    try {
      this.#run(rows);
    } catch (err) {
      this.#clearPending(state);
      throw err;
    }
    this.#state = to;
    this.#sum = sum;
    this.#pageCount = commit;
    if (localPage1 && schemaCookieOf(localPage1) !== this.#localCookie) {
      this.#localCookie = schemaCookieOf(localPage1);
      this.#dropWriterCache();
    }
    this.#persist({ committed: to, pending: null });
    return to.position;
  }

  /**
   * restoreSnapshot replaces the whole database with `image` (a database file's bytes, or its pages in
   * ascending order) at `position`, in one sqlite_dbpage transaction on the existing file, so readers
   * that have it open (in any process) go from the old database to the new one. The image's checksum
   * must equal `position.checksum` (else CHECKSUM_MISMATCH, nothing changes).
   *
   * The schema cookie: an unrelated image may carry a schema cookie at or below the file's, and then
   * connections that cached the old schema keep it. So the file gets the image's cookie plus a
   * `cookieDelta` that puts it above the current one, and keeps that delta for every later page 1
   * (HeaderOverride). The checksum hashes page 1 with the primary's cookie, so the position stored is
   * exactly the primary's and every later pre-apply check stays exact; the delta is persisted with the
   * position so a reopen computes the same from-scratch checksum.
   */
  restoreSnapshot(image: Uint8Array | Iterable<PageImage>, position: Position, databaseId: number): Position {
    this.#checkOpen();
    if (!Number.isInteger(databaseId) || databaseId <= 0 || databaseId > 0xffffffff) {
      throw new EdgeliteError('BAD_REQUEST', `invalid database id ${databaseId}: want a non-zero u32`);
    }
    let pages: Iterable<PageImage> = image as Iterable<PageImage>;
    let pageSize: number | null = null;
    if (image instanceof Uint8Array) {
      pageSize = image.length >= 100 ? pageSizeOf(image) : 0;
      if (!isPageSize(pageSize) || image.length % pageSize !== 0) {
        throw new EdgeliteError('BAD_REQUEST', `snapshot of ${image.length} bytes is not a database file`);
      }
      pages = imagePages(image, pageSize);
    }
    const iterator = pages[Symbol.iterator]();
    const first = iterator.next();
    if (first.done) throw new EdgeliteError('BAD_REQUEST', 'snapshot has no pages');
    pageSize ??= first.value.data.length;
    if (!isPageSize(pageSize)) throw new EdgeliteError('BAD_REQUEST', `snapshot page of ${pageSize} bytes`);
    if (this.#pageSize === null) {
      setWalMode(this.#writer, pageSize);
      this.#pageSize = pageSize;
      this.#pageCount = 1;
    } else if (this.#pageSize !== pageSize) {
      throw mismatch('page-size', `snapshot has ${pageSize}-byte pages, the replica file ${this.#pageSize}: a new replica file is needed`);
    }
    const sum = new DatabaseChecksum(pageSize);
    const lockPage = lockPageNumber(pageSize);
    const previous = this.#state;
    const oldCount = this.#pageCount;
    const out: { next?: { state: ReplicaState; count: number; cookie: number } } = {};
    const self = this;
    function* rows(): Generator<Row> {
      let expected = 1;
      let page1: Uint8Array | null = null;
      for (let item = first; !item.done; item = iterator.next()) {
        const { pgno, data } = item.value;
        if (pgno === lockPage) continue;
        if (expected === lockPage) expected++;
        if (pgno !== expected || data.length !== pageSize) {
          throw new EdgeliteError('BAD_REQUEST', `snapshot page ${pgno} (${data.length} bytes) where page ${expected} (${pageSize} bytes) was due`);
        }
        expected++;
        sum.setPage(pgno, data);
        if (pgno === 1) page1 = new Uint8Array(data); // a copy: Buffer#slice would be a view
        else yield [pgno, data];
      }
      if (page1 === null) throw new EdgeliteError('BAD_REQUEST', 'snapshot has no page 1');
      if (sum.value !== position.checksum) {
        throw new EdgeliteError('CHECKSUM_MISMATCH', `snapshot checksum is ${formatChecksum(sum.value)}, position says ${formatChecksum(position.checksum)}`, { details: { reason: 'snapshot-checksum' } });
      }
      const count = expected - 1;
      const cookie = schemaCookieOf(page1);
      const cookieDelta = cookie > self.#localCookie ? 0 : (self.#localCookie + 1 - cookie) >>> 0;
      const header = { cookieDelta, format: formatOf(page1) };
      const state: ReplicaState = { databaseId, pageSize: pageSize!, position: { ...position }, header };
      // Written here, inside the statement, because the header is known only now and the commit follows.
      self.#persist({ committed: previous, pending: { from: previous?.position ?? null, to: state } });
      out.next = { state, count, cookie: (cookie + cookieDelta) >>> 0 };
      yield [1, toLocalPage1(page1, header)];
      if (count < oldCount) yield [count + 1, null];
    }
    try {
      this.#run(rows());
    } catch (err) {
      if (out.next) this.#clearPending(previous);
      throw err;
    }
    const done = out.next;
    if (!done) throw new EdgeliteError('INTERNAL', 'snapshot restore committed without reaching page 1');
    this.#state = done.state;
    this.#sum = sum;
    this.#pageCount = done.count;
    this.#localCookie = done.cookie;
    this.#dropWriterCache();
    this.#persist({ committed: done.state, pending: null });
    return done.state.position;
  }

  /**
   * checkpoint runs `wal_checkpoint(TRUNCATE)` without waiting for readers: with a reader in the WAL it
   * copies what it can and reports `busy`. The file shrinks after a truncating apply only here.
   */
  checkpoint(): CheckpointResult {
    this.#checkOpen();
    try {
      this.#writer.pragma('busy_timeout = 0');
      const [row] = this.#writer.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number; log: number; checkpointed: number }>;
      return { busy: row?.busy === 1, walFrames: row?.log ?? 0, checkpointedFrames: row?.checkpointed ?? 0 };
    } catch (err) {
      throw sqliteError(err, `checkpointing ${this.path}`);
    } finally {
      this.#writer.pragma(`busy_timeout = ${WRITER_BUSY_TIMEOUT_MS}`);
    }
  }

  /**
   * fileChecksum reads the whole file again through a short-lived read connection and returns its
   * checksum as the primary would compute it: a scrub that must equal `checksum`.
   */
  fileChecksum(): bigint {
    this.#checkOpen();
    const local = readFromScratch(this.path);
    if (!local.sum || !local.page1) return 0n;
    local.sum.setPage(1, toPrimaryPage1(local.page1, this.headerOverride));
    return local.sum.value;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#writer.close();
  }

  #run(rows: Iterable<Row>): void {
    this.#rows = rows;
    try {
      this.#write.run();
    } catch (err) {
      throw err instanceof EdgeliteError ? err : sqliteError(err, `writing pages to ${this.path}`);
    } finally {
      this.#rows = [];
    }
  }

  /**
   * dropWriterCache empties the writer's page cache after the schema cookie changed. The writer's next
   * statement then reloads the schema (SQLite does so on a cookie change, for any statement), and it
   * must read the pages fresh: the cached ones still carry the b-tree parse of their old content,
   * which sqlite_dbpage overwrote underneath, and reading the schema through them failed with
   * SQLITE_CORRUPT ("malformed database schema") in test/unit/apply.test.ts.
   */
  #dropWriterCache(): void {
    this.#writer.pragma('shrink_memory');
  }

  #persist(record: PositionRecord): void {
    writePositionFile(this.#positionFile, record, { durable: this.#durable });
  }

  /**
   * clearPending drops the pending record after a failed write. If that fails too, the stale pending
   * record is harmless (reopen reconciles by checksum), so the write's own error is the one thrown.
   */
  #clearPending(committed: ReplicaState | null): void {
    try {
      this.#persist({ committed, pending: null });
    } catch (err) {
      this.#log(`edgelite: ${this.path}: could not clear the pending position: ${(err as Error).message}`);
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new EdgeliteError('UNAVAILABLE', `replica ${this.path} is closed`);
  }
}

function checkChangeSet(cs: ChangeSet, state: ReplicaState, txid: number): void {
  if (cs.databaseId !== state.databaseId) {
    throw mismatch('database-id', `change set is for database ${cs.databaseId}, replica follows ${state.databaseId}`);
  }
  if (cs.generation !== state.position.generation) {
    throw mismatch('generation', `change set is from generation ${cs.generation}, replica is at ${state.position.generation}`);
  }
  if (cs.pageSize !== state.pageSize) throw mismatch('page-size', `change set has page size ${cs.pageSize}, replica ${state.pageSize}`);
  if (cs.minTxid !== txid + 1 || cs.maxTxid < cs.minTxid) {
    throw mismatch('txid', `change set ${cs.minTxid}..${cs.maxTxid} does not follow txid ${txid}`);
  }
  const lockPage = lockPageNumber(cs.pageSize);
  if (!Number.isInteger(cs.commit) || cs.commit < 1) throw corrupt(cs, `commit ${cs.commit}`);
  for (const { pgno, data } of cs.pages) {
    if (!Number.isInteger(pgno) || pgno < 1 || pgno > cs.commit || pgno === lockPage || data.length !== cs.pageSize) {
      throw corrupt(cs, `page ${pgno} of ${data.length} bytes (commit ${cs.commit})`);
    }
  }
}

function corrupt(cs: ChangeSet, what: string): EdgeliteError {
  return new EdgeliteError('CORRUPT_CHANGESET', `change set ${cs.minTxid}..${cs.maxTxid} has an invalid ${what}`);
}

function mismatch(reason: string, message: string): EdgeliteError {
  return new EdgeliteError('POSITION_MISMATCH', message, { details: { reason } });
}

function needsOverride(page1: Uint8Array, header: HeaderOverride): boolean {
  return header.cookieDelta !== 0 || formatOf(page1) !== WAL_FORMAT;
}

function isPageSize(n: number): boolean {
  return Number.isInteger(n) && n >= 512 && n <= 65536 && (n & (n - 1)) === 0;
}

function setWalMode(db: Database.Database, pageSize?: number): void {
  if (pageSize !== undefined) db.pragma(`page_size = ${pageSize}`);
  const mode = String(db.pragma('journal_mode = WAL', { simple: true })).toLowerCase();
  if (mode !== 'wal') throw new EdgeliteError('IO_ERROR', `could not put ${db.name} in WAL mode (got ${mode})`);
}

interface FromScratch {
  pageSize: number | null;
  pageCount: number;
  /** Checksum of every page but page 1, which the caller sets (it depends on the HeaderOverride). */
  sum: DatabaseChecksum | null;
  page1: Uint8Array | null;
}

/** readFromScratch reads every page of the file through a short-lived read-only connection. */
function readFromScratch(path: string): FromScratch {
  let reader: Database.Database;
  try {
    reader = new Database(path, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw sqliteError(err, `opening ${path} to read its pages`);
  }
  try {
    let sum: DatabaseChecksum | null = null;
    let page1: Uint8Array | null = null;
    const { pageSize, pageCount } = readLocalPages(reader, ({ pgno, data }) => {
      sum ??= new DatabaseChecksum(data.length);
      if (pgno === 1) page1 = new Uint8Array(data); // a copy: Buffer#slice would be a view
      else sum.setPage(pgno, data);
    });
    return { pageSize, pageCount, sum, page1 };
  } catch (err) {
    throw err instanceof EdgeliteError ? err : sqliteError(err, `reading pages of ${path}`);
  } finally {
    reader.close();
  }
}

const SQLITE_CODES: Array<[prefix: string, code: ErrorCode]> = [
  ['SQLITE_BUSY', 'BUSY'],
  ['SQLITE_LOCKED', 'BUSY'],
  ['SQLITE_FULL', 'DISK_FULL'],
  ['SQLITE_IOERR', 'IO_ERROR'],
  ['SQLITE_CANTOPEN', 'IO_ERROR'],
  ['SQLITE_CORRUPT', 'IO_ERROR'],
  ['SQLITE_NOTADB', 'IO_ERROR'],
];

function sqliteError(err: unknown, op: string): EdgeliteError {
  const sqlCode = String((err as { code?: unknown }).code ?? '');
  const code = SQLITE_CODES.find(([prefix]) => sqlCode.startsWith(prefix))?.[1] ?? 'INTERNAL';
  return new EdgeliteError(code, `${op}: ${(err as Error).message}`, { cause: err, details: { sqliteCode: sqlCode } });
}
