/**
 * Delta change sets: the same header and trailer as a plain change set (changeset-format.ts) with
 * FLAG_DELTA set, and page entries that may carry only the bytes that changed since the page's
 * previous image. A one-row UPDATE rewrites a few dozen bytes of a 4 KiB page; shipping whole pages
 * is what today's peers do, and what made bytes-on-the-wire per update ~2.5 pages.
 *
 * Page entry (pgno strictly ascending as in a plain change set):
 *
 *   size  field
 *      4  pgno (u32)
 *      1  kind (u8): 0 = full page, 1 = delta
 *   kind 0:
 *      P  page data (P = page size)
 *   kind 1:
 *      8  base hash (u64): pageHash(pgno, base) of the image the delta applies to
 *      2  run count (u16), ≥ 1
 *      per run, ascending and non-overlapping:
 *      2  offset (u16) in the page
 *      2  length − 1 (u16)
 *      n  the new bytes
 *
 * A delta is only valid against exactly the base its hash names: the decoder looks the base up, checks
 * its hash, and refuses (CHECKSUM_MISMATCH, reason "delta-base") otherwise, so a replica that is not
 * where the primary thinks it is can never build a wrong page. Page 1 is always sent whole (a replica's
 * page 1 carries local header bytes). The file checksum covers every byte as in a plain change set.
 */
import { hash64, lockPageNumber, pageHash } from './checksum.ts';
import {
  changeSetOf,
  corrupt,
  headerOf,
  FLAG_DELTA,
  HEADER_SIZE,
  readHeaderWithFlags,
  TRAILER_SIZE,
  validateChecksum,
  validateHeader,
  validatePageNumber,
  writeHeader,
} from './changeset-format.ts';
import { EdgeliteError } from './errors.ts';
import type { ChangeSet, PageImage } from './types.ts';

/** BaseLookup returns the current image of a page (before the change set), or null if unknown. */
export type BaseLookup = (pgno: number) => Uint8Array | null;

const KIND_FULL = 0;
const KIND_DELTA = 1;
/** Runs closer than this are merged: a run header costs 4 bytes. */
const MERGE_GAP = 8;
const MAX_RUNS = 0xffff;

interface Run {
  start: number;
  end: number;
}

/** diffRuns lists the byte ranges where `next` differs from `base`, merging close ones. */
export function diffRuns(base: Uint8Array, next: Uint8Array): Run[] {
  const runs: Run[] = [];
  const n = next.length;
  let i = 0;
  while (i < n) {
    if (base[i] === next[i]) {
      i++;
      continue;
    }
    let end = i + 1;
    let same = 0;
    for (let j = end; j < n && same <= MERGE_GAP; j++) {
      if (base[j] === next[j]) same++;
      else {
        end = j + 1;
        same = 0;
      }
    }
    runs.push({ start: i, end });
    i = end;
  }
  return runs;
}

function deltaSize(runs: Run[]): number {
  let size = 8 + 2;
  for (const r of runs) size += 4 + (r.end - r.start);
  return size;
}

/**
 * encodeDeltaChangeSet encodes `cs` with each page sent as a delta against `base(pgno)` where that is
 * smaller than the page, and whole otherwise (no base, page 1, or a page that changed too much).
 */
export function encodeDeltaChangeSet(cs: ChangeSet, base: BaseLookup): Uint8Array {
  const header = headerOf(cs);
  validateHeader(header);
  validateChecksum(cs.postChecksum, 'post-apply checksum');
  const entries: Array<{ pgno: number; data: Uint8Array; runs: Run[] | null; baseHash: bigint }> = [];
  let size = HEADER_SIZE + TRAILER_SIZE;
  let previous = 0;
  for (const page of cs.pages) {
    validatePageNumber(page.pgno, previous, header);
    if (page.data.length !== cs.pageSize) throw corrupt(`page ${page.pgno} has ${page.data.length} bytes, want ${cs.pageSize}`);
    previous = page.pgno;
    const b = page.pgno === 1 ? null : base(page.pgno);
    let runs: Run[] | null = null;
    if (b && b.length === cs.pageSize) {
      const r = diffRuns(b, page.data);
      if (r.length >= 1 && r.length <= MAX_RUNS && deltaSize(r) < cs.pageSize) runs = r;
    }
    entries.push({ pgno: page.pgno, data: page.data, runs, baseHash: runs ? pageHash(page.pgno, b!) : 0n });
    size += 5 + (runs ? deltaSize(runs) : cs.pageSize);
  }
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  writeHeader(bytes, header, FLAG_DELTA);
  let o = HEADER_SIZE;
  for (const e of entries) {
    view.setUint32(o, e.pgno);
    if (!e.runs) {
      bytes[o + 4] = KIND_FULL;
      bytes.set(e.data, o + 5);
      o += 5 + cs.pageSize;
      continue;
    }
    bytes[o + 4] = KIND_DELTA;
    view.setBigUint64(o + 5, e.baseHash);
    view.setUint16(o + 13, e.runs.length);
    o += 15;
    for (const r of e.runs) {
      view.setUint16(o, r.start);
      view.setUint16(o + 2, r.end - r.start - 1);
      bytes.set(e.data.subarray(r.start, r.end), o + 4);
      o += 4 + (r.end - r.start);
    }
  }
  view.setBigUint64(o, cs.postChecksum);
  view.setBigUint64(o + 8, hash64(bytes.subarray(0, o + 8)));
  return bytes;
}

