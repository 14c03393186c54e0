/**
 * ReplicaStore holds the replica's databases in its data directory (one `<name>.db` each, plus the
 * applier's position sidecar, and `<name>.db.snapshot-tmp` while a snapshot downloads: see
 * snapshot-file.ts) and what the primary's heartbeats said about them.
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
}

export class ReplicaStore {
  readonly dataDir: string;
  readonly #opts: ReplicaStoreOptions;
  readonly #dbs = new Map<string, ReplicaDatabase>();
  /** Waits on the store's databases, woken when one opens or changes (see until). */
  readonly #changes = new Conditions();
  #heartbeatAt = 0;

  constructor(dataDir: string, opts: ReplicaStoreOptions) {
    this.dataDir = dataDir;
    this.#opts = opts;
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
      db = new ReplicaDatabase(name, join(this.dataDir, `${name}.db`), this.#opts.busyTimeoutMs, this.#opts.queryPool ?? null);
      this.#dbs.set(name, db);
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

  close(): void {
    for (const db of this.#dbs.values()) db.close();
    this.#dbs.clear();
  }
}
