/**
 * PrimaryStore serves every `*.db` in a data directory (database-per-tenant), creates databases on
 * demand, opens them on use and closes them when idle (docs/ARCHITECTURE.md#many-databases), and
 * notices writes made by other processes: a watch on the directory, a poll of the open databases, and
 * a sweep of the closed ones that only stats their files, each triggering a capture of that database.
 */
import { existsSync, mkdirSync, readdirSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { EdgeliteError } from '../shared/errors.ts';
import { validateDatabaseName, type Position } from '../shared/types.ts';
import type { GenerationStart } from '../shared/consistency.ts';
import { readClosedRecord, recordInfo, unchangedSince, type ClosedRecord } from './closed-record.ts';
import { PrimaryDatabase, type DatabaseOptions } from './database.ts';
import { writeFork } from './fork.ts';
import { stateDir } from './meta.ts';
import { readClosedImage, removeFiles } from './store-files.ts';
import { StreamHub, type StreamSource } from './stream.ts';

export type StoreOptions = Omit<DatabaseOptions, 'onCapture' | 'onGeneration'> & {
  /** Poll interval for foreign writes the directory watch may miss, on open databases only (ms). */
  pollIntervalMs: number;
  /**
   * `--idle-close-ms`: a database nobody used for this long is closed, leaving a closed record
   * (closed-record.ts); 0 keeps every database open from start to stop (the design before it).
   */
  idleCloseMs?: number;
  /**
   * `--max-open-databases`: with idle closing, at most this many databases are open at once; opening
   * one more first closes the least recently used idle one (DEFAULT_MAX_OPEN).
   */
  maxOpen?: number;
  /** How long the metadata sweep takes to stat every closed database once (ms); DEFAULT_SWEEP_CYCLE_MS. */
  sweepCycleMs?: number;
  /** logHold gives each database's log its keepAfter pin (the backup's, primary/backup.ts). */
  logHold?: (name: string) => () => number;
  /** onDrop hears a drop once the store no longer holds the database, before it closes (the backup's forget). */
  onDrop?: (name: string) => Promise<void>;
};

/** DEFAULT_SWEEP_CYCLE_MS: every closed database's files are stat'ed once per this period (a foreign write the watch missed). */
export const DEFAULT_SWEEP_CYCLE_MS = 15_000;
/** DEFAULT_MAX_OPEN: about ten descriptors each, so 512 open databases stay far below a 20,000 descriptor limit. */
export const DEFAULT_MAX_OPEN = 512;
const SWEEP_TICK_MS = 1000;

/**
 * DbInfo is what the store knows of a database without opening it: PrimaryDatabase has all of it, and a
 * closed database has it from its closed record.
 */
export interface DbInfo {
  readonly name: string;
  readonly databaseId: number;
  readonly position: Position;
  readonly pageSize: number;
  readonly pageCount: number;
  readonly lastCommitTime: number;
  readonly generations: GenerationStart[];
}

/** Entry: one database of the data directory, open (db) or closed (record); usedAt for the idle sweep. */
interface Entry {
  db: PrimaryDatabase | null;
  record: ClosedRecord | null;
  usedAt: number;
}

export class PrimaryStore implements StreamSource {
  readonly dataDir: string;
  readonly hub = new StreamHub();
  readonly #opts: StoreOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #open = new Set<string>(); // the open entries' names: the max-open check scans nothing
  readonly #pending = new Set<string>();
  /** Names being dropped or forked into: no create, fork or drop of them until that ends. */
  readonly #busy = new Set<string>();
  #watcher: FSWatcher | undefined;
  #timers: Array<ReturnType<typeof setInterval>> = [];
  /** Where the metadata sweep goes on next (an index into the closed names at that tick). */
  #sweepAt = 0;
  #closing = false;

  constructor(dataDir: string, opts: StoreOptions) {
    this.dataDir = dataDir;
    this.#opts = opts;
  }

  get #idleCloseMs(): number {
    return this.#opts.idleCloseMs ?? 0;
  }

  /**
   * open lists the databases in the directory and starts watching. With idle closing, a database
   * closed cleanly and untouched since stays closed (its record says where it stands); any other opens
   * now, so its recovery runs before the first request (docs/ARCHITECTURE.md#many-databases).
   */
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
      const record = this.#idleCloseMs > 0 ? readClosedRecord(stateDir(this.dataDir, name)) : null;
      if (record && unchangedSince(record, join(this.dataDir, file))) {
        this.#entries.set(name, { db: null, record, usedAt: 0 });
      } else {
        // Recovered now, before any request; with idle closing, closed again at once, so a first start
        // of thousands of databases never holds them all open.
        this.#openDb(name);
        if (this.#idleCloseMs > 0) this.#closeEntry(name, this.#entries.get(name)!);
      }
    }
    this.#watcher = watch(this.dataDir, (_event, file) => {
      if (typeof file !== 'string') return;
      if (file.endsWith('.db-wal')) this.#scheduleCapture(file.slice(0, -7));
      else if (file.endsWith('.db')) this.#scheduleCapture(file.slice(0, -3));
    });
    this.#watcher.on('error', (err) => this.#opts.logger({ msg: 'directory watch failed; polling and sweeping only', error: String(err) }));
    this.#every(this.#opts.pollIntervalMs, () => {
      for (const name of this.#open) this.#scheduleCapture(name);
    });
    if (this.#idleCloseMs > 0) {
      this.#every(Math.min(this.#idleCloseMs, SWEEP_TICK_MS), () => this.#closeIdle());
      this.#every(SWEEP_TICK_MS, () => this.#sweep());
    }
    return this;
  }

  /** get returns the database, opening it if it is closed (and counting the use); undefined if there is none. */
  get(name: string): PrimaryDatabase | undefined {
    const e = this.#entries.get(name);
    if (!e) return undefined;
    e.usedAt = Date.now();
    return e.db ?? this.#reopen(name, e);
  }

  /** peek returns the database only if it is open (no open, no use counted). */
  peek(name: string): PrimaryDatabase | undefined {
    return this.#entries.get(name)?.db ?? undefined;
  }

  /** closedImage is a closed database's file as its snapshot, read without opening it (store-files.ts), or null. */
  closedImage(name: string): { bytes: Uint8Array; info: DbInfo } | null {
    const e = this.#entries.get(name);
    const bytes = e && !e.db && e.record ? readClosedImage(join(this.dataDir, `${name}.db`), e.record) : null;
    return bytes ? { bytes, info: recordInfo(name, e!.record!) } : null;
  }

  /** info is where a database stands, without opening it. */
  info(name: string): DbInfo | undefined {
    const e = this.#entries.get(name);
    return e ? (e.db ?? recordInfo(name, e.record!)) : undefined;
  }

  /** require returns the database (opening it) or throws DATABASE_NOT_FOUND. */
  require(name: string): PrimaryDatabase {
    validateDatabaseName(name);
    const db = this.get(name);
    if (!db) throw new EdgeliteError('DATABASE_NOT_FOUND', `database ${name} does not exist (create it with PUT /v1/db/${name})`);
    return db;
  }

  /** requireInfo is info or DATABASE_NOT_FOUND. */
  requireInfo(name: string): DbInfo {
    validateDatabaseName(name);
    const info = this.info(name);
    if (!info) throw new EdgeliteError('DATABASE_NOT_FOUND', `database ${name} does not exist (create it with PUT /v1/db/${name})`);
    return info;
  }

  names(): string[] {
    return [...this.#entries.keys()].sort();
  }

  /** infos is every database's info in no order, without opening any: what the status sampler reads each second. */
  *infos(): Iterable<DbInfo> {
    for (const [name, e] of this.#entries) yield e.db ?? recordInfo(name, e.record!);
  }

  /** counts: databases known and open now (metrics, the P10 bench). */
  counts(): { databases: number; open: number } {
    return { databases: this.#entries.size, open: this.#open.size };
  }

  /** create opens `<name>.db`, creating it; returns whether it was new. Idempotent. */
  create(name: string): { db: PrimaryDatabase; created: boolean } {
    validateDatabaseName(name);
    const existing = this.get(name);
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
    if (this.#entries.has(name)) throw new EdgeliteError('DATABASE_EXISTS', `database ${name} exists: a fork creates a new database (DELETE it first)`);
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
    this.#entries.delete(name);
    this.#open.delete(name);
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
    const { logHold, onDrop: _onDrop, idleCloseMs: _idle, sweepCycleMs: _sweep, maxOpen: _max, ...opts } = this.#opts;
    const db = PrimaryDatabase.open(name, this.dataDir, {
      ...opts,
      log: logHold ? { ...opts.log, keepAfter: logHold(name) } : opts.log,
      onCapture: (c) => this.hub.publish(c),
      // Every new generation, whichever capture path found it, becomes one new-generation frame.
      onGeneration: () => this.hub.publishEvent(name, 'generation'),
      wantDeltas: () => this.hub.deltaSubscribers > 0,
    });
    this.#entries.set(name, { db, record: null, usedAt: Date.now() });
    this.#open.add(name);
    this.#opts.logger({ msg: 'database open', db: name, ...positionLog(db) });
    if (this.#idleCloseMs > 0) this.#enforceMaxOpen(name);
    return db;
  }

  /** #enforceMaxOpen closes least recently used idle databases while more than maxOpen are open (never `keep`). */
  #enforceMaxOpen(keep: string): void {
    const max = this.#opts.maxOpen ?? DEFAULT_MAX_OPEN;
    if (this.#open.size <= max) return;
    const open: Array<[string, Entry]> = [];
    for (const name of this.#open) {
      const e = this.#entries.get(name);
      if (e?.db) open.push([name, e]);
    }
    if (open.length <= max) return;
    open.sort((a, b) => a[1].usedAt - b[1].usedAt);
    let excess = open.length - max;
    for (const [name, e] of open) {
      if (excess === 0) break;
      if (name === keep || !e.db!.idle || this.#busy.has(name)) continue;
      this.#closeEntry(name, e);
      excess--;
    }
  }

  /** #reopen opens a closed database; what changed while it was closed is caught up by its recovery. */
  #reopen(name: string, e: Entry): PrimaryDatabase {
    const before = e.record!;
    const db = this.#openDb(name);
    const p = db.position;
    if (p.generation !== before.generation || p.txid !== before.txid) {
      // Caught up while opening (a foreign write, by WAL or by page hashes): tell the live streams, which
      // knew the closed position, through the catch-up path they take on an out-of-step change.
      this.#opts.logger({ msg: 'closed database changed while closed', db: name, from: before.txid, to: p.txid, generation: p.generation });
    }
    return db;
  }

  #scheduleCapture(name: string): void {
    if (this.#pending.has(name) || !this.#entries.has(name) || this.#closing) return;
    this.#pending.add(name);
    setImmediate(() => {
      this.#pending.delete(name);
      const e = this.#entries.get(name);
      if (!e || this.#closing) return;
      try {
        if (e.db) e.db.capture();
        else if (!unchangedSince(e.record!, join(this.dataDir, `${name}.db`))) this.#wake(name, e);
      } catch (err) {
        this.#opts.logger({ msg: 'capture failed', db: name, error: String(err) });
      }
    });
  }

  /** #wake opens a closed database a foreign process wrote to, capturing the write, and tells the streams. */
  #wake(name: string, e: Entry): void {
    const db = this.#reopen(name, e);
    e.usedAt = Date.now();
    db.capture(); // recovery's catch-up and this capture reach the live streams through the hub
  }

  /** #closeIdle closes the open databases nobody used for idleCloseMs (and that have no write running). */
  #closeIdle(): void {
    const cutoff = Date.now() - this.#idleCloseMs;
    for (const name of [...this.#open]) {
      const e = this.#entries.get(name);
      if (!e?.db || e.usedAt > cutoff || !e.db.idle || this.#busy.has(name)) continue;
      this.#closeEntry(name, e);
    }
  }

  #closeEntry(name: string, e: Entry): void {
    const db = e.db!;
    this.#open.delete(name);
    try {
      const record = db.closeToRecord();
      this.#opts.queryPool?.forget(db.path);
      if (record) {
        e.db = null;
        e.record = record;
      } else {
        this.#entries.delete(name);
      }
    } catch (err) {
      // Closed anyway (its connections are gone): open again on next use, through full recovery.
      this.#opts.logger({ msg: 'idle close failed; the database reopens on next use', db: name, error: String(err) });
      e.db = null;
      e.record = null;
      this.#entries.set(name, e);
      this.#openDb(name);
    }
  }

  /**
   * #sweep stats a slice of the closed databases, so each is looked at once per sweep cycle: a foreign
   * write the directory watch missed (another mount, a lost event) is caught within the cycle.
   */
  #sweep(): void {
    const closed: string[] = [];
    for (const [name, e] of this.#entries) if (!e.db) closed.push(name);
    if (closed.length === 0) return;
    const ticks = Math.max(1, Math.round((this.#opts.sweepCycleMs ?? DEFAULT_SWEEP_CYCLE_MS) / SWEEP_TICK_MS));
    const slice = Math.ceil(closed.length / ticks);
    for (let i = 0; i < slice; i++) {
      const name = closed[(this.#sweepAt + i) % closed.length]!;
      const e = this.#entries.get(name)!;
      if (!unchangedSince(e.record!, join(this.dataDir, `${name}.db`))) this.#scheduleCapture(name);
    }
    this.#sweepAt = (this.#sweepAt + slice) % closed.length;
  }

  #every(ms: number, fn: () => void): void {
    this.#timers.push(setInterval(fn, ms).unref());
  }

  /** close closes every open database, each leaving its closed record when idle closing is on. */
  close(): void {
    this.#closing = true;
    this.#watcher?.close();
    for (const t of this.#timers) clearInterval(t);
    for (const [name, e] of this.#entries) {
      if (!e.db) continue;
      if (this.#idleCloseMs > 0) this.#closeEntry(name, e);
      else e.db.close();
    }
    this.#entries.clear();
    this.#open.clear();
  }
}


function positionLog(db: PrimaryDatabase): Record<string, unknown> {
  return { generation: db.position.generation, txid: db.position.txid, pages: db.pageCount };
}
