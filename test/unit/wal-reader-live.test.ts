/**
 * WalReader against a live better-sqlite3 writer: incremental reads after every write, and what each
 * checkpoint mode does to the next read (measured here, SQLite 3.53; the table is in
 * test/fixtures/wal/README.md). Every captured transaction is replayed onto a copy of the database file
 * taken before it, and the copy must equal the writer's database: a transaction lost, doubled or
 * reordered shows up as a wrong table or a failed integrity check.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dbHeaderPageSize } from '../../primary/wal-format.ts';
import { WalReader, type WalCursor, type WalReadResult, type WalStart } from '../../primary/wal-reader.ts';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-wal-live-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * Capture follows a live database: opens it in WAL mode with wal_autocheckpoint=0, keeps a copy of the
 * file from before any captured transaction, and applies every transaction read to that copy.
 */
class Capture {
  readonly db: Database.Database;
  readonly dbPath: string;
  readonly replica: string;
  readonly reader: WalReader;
  cursor: WalCursor | null = null;
  captured = 0;
  readonly pageSize: number;

  constructor(name: string, pageSize = 4096) {
    this.dbPath = path.join(dir, `${name}.db`);
    this.replica = path.join(dir, `${name}.replica.db`);
    this.pageSize = pageSize;
    this.db = this.open();
    this.db.pragma(`page_size = ${pageSize}`);
    this.db.pragma('journal_mode = WAL');
    this.db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)');
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    fs.copyFileSync(this.dbPath, this.replica);
    this.reader = new WalReader(`${this.dbPath}-wal`);
  }

  open(): Database.Database {
    const db = new Database(this.dbPath);
    db.pragma('wal_autocheckpoint = 0');
    return db;
  }

  /** read reads from the cursor, applies what it got to the replica, and moves the cursor. */
  read(from: WalCursor | null = this.cursor): WalReadResult {
    const r = this.reader.read(from);
    const fd = fs.openSync(this.replica, 'r+');
    for (const tx of r.transactions) {
      for (const [pgno, page] of tx.pages) fs.writeSync(fd, page, 0, page.byteLength, (pgno - 1) * this.pageSize);
      fs.ftruncateSync(fd, tx.commit * this.pageSize);
    }
    fs.closeSync(fd);
    this.captured += r.transactions.length;
    if (r.start !== 'mismatch') this.cursor = r.cursor;
    return r;
  }

  /** expectReplicaEqual: the replica's table equals the writer's, and the replica file is intact. */
  expectReplicaEqual(): void {
    const want = this.db.prepare('SELECT id, hex(v) AS v FROM t ORDER BY id').all();
    const replica = new Database(this.replica, { readonly: true });
    try {
      expect(replica.prepare('SELECT id, hex(v) AS v FROM t ORDER BY id').all()).toEqual(want);
      expect(replica.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      replica.close();
    }
  }

  close(): void {
    this.reader.close();
    if (this.db.open) this.db.close();
  }
}

function pageCount(db: Database.Database): number {
  return db.pragma('page_count', { simple: true }) as number;
}

