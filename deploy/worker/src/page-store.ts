/**
 * PageStore keeps one replicated database's pages and position in the Durable Object's own SQLite
 * storage (`ctx.storage.sql`: ordinary tables, which it allows), with a bounded LRU cache of pages in
 * memory. The VFS reads through it synchronously (storage SQL calls are synchronous), so a database does
 * not have to fit in the isolate's 128 MB: only the cache does.
 *
 * Tables:
 *   pages(pgno INTEGER PRIMARY KEY, data BLOB)  the primary's page images (page 1 unpatched)
 *   staging(pgno, data)                          a snapshot being downloaded, swapped in when verified
 *   meta(key TEXT PRIMARY KEY, value TEXT)       `state`: the position (JSON); `name`: the database name
 *
 * Atomicity: every change of pages and position is one `transactionSync`, so an evicted or restarted
 * object always reloads pages and a position that belong together.
 */
import type { PageSource } from './vfs.ts';

/** ReplicaMeta is what the object persists next to its pages. */
export interface ReplicaMeta {
  databaseId: number;
  pageSize: number;
  generation: number;
  txid: number;
  /** 16 hex digits, as formatChecksum prints it. */
  checksum: string;
  pageCount: number;
  /** Primary commit time of the newest applied transaction (ms). */
  appliedTimestamp: number;
  /** Snapshots taken over this object's life (a debug counter, persisted). */
  snapshots: number;
}

/** DEFAULT_CACHE_BYTES bounds the in-memory page cache (the isolate has 128 MB in all). */
export const DEFAULT_CACHE_BYTES = 32 * 1024 * 1024;

interface PageRow {
  data: ArrayBuffer;
}

export class PageStore implements PageSource {
  readonly #sql: SqlStorage;
  readonly #storage: DurableObjectStorage;
  readonly #cacheBytes: number;
  readonly #cache = new Map<number, Uint8Array>();
  #meta: ReplicaMeta | null;
  #version = 1;
  hits = 0;
  misses = 0;

  constructor(storage: DurableObjectStorage, cacheBytes = DEFAULT_CACHE_BYTES) {
    this.#storage = storage;
    this.#sql = storage.sql;
    this.#cacheBytes = cacheBytes;
    this.#sql.exec(`CREATE TABLE IF NOT EXISTS pages (pgno INTEGER PRIMARY KEY, data BLOB NOT NULL);
      CREATE TABLE IF NOT EXISTS staging (pgno INTEGER PRIMARY KEY, data BLOB NOT NULL);
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    this.#meta = this.#readMeta();
  }

  get meta(): ReplicaMeta | null {
    return this.#meta;
  }

  get pageSize(): number {
    return this.#meta?.pageSize ?? 0;
  }

  get pageCount(): number {
    return this.#meta?.pageCount ?? 0;
  }

  get version(): number {
    return this.#version;
  }

  get cachedPages(): number {
    return this.#cache.size;
  }

  /** storedBytes is the size of the object's SQLite storage (pages, staging and metadata). */
  get storedBytes(): number {
    return this.#sql.databaseSize;
  }

  get name(): string | null {
    const row = this.#sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'name'").toArray()[0];
    return row?.value ?? null;
  }

  setName(name: string): void {
    this.#sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('name', ?)", name);
  }

  page(pgno: number): Uint8Array {
    const hit = this.#cache.get(pgno);
    if (hit) {
      this.hits++;
      this.#cache.delete(pgno);
      this.#cache.set(pgno, hit);
      return hit;
    }
    this.misses++;
    const row = this.#sql.exec<PageRow>('SELECT data FROM pages WHERE pgno = ?', pgno).toArray()[0];
    if (!row) throw new Error(`page ${pgno} is missing from storage (page count ${this.pageCount})`);
    const data = new Uint8Array(row.data);
    this.#remember(pgno, data);
    return data;
  }

  /**
   * current returns the committed image of a page, or null if storage has none (a delta's base). Unlike
   * page() it leaves the cache order and the hit counters alone: those describe the VFS's reads, and
   * the commit that follows caches the page's new image anyway.
   */
  current(pgno: number): Uint8Array | null {
    if (pgno < 1 || pgno > this.pageCount) return null;
    const hit = this.#cache.get(pgno);
    if (hit) return hit;
    const row = this.#sql.exec<PageRow>('SELECT data FROM pages WHERE pgno = ?', pgno).toArray()[0];
    return row ? new Uint8Array(row.data) : null;
  }

