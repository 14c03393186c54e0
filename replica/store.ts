/**
 * ReplicaStore holds the replica's databases in its data directory (one `<name>.db` each, plus the
 * applier's position sidecar, and `<name>.db.snapshot-tmp` while a snapshot downloads: see
 * snapshot-file.ts) and what the primary's heartbeats said about them. With `idleCloseMs`, a database
 * not read nor applied to for that long closes its connections, and at most `maxOpen` are open at once,
 * the least recently used closed first (README.md#many-databases); a closed one reopens on its next use.
 */
import { compilePatterns, hasPattern, isPattern } from '../shared/db-pattern.ts';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { EdgeliteError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import { validateDatabaseName, type Position } from '../shared/types.ts';
import { ReplicaDatabase } from './database.ts';
import { positionFilePath } from './position-file.ts';
import { removeLeftoverSnapshots, snapshotTempPath } from './snapshot-file.ts';
import type { QueryPool } from '../shared/node/query-pool.ts';
import { Conditions } from '../shared/waiters.ts';

export interface ReplicaStoreOptions {
  busyTimeoutMs: number;
  logger: Logger;
  /** Runs every database's queries, time-limited (query-pool.ts); absent: queries run in-process. */
  queryPool?: QueryPool | null;
  /** `--idle-close-ms`: close a database's connections after this long unused; 0 or absent: never. */
  idleCloseMs?: number;
  /** `--max-open-databases`: with idle closing, the most databases open at once (DEFAULT_MAX_OPEN). */
  maxOpen?: number;
}

/** DEFAULT_MAX_OPEN: a few descriptors each (writer, WAL, SHM, sidecar, a reader), far below the usual limits. */
export const DEFAULT_MAX_OPEN = 512;
/** IDLE_SWEEP_MS: how often the idle databases are looked for (at most; a shorter idleCloseMs looks as often). */
const IDLE_SWEEP_MS = 1000;

export class ReplicaStore {
  readonly dataDir: string;
  readonly #opts: ReplicaStoreOptions;
  readonly #dbs = new Map<string, ReplicaDatabase>();
  /** Waits on the store's databases, woken when one opens or changes (see until). */
  readonly #changes = new Conditions();
  #heartbeatAt = 0;
  /** The open databases, least recently used first (a Map keeps insertion order: a use moves one last). */
  readonly #open = new Map<string, ReplicaDatabase>();
  readonly #sweep: ReturnType<typeof setInterval> | null = null;

  constructor(dataDir: string, opts: ReplicaStoreOptions) {
    this.dataDir = dataDir;
    this.#opts = opts;
    const idle = opts.idleCloseMs ?? 0;
    if (idle > 0) {
      this.#sweep = setInterval(() => this.closeIdle(Date.now() - idle), Math.min(idle, IDLE_SWEEP_MS));
      this.#sweep.unref?.();
    }
    mkdirSync(dataDir, { recursive: true });
    // No download runs yet: a snapshot temp file here was left by a process that was killed.
    const leftovers = removeLeftoverSnapshots(dataDir);
    if (leftovers.length > 0) opts.logger({ msg: 'removed snapshot temp files left by an earlier run', files: leftovers });
    for (const file of readdirSync(dataDir)) {
      if (!file.endsWith('.db')) continue;
      const name = file.slice(0, -3);
      try {
        validateDatabaseName(name);
      } catch {
        continue; // not one of ours
      }
      this.ensure(name);
    }
  }

  get(name: string): ReplicaDatabase | undefined {
    return this.#dbs.get(name);
  }

  names(): string[] {
    return [...this.#dbs.keys()].sort();
  }

  /** require returns a replicated database, or DATABASE_NOT_FOUND. */
  require(name: string): ReplicaDatabase {
    validateDatabaseName(name);
    const db = this.#dbs.get(name);
    if (!db) throw new EdgeliteError('DATABASE_NOT_FOUND', `database ${name} is not replicated here`);
    return db;
  }

  /** ensure opens (creating if needed) the local copy of a database. */
  ensure(name: string): ReplicaDatabase {
    validateDatabaseName(name);
    let db = this.#dbs.get(name);
    if (!db) {
      db = new ReplicaDatabase(name, join(this.dataDir, `${name}.db`), this.#opts.busyTimeoutMs, this.#opts.queryPool ?? null, (d) => this.#used(d));
      this.#dbs.set(name, db);
      this.#used(db); // opening it was a use: past maxOpen, the least recently used closes
      db.onChange(() => this.#changes.wake());
      this.#changes.wake();
      const p = db.position;
      this.#opts.logger({ msg: 'database open', db: name, txid: p?.txid ?? null, generation: p?.generation ?? null });
    }
    return db;
  }

  /**
   * recreate drops the local copy of a database and opens an empty one. Only for a snapshot the
   * existing file cannot take (another page size): processes that still have the old file open keep
   * reading the old inode until they reopen.
   */
  recreate(name: string): ReplicaDatabase {
    if (this.#remove(name)) this.#opts.logger({ msg: 'local copy dropped to take a snapshot it cannot hold', db: name });
    return this.ensure(name);
  }

  /**
   * drop closes a database and deletes its local files (a lazy replica's eviction). The caller makes
   * sure nothing writes to it any more (the follower no longer follows it). Returns whether it was here.
   */
  drop(name: string): boolean {
    const path = this.#dbs.get(name)?.path;
    if (!this.#remove(name)) return false;
    rmSync(snapshotTempPath(path!), { force: true }); // not while recreate's snapshot reads it: only here
    return true;
  }

  /** #remove closes a database, makes the query pool forget it, and deletes its file, WAL, SHM and sidecar. */
  #remove(name: string): boolean {
    const db = this.#dbs.get(name);
    if (!db) return false;
    db.close();
    this.#opts.queryPool?.forget(db.path);
    this.#dbs.delete(name);
    this.#open.delete(name);
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${db.path}${suffix}`, { force: true });
    rmSync(positionFilePath(db.path), { force: true });
    this.#changes.wake();
    return true;
  }

  /**
   * until resolves true once `holds()` is true, checked now, whenever a database opens (ensure,
   * recreate) and after every change of one (apply, snapshot, heartbeat, ready), or false after
   * `timeoutMs`: how a caller waits for a database that may not be here yet, with no polling.
   */
  until(holds: () => boolean, timeoutMs: number): Promise<boolean> {
    return this.#changes.until(holds, timeoutMs);
  }

  /**
   * positions lists where each followed database stands, for the stream request: every listed name,
   * and every local database a listed pattern matches (shared/db-pattern.ts).
   */
  positions(databases: '*' | string[]): Record<string, Position | null> {
    const names = databases === '*' ? this.names() : hasPattern(databases) ? [...new Set([...databases.filter((e) => !isPattern(e)), ...this.names().filter(compilePatterns(databases))])] : databases;
    const out: Record<string, Position | null> = {};
    for (const n of names) out[n] = this.#dbs.get(n)?.position ?? null;
    return out;
  }

  noteHeartbeat(time: number, positions: Record<string, { generation: number; txid: number; timestamp: number }>): void {
    this.#heartbeatAt = Date.now();
    for (const [name, p] of Object.entries(positions)) {
      this.#dbs.get(name)?.notePrimary({ ...p, heardAt: this.#heartbeatAt });
    }
    void time;
  }

  /** heartbeatAgeMs is how long ago the primary's last heartbeat arrived. */
  get heartbeatAgeMs(): number {
    return this.#heartbeatAt === 0 ? Number.POSITIVE_INFINITY : Date.now() - this.#heartbeatAt;
  }

  /** counts says how many databases are here and how many of them hold connections (the metrics' edgelite_databases). */
  counts(): { databases: number; open: number } {
    return { databases: this.#dbs.size, open: this.#open.size };
  }

  /** closeIdle closes the open databases last used before `cutoff` (Date.now() ms); returns how many. */
  closeIdle(cutoff: number): number {
    let closed = 0;
    for (const db of this.#open.values()) {
      if (db.usedAt > cutoff) break; // least recently used first: the rest were used later
      this.#closeOne(db);
      closed++;
    }
    if (closed > 0) this.#opts.logger({ msg: 'closed idle databases', count: closed, open: this.#open.size });
    return closed;
  }

  /** #used moves a database to the recent end; past maxOpen (with idle closing) the least recently used others close. */
  #used(db: ReplicaDatabase): void {
    this.#open.delete(db.name);
    this.#open.set(db.name, db);
    if (!(this.#opts.idleCloseMs ?? 0)) return;
    const max = this.#opts.maxOpen ?? DEFAULT_MAX_OPEN;
    for (const other of this.#open.values()) {
      if (this.#open.size <= max) break;
      if (other !== db) this.#closeOne(other);
    }
  }

  #closeOne(db: ReplicaDatabase): void {
    this.#open.delete(db.name);
    try {
      db.closeIdle();
    } catch (err) {
      // Its connections may be half closed: the next use reopens what it needs, and says if it cannot.
      this.#opts.logger({ msg: 'idle close failed; the database reopens on next use', db: db.name, error: String(err) });
    }
  }

  close(): void {
    if (this.#sweep) clearInterval(this.#sweep);
    for (const db of this.#dbs.values()) db.close();
    this.#dbs.clear();
    this.#open.clear();
  }
}
