/**
 * PageApplier applies change sets and snapshots to a replica's SQLite file through `sqlite_dbpage`
 * (docs/ARCHITECTURE.md#apply-rules), verifying checksums before and after, and keeps the replica's position crash-safe in a
 * sidecar (position-file.ts).
 *
 * How a write is done, and why (each fact measured on this machine, see test/unit/apply.test.ts):
 * - One dedicated writer connection, in unsafe mode (sqlite_dbpage refuses writes in defensive mode),
 *   that only ever writes pages: its btree-level state (schema, page count) goes stale under its own
 *   page writes, so it never reads a table or asks PRAGMA page_count; the page count comes from the
 *   change sets. Not reading tables is not enough: SQLite itself reloads the writer's schema after
 *   every schema cookie change, through cached pages whose b-tree parse is stale, so the writer's
 *   cache is dropped whenever the cookie changes (dropWriterCache).
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
 * - The writer may be unable to write: SQLite opens a file it may not write read-only without a word,
 *   and the connection stays so (page-writer.ts). Every write first reopens such a writer (#writable).
 */
import { DatabaseChecksum } from '../shared/checksum.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { lockPageNumber } from '../shared/page-size.ts';
import { type ChangeSet, formatChecksum, type PageImage, type Position } from '../shared/types.ts';
import { advanceBatch, checkBatch, noPosition, positionMismatch } from '../shared/verify.ts';
import { formatOf, type HeaderOverride, needsOverride, NO_OVERRIDE, schemaCookieOf, toLocalPage1, toPrimaryPage1 } from './page1-header.ts';
import { readFromScratch } from './page-reader.ts';
import { type PositionRecord, PositionWriter, positionFilePath, type Reconciled, readPositionFile, reconcile, type ReplicaState } from './position-file.ts';
import { type ApplierOptions, checkApplierOptions, DEFAULT_DURABLE } from './apply-options.ts';
import { snapshotInput } from './apply-checks.ts';
import { type CheckpointResult, PageWriter, type Row } from './page-writer.ts';
import { fileSignature } from './sqlite-file.ts';
import { type InstallableSnapshot, isEmptyFile } from './snapshot-file.ts';

export { type ApplierOptions, DEFAULT_DURABLE, WRITER_BUSY_TIMEOUT_MS } from './apply-options.ts';
export type { CheckpointResult } from './page-writer.ts';

export class PageApplier {
  readonly path: string;
  readonly #writer: PageWriter;
  readonly #sidecar: PositionWriter;
  readonly #log: (message: string) => void;
  readonly #closeReaders: () => void;
  readonly #durable: boolean;
  #state: ReplicaState | null = null;
  #sum: DatabaseChecksum | null = null;
  #pageSize: number | null = null;
  #pageCount = 0;
  /** The schema cookie of the page 1 in the file (after HeaderOverride). */
  #localCookie = 0;
  #recovery: Reconciled = { state: null, source: 'none', reason: 'not read yet' };
  #closed = false;
  /** The file's signature when suspend() closed the writer (the next write reopens it cheaply while it matches), or null. */
  #suspended: string | null = null;

