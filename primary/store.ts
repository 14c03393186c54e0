/**
 * PrimaryStore serves every `*.db` in a data directory (database-per-tenant), creates databases on
 * demand, and notices writes made by other processes: a watch on the directory for `-wal` changes plus
 * a poll as a safety net, each triggering a capture of that database.
 */
import { existsSync, mkdirSync, readdirSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { EdgeliteError } from '../shared/errors.ts';
import { validateDatabaseName } from '../shared/types.ts';
import { PrimaryDatabase, type DatabaseOptions } from './database.ts';
import { StreamHub, type StreamSource } from './stream.ts';

export type StoreOptions = Omit<DatabaseOptions, 'onCapture' | 'onGeneration'> & {
  /** Poll interval for foreign writes the directory watch may miss (ms). */
  pollIntervalMs: number;
  /** logHold gives each database's log its keepAfter pin (the backup's, primary/backup.ts). */
  logHold?: (name: string) => () => number;
};

export class PrimaryStore implements StreamSource {
  readonly dataDir: string;
  readonly hub = new StreamHub();
  readonly #opts: StoreOptions;
  readonly #dbs = new Map<string, PrimaryDatabase>();
  readonly #pending = new Set<string>();
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
    const created = !existsSync(join(this.dataDir, `${name}.db`));
    const db = this.#openDb(name);
    this.hub.publishEvent(name, 'created');
    return { db, created };
  }

  #openDb(name: string): PrimaryDatabase {
    const { logHold, ...opts } = this.#opts;
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

function positionLog(db: PrimaryDatabase): Record<string, unknown> {
  const p = db.position;
  return { generation: p.generation, txid: p.txid, pages: db.pageCount };
}
