/**
 * Capture turns the WAL's committed transactions into change sets: one per transaction, numbered with
 * consecutive txids, checksummed against the in-memory per-page checksum, appended to the durable log,
 * and handed to the stream hub. It runs synchronously right after each write the primary executes, and
 * on a watch/poll for writes made by other processes (docs/ARCHITECTURE.md#capture-rules).
 */
import { DatabaseChecksum } from '../shared/checksum.ts';
import { encodeChangeSet } from '../shared/changeset.ts';
import { encodeDeltaChangeSet } from '../shared/changeset-delta.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { ChangeSet, PageImage, Position } from '../shared/types.ts';
import type { ChangeSetLog } from './log.ts';
import type { PageCache } from './page-cache.ts';
import type { ReadLock } from './read-lock.ts';
import type { Connection, Stmt } from './sqlite.ts';
import type { WalCursor, WalReader, WalTransaction } from './wal-reader.ts';

/** Captured is one change set as it was logged: what the hub needs to fan it out. */
export interface Captured {
  db: string;
  generation: number;
  minTxid: number;
  maxTxid: number;
  timestamp: number;
  postChecksum: bigint;
  bytes: Uint8Array;
  /** The same change set as deltas against the previous page images, when a subscriber wants them. */
  deltaBytes: Uint8Array | null;
}

export interface CaptureState {
  databaseId: number;
  generation: number;
  txid: number;
  cursor: WalCursor | null;
  /** Commit time of the newest captured transaction (ms). */
  timestamp: number;
}

export interface CapturerOptions {
  db: string;
  wal: WalReader;
  lock: ReadLock;
  log: ChangeSetLog;
  checksum: DatabaseChecksum;
  /** Where capture starts: copied, so the caller's object is never written to. */
  state: Readonly<CaptureState>;
  compress: boolean;
  onCapture: (c: Captured) => void;
  /** Recent page images for delta encoding; null disables deltas. */
  pageCache: PageCache | null;
  /** Whether anyone wants delta change sets right now (encoding them costs a diff per page). */
  wantDeltas: () => boolean;
  /** The commit-time clock (ms); Date.now unless a test runs simulated time (DatabaseOptions.clock). */
  clock?: () => number;
}

/** MAX_READ_BYTES bounds the frames one read pass holds in memory; capture loops until the end. */
const MAX_READ_BYTES = 32 * 1024 * 1024;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

export function encodeCursor(cursor: WalCursor | null): Uint8Array {
  return textEncoder.encode(JSON.stringify(cursor));
}

export function decodeCursor(meta: Uint8Array): WalCursor | null {
  return JSON.parse(textDecoder.decode(meta)) as WalCursor | null;
}

/**
 * Capturer captures one generation: its state (txid, cursor, commit time) is its own, copied in, and
 * only capture moves it. A new generation is a new Capturer (database.ts), never a state patched from
 * outside.
 */
export class Capturer {
  readonly #o: CapturerOptions;
  readonly #state: CaptureState;

  constructor(options: CapturerOptions) {
    this.#o = options;
    this.#state = { ...options.state };
  }

  get state(): Readonly<CaptureState> {
    return this.#state;
  }

  get checksum(): DatabaseChecksum {
    return this.#o.checksum;
  }