  private constructor(path: string, writer: PageWriter, options: ApplierOptions) {
    this.path = path;
    this.#writer = writer;
    this.#durable = options.durable ?? DEFAULT_DURABLE;
    this.#sidecar = new PositionWriter(positionFilePath(path), { durable: this.#durable });
    const log = options.log ?? ((message: string) => console.warn(message));
    this.#log = log;
    this.#closeReaders = options.closeReaders ?? (() => {});
    let record: PositionRecord | null = null;
    try {
      record = readPositionFile(this.#sidecar.file);
    } catch (err) {
      log(`edgelite: ${path}: ignoring position file: ${(err as Error).message}`);
    }
    this.#load(record);
    if (this.#recovery.source === 'none' && (record !== null || this.#pageCount > 0)) {
      log(`edgelite: ${path}: no position, a snapshot is needed: ${this.#recovery.reason}`);
    }
    // Not fatal: a stale record reconciles to the same position on the next open (see #clearPending),
    // and a replica restarted on files it may not write must still open and serve reads.
    if (record !== null && (this.#recovery.source !== 'committed' || record.pending !== null)) this.#clearPending(this.#state);
    if (writer.readOnly) log(`edgelite: ${path}: applies will fail until the file can be written: ${writer.readOnly.message}`);
  }

  /**
   * open opens (creating if absent) the replica database at `path` and reconciles its from-scratch
   * checksum with the position sidecar: the position is the recorded one the file really matches, or
   * null (a snapshot is needed; `recovery.reason` says why). A file this process may not write opens
   * read-only: reads work, writes fail IO_ERROR until it can be written (see #writable).
   */
  static open(path: string, options: ApplierOptions = {}): PageApplier {
    const { hint, timeout } = checkApplierOptions(options);
    const writer = new PageWriter(path, { busyTimeoutMs: timeout, durable: options.durable ?? DEFAULT_DURABLE, pageSizeHint: hint });
    try {
      return new PageApplier(path, writer, options);
    } catch (err) {
      writer.close();
      throw err;
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

  /** recovery tells how open() (or the last reopen of the writer) found the position. */
  get recovery(): Reconciled {
    return this.#recovery;
  }

  /**
   * apply applies consecutive change sets in one write transaction (pages merged: last image wins,
   * pages above the final commit dropped) and returns the new position. Before anything is written the
   * shared verifier (shared/verify.ts) checks database id, generation, page size and txid continuity
   * (POSITION_MISMATCH), the change sets' structure (CORRUPT_CHANGESET) and each pre- and post-apply
   * checksum (CHECKSUM_MISMATCH); `details.reason` says which check failed. On any error the file, the
   * position and the checksum are as before, except that a writer reopened first (#writable) may find
   * the file no longer at the position: then it has none.
   */
  apply(changeSets: readonly ChangeSet[]): Position {
    this.#checkOpen();
    this.#writable();
    const state = this.#state;
    const sum = this.#sum;
    if (state === null || sum === null) throw noPosition('replica has no position: it needs a snapshot');
    const at = { databaseId: state.databaseId, pageSize: state.pageSize, pageCount: this.#pageCount, position: state.position };
    checkBatch(at, sum.value, changeSets);
    // From here the in-memory checksum moves ahead of the file; any failure puts it back (restoreChecksum).
    let to: ReplicaState;
    try {
      const { pages: merged, pageCount: commit, position } = advanceBatch(sum, at, changeSets);
      const primaryPage1 = merged.get(1);
      const header = primaryPage1 ? { cookieDelta: state.header.cookieDelta, format: formatOf(primaryPage1) } : state.header;
      const localPage1 = primaryPage1 && needsOverride(primaryPage1, header) ? toLocalPage1(primaryPage1, header) : primaryPage1;
      const rows: Row[] = [];
      for (const pgno of [...merged.keys()].sort((a, b) => a - b)) if (pgno !== 1) rows.push([pgno, merged.get(pgno)!]);
      if (localPage1) rows.push([1, localPage1]);
      if (commit < this.#pageCount) rows.push([commit + 1, null]);
      to = { ...state, header, position };
      this.#persist({ committed: state, pending: { from: state.position, to } });
      try {
        this.#writer.run(rows);
      } catch (err) {
        this.#clearPending(state);
        throw err;
      }
      this.#state = to;
      this.#pageCount = commit;
      if (localPage1 && schemaCookieOf(localPage1) !== this.#localCookie) {
        this.#localCookie = schemaCookieOf(localPage1);
        this.#writer.dropCache();
      }
    } catch (err) {
      this.#restoreChecksum();
      throw err;
    }
    this.#persist({ committed: to, pending: null });
    return to.position;
  }

  /**
   * restoreSnapshot replaces the whole database with `image` (a database file's bytes, or its pages in
   * ascending order) at `position`, in one sqlite_dbpage transaction on the existing file, so readers
   * that have it open (in any process) go from the old database to the new one. The image's checksum
   * must equal `position.checksum` (else CHECKSUM_MISMATCH, nothing changes). Pages may be views into a
   * buffer the iterable reuses (snapshot-file.ts): each is hashed and copied by SQLite before the next.
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
    const { pageSize, first, iterator } = snapshotInput(image, position, databaseId);
    this.#writable();
    if (this.#pageSize === null) {
      this.#writer.setWalMode(pageSize);
      this.#pageSize = pageSize;
      this.#pageCount = 1;
    } else if (this.#pageSize !== pageSize) {
      const message = `snapshot has ${pageSize}-byte pages, the replica file ${this.#pageSize}: a new replica file is needed`;
      throw positionMismatch('page-size', message);
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
          const message = `snapshot page ${pgno} (${data.length} bytes) where page ${expected} (${pageSize} bytes) was due`;
          throw new EdgeliteError('BAD_REQUEST', message);
        }
        expected++;
        sum.setPage(pgno, data);
        if (pgno === 1) page1 = new Uint8Array(data); // a copy: Buffer#slice would be a view
        else yield [pgno, data];
      }
      if (page1 === null) throw new EdgeliteError('BAD_REQUEST', 'snapshot has no page 1');
      if (sum.value !== position.checksum) {
        const message = `snapshot checksum is ${formatChecksum(sum.value)}, position says ${formatChecksum(position.checksum)}`;
        throw new EdgeliteError('CHECKSUM_MISMATCH', message, { details: { reason: 'snapshot-checksum' } });
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
      this.#writer.run(rows());
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
    this.#writer.dropCache();
    this.#persist({ committed: done.state, pending: null });
    return done.state.position;
  }

  /**
   * installFile takes a downloaded, verified snapshot file as the database when the local file is still
   * empty (a first bootstrap, docs/ARCHITECTURE.md#bootstrap-by-file): page 1 made local in the
   * download, which the kernel then copies into the empty file in place (PageWriter.install), with the
   * same pending-then-committed sidecar records as restoreSnapshot, so a kill at any point reconciles
   * by checksum. No page goes through SQLite and no WAL is written. False when the file is not empty:
   * nothing changed, restoreSnapshot does it instead.
   */
  installFile(file: InstallableSnapshot): boolean {
    this.#checkOpen();
    if (this.#state !== null || this.#pageSize !== null || this.#pageCount !== 0 || !isEmptyFile(this.path)) return false;
    this.#writable();
    const { position, databaseId, pageSize, length } = file.head;
    const page1 = file.page1();
    const cookie = schemaCookieOf(page1);
    const cookieDelta = cookie > this.#localCookie ? 0 : (this.#localCookie + 1 - cookie) >>> 0;
    const header = { cookieDelta, format: formatOf(page1) };
    const state: ReplicaState = { databaseId, pageSize, position: { ...position }, header };
    file.preparePage1(toLocalPage1(page1, header), this.#durable);
    this.#persist({ committed: null, pending: { from: null, to: state } });
    try {
      this.#closeReaders();
      this.#writer.install(file.path);
    } catch (err) {
      this.#clearPending(null);
      throw err;
    }
    this.#state = state;
    this.#sum = file.checksum;
    this.#pageSize = pageSize;
    this.#pageCount = length / pageSize;
    this.#localCookie = (cookie + cookieDelta) >>> 0;
    this.#persist({ committed: state, pending: null });
    return true;
  }

  /**
   * checkpoint runs `wal_checkpoint(TRUNCATE)` without waiting for readers: with a reader in the WAL it
   * copies what it can and reports `busy`. The file shrinks after a truncating apply only here.
   */
  checkpoint(): CheckpointResult {
    this.#checkOpen();
    this.#writable();
    return this.#writer.checkpoint();
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

  /** isOpen says whether the writer holds its connection (false after suspend(), until the next write). */
  get isOpen(): boolean {
    return !this.#closed && this.#suspended === null;
  }

  /**
   * suspend closes the writer and the sidecar's descriptor (idle close, README.md#many-databases); the
   * next write reopens the writer (#writable) without reading the file again if the file and its WAL
   * still have the signature taken here: only this applier writes it, so it holds what memory says.
   */
  suspend(): void {
    if (!this.isOpen) return;
    this.#writer.close();
    this.#sidecar.close();
    this.#suspended = fileSignature(this.path);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#writer.close();
    this.#sidecar.close();
  }

  /**
   * writable reopens a writer that cannot write (opened on a file it may not write, or its last write
   * failed SQLITE_READONLY*), before anything is touched. The owner's read connections are closed first,
   * or the new writer shares their read-only shared memory (page-writer.ts). While the file is still
   * read-only this costs one open and fails IO_ERROR. Once the writer can write, the file is read from
   * scratch and checked against the position, as open() does: the new handle may be to another file
   * (moved or replaced meanwhile), and no change set is applied to a file not checked to be at its position.
   */
  #writable(): void {
    if (!this.#writer.readOnly) return;
    const suspended = this.#suspended;
    // A writer we closed (suspend, installFile) could write: the readers' shared memory is writable and
    // the new writer shares it, so they stay open (an app's prepared statements with them).
    if (suspended === null) this.#closeReaders();
    const unchanged = suspended !== null && suspended === fileSignature(this.path);
    this.#suspended = null;
    this.#writer.reopen();
    if (unchanged) return;
    try {
      this.#load({ committed: this.#state, pending: null });
    } catch (err) {
      this.#writer.close(); // unverified: the next write reopens and checks again
      throw err;
    }
    if (suspended === null) this.#log(`edgelite: ${this.path}: the file can be written again; writer reopened (${this.#recovery.reason})`);
  }

  /**
   * load reads the file from scratch and takes the position in `record` it really matches (reconcile),
   * with the file's page size, page count and schema cookie. Nothing changes if it throws.
   */
  #load(record: PositionRecord | null): void {
    const { pageSize, pageCount, sum, page1 } = readFromScratch(this.path);
    const recovery = reconcile(record, {
      pageSize,
      pageCount,
      checksumWith(header) {
        if (!sum || !page1) return 0n;
        sum.setPage(1, toPrimaryPage1(page1, header));
        return sum.value;
      },
    });
    if (sum && page1) sum.setPage(1, toPrimaryPage1(page1, recovery.state?.header ?? NO_OVERRIDE));
    this.#recovery = recovery;
    this.#state = recovery.state;
    this.#sum = sum;
    this.#pageSize = pageSize;
    this.#pageCount = pageCount;
    this.#localCookie = page1 ? schemaCookieOf(page1) : 0;
  }

  /**
   * restoreChecksum recomputes the in-memory checksum from the file after a failed apply had moved it
   * ahead. Only failures pay this O(file) read; copying the checksum before every apply instead would
   * cost O(pages) each time (2.4 ms for a 1 GiB database here).
   */
  #restoreChecksum(): void {
    let actual: bigint;
    try {
      const local = readFromScratch(this.path);
      if (local.sum && local.page1) local.sum.setPage(1, toPrimaryPage1(local.page1, this.headerOverride));
      this.#sum = local.sum;
      actual = local.sum?.value ?? 0n;
    } catch (err) {
      this.#log(`edgelite: ${this.path}: could not re-read the file after a failed apply: ${(err as Error).message}`);
      this.#sum = null;
      actual = -1n;
    }
    if (this.#state && actual !== this.#state.position.checksum) {
      const expected = formatChecksum(this.#state.position.checksum);
      this.#log(`edgelite: ${this.path}: file does not match position ${expected} after a failed apply; a snapshot is needed`);
      this.#state = null;
    }
  }

  #persist(record: PositionRecord): void {
    this.#sidecar.write(record);
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
