/**
 * PrimaryStore serves every `*.db` in a data directory (database-per-tenant), creates databases on
 * demand, and notices writes made by other processes: a watch on the directory for `-wal` changes plus
 * a poll as a safety net, each triggering a capture of that database.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, rmSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { EdgeliteError } from '../shared/errors.ts';
import { validateDatabaseName, type Position } from '../shared/types.ts';
import { PrimaryDatabase, type DatabaseOptions } from './database.ts';
import { writeFork } from './fork.ts';
import { stateDir } from './meta.ts';
import { StreamHub, type StreamSource } from './stream.ts';

export type StoreOptions = Omit<DatabaseOptions, 'onCapture' | 'onGeneration'> & {
  /** Poll interval for foreign writes the directory watch may miss (ms). */
  pollIntervalMs: number;
  /** logHold gives each database's log its keepAfter pin (the backup's, primary/backup.ts). */
  logHold?: (name: string) => () => number;
  /** onDrop hears a drop once the store no longer holds the database, before it closes (the backup's forget). */
  onDrop?: (name: string) => Promise<void>;
};

export class PrimaryStore implements StreamSource {
  readonly dataDir: string;
  readonly hub = new StreamHub();
  readonly #opts: StoreOptions;
  readonly #dbs = new Map<string, PrimaryDatabase>();
  readonly #pending = new Set<string>();
  /** Names being dropped or forked into: no create, fork or drop of them until that ends. */
  readonly #busy = new Set<string>();
  #watcher: FSWatcher | undefined;
  #poll: ReturnType<typeof setInterval> | undefined;

  constructor(dataDir: string, opts: StoreOptions) {
    this.dataDir = dataDir;
    this.#opts = opts;
  }

