/**
 * WorkerReplica is one replicated database inside its Durable Object: the stored pages (PageStore), the
 * rolling checksum and a read-only wa-sqlite connection over the page-map VFS, over the facade both
 * replicas share (shared/replica-facade.ts: lag, the reads waiting for a txid, the follower's flags and
 * change events). Applies and snapshot installs are synchronous, and so are queries, so a query never
 * sees half an apply.
 */
import { DatabaseChecksum } from '../../../shared/checksum.ts';
import { EdgeliteError } from '../../../shared/errors.ts';
import type { QueryResult, Statement } from '../../../shared/protocol.ts';
import { clearStatementCache, runRead } from '../../../shared/sql.ts';
import { checkStatement } from '../../../shared/statement-policy.ts';
import { ReplicaFacade } from '../../../shared/replica-facade.ts';
import { type ChangeSet, formatChecksum, parseChecksum, type Position } from '../../../shared/types.ts';
import { advanceBatch, checkBatch, noPosition } from '../../../shared/verify.ts';
import type { PageStore, ReplicaMeta } from './page-store.ts';
import { WaSqliteConnection, type WasmModule } from './sqlite.ts';
import { MAIN_FILE, PageMapVfs } from './vfs.ts';

/** ApplyStats are timings measured inside the object (workerd's clock; coarse in production). */
export interface ApplyStats {
  applies: number;
  changeSets: number;
  pagesWritten: number;
  applyMsTotal: number;
  applyMsMax: number;
}

let vfsCounter = 0;

export class WorkerReplica extends ReplicaFacade {
  readonly #store: PageStore;
  readonly #module: WasmModule;
  readonly #vfs: PageMapVfs;
  #conn: WaSqliteConnection | null = null;
  #sum: DatabaseChecksum | null = null;
  readonly stats: ApplyStats = { applies: 0, changeSets: 0, pagesWritten: 0, applyMsTotal: 0, applyMsMax: 0 };

  constructor(name: string, store: PageStore, module: WasmModule) {
    super(name);
    this.#store = store;
    this.#module = module;
    this.#vfs = new PageMapVfs(`edgelite-${++vfsCounter}`);
    module.registerVFS(this.#vfs, false);
  }

  /**
   * boot recomputes the checksum of the stored pages and keeps the stored position only if they match,
   * so a restarted object resumes without a snapshot exactly when its storage is intact. Returns
   * whether it did.
   */
  boot(): boolean {
    const meta = this.#store.meta;
    if (!meta) return false;
    const sum = new DatabaseChecksum(meta.pageSize);
    let count = 0;
    for (const { pgno, data } of this.#store.scan()) {
      sum.setPage(pgno, data);
      count = pgno;
    }
    sum.truncate(meta.pageCount);
    if (count > meta.pageCount || sum.value !== parseChecksum(meta.checksum)) {
      this.#store.forget();
      this.needsSnapshot = `stored pages do not match the stored position (checksum ${formatChecksum(sum.value)}, recorded ${meta.checksum})`;
      return false;
    }
    this.#sum = sum;
    this.#vfs.attach(this.#store);
    return true;
  }

  get position(): Position | null {
    const m = this.#store.meta;
    return m ? { generation: m.generation, txid: m.txid, checksum: parseChecksum(m.checksum) } : null;
  }

  get databaseId(): number | null {
    return this.#store.meta?.databaseId ?? null;
  }

  get meta(): ReplicaMeta | null {
    return this.#store.meta;
  }

  get store(): PageStore {
    return this.#store;
  }

  get vfs(): PageMapVfs {
    return this.#vfs;
  }

  /**
   * memory accounts for the large allocations this database holds in the isolate (whose limit is
   * 128 MB): cached pages, the per-page hashes of the checksum (8 bytes a page, in arrays grown by
   * doubling), and wa-sqlite's WebAssembly heap (shared by every database of the isolate; it never shrinks).
   */
  memory(): { pageCacheBytes: number; checksumBytes: number; wasmHeapBytes: number } {
    let capacity = 64;
    while (capacity <= this.#store.pageCount) capacity *= 2;
    return {
      pageCacheBytes: this.#store.cachedPages * this.#store.pageSize,
      checksumBytes: this.#sum ? capacity * 8 : 0,
      wasmHeapBytes: this.#module.HEAPU8.byteLength,
    };
  }

  /**
   * apply verifies consecutive change sets and writes them in one storage transaction. On a
   * verification error (shared/verify.ts) nothing is written and the error is thrown; the in-memory
   * checksum is dropped if it had moved ahead (a post-apply checksum mismatch), so the next apply needs
   * a snapshot. A refused change set that diverges nothing (CORRUPT_CHANGESET) leaves the replica as it was.
   */
  apply(changeSets: readonly ChangeSet[]): Position {
    const meta = this.#store.meta;
    const sum = this.#sum;
    if (!meta || !sum) throw noPosition('replica has no verified position: it needs a snapshot');
    const started = performance.now();
    const at = { databaseId: meta.databaseId, pageSize: meta.pageSize, pageCount: meta.pageCount, position: this.position! };
    checkBatch(at, sum.value, changeSets);
    let batch;
    try {
      batch = advanceBatch(sum, at, changeSets);
    } catch (err) {
      this.#sum = null;
      throw err;
    }
    this.#store.commit(batch.pages, {
      ...meta,
      txid: batch.position.txid,
      checksum: formatChecksum(batch.position.checksum),
      pageCount: batch.pageCount,
      appliedTimestamp: batch.timestamp,
    });
    const ms = performance.now() - started;
    this.stats.applies++;
    this.stats.changeSets += changeSets.length;
    this.stats.pagesWritten += batch.pages.size;
    this.stats.applyMsTotal += ms;
    this.stats.applyMsMax = Math.max(this.stats.applyMsMax, ms);
    this.noteApplied(batch.timestamp, batch.position);
    return batch.position;
  }