/** isDeltaChangeSet tells whether encoded bytes carry FLAG_DELTA. */
export function isDeltaChangeSet(bytes: Uint8Array): boolean {
  return bytes.length >= HEADER_SIZE && ((bytes[6]! << 8) | bytes[7]!) === FLAG_DELTA;
}

/**
 * decodeDeltaChangeSet validates a delta change set (file checksum first) and rebuilds every page from
 * its base, returning a plain ChangeSet whose pages are new buffers.
 */
export function decodeDeltaChangeSet(bytes: Uint8Array, base: BaseLookup): ChangeSet {
  const h = readHeaderWithFlags(bytes, FLAG_DELTA);
  if (!isDeltaChangeSet(bytes)) throw corrupt('not a delta change set');
  if (bytes.length < HEADER_SIZE + TRAILER_SIZE) throw corrupt('truncated');
  const end = bytes.length;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getBigUint64(end - 8) !== hash64(bytes.subarray(0, end - 8))) throw corrupt('file checksum mismatch');
  const pages: PageImage[] = [];
  const limit = end - TRAILER_SIZE;
  const need = (o: number, n: number) => {
    if (o + n > limit) throw corrupt('truncated page section');
  };
  let o = HEADER_SIZE;
  let previous = 0;
  for (let k = 0; k < h.pageCount; k++) {
    need(o, 5);
    const pgno = view.getUint32(o);
    validatePageNumber(pgno, previous, h);
    previous = pgno;
    const kind = bytes[o + 4];
    o += 5;
    if (kind === KIND_FULL) {
      need(o, h.pageSize);
      pages.push({ pgno, data: bytes.subarray(o, o + h.pageSize) });
      o += h.pageSize;
      continue;
    }
    if (kind !== KIND_DELTA || pgno === 1) throw corrupt(`page ${pgno} has an invalid entry kind ${kind}`);
    need(o, 10);
    const baseHash = view.getBigUint64(o);
    const runs = view.getUint16(o + 8);
    o += 10;
    if (runs === 0) throw corrupt(`page ${pgno} delta has no runs`);
    const b = base(pgno);
    if (!b || b.length !== h.pageSize || pageHash(pgno, b) !== baseHash) {
      throw new EdgeliteError('CHECKSUM_MISMATCH', `page ${pgno}: the delta's base is not this replica's page`, { details: { reason: 'delta-base', pgno }, divergence: 'delta-base' });
    }
    // A copy, never b.slice(): on a Node Buffer slice() is a view, and the base may be a page of a
    // change set still waiting to be applied.
    const data = new Uint8Array(h.pageSize);
    data.set(b);
    let last = 0;
    for (let r = 0; r < runs; r++) {
      need(o, 4);
      const start = view.getUint16(o);
      const len = view.getUint16(o + 2) + 1;
      if (start < last || start + len > h.pageSize) throw corrupt(`page ${pgno} delta run ${r} is out of order or out of the page`);
      need(o + 4, len);
      data.set(bytes.subarray(o + 4, o + 4 + len), start);
      o += 4 + len;
      last = start + len;
    }
    pages.push({ pgno, data });
  }
  if (o !== limit) throw corrupt(`${limit - o} unexpected bytes after the page entries`);
  if (pages.some((p) => p.pgno === lockPageNumber(h.pageSize))) throw corrupt('lock page in a change set');
  return changeSetOf(h, view.getBigUint64(end - TRAILER_SIZE), pages);
}
