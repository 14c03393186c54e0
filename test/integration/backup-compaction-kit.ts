/**
 * A simulated-time backup for the compaction tests: a real primary store (real SQLite files, real
 * capture and log) and a BackupRunner over a real object store, both reading one clock the test moves,
 * so days of writes, merges and retention run in seconds. Every write's position and commit time are
 * recorded, so a restore can be compared with what the database held then; every store request is
 * recorded by database, so a test can say which databases cost what.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { catalog, planRestore, type RestoreTarget } from '../../shared/backup-layout.ts';
import type { CompactionPolicy } from '../../shared/backup-compaction.ts';
import type { ObjectStore } from '../../shared/object-store.ts';
import { formatChecksum } from '../../shared/types.ts';
import { BackupRunner } from '../../primary/backup.ts';
import { restoreDatabase } from '../../primary/restore.ts';
import { PrimaryStore } from '../../primary/store.ts';
import { fileChecksum } from './backup-kit.ts';

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;

/** Recorded is the primary's position right after one write, with its commit time. */
export interface Recorded {
  txid: number;
  checksum: string;
  time: number;
}

export interface Request {
  op: 'put' | 'get' | 'list' | 'delete';
  key: string;
}

/** recording wraps a store so every request is kept, in order. */
export function recording(inner: ObjectStore): { store: ObjectStore; requests: Request[] } {
  const requests: Request[] = [];
  const store: ObjectStore = {
    description: inner.description,
    put: (key, bytes) => (requests.push({ op: 'put', key }), inner.put(key, bytes)),
    get: (key) => (requests.push({ op: 'get', key }), inner.get(key)),
    list: (prefix) => (requests.push({ op: 'list', key: prefix }), inner.list(prefix)),
    delete: (key) => (requests.push({ op: 'delete', key }), inner.delete(key)),
  };
  return { store, requests };
}

export interface SimulationOptions {
  dir: string;
  objects: ObjectStore;
  retentionMs: number;
  compaction: Partial<Omit<CompactionPolicy, 'retentionMs'>>;
  /** Simulated time between uploads: each step waits min..max ms (uniform, seeded). */
  stepMs: [number, number];
  seed?: number;
}

export class Simulation {
  now = Date.UTC(2026, 0, 5);
  readonly written: Recorded[] = [];
  readonly requests: Request[];
  readonly objects: ObjectStore;
  readonly runner: BackupRunner;
  readonly store: PrimaryStore;
  /** Every line the store and the runner logged. */
  readonly lines: Array<Record<string, unknown>> = [];
  readonly logger = (e: Record<string, unknown>): void => void this.lines.push(e);
  /** Whether runFor leaves idle stretches between writes. */
  idleStretches = true;
  readonly #o: SimulationOptions;
  #x: number;
  #rows = 0;

  constructor(o: SimulationOptions) {
    this.#o = o;
    this.#x = o.seed ?? 1;
    this.objects = o.objects;
    const rec = recording(o.objects);
    this.requests = rec.requests;
    const clock = (): number => this.now;
    // The interval timer is kept out of the way: the test drives every pass (flush, maintain) itself.
    this.runner = new BackupRunner(rec.store, { intervalMs: 3_600_000, logger: this.logger, clock, retentionMs: o.retentionMs, compaction: o.compaction });
    mkdirSync(o.dir, { recursive: true });
    this.store = new PrimaryStore(join(o.dir, 'data'), {
      synchronous: 'normal',
      busyTimeoutMs: 5000,
      compress: false,
      checkpointFrames: 4000,
      pollIntervalMs: 1000,
      log: {},
      queryPool: null,
      logger: this.logger,
      logHold: (n) => this.runner.holdFor(n),
      clock,
    }).open();
  }

  rand(k: number): number {
    this.#x = (this.#x * 1103515245 + 12345) % 2 ** 31;
    return Math.floor((this.#x / 2 ** 31) * k); // the high bits: an LCG's low bits repeat quickly
  }

  async start(db: string, ...others: string[]): Promise<void> {
    for (const name of [db, ...others]) this.store.create(name);
    await this.store.require(db).write([{ sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)', params: [] }]);
    this.#record(db);
    this.runner.start(this.store);
    await this.runner.flush();
  }

  /** write runs one random insert, update or delete (rows of 10 B..3 KB, so pages split and free). */
  async write(db: string): Promise<void> {
    const op = this.rand(10);
    const v = 'x'.repeat(10 + this.rand(3000)) + this.written.length;
    const d = this.store.require(db);
    if (op < 5 || this.#rows < 3) {
      await d.write([{ sql: 'INSERT INTO t (v) VALUES (?)', params: [v] }]);
      this.#rows++;
    } else if (op < 8) await d.write([{ sql: 'UPDATE t SET v = ? WHERE id = ?', params: [v, 1 + this.rand(this.#rows)] }]);
    else await d.write([{ sql: 'DELETE FROM t WHERE id IN (?, ?)', params: [1 + this.rand(this.#rows), 1 + this.rand(this.#rows)] }]);
    this.#record(db);
  }

  #record(db: string): void {
    const d = this.store.require(db);
    this.written.push({ txid: d.position.txid, checksum: formatChecksum(d.position.checksum), time: d.lastCommitTime });
  }

  /**
   * runFor moves the clock `ms` forward in steps: each step one or two writes a few seconds apart,
   * then one pass (upload, merges, deletions due). Now and then an idle stretch of 20..90 minutes with
   * no writes, the clock visiting it so deletions fall due inside it. `check` runs every `every` steps.
   */
  async runFor(db: string, ms: number, check?: () => Promise<void>, every = 100): Promise<void> {
    const end = this.now + ms;
    const [min, max] = this.#o.stepMs;
    for (let i = 1; this.now < end; i++) {
      if (this.idleStretches && this.rand(40) === 0) {
        const idleEnd = this.now + 20 * MINUTE + this.rand(70 * MINUTE);
        while (this.now < idleEnd) {
          this.now += max;
          await this.runner.maintain();
        }
      }
      this.now += min + this.rand(max - min + 1);
      await this.write(db);
      if (this.rand(3) === 0) {
        this.now += 1000 + this.rand(5000);
        await this.write(db);
      }
      await this.runner.flush();
      if (check && i % every === 0) await check();
    }
  }

  /** restorePlanSize is the objects a restore to `target` would read, from a fresh listing. */
  async restorePlanSize(db: string, target: RestoreTarget): Promise<number> {
    const plan = planRestore(db, catalog(await this.objects.list(`${db}/`)).get(db), target);
    return 1 + plan.segments.length;
  }

  /** restoreAndCompare restores `w.txid` and says whether the file equals the primary's state then. */
  async restoreAndCompare(db: string, w: Recorded, name: string): Promise<{ txid: number; checksum: string; file: string; out: string }> {
    const out = join(this.#o.dir, `${name}.db`);
    const r = await restoreDatabase(this.objects, { db, target: { txid: w.txid }, out, force: true });
    return { txid: r.txid, checksum: r.checksum, file: fileChecksum(out), out };
  }

  async close(): Promise<void> {
    await this.runner.close();
    this.store.close();
  }
}
