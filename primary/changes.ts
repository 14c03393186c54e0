/**
 * Catch-up ranges, the primary's side (shared/changes.ts has the path and headers; README.md#http-api the
 * route): where a range starts and ends, whether it is sealed, and its answer.
 *
 * Alignment: a range is cut from a **block** of `rangeTxids` txids (block k holds the records whose
 * minTxid is in k·B+1 .. (k+1)·B), walking the block's records from its first and closing a range before
 * a record that would take it past `rangeBytes` (always at least one record). Block and cut depend only
 * on the records themselves, never on the log's segment files, the time, or which txid was asked for, so
 * a range's bytes are the same for every replica and every request: a cache can keep them for ever. A
 * block is **sealed** once the log is durable (fsynced) past its last txid: no record can join it and
 * none of its records can be lost. Why blocks and not the log's segment files: segments are 64 MiB by
 * default, so ranges would be that big and the unsealed tail every replica streams that long; a block
 * bounds both (the tail to at most one block), whatever the log's layout on disk.
 *
 * Only the current generation is served (a replica of an older one needs a snapshot anyway, as on the
 * stream); a block the retained log holds only part of is left to the stream.
 */
import { CHANGES_CACHE_CONTROL, CHANGES_CONTENT_TYPE, CHANGES_NO_STORE, CHANGES_TXIDS_HEADER, changesPath, FRESH_PARAM, ifNoneMatchHits, rangeETag } from '../shared/changes.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { encodeSegment } from '../shared/backup-objects.ts';
import { POSITION_HEADERS } from '../shared/protocol.ts';
import type { Position, Txid } from '../shared/types.ts';
import type { RecordInfo } from './log.ts';

/** DEFAULT_RANGE_TXIDS: txids per block; the longest tail a replica takes from the stream. */
export const DEFAULT_RANGE_TXIDS = 1024;
/** DEFAULT_RANGE_BYTES: a range closes before a record that would take it past this (records on disk). */
export const DEFAULT_RANGE_BYTES = 4 * 1024 * 1024;

/** RangeLayout is how ranges are cut; the defaults above unless a test needs small ones. */
export interface RangeLayout {
  rangeTxids: number;
  rangeBytes: number;
}

export const DEFAULT_RANGE_LAYOUT: RangeLayout = { rangeTxids: DEFAULT_RANGE_TXIDS, rangeBytes: DEFAULT_RANGE_BYTES };

/** RangeDatabase is the part of a PrimaryDatabase ranges are cut from (a test may give its own). */
export interface RangeDatabase {
  readonly position: Position;
  /** The position the current generation started at: its first record's minTxid is txid + 1. */
  readonly generationStart: Position;
  readonly log: {
    index(generation: number, fromTxid: Txid, toTxid: Txid): RecordInfo[];
    readonly durableTxid: Txid;
    readonly firstTxid: Txid | null;
  };
}

/** Located is where a requested txid falls: a range it starts, a range holding it, or why neither. */
export type Located =
  | { kind: 'range'; from: Txid; to: Txid }
  | { kind: 'redirect'; from: Txid }
  | { kind: 'use-stream'; reason: string }
  | { kind: 'snapshot-needed'; reason: string };

/** locateRange finds the range of `generation` holding `txid` (pure over the database's position and log index). */
export function locateRange(db: RangeDatabase, layout: RangeLayout, generation: number, txid: Txid): Located {
  const cur = db.position;
  if (generation !== cur.generation) return { kind: 'snapshot-needed', reason: `generation ${generation} is not the current ${cur.generation}` };
  if (txid > cur.txid + 1) return { kind: 'snapshot-needed', reason: `txid ${txid} is ahead of the primary (${cur.txid})` };
  if (txid === cur.txid + 1) return { kind: 'use-stream', reason: `nothing after txid ${cur.txid} yet: the live tail is the stream` };
  if (txid <= db.generationStart.txid) return { kind: 'snapshot-needed', reason: `txid ${txid} is before generation ${generation} began (${db.generationStart.txid})` };
  const holding = db.log.index(generation, txid, txid)[0];
  if (!holding) return { kind: 'snapshot-needed', reason: `txid ${txid} is outside the retained log` };
  const B = layout.rangeTxids;
  const lo = Math.floor((holding.minTxid - 1) / B) * B + 1;
  const hi = lo + B - 1;
  if (db.log.durableTxid < hi) return { kind: 'use-stream', reason: `txids ${lo}..${hi} are not sealed yet (durable to ${db.log.durableTxid})` };
  // Records before the first retained one may have been in this block: then its cut is unknown.
  const first = db.log.firstTxid ?? Number.POSITIVE_INFINITY;
  if (first > Math.max(lo, db.generationStart.txid + 1)) return { kind: 'use-stream', reason: `txids ${lo}..${hi} are only partly in the retained log` };
  let from = -1;
  let to = -1;
  let bytes = 0;
  for (const r of db.log.index(generation, lo, hi)) {
    if (r.minTxid < lo) continue; // a record of the previous block that runs into this one
    if (from < 0 || bytes + r.size > layout.rangeBytes) {
      if (from >= 0 && holding.minTxid < r.minTxid) break; // the range holding `txid` is closed
      from = r.minTxid;
      bytes = 0;
    }
    bytes += r.size;
    to = r.maxTxid;
  }
  if (from < 0) return { kind: 'use-stream', reason: `no record of txids ${lo}..${hi} is retained` };
  return from === txid ? { kind: 'range', from, to } : { kind: 'redirect', from };
}

