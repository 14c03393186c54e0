/**
 * LazyDatabases is the followed set of a lazy replica (`--lazy`, docs/ARCHITECTURE.md#many-databases): a database is fetched
 * on its first request, kept while used, and evicted from disk under an LRU limit.
 *
 * - Fetch: the primary is asked whether it has the database (GET /v1/db/{name}; its 404 is this
 *   replica's DATABASE_NOT_FOUND and nothing is created here), an empty local copy is opened, and the
 *   stream is restarted with the new list (Follower.follow), which snapshots it. Concurrent first
 *   requests share one fetch. The request then waits for the bootstrap like any read that names a
 *   position (replica/app.ts).
 * - LRU: every request touches its database. When more than `maxDatabases` are here, the least
 *   recently used ones that no request holds are left out of the stream, and once no session can write
 *   to them any more, closed and deleted (file, WAL, SHM, position sidecar). The next request fetches
 *   such a database again.
 * - Start: whatever is on disk is followed again (resumed from its positions, no new snapshot), the
 *   least recently modified beyond the limit deleted first.
 */
import { statSync } from 'node:fs';
import type { DatabaseMatcher } from '../shared/db-pattern.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import { validateDatabaseName } from '../shared/types.ts';
import { positionFilePath } from './position-file.ts';
import type { ReplicaStore } from './store.ts';

export interface LazyOptions {
  store: ReplicaStore;
  /** Asks the primary for a database's position: resolves if it has the database (PrimaryClient.position). */
  primaryHas(name: string): Promise<unknown>;
  /** Changes the stream's list; resolves once no session writes to a database left out (Follower.follow). */
  follow(names: string[]): Promise<void>;
  maxDatabases: number;
  /** `--databases` with `--lazy`: only matching databases are fetched (others DATABASE_NOT_FOUND); null: any. */
  allowed?: DatabaseMatcher | null;
  logger: Logger;
}

/** Release ends one request's use of a database (call it once the response is built). */
export type Release = () => void;

export class LazyDatabases {
  readonly #o: LazyOptions;
  /** The followed databases, least recently used first (a Map keeps insertion order: a touch re-inserts). */
  readonly #lru = new Map<string, true>();
  /** Requests holding each database: a held database is never evicted. */
  readonly #users = new Map<string, number>();
  readonly #fetching = new Map<string, Promise<void>>();
  readonly #evicting = new Map<string, Promise<void>>();
  #evictRunning = false;
  #evictWanted = false;
  #fetches = 0;
  #evictions = 0;

  constructor(o: LazyOptions) {
    if (!Number.isSafeInteger(o.maxDatabases) || o.maxDatabases < 1) {
      throw new EdgeliteError('BAD_REQUEST', `maxDatabases must be a positive integer, got ${o.maxDatabases}`);
    }
    this.#o = o;
    const onDisk = o.store.names().map((name) => ({ name, at: lastWritten(o.store.get(name)!.path) }));
    onDisk.sort((a, b) => a.at - b.at);
    for (const { name } of onDisk) this.#lru.set(name, true);
    const over = onDisk.slice(0, Math.max(0, onDisk.length - o.maxDatabases)).map((d) => d.name);
    // No stream follows anything yet: the extra ones can go at once.
    for (const name of over) {
      this.#lru.delete(name);
      o.store.drop(name);
    }
    if (over.length > 0) o.logger({ msg: 'databases evicted at start', dbs: over, maxDatabases: o.maxDatabases });
  }

