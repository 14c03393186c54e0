/**
 * ReplicaStore holds the replica's databases in its data directory (one `<name>.db` each, plus the
 * applier's position sidecar) and what the primary's heartbeats said about them.
 */
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { EdgeliteError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import { validateDatabaseName, type Position } from '../shared/types.ts';
import { ReplicaDatabase } from './database.ts';

export interface ReplicaStoreOptions {
  busyTimeoutMs: number;
  logger: Logger;
}

export class ReplicaStore {
  readonly dataDir: string;
  readonly #opts: ReplicaStoreOptions;
  readonly #dbs = new Map<string, ReplicaDatabase>();
  #heartbeatAt = 0;

  constructor(dataDir: string, opts: ReplicaStoreOptions) {
    this.dataDir = dataDir;
    this.#opts = opts;
    mkdirSync(dataDir, { recursive: true });
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
      db = new ReplicaDatabase(name, join(this.dataDir, `${name}.db`), this.#opts.busyTimeoutMs);
      this.#dbs.set(name, db);
      const p = db.position;
      this.#opts.logger({ msg: 'database open', db: name, txid: p?.txid ?? null, generation: p?.generation ?? null });
    }
    return db;
  }

  /** positions lists where each followed database stands, for the stream request. */
  positions(databases: '*' | string[]): Record<string, Position | null> {
    const names = databases === '*' ? this.names() : databases;
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