/** RangeRequest is what the route reads from a request: the range asked for and its conditional and cache-busting parts. */
export interface RangeRequest {
  name: string;
  generation: number;
  txid: Txid;
  ifNoneMatch: string | null;
  /** The FRESH_PARAM value, when the replica skips the caches. */
  fresh: string | null;
}

/** ChangesDatabase is RangeDatabase plus what an answer needs. */
export interface ChangesDatabase extends RangeDatabase {
  readonly databaseId: number;
  readonly log: RangeDatabase['log'] & { readRange(generation: number, fromTxid: Txid, toTxid: Txid): Array<{ payload: Uint8Array }> | null };
}

/**
 * changesResponse answers `GET /v1/db/{name}/changes/{generation}/{txid}`: the range (200, or 304 for a
 * matching If-None-Match), a 308 to the range holding the txid, or USE_STREAM / SNAPSHOT_NEEDED. A sealed
 * answer is cacheable for ever, unless the request skipped the caches (then `no-store`, so the nonce URL
 * fills no cache); every error is `no-store`.
 */
export function changesResponse(db: ChangesDatabase, layout: RangeLayout, req: RangeRequest): Response {
  const cacheControl = req.fresh === null ? CHANGES_CACHE_CONTROL : CHANGES_NO_STORE;
  const at = locateRange(db, layout, req.generation, req.txid);
  if (at.kind === 'use-stream') throw new EdgeliteError('USE_STREAM', at.reason, { details: { generation: req.generation, txid: req.txid } });
  if (at.kind === 'snapshot-needed') throw new EdgeliteError('SNAPSHOT_NEEDED', at.reason, { details: { generation: req.generation, txid: req.txid } });
  if (at.kind === 'redirect') {
    const query = req.fresh === null ? '' : `?${FRESH_PARAM}=${encodeURIComponent(req.fresh)}`;
    return new Response(null, { status: 308, headers: { location: `${changesPath(req.name, req.generation, at.from)}${query}`, 'cache-control': cacheControl } });
  }
  const etag = rangeETag(db.databaseId, req.generation, at.from, at.to);
  const headers: Record<string, string> = {
    etag,
    'cache-control': cacheControl,
    [CHANGES_TXIDS_HEADER]: `${at.from}-${at.to}`,
    [POSITION_HEADERS.generation]: String(req.generation),
    [POSITION_HEADERS.databaseId]: String(db.databaseId),
  };
  if (ifNoneMatchHits(req.ifNoneMatch, etag)) return new Response(null, { status: 304, headers });
  const records = db.log.readRange(req.generation, at.from, at.to);
  // Pruned between the index lookup and the read: the txid is no longer retained.
  if (!records) throw new EdgeliteError('SNAPSHOT_NEEDED', `txids ${at.from}..${at.to} left the retained log`, { details: { generation: req.generation, txid: req.txid } });
  const body = encodeSegment(records.map((r) => r.payload));
  return new Response(body as unknown as BodyInit, { status: 200, headers: { ...headers, 'content-type': CHANGES_CONTENT_TYPE, 'content-length': String(body.length) } });
}

/** rangesBehind lists the databases of a stream request whose position resumes and is at least one sealed range behind. */
export function rangesBehind<D extends RangeDatabase>(
  get: (name: string) => D | undefined,
  positions: Record<string, Position | null>,
  layout: RangeLayout,
  resumes: (db: D, pos: Position) => boolean,
): string[] {
  const out: string[] = [];
  for (const [name, pos] of Object.entries(positions)) {
    const db = pos ? get(name) : undefined;
    if (!pos || !db) continue;
    // The index first (memory); the resume rule reads a record from disk.
    const at = locateRange(db, layout, pos.generation, pos.txid + 1);
    if ((at.kind === 'range' || at.kind === 'redirect') && resumes(db, pos)) out.push(name);
  }
  return out;
}