  /** scan yields every stored page in page order, without filling the cache (boot-time checksum). */
  *scan(): Generator<{ pgno: number; data: Uint8Array }> {
    for (const row of this.#sql.exec<{ pgno: number; data: ArrayBuffer }>('SELECT pgno, data FROM pages ORDER BY pgno')) {
      yield { pgno: row.pgno, data: new Uint8Array(row.data) };
    }
  }

  /**
   * commit writes changed pages, drops pages above `meta.pageCount`, and records `meta`, in one storage
   * transaction; then updates the cache and the version the VFS presents.
   */
  commit(pages: ReadonlyMap<number, Uint8Array>, meta: ReplicaMeta): void {
    const before = this.pageCount;
    this.#storage.transactionSync(() => {
      for (const [pgno, data] of pages) this.#sql.exec('INSERT OR REPLACE INTO pages (pgno, data) VALUES (?, ?)', pgno, data);
      if (meta.pageCount < before) this.#sql.exec('DELETE FROM pages WHERE pgno > ?', meta.pageCount);
      this.#writeMeta(meta);
    });
    // A copy: a change set's pages are views into its frame, which the cache must not keep alive.
    for (const [pgno, data] of pages) this.#remember(pgno, data.slice());
    if (meta.pageCount < before) for (const pgno of [...this.#cache.keys()]) if (pgno > meta.pageCount) this.#cache.delete(pgno);
    this.#meta = meta;
    this.#version++;
  }

  /** beginStaging empties the staging table for a new snapshot download. */
  beginStaging(): void {
    this.#sql.exec('DELETE FROM staging');
  }

  /** stage adds downloaded snapshot pages, in one storage transaction (one per call, not per page). */
  stage(pages: ReadonlyArray<readonly [number, Uint8Array]>): void {
    if (pages.length === 0) return;
    this.#storage.transactionSync(() => {
      for (const [pgno, data] of pages) this.#sql.exec('INSERT OR REPLACE INTO staging (pgno, data) VALUES (?, ?)', pgno, data);
    });
  }

  /** commitStaging replaces every page with the staged snapshot and records `meta`, atomically. */
  commitStaging(meta: ReplicaMeta): void {
    this.#storage.transactionSync(() => {
      this.#sql.exec('DELETE FROM pages');
      this.#sql.exec('INSERT INTO pages (pgno, data) SELECT pgno, data FROM staging');
      this.#sql.exec('DELETE FROM staging');
      this.#writeMeta(meta);
    });
    this.#cache.clear();
    this.#meta = meta;
    this.#version++;
  }

  /** clear deletes every stored page, the staging table and the position (the database was dropped on the primary). */
  clear(): void {
    this.#storage.transactionSync(() => {
      this.#sql.exec('DELETE FROM pages');
      this.#sql.exec('DELETE FROM staging');
      this.#sql.exec("DELETE FROM meta WHERE key = 'state'");
    });
    this.#cache.clear();
    this.#meta = null;
    this.#version++;
  }

  /** forget drops the position (pages stay until the next snapshot replaces them). */
  forget(): void {
    this.#sql.exec("DELETE FROM meta WHERE key = 'state'");
    this.#meta = null;
    this.#version++;
  }

  #remember(pgno: number, data: Uint8Array): void {
    this.#cache.delete(pgno);
    this.#cache.set(pgno, data);
    const limit = Math.max(16, Math.floor(this.#cacheBytes / Math.max(512, this.pageSize)));
    while (this.#cache.size > limit) this.#cache.delete(this.#cache.keys().next().value as number);
  }

  #readMeta(): ReplicaMeta | null {
    const row = this.#sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'state'").toArray()[0];
    return row ? (JSON.parse(row.value) as ReplicaMeta) : null;
  }

  #writeMeta(meta: ReplicaMeta): void {
    this.#sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('state', ?)", JSON.stringify(meta));
  }
}
