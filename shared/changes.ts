/**
 * Catch-up ranges (docs/ARCHITECTURE.md#the-stream-protocol, README.md#http-api): a database's sealed
 * change sets as GETs of immutable, aligned ranges, so a CDN or caching proxy in front of the primary
 * serves catch-up to any number of replicas, while the live tail stays the stream. This file is the
 * vocabulary both sides share: the path, the headers, the cache policy. Worker-safe.
 *
 *   GET /v1/db/{name}/changes/{generation: 8 hex}/{fromTxid: 16 hex}
 *
 * 200: the range starting at fromTxid, its body a backup segment (docs/FORMAT.md, "Backup objects":
 * change sets back to back, each with its own checksums), cacheable for ever; 308: fromTxid is not the
 * start of a range, Location names the range holding it; 409 USE_STREAM: the txid is in the still-open
 * tail; 409 SNAPSHOT_NEEDED: the log no longer holds it (or another generation).
 */
import { formatTxid, type Generation, type Txid } from './types.ts';

/** CHANGES_CACHE_CONTROL is what a sealed range (and the redirect to it) says to every cache on the way. */
export const CHANGES_CACHE_CONTROL = 'public, max-age=31536000, immutable';

/** CHANGES_NO_STORE is what every other answer of the route says: never a cached partial or error. */
export const CHANGES_NO_STORE = 'no-store';

/** CHANGES_CONTENT_TYPE is the media type of a range body (a backup segment). */
export const CHANGES_CONTENT_TYPE = 'application/vnd.edgelite.changes';

/** CHANGES_TXIDS_HEADER says which txids a range holds, `<first>-<last>` in decimal. */
export const CHANGES_TXIDS_HEADER = 'Edgelite-Txids';

/**
 * FRESH_PARAM is the cache-busting query parameter: a request carrying `?fresh=<nonce>` (with
 * `Cache-Control: no-cache`) misses every cache keyed on the URL and reaches the primary, which answers it
 * `no-store`. A replica uses it to re-ask for a range whose cached copy failed its checksums.
 */
export const FRESH_PARAM = 'fresh';

/** GENERATION_HEX_WIDTH: generations print as 8 lowercase hex digits in paths, as in backup object names. */
export const GENERATION_HEX_WIDTH = 8;

/** changesPath is the path of the range starting at (or holding) `txid`. */
export function changesPath(db: string, generation: Generation, txid: Txid): string {
  return `/v1/db/${encodeURIComponent(db)}/changes/${generation.toString(16).padStart(GENERATION_HEX_WIDTH, '0')}/${formatTxid(txid)}`;
}

/** parseChangesPathParams reads the path's generation and txid as changesPath wrote them, or null (not canonical). */
export function parseChangesPathParams(generation: string, txid: string): { generation: Generation; txid: Txid } | null {
  if (!/^[0-9a-f]{8}$/.test(generation) || !/^[0-9a-f]{16}$/.test(txid)) return null;
  const g = Number.parseInt(generation, 16);
  const t = Number.parseInt(txid, 16);
  return Number.isSafeInteger(t) && t >= 1 ? { generation: g, txid: t } : null;
}

/** rangeETag is the strong entity tag of a range: what names its bytes (a sealed range never changes). */
export function rangeETag(databaseId: number, generation: Generation, from: Txid, to: Txid): string {
  return `"${databaseId.toString(16).padStart(8, '0')}-${generation.toString(16).padStart(GENERATION_HEX_WIDTH, '0')}-${formatTxid(from)}-${formatTxid(to)}"`;
}

/** ifNoneMatchHits says whether an If-None-Match header names `etag` (weak comparison, as RFC 9110 asks, or `*`). */
export function ifNoneMatchHits(header: string | null | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag.replace(/^W\//, '') === etag;
  });
}