  /** open creates the directory, opens every database in it and starts watching. */
  open(): this {
    mkdirSync(this.dataDir, { recursive: true });
    for (const file of readdirSync(this.dataDir)) {
      if (!file.endsWith('.db')) continue;
      const name = file.slice(0, -3);
      try {
        validateDatabaseName(name);
      } catch {
        this.#opts.logger({ msg: 'skipping file with an unusable database name', file });
        continue;
      }
      this.#openDb(name);
    }
    this.#watcher = watch(this.dataDir, (_event, file) => {
      if (typeof file === 'string' && file.endsWith('.db-wal')) this.#scheduleCapture(file.slice(0, -7));
    });
    this.#watcher.on('error', (err) => this.#opts.logger({ msg: 'directory watch failed; polling only', error: String(err) }));
    this.#poll = setInterval(() => {
      for (const name of this.#dbs.keys()) this.#scheduleCapture(name);
    }, this.#opts.pollIntervalMs);
    this.#poll.unref();
    return this;
  }

  get(name: string): PrimaryDatabase | undefined {
    return this.#dbs.get(name);
  }

  /** require returns the database or throws DATABASE_NOT_FOUND. */
  require(name: string): PrimaryDatabase {
    validateDatabaseName(name);
    const db = this.#dbs.get(name);
    if (!db) throw new EdgeliteError('DATABASE_NOT_FOUND', `database ${name} does not exist (create it with PUT /v1/db/${name})`);
    return db;
  }

  names(): string[] {
    return [...this.#dbs.keys()].sort();
  }

  /** create opens `<name>.db`, creating it; returns whether it was new. Idempotent. */
  create(name: string): { db: PrimaryDatabase; created: boolean } {
    validateDatabaseName(name);
    const existing = this.#dbs.get(name);
    if (existing) return { db: existing, created: false };
    this.#assertNotBusy(name);
    const created = !existsSync(join(this.dataDir, `${name}.db`));
    const db = this.#openDb(name);
    this.hub.publishEvent(name, 'created');
    return { db, created };
  }

  /**
   * fork creates `name` from `from`'s state now or at `txid` (primary/fork.ts): a new database (new
   * database id, generation 1) with its own history. DATABASE_EXISTS if `name` exists.
   */
  async fork(name: string, from: string, txid: number | null): Promise<{ db: PrimaryDatabase; source: Position }> {
    validateDatabaseName(name);
    const source = this.require(from);
    if (name === from) throw new EdgeliteError('BAD_REQUEST', `a database cannot be forked into itself (${name})`);
    if (this.#dbs.has(name)) throw new EdgeliteError('DATABASE_EXISTS', `database ${name} exists: a fork creates a new database (DELETE it first)`);
    this.#assertNotBusy(name);
    const path = join(this.dataDir, `${name}.db`);
    if (existsSync(path)) throw new EdgeliteError('DATABASE_EXISTS', `${name}.db exists in the data directory`);
    this.#busy.add(name);
    try {
      // Left behind by a crash between a drop's steps: the fork must not inherit its id or log.
      removeFiles(this.dataDir, name);
      const result = await writeFork(source, txid, path);
      const db = this.#openDb(name);
      this.hub.publishEvent(name, 'created');
      this.#opts.logger({ msg: 'database forked', db: name, from, txid: result.from.txid, databaseId: db.databaseId });
      return { db, source: result.from };
    } finally {
      this.#busy.delete(name);
    }
  }

  /**
   * drop removes a database (README.md#http-api, DELETE /v1/db/{name}): new requests get
   * DATABASE_NOT_FOUND at once; it closes once the write in flight is done (PrimaryDatabase.closeForDrop),
   * the query processes forget the file, then its file, WAL, SHM, log and meta are deleted and the
   * streams say `db-dropped`. Backup objects are kept (restorable with `edgelite restore`).
   */
  async drop(name: string): Promise<void> {
    const db = this.require(name);
    this.#assertNotBusy(name);
    this.#busy.add(name);
    this.#dbs.delete(name);
    try {
      await this.#opts.onDrop?.(name);
      await db.closeForDrop();
      this.#opts.queryPool?.forget(db.path);
      removeFiles(this.dataDir, name);
      this.hub.publishEvent(name, 'dropped');
      this.#opts.logger({ msg: 'database dropped', db: name, databaseId: db.databaseId });
    } finally {
      this.#busy.delete(name);
    }
  }

  #assertNotBusy(name: string): void {
    if (this.#busy.has(name)) throw new EdgeliteError('BUSY', `database ${name} is being dropped or forked into; try again`);
  }

  #openDb(name: string): PrimaryDatabase {
    const { logHold, onDrop: _onDrop, ...opts } = this.#opts;
    const db = PrimaryDatabase.open(name, this.dataDir, {
      ...opts,
      log: logHold ? { ...opts.log, keepAfter: logHold(name) } : opts.log,
      onCapture: (c) => this.hub.publish(c),
      // Every new generation, whichever capture path found it, becomes one new-generation frame.
      onGeneration: () => this.hub.publishEvent(name, 'generation'),
      wantDeltas: () => this.hub.deltaSubscribers > 0,
    });
    this.#dbs.set(name, db);
    this.#opts.logger({ msg: 'database open', db: name, ...positionLog(db) });
    return db;
  }

  #scheduleCapture(name: string): void {
    if (this.#pending.has(name) || !this.#dbs.has(name)) return;
    this.#pending.add(name);
    setImmediate(() => {
      this.#pending.delete(name);
      const db = this.#dbs.get(name);
      if (!db) return;
      try {
        db.capture();
      } catch (err) {
        this.#opts.logger({ msg: 'capture failed', db: name, error: String(err) });
      }
    });
  }

  close(): void {
    this.#watcher?.close();
    clearInterval(this.#poll);
    for (const db of this.#dbs.values()) db.close();
    this.#dbs.clear();
  }
}

/** removeFiles deletes a database's file, WAL, SHM and state directory (log and meta), durably. */
function removeFiles(dataDir: string, name: string): void {
  const path = join(dataDir, `${name}.db`);
  for (const suffix of ['-wal', '-shm', '']) rmSync(`${path}${suffix}`, { force: true });
  rmSync(stateDir(dataDir, name), { recursive: true, force: true });
  const fd = openSync(dataDir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function positionLog(db: PrimaryDatabase): Record<string, unknown> {
  const p = db.position;
  return { generation: p.generation, txid: p.txid, pages: db.pageCount };
}
