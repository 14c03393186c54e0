/**
 * Source is a real primary for applier tests, without the primary: a SQLite file whose every
 * transaction's change set is the pages that differ afterwards (read through sqlite_dbpage), with the
 * rolling checksum kept alongside and checked against a full recount after each commit.
 */
import Database from 'better-sqlite3';
import { expect } from 'vitest';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import type { ChangeSet, PageImage, Position } from '../../shared/types.ts';

/** Source is a real primary: each transaction's change set is the pages that differ afterwards. */
export class Source {
  readonly db: Database.Database;
  readonly sum: DatabaseChecksum;
  txid = 0;
  #pages = new Map<number, Buffer>();

  constructor(file: string, readonly pageSize: number, mode: 'DELETE' | 'WAL', readonly databaseId = 7, readonly generation = 1, autoVacuum = 'NONE') {
    this.db = new Database(file);
    this.db.pragma(`page_size = ${pageSize}`);
    this.db.pragma(`auto_vacuum = ${autoVacuum}`);
    this.db.pragma(`journal_mode = ${mode}`);
    this.db.pragma('synchronous = OFF');
    this.sum = new DatabaseChecksum(pageSize);
    this.sum.apply(this.#diff(), this.#pages.size);
  }

  get position(): Position {
    return { generation: this.generation, txid: this.txid, checksum: this.sum.value };
  }

  close(): void {
    this.db.close();
  }

  image(): Uint8Array {
    return Buffer.concat([...this.#pages.values()]);
  }

  /** commit runs `work` as one transaction (VACUUM outside one) and returns its change set. */
  commit(work: string | ((db: Database.Database) => void)): ChangeSet {
    const pre = this.sum.value;
    if (work === 'VACUUM') this.db.exec(work);
    else this.db.transaction(typeof work === 'string' ? () => this.db.exec(work) : () => work(this.db))();
    const pages = this.#diff();
    this.txid++;
    const commit = this.#pages.size;
    const cs = { databaseId: this.databaseId, pageSize: this.pageSize, generation: this.generation, minTxid: this.txid, maxTxid: this.txid, commit, timestamp: Date.now(), preChecksum: pre, postChecksum: this.sum.apply(pages, commit), pages };
    expect(this.sum.value).toBe(DatabaseChecksum.fromPages(this.pageSize, this.#pageImages()).value);
    return cs;
  }

  *#pageImages(): Generator<PageImage> {
    for (const [pgno, data] of this.#pages) yield { pgno, data };
  }

  #diff(): PageImage[] {
    const after = new Map<number, Buffer>();
    for (const row of this.db.prepare('SELECT pgno, data FROM sqlite_dbpage').iterate() as Iterable<{ pgno: number; data: Buffer }>) after.set(row.pgno, row.data);
    const changed = [...after].filter(([pgno, data]) => !this.#pages.get(pgno)?.equals(data)).map(([pgno, data]) => ({ pgno, data }));
    this.#pages = after;
    return changed;
  }
}