  /** followed lists the databases the stream follows (local ones and ones being fetched). */
  get followed(): string[] {
    return [...this.#lru.keys()];
  }

  /** fetches and evictions count what this replica did since it started (for logs and tests). */
  get fetches(): number {
    return this.#fetches;
  }

  get evictions(): number {
    return this.#evictions;
  }

  /**
   * acquire marks `name` as used by one request (most recently used, not evictable until released),
   * fetching it first if it is not here. Rejects with DATABASE_NOT_FOUND when the primary does not
   * have it, or with the primary's error when it cannot tell.
   */
  async acquire(name: string): Promise<Release> {
    validateDatabaseName(name);
    if (this.#o.allowed && !this.#o.allowed(name)) {
      throw new EdgeliteError('DATABASE_NOT_FOUND', `database ${name} is not replicated here (outside --databases)`);
    }
    this.#users.set(name, (this.#users.get(name) ?? 0) + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const n = (this.#users.get(name) ?? 1) - 1;
      if (n > 0) this.#users.set(name, n);
      else this.#users.delete(name);
      if (this.#lru.size > this.#o.maxDatabases) this.#evictOverLimit();
    };
    try {
      for (;;) {
        const evicting = this.#evicting.get(name);
        if (evicting) {
          await evicting; // then fetched again, below
          continue;
        }
        if (this.#lru.has(name)) break;
        await this.#fetch(name);
      }
    } catch (err) {
      release();
      throw err;
    }
    this.#lru.delete(name);
    this.#lru.set(name, true);
    if (this.#lru.size > this.#o.maxDatabases) this.#evictOverLimit();
    return release;
  }

  /** #fetch adds a database the primary has to the stream; concurrent callers share one fetch. */
  #fetch(name: string): Promise<void> {
    let p = this.#fetching.get(name);
    if (p) return p;
    p = (async () => {
      try {
        await this.#o.primaryHas(name);
      } catch (err) {
        if (err instanceof EdgeliteError && err.code === 'DATABASE_NOT_FOUND') {
          throw new EdgeliteError('DATABASE_NOT_FOUND', `database ${name} is not replicated here (the primary does not have it)`, { cause: err });
        }
        throw err;
      }
      this.#o.store.ensure(name);
      this.#lru.set(name, true);
      this.#fetches++;
      this.#o.logger({ msg: 'database fetched on first use', db: name, local: this.#lru.size });
      // Not awaited: the old session may be in another database's snapshot; the request waits for
      // this database's own bootstrap instead.
      void this.#o.follow(this.followed);
    })().finally(() => this.#fetching.delete(name));
    this.#fetching.set(name, p);
    return p;
  }

  /** #evictOverLimit starts (or asks the running one to go on) evicting down to the limit. */
  #evictOverLimit(): void {
    this.#evictWanted = true;
    if (this.#evictRunning) return;
    this.#evictRunning = true;
    void this.#evictLoop();
  }

  async #evictLoop(): Promise<void> {
    try {
      while (this.#evictWanted) {
        this.#evictWanted = false;
        const excess = this.#lru.size - this.#o.maxDatabases;
        if (excess <= 0) continue;
        const victims: string[] = [];
        for (const name of this.#lru.keys()) {
          if (victims.length === excess) break;
          if (!this.#users.has(name) && !this.#fetching.has(name)) victims.push(name);
        }
        if (victims.length > 0) await this.#evict(victims);
      }
    } finally {
      this.#evictRunning = false; // in the same turn as the loop's last check: no wanted eviction is lost
    }
  }

  /** #evict leaves `names` out of the stream, waits until no session writes to them, then deletes them. */
  async #evict(names: string[]): Promise<void> {
    for (const name of names) this.#lru.delete(name);
    const done = this.#o.follow(this.followed).then(() => {
      for (const name of names) {
        try {
          this.#o.store.drop(name);
          this.#evictions++;
          this.#o.logger({ msg: 'database evicted', db: name, reason: 'least recently used', local: this.#lru.size, maxDatabases: this.#o.maxDatabases });
        } catch (err) {
          // Still open or partly deleted: its next request re-adds it to the stream (store.ensure reuses what is left).
          this.#o.logger({ msg: 'eviction failed', db: name, error: err instanceof Error ? err.message : String(err) });
        }
      }
    });
    for (const name of names) this.#evicting.set(name, done);
    try {
      await done;
    } finally {
      for (const name of names) this.#evicting.delete(name);
    }
  }
}

/** lastWritten is when a local database last changed (its WAL and sidecar change with every apply). */
function lastWritten(dbPath: string): number {
  let at = 0;
  for (const p of [dbPath, `${dbPath}-wal`, positionFilePath(dbPath)]) {
    try {
      at = Math.max(at, statSync(p).mtimeMs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return at;
}
