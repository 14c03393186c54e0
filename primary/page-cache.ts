/**
 * PageCache holds recent page images as of the captured position, so a change set can be sent as
 * deltas against them (shared/changeset-delta.ts). Bounded LRU; pages not in it are read from the
 * read lock's snapshot and used only if their hash equals the per-page checksum at the captured
 * position (the lock's snapshot may already include a foreign commit not yet captured).
 */
import type { DatabaseChecksum } from '../shared/checksum.ts';
import { pageHash } from '../shared/checksum.ts';
import type { PageImage } from '../shared/types.ts';

/** DEFAULT_PAGE_CACHE_PAGES: 2048 pages is 8 MiB at 4 KiB pages. */
export const DEFAULT_PAGE_CACHE_PAGES = 2048;

export class PageCache {
  readonly #max: number;
  readonly #pages = new Map<number, Uint8Array>();

  constructor(maxPages = DEFAULT_PAGE_CACHE_PAGES) {
    this.#max = maxPages;
  }

  /**
   * base returns the image of `pgno` at the position `checksum` describes, or null: from the cache, or
   * from `read` (verified against the page's stored hash).
   */
  base(pgno: number, checksum: DatabaseChecksum, read: (pgno: number) => Uint8Array | null): Uint8Array | null {
    const want = checksum.pageHashAt(pgno);
    if (want === null) return null;
    const hit = this.#pages.get(pgno);
    if (hit && pageHash(pgno, hit) === want) return hit;
    const fromDb = read(pgno);
    return fromDb && pageHash(pgno, fromDb) === want ? fromDb : null;
  }

  /** update records a captured change set's pages (the new images) and drops pages past `commit`. */
  update(pages: PageImage[], commit: number): void {
    for (const p of pages) {
      this.#pages.delete(p.pgno);
      this.#pages.set(p.pgno, p.data);
    }
    for (const pgno of this.#pages.keys()) if (pgno > commit) this.#pages.delete(pgno);
    while (this.#pages.size > this.#max) {
      const oldest = this.#pages.keys().next();
      if (oldest.done) break;
      this.#pages.delete(oldest.value);
    }
  }

  clear(): void {
    this.#pages.clear();
  }
}
