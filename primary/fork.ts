/**
 * Fork (README.md#http-api, `PUT /v1/db/{name}` with `{"from", "txid"}`): writes a new database file
 * holding another database's state, now or at a past txid, verified by checksum before it is used.
 *
 * The log keeps full page images *after* each change set, never before, so a past state cannot be
 * rolled back from the log alone. It is built from a snapshot at the current position T plus the log:
 * for txid N < T, every page some change set in N+1..T wrote must read as it was at N, which is its
 * image in the newest retained change set at or before N; the file is cut to the size change set N
 * committed. A page written after N but in no retained change set up to N (its image at N is older than
 * the log) cannot be known: FORK_TXID_UNAVAILABLE. The result is checked against change set N's recorded
 * checksum, so a fork never holds a state its source did not have.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { DatabaseChecksum, lockPageNumber } from '../shared/checksum.ts';
import { decodeChangeSet } from '../shared/changeset.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { ForkBodySchema } from '../shared/openapi/requests.ts';
import { validateBody } from '../shared/openapi/validate.ts';
import { formatChecksum, validateDatabaseName, type ChangeSet, type Position } from '../shared/types.ts';
import type { PrimaryDatabase } from './database.ts';

/** FORK_CHUNK_PAGES is how many pages one read of the source's snapshot takes. */
const FORK_CHUNK_PAGES = 256;

/** ForkResult is the position of the source the fork holds. */
export interface ForkResult {
  from: Position;
  pageCount: number;
}

/**
 * writeFork writes `source`'s state at `txid` (null: now) to `path` (through `path.fork-tmp`, fsynced,
 * renamed), or throws FORK_TXID_UNAVAILABLE / BAD_REQUEST and leaves nothing behind.
 */
export async function writeFork(source: PrimaryDatabase, txid: number | null, path: string): Promise<ForkResult> {
  const view = await source.openSnapshot();
  try {
    const now = view.position;
    const target = txid ?? now.txid;
    if (target > now.txid) throw unavailable(source.name, target, `ahead of its position ${now.txid}`);
    const past = target === now.txid ? null : pastState(source, now, view.pageCount, target);
    const pageCount = past ? past.commit : view.pageCount;
    const want = past ? past.checksum : now.checksum;
    const sum = new DatabaseChecksum(view.pageSize);
    const lock = lockPageNumber(view.pageSize);
    const tmp = `${path}.fork-tmp`;
    const fd = openSync(tmp, 'w');
    try {
      for (let first = 1; first <= pageCount; first += FORK_CHUNK_PAGES) {
        const last = Math.min(pageCount, first + FORK_CHUNK_PAGES - 1);
        const size = (last - first + 1) * view.pageSize;
        const chunk = first <= view.pageCount ? view.readPages(first, Math.min(last, view.pageCount)) : new Uint8Array(0);
        const out = chunk.length === size ? chunk : grow(chunk, size);
        for (let pgno = first; pgno <= last; pgno++) {
          const at = (pgno - first) * view.pageSize;
          const image = past?.pages.get(pgno);
          if (image) out.set(image, at);
          if (pgno !== lock) sum.setPage(pgno, out.subarray(at, at + view.pageSize));
        }
        writeSync(fd, out);
      }
      sum.truncate(pageCount);
      if (sum.value !== want) {
        const msg = `the state of ${source.name} built for txid ${target} has checksum ${formatChecksum(sum.value)}, the log says ${formatChecksum(want)}`;
        // The current state comes from the snapshot alone: a mismatch there is damage, not a txid out of reach.
        throw past ? new EdgeliteError('FORK_TXID_UNAVAILABLE', msg, { details: { db: source.name, txid: target } }) : new EdgeliteError('CHECKSUM_MISMATCH', msg);
      }
      fsyncSync(fd);
    } catch (err) {
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw err;
    }
    closeSync(fd);
    renameSync(tmp, path);
    return { from: { generation: now.generation, txid: target, checksum: want }, pageCount };
  } finally {
    view.end();
  }
}

interface PastState {
  /** Database size in pages at the target txid. */
  commit: number;
  checksum: bigint;
  /** Page images at the target txid for every page written after it (up to the snapshot). */
  pages: Map<number, Uint8Array>;
}

/** pastState reads from the log what differs between the snapshot at `now` and txid `target` (see the file comment). */
function pastState(source: PrimaryDatabase, now: Position, snapshotPages: number, target: number): PastState {
  const log = source.log;
  const later = log.since(now.generation, target);
  if (later === null) throw unavailable(source.name, target, 'the log no longer holds the change sets after it (retention), or it is in an earlier generation');
  const upTo = log.index(now.generation, 1, target).filter((r) => r.maxTxid <= target);
  const at = upTo.at(-1);
  if (!at || at.maxTxid !== target) throw unavailable(source.name, target, 'no retained change set ends at it (retention, or inside a merged change set)');
  const { commit, postChecksum, pageSize } = readChangeSet(source, now, at.minTxid, at.maxTxid);
  if (pageSize !== source.pageSize) throw unavailable(source.name, target, `its page size was ${pageSize}, now ${source.pageSize} (VACUUM changed it since)`);
  // Needed: every page written after the target, and every page the file had then but the snapshot lacks (it shrank).
  const needed = new Set<number>();
  for (const rec of later) {
    if (rec.maxTxid > now.txid) break; // captured after the snapshot was pinned
    for (const page of decodeChangeSet(rec.payload).pages) if (page.pgno <= commit) needed.add(page.pgno);
  }
  const lock = lockPageNumber(source.pageSize);
  for (let p = snapshotPages + 1; p <= commit; p++) if (p !== lock) needed.add(p);
  const pages = new Map<number, Uint8Array>();
  for (let i = upTo.length - 1; i >= 0 && needed.size > 0; i--) {
    const info = upTo[i]!;
    const cs = readChangeSet(source, now, info.minTxid, info.maxTxid);
    if (cs.pageSize !== pageSize) throw unavailable(source.name, target, `a page it held was last written at another page size (change set ${info.minTxid}..${info.maxTxid})`);
    for (const page of cs.pages) {
      if (needed.delete(page.pgno)) pages.set(page.pgno, page.data);
    }
  }
  if (needed.size > 0) throw unavailable(source.name, target, `${needed.size} page(s) it held were last written before the oldest retained change set`);
  return { commit, checksum: postChecksum, pages };
}

function readChangeSet(source: PrimaryDatabase, now: Position, minTxid: number, maxTxid: number): ChangeSet {
  const rec = source.log.readRange(now.generation, minTxid, maxTxid)?.[0];
  if (!rec) throw unavailable(source.name, maxTxid, `change set ${minTxid}..${maxTxid} is gone from the log`);
  return decodeChangeSet(rec.payload);
}

function grow(chunk: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  out.set(chunk);
  return out;
}

function unavailable(db: string, txid: number, why: string): EdgeliteError {
  return new EdgeliteError('FORK_TXID_UNAVAILABLE', `cannot fork ${db} at txid ${txid}: ${why}`, { details: { db, txid } });
}

/** ForkRequest is the body of `PUT /v1/db/{name}` that forks: `{"from": "other"}`, optionally `"txid": N`. */
export interface ForkRequest {
  from: string;
  txid: number | null;
}

/** parseForkBody validates a create body (ForkBodySchema): `{}` is a plain create (null), else a ForkRequest; BAD_REQUEST otherwise. */
export function parseForkBody(body: unknown): ForkRequest | null {
  return validateBody(ForkBodySchema, body, '');
}
