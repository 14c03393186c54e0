/**
 * ReplicaDatabase is one followed database on a replica: the page applier (the only writer), a
 * read-only query connection, what the primary last said about its position (for lag), and the reads
 * waiting for a txid (read-your-writes).
 */
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { EdgeliteError } from '../shared/errors.ts';
import type { QueryResult, Statement } from '../shared/protocol.ts';
import { assertReplicaReadable, clearStatementCache, runRead } from '../shared/sql.ts';
import type { ChangeSet, Position } from '../shared/types.ts';
import { PageApplier } from './apply.ts';

interface Waiter {
  txid: number;
  generation: number;
  resolve: () => void;
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export interface PrimaryView {
  generation: number;
  txid: number;
  /** Primary's commit time of its newest transaction (ms). */
  timestamp: number;
  /** When we heard it (ms, our clock). */
  heardAt: number;
}

export class ReplicaDatabase {
  readonly name: string;
  readonly path: string;
  readonly #applier: PageApplier;
  #query: Database.Database | null = null;
  #waiters: Waiter[] = [];
  /** Commit time (primary clock) of the newest transaction applied here. */
  #appliedTimestamp = 0;
  #primary: PrimaryView | null = null;
  /** Set while a snapshot is needed; reads keep being served from the last good state. */
  needsSnapshot: string | null = null;
  ready = false;

  constructor(name: string, path: string, busyTimeoutMs: number) {
    this.name = name;
    this.path = path;
    this.#applier = PageApplier.open(path);
    this.#busyTimeoutMs = busyTimeoutMs;
  }

  readonly #busyTimeoutMs: number;

  get position(): Position | null {
    return this.#applier.position;
  }

  get databaseId(): number | null {
    return this.#applier.databaseId;
  }

  get pageCount(): number {
    return this.#applier.pageCount;
  }

  get primary(): PrimaryView | null {
    return this.#primary;
  }

  /** lagTxids is how many txids the primary had (at its last heartbeat) that we have not applied. */
  get lagTxids(): number {
    const p = this.position;
    if (!this.#primary || !p) return 0;
    return Math.max(0, this.#primary.txid - p.txid);
  }

  /**
   * lagMs bounds how stale our data may be: 0 when we hold everything the primary last told us of;
   * otherwise the time since the newest transaction we applied was committed on the primary (an upper
   * bound on how long we have missed something), measured on our clock against the heartbeat.
   */
  get lagMs(): number {
    const p = this.position;
    if (!p) return Number.POSITIVE_INFINITY;
    if (!this.#primary) return 0;
    if (this.#primary.generation === p.generation && p.txid >= this.#primary.txid) return 0;
    return Math.max(0, Date.now() - Math.max(this.#appliedTimestamp, this.#primary.heardAt - 1));
  }

  notePrimary(view: PrimaryView): void {
    this.#primary = view;
  }

  /** apply applies consecutive change sets in one transaction, then wakes the reads waiting for them. */
  apply(changeSets: ChangeSet[]): Position {
    const pos = this.#applier.apply(changeSets);
    this.#appliedTimestamp = changeSets[changeSets.length - 1]!.timestamp;
    this.#wake();
    return pos;
  }

  /** restore replaces the database with a snapshot image (bootstrap or re-snapshot). */
  restore(image: Uint8Array, position: Position, databaseId: number, timestamp: number): Position {
    const pos = this.#applier.restoreSnapshot(image, position, databaseId);
    this.#appliedTimestamp = timestamp;
    this.needsSnapshot = null;
    if (this.#query) clearStatementCache(this.#query);
    this.#wake();
    return pos;
  }

  /** query runs read-only statements on the local file. */
  query(statements: Statement[]): QueryResult[] {
    if (!this.position) {
      throw new EdgeliteError('UNAVAILABLE', `database ${this.name} is not replicated yet (bootstrapping)`);
    }
    const conn = this.#queryConnection();
    return statements.map((s) => {
      assertReplicaReadable(s.sql);
      return runRead(conn, s);
    });
  }

  /** prepare returns a read-only statement on the local file (for in-process hot paths). */
  prepare(sql: string): Database.Statement {
    assertReplicaReadable(sql);
    const stmt = this.#queryConnection().prepare(sql);
    if (!stmt.readonly) throw new EdgeliteError('READ_ONLY', 'a replica statement must be read-only; send writes through exec');
    return stmt;
  }

  #queryConnection(): Database.Database {
    if (!this.#query) {
      if (!existsSync(this.path)) throw new EdgeliteError('UNAVAILABLE', `database ${this.name} has no file yet`);
      const conn = new Database(this.path, { readonly: true, fileMustExist: true });
      conn.pragma(`busy_timeout = ${this.#busyTimeoutMs}`);
      conn.pragma('query_only = ON');
      this.#query = conn;
    }
    return this.#query;
  }

  /**
   * waitFor resolves once this replica has applied `txid` (in `generation` or a later one: txids keep
   * increasing across generations), or rejects with REPLICA_BEHIND after `timeoutMs`.
   */
  waitFor(generation: number, txid: number, timeoutMs: number): Promise<void> {
    if (this.#reached(generation, txid)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        txid,
        generation,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          const p = this.position;
          reject(new EdgeliteError('REPLICA_BEHIND', `replica has not reached txid ${txid} within ${timeoutMs} ms`, {
            details: { db: this.name, wantTxid: txid, haveTxid: p?.txid ?? null, generation: p?.generation ?? null },
          }));
        }, timeoutMs),
      };
      this.#waiters.push(waiter);
    });
  }

  #reached(generation: number, txid: number): boolean {
    const p = this.position;
    return !!p && p.generation >= generation && p.txid >= txid;
  }

  #wake(): void {
    if (this.#waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.#waiters) {
      if (this.#reached(w.generation, w.txid)) {
        clearTimeout(w.timer);
        w.resolve();
      } else {
        still.push(w);
      }
    }
    this.#waiters = still;
  }

  checkpoint(): void {
    this.#applier.checkpoint();
  }

  close(): void {
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(new EdgeliteError('UNAVAILABLE', `database ${this.name} closed`));
    }
    this.#waiters = [];
    this.#query?.close();
    this.#query = null;
    this.#applier.close();
  }
}