  /** installSnapshot swaps in the staged snapshot pages (already verified into `sum`) at `position`. */
  installSnapshot(position: Position, databaseId: number, sum: DatabaseChecksum, appliedTimestamp: number): void {
    const snapshots = (this.#store.meta?.snapshots ?? 0) + 1;
    this.#store.commitStaging({
      databaseId,
      pageSize: sum.pageSize,
      generation: position.generation,
      txid: position.txid,
      checksum: formatChecksum(position.checksum),
      pageCount: sum.pageCount,
      appliedTimestamp,
      snapshots,
    });
    this.#sum = sum;
    this.needsSnapshot = null;
    this.#vfs.attach(this.#store);
    // An unrelated image may carry the same schema cookie as the old one, and then an open connection
    // would keep the old schema (docs/ARCHITECTURE.md#apply-rules): a snapshot always gets a fresh connection.
    this.#closeConnection();
    this.noteApplied(appliedTimestamp, position);
  }

  /**
   * drop deletes the object's copy (the primary dropped the database: the `db-dropped` frame): pages,
   * position and the open connection. A database created again under the name bootstraps afresh.
   */
  drop(): void {
    this.#closeConnection();
    this.#sum = null;
    this.#store.clear();
    this.needsSnapshot = null;
  }

  /** query runs read-only statements over the page map. */
  query(statements: Statement[]): QueryResult[] {
    if (!this.#store.meta) throw new EdgeliteError('UNAVAILABLE', `database ${this.name} is not replicated yet (bootstrapping)`);
    const conn = this.#connection();
    return statements.map((s) => {
      checkStatement(s.sql, 'read');
      return runRead(conn, s);
    });
  }

  #connection(): WaSqliteConnection {
    if (!this.#conn) {
      this.#conn = new WaSqliteConnection(this.#module, MAIN_FILE, this.#vfs.name);
    }
    return this.#conn;
  }

  #closeConnection(): void {
    if (!this.#conn) return;
    clearStatementCache(this.#conn);
    this.#conn.close();
    this.#conn = null;
  }
}