describe('WalReader following a live writer', () => {
  it('every transaction arrives exactly once, in order, when read after each write', () => {
    const c = new Capture('loop');
    const other = c.open();
    const insert = c.db.prepare('INSERT INTO t VALUES (?, randomblob(?))');
    let writes = 0;
    for (let i = 1; i <= 60; i++) {
      if (i % 10 === 0) {
        c.db.transaction(() => {
          for (let k = 0; k < 20; k++) insert.run(1000 * i + k, 500);
        })();
      } else if (i % 7 === 0) {
        c.db.prepare('DELETE FROM t WHERE id % 3 = 0').run();
      } else if (i % 5 === 0) {
        other.prepare('INSERT INTO t VALUES (?, randomblob(100))').run(i); // another connection writes
      } else {
        insert.run(i, 50 + i * 20);
      }
      writes++;
      const r = c.read();
      expect(r.start).toBe(i === 1 ? 'fresh' : 'continued');
      expect(r.transactions).toHaveLength(1);
      expect(r.transactions[0]!.commit).toBe(pageCount(c.db));
      expect(r.stoppedBy).toBe('end');
      expect(c.read().transactions).toHaveLength(0); // nothing twice
    }
    expect(c.captured).toBe(writes);
    c.expectReplicaEqual();
    other.close();
    c.close();
  });

  it('a transaction larger than one read chunk, with pages written more than once', () => {
    const c = new Capture('big');
    c.db.pragma('cache_size = 50'); // spill: pages hit the WAL several times before the commit
    c.db.transaction(() => {
      const insert = c.db.prepare('INSERT INTO t VALUES (?, randomblob(3000))');
      for (let k = 0; k < 1800; k++) insert.run(k);
      c.db.prepare('UPDATE t SET v = randomblob(10) WHERE id % 2 = 0').run();
    })();
    c.db.prepare('INSERT INTO t VALUES (-1, randomblob(10))').run();
    // The reader reads 4 MiB at a time: this transaction's pages come from the first chunk only, from
    // later chunks only, and from both (a page rewritten after the first chunk was reused).
    const wal = fs.readFileSync(`${c.dbPath}-wal`);
    const frames = (wal.length - 32) / (4096 + 24);
    const chunk = Math.floor((4 << 20) / (4096 + 24));
    const pgnoAt = (k: number) => wal.readUInt32BE(32 + k * (4096 + 24));
    const early = new Set(Array.from({ length: chunk }, (_, k) => pgnoAt(k)));
    const late = new Set(Array.from({ length: frames - chunk }, (_, k) => pgnoAt(chunk + k)));
    expect([...early].some((p) => !late.has(p))).toBe(true);
    expect([...early].some((p) => late.has(p))).toBe(true);
    const r = c.read();
    expect(r.transactions.map((t) => t.commit)).toEqual([pageCount(c.db), pageCount(c.db)]);
    c.expectReplicaEqual();
    c.close();
  });

  it('page size 65536 is read as stored in the WAL header', () => {
    const c = new Capture('big-pages', 65536);
    c.db.prepare('INSERT INTO t VALUES (1, randomblob(100000))').run();
    const r = c.read();
    expect(r.header!.pageSize).toBe(65536);
    const page1 = r.transactions[0]!.pages.get(1);
    if (page1) expect(dbHeaderPageSize(page1)).toBe(65536);
    expect([...r.transactions[0]!.pages.values()].every((p) => p.byteLength === 65536)).toBe(true);
    c.expectReplicaEqual();
    c.close();
  });

  it('what each checkpoint mode does to the next read', () => {
    const c = new Capture('modes');
    const insert = c.db.prepare('INSERT INTO t VALUES (NULL, randomblob(200))');
    const writeAndRead = (): WalStart => {
      insert.run();
      const r = c.read();
      if (r.start !== 'mismatch') expect(r.transactions).toHaveLength(1);
      return r.start;
    };
    expect(writeAndRead()).toBe('fresh');
    expect(writeAndRead()).toBe('continued');

    c.db.pragma('wal_checkpoint(PASSIVE)'); // fully backfilled, no reader: the next write restarts the WAL
    expect(writeAndRead()).toBe('restarted');

    const reader = c.open(); // a read transaction on the WAL blocks the restart
    reader.exec('BEGIN');
    reader.prepare('SELECT count(*) FROM t').get();
    c.db.pragma('wal_checkpoint(PASSIVE)');
    expect(writeAndRead()).toBe('continued');
    reader.close();

    c.db.pragma('wal_checkpoint(RESTART)');
    expect(writeAndRead()).toBe('restarted');

    c.db.pragma('wal_checkpoint(TRUNCATE)'); // the -wal is now empty: nothing to read, nothing contradicted
    expect(c.read()).toMatchObject({ header: null, start: 'continued', transactions: [] });
    expect(writeAndRead()).toBe('restarted');

    // After a TRUNCATE, a connection that has never restarted the WAL itself writes random salts.
    const newcomer = c.open();
    c.db.pragma('wal_checkpoint(TRUNCATE)');
    newcomer.prepare('INSERT INTO t VALUES (NULL, 1)').run();
    expect(c.read().start).toBe('mismatch');
    expect(c.read(null).transactions).toHaveLength(1); // a real caller re-snapshots here
    newcomer.close();

    // The last connection's close checkpoints and deletes the -wal; a reopened writer starts fresh salts.
    const captured = c.captured;
    c.db.close();
    expect(c.read()).toMatchObject({ header: null, start: 'continued' });
    const db = c.open();
    db.prepare('INSERT INTO t VALUES (NULL, 2)').run();
    expect(c.read().start).toBe('mismatch');
    expect(c.read(null).transactions).toHaveLength(1);
    expect(c.captured).toBe(captured + 1);

    const want = db.prepare('SELECT id, hex(v) AS v FROM t ORDER BY id').all();
    const replica = new Database(c.replica, { readonly: true });
    expect(replica.prepare('SELECT id, hex(v) AS v FROM t ORDER BY id').all()).toEqual(want);
    replica.close();
    db.close();
    c.close();
  });
});
