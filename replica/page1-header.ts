/**
 * The page-1 header fields in which the replica's file deliberately differs from the primary's
 * database (HeaderOverride), and the two conversions between them: what the replica writes for the
 * primary's page 1 (toLocalPage1), and the primary's page 1 back from the file (toPrimaryPage1), for
 * checksums and snapshots. The page size (offset 16) is read by shared/page-size.ts.
 */

/** Offsets in the 100-byte SQLite database header (page 1). */
export const HEADER_WRITE_VERSION_OFFSET = 18;
export const HEADER_READ_VERSION_OFFSET = 19;
export const HEADER_SCHEMA_COOKIE_OFFSET = 40;
/** Value of header bytes 18 and 19 for a database in WAL mode. */
export const WAL_FORMAT_VERSION = 2;
/** Bytes 18–19 of a WAL-mode header read as one big-endian u16. */
export const WAL_FORMAT = (WAL_FORMAT_VERSION << 8) | WAL_FORMAT_VERSION;

/**
 * HeaderOverride says how the replica's page 1 differs from the primary's page 1:
 *
 * - `cookieDelta`: the replica's schema cookie (offset 40) is the primary's plus this (mod 2^32). A
 *   snapshot restored over an existing replica must raise the cookie above the file's current one, or
 *   connections that cached the old schema keep using it (docs/ARCHITECTURE.md#apply-rules). The primary's cookie may be lower
 *   than ours, so we add a constant instead of writing the primary's value: the local cookie then moves
 *   whenever the primary's does and never returns to a value some reader may still hold.
 * - `format`: the primary's bytes 18–19 (as a big-endian u16). The replica's file is always WAL (2, 2);
 *   a snapshot taken from a rollback-journal file says (1, 1).
 *
 * Both fields lie outside the bytes the checksum normalises, so the replica hashes page 1 as the
 * primary sent it (toPrimaryPage1) and its checksums stay equal to the primary's.
 */
export interface HeaderOverride {
  cookieDelta: number;
  format: number;
}

export const NO_OVERRIDE: HeaderOverride = Object.freeze({ cookieDelta: 0, format: WAL_FORMAT });

/** schemaCookieOf reads the schema cookie (offset 40, big-endian u32). */
export function schemaCookieOf(page1: Uint8Array): number {
  return new DataView(page1.buffer, page1.byteOffset, page1.byteLength).getUint32(HEADER_SCHEMA_COOKIE_OFFSET);
}

/** formatOf reads header bytes 18–19 as a big-endian u16. */
export function formatOf(page1: Uint8Array): number {
  return (page1[HEADER_WRITE_VERSION_OFFSET]! << 8) | page1[HEADER_READ_VERSION_OFFSET]!;
}

function withHeader(page1: Uint8Array, format: number, cookie: number): Uint8Array {
  const copy = new Uint8Array(page1); // a copy with its own buffer (Buffer#slice would be a view)
  copy[HEADER_WRITE_VERSION_OFFSET] = format >>> 8;
  copy[HEADER_READ_VERSION_OFFSET] = format & 0xff;
  new DataView(copy.buffer).setUint32(HEADER_SCHEMA_COOKIE_OFFSET, cookie >>> 0);
  return copy;
}

/** toLocalPage1 is the page 1 the replica writes for the primary's `page1` (a copy; input untouched). */
export function toLocalPage1(page1: Uint8Array, override: HeaderOverride): Uint8Array {
  return withHeader(page1, WAL_FORMAT, schemaCookieOf(page1) + override.cookieDelta);
}

/**
 * toPrimaryPage1 undoes toLocalPage1: the page 1 the primary has, for checksums and for serving the
 * replica's file as a snapshot of the primary's database.
 */
export function toPrimaryPage1(page1: Uint8Array, override: HeaderOverride): Uint8Array {
  if (override.cookieDelta === 0 && override.format === formatOf(page1)) return page1;
  return withHeader(page1, override.format, schemaCookieOf(page1) - override.cookieDelta);
}

/**
 * needsOverride says whether the primary's `page1` must be rewritten before the replica writes it
 * (toLocalPage1): when the cookie is shifted, or the primary's file is not in WAL mode.
 */
export function needsOverride(page1: Uint8Array, header: HeaderOverride): boolean {
  return header.cookieDelta !== 0 || formatOf(page1) !== WAL_FORMAT;
}
