/**
 * The page-size rule, in one place for the primary, the Node replica and the Worker (docs/FORMAT.md):
 * SQLite pages are a power of two from 512 to 65536 bytes. A database header (page 1) stores the size
 * as a big-endian u16 at offset 16, where 65536, which does not fit, is stored as 1; change sets and the
 * WAL header store the value itself. The page holding byte offset 1 GiB (the lock page) is never
 * written by SQLite, so it is never stored, hashed or sent.
 */

export const MIN_PAGE_SIZE = 512;
export const MAX_PAGE_SIZE = 65536;
/** HEADER_PAGE_SIZE_OFFSET: where the page size sits in the 100-byte database header. */
export const HEADER_PAGE_SIZE_OFFSET = 16;
/** PAGE_SIZE_RULE is the rule in words, for error messages. */
export const PAGE_SIZE_RULE = `a power of two in ${MIN_PAGE_SIZE}..${MAX_PAGE_SIZE}`;

/** LOCK_PAGE_OFFSET is SQLite's PENDING_BYTE: the page holding it is never written by SQLite. */
const LOCK_PAGE_OFFSET = 0x40000000;

/** isPageSize says whether `n` is a page size SQLite can have. */
export function isPageSize(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= MIN_PAGE_SIZE && n <= MAX_PAGE_SIZE && (n & (n - 1)) === 0;
}

/**
 * pageSizeOf reads the page size a database header declares (1 meaning 65536), or 0 for bytes too short
 * to hold it. It does not judge the value: each caller checks it with isPageSize and throws its own code
 * (a bad header is WAL_INVALID on the primary, a bad request or a corrupt snapshot on a replica).
 */
export function pageSizeOf(header: Uint8Array): number {
  if (header.length < HEADER_PAGE_SIZE_OFFSET + 2) return 0;
  const raw = (header[HEADER_PAGE_SIZE_OFFSET]! << 8) | header[HEADER_PAGE_SIZE_OFFSET + 1]!;
  return raw === 1 ? MAX_PAGE_SIZE : raw;
}

/** lockPageNumber is the page at byte offset 1 GiB, which SQLite reserves for locks and never writes. */
export function lockPageNumber(pageSize: number): number {
  return Math.floor(LOCK_PAGE_OFFSET / pageSize) + 1;
}