  get position(): Position {
    const s = this.#state;
    return { generation: s.generation, txid: s.txid, checksum: this.#o.checksum.value };
  }

  /**
   * capture reads every transaction committed since the cursor and logs it. Returns how many it
   * captured. A WAL that cannot be verified from the cursor throws WAL_INVALID: the caller must start a
   * new generation (never guess).
   */
  capture(): number {
    const { wal, lock } = this.#o;
    const state = this.#state;
    let count = 0;
    for (;;) {
      const res = wal.read(state.cursor, { maxBytes: MAX_READ_BYTES });
      if (res.start === 'mismatch') {
        throw new EdgeliteError('WAL_INVALID', `${this.#o.db}: WAL cannot be verified from the last captured frame`, {
          details: { cursor: state.cursor },
        });
      }
      for (const tx of res.transactions) {
        this.#emit([tx], state.txid + 1);
        count++;
      }
      if (res.cursor) state.cursor = res.cursor;
      // A pass is bounded by MAX_READ_BYTES; read again until a pass finds nothing new.
      if (res.transactions.length === 0) break;
    }
    // Everything up to our old read mark is now captured: move the mark forward.
    lock.advance();
    return count;
  }

  /**
   * emitCatchUp logs the transactions found after the cursor at startup as one change set spanning
   * their txids. Its pre-checksum is the logged position's; its post-checksum is the database's
   * from-scratch checksum now (the per-page state at the old position is not in memory). A replica
   * verifies both ends, so a wrong merge cannot go unnoticed.
   */
  emitCatchUp(transactions: WalTransaction[], preChecksum: bigint): void {
    if (transactions.length === 0) return;
    const state = this.#state;
    const last = transactions[transactions.length - 1]!;
    this.#logChangeSet(mergePages(transactions), last.commit, state.txid + 1, state.txid + transactions.length, preChecksum, last.cursor);
  }

  /**
   * emitDiff logs one change set from a page-hash diff (database.ts #diffFromClose): `pages` are every
   * page whose hash differs from the logged state's, `commit` the size now; its pre-checksum is the
   * logged one, its post-checksum this capturer's (the database's from-scratch checksum now).
   */
  emitDiff(pages: PageImage[], commit: number, preChecksum: bigint, cursor: WalCursor | null): void {
    const state = this.#state;
    this.#logChangeSet(pages, commit, state.txid + 1, state.txid + 1, preChecksum, cursor);
  }

  #emit(transactions: WalTransaction[], minTxid: number): void {
    const last = transactions[transactions.length - 1]!;
    const pages = mergePages(transactions);
    const pre = this.#o.checksum.value;
    // Delta bases are the images at the pre-apply position: look them up before applying.
    const bases = this.#deltaBases(pages);
    this.#o.checksum.apply(pages, last.commit);
    this.#logChangeSet(pages, last.commit, minTxid, minTxid + transactions.length - 1, pre, last.cursor, bases);
    this.#o.pageCache?.update(pages, last.commit);
  }

  #deltaBases(pages: PageImage[]): Map<number, Uint8Array> | null {
    const cache = this.#o.pageCache;
    if (!cache || !this.#o.wantDeltas()) return null;
    const conn = this.#o.lock.held ? this.#o.lock.activeConnection : null;
    const read = (pgno: number): Uint8Array | null => {
      if (!conn) return null;
      const row = pageStatement(conn).get(pgno);
      return row instanceof Uint8Array ? row : null;
    };
    const bases = new Map<number, Uint8Array>();
    for (const p of pages) {
      if (p.pgno === 1) continue;
      const b = cache.base(p.pgno, this.#o.checksum, read);
      if (b) bases.set(p.pgno, b);
    }
    return bases;
  }

  #logChangeSet(
    pages: PageImage[],
    commit: number,
    minTxid: number,
    maxTxid: number,
    pre: bigint,
    cursor: WalCursor | null,
    bases: Map<number, Uint8Array> | null = null,
  ): void {
    const { log, checksum } = this.#o;
    const state = this.#state;
    const timestamp = (this.#o.clock ?? Date.now)();
    const cs: ChangeSet = {
      databaseId: state.databaseId,
      pageSize: checksum.pageSize,
      generation: state.generation,
      minTxid,
      maxTxid,
      commit,
      timestamp,
      preChecksum: pre,
      postChecksum: checksum.value,
      pages,
    };
    const bytes = encodeChangeSet(cs, { compress: this.#o.compress });
    log.append({
      generation: state.generation,
      minTxid,
      maxTxid,
      timestamp,
      postChecksum: cs.postChecksum,
      meta: encodeCursor(cursor),
      payload: bytes,
    });
    state.txid = maxTxid;
    state.cursor = cursor;
    state.timestamp = timestamp;
    this.#o.onCapture({
      db: this.#o.db,
      generation: state.generation,
      minTxid,
      maxTxid,
      timestamp,
      postChecksum: cs.postChecksum,
      bytes,
      deltaBytes: bases ? encodeDeltaChangeSet(cs, (pgno) => bases.get(pgno) ?? null) : null,
    });
  }
}

const pageStatements = new WeakMap<Connection, Stmt>();

/** pageStatement is a cached `SELECT data FROM sqlite_dbpage WHERE pgno = ?` on `conn`. */
function pageStatement(conn: Connection): Stmt {
  let stmt = pageStatements.get(conn);
  if (!stmt) {
    stmt = conn.prepare<unknown[]>('SELECT data FROM sqlite_dbpage WHERE pgno = ?').pluck();
    pageStatements.set(conn, stmt);
  }
  return stmt;
}

/** mergePages merges transactions' pages: last image wins, pages above the final commit dropped. */
export function mergePages(transactions: WalTransaction[]): PageImage[] {
  const last = transactions[transactions.length - 1];
  if (!last) return [];
  const merged = new Map<number, Uint8Array>();
  for (const tx of transactions) for (const [pgno, data] of tx.pages) merged.set(pgno, data);
  const pages: PageImage[] = [];
  for (const [pgno, data] of merged) if (pgno <= last.commit) pages.push({ pgno, data });
  pages.sort((a, b) => a.pgno - b.pgno);
  return pages;
}
