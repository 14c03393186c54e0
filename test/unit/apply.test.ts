/**
 * PageApplier against real SQLite files. Change sets come from a real primary: a source database whose
 * pages are read through sqlite_dbpage before and after each transaction, the changed ones shipped.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PageApplier } from '../../replica/apply.ts';
import { formatOf, schemaCookieOf, toLocalPage1, toPrimaryPage1 } from '../../replica/page1-header.ts';
import { readFromScratch } from '../../replica/page-reader.ts';
import { sqliteError } from '../../replica/sqlite-file.ts';
import { pageSizeOf } from '../../shared/page-size.ts';
import { positionFilePath, readPositionFile, writePositionFile } from '../../replica/position-file.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import type { ChangeSet } from '../../shared/types.ts';
import { prng, seedFromEnv, tempDir } from '../helpers.ts';
import { Source } from './source-db.ts';

/** randomWork is one random transaction: inserts (some with overflow blobs), updates, deletes and DDL. */
function randomWork(random: () => number, pageSize: number): (db: Database.Database) => void {
  const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));
  return (db) => {
    for (let op = 0, ops = 1 + Math.floor(random() * 3); op < ops; op++) {
      const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 't%'").pluck().all() as string[];
      const droppable = tables.filter((name) => name !== 't0');
      const r = random();
      if (tables.length === 0 || r < 0.06) {
        db.exec(`CREATE TABLE t${Math.floor(random() * 1e6)} (id INTEGER PRIMARY KEY, a TEXT, b BLOB)`);
      } else if (r < 0.1 && droppable.length > 0) {
        db.exec(`DROP TABLE ${pick(droppable)}`);
      } else if (r < 0.15) {
        const t = pick(tables);
        db.exec(random() < 0.5 ? `CREATE INDEX IF NOT EXISTS ${t}_a ON ${t} (a)` : `DROP INDEX IF EXISTS ${t}_a`);
      } else if (r < 0.6) {
        const insert = db.prepare(`INSERT INTO ${pick(tables)} (a, b) VALUES (?, ?)`);
        for (let i = 0, n = 1 + Math.floor(random() * 15); i < n; i++) {
          insert.run('x'.repeat(Math.floor(random() * 200)), bytes(random() < 0.1 ? pageSize + Math.floor(random() * 3 * pageSize) : Math.floor(random() * 50)));
        }
      } else if (r < 0.8) {
        db.prepare(`UPDATE ${pick(tables)} SET a = ? WHERE id % 5 = ?`).run('u'.repeat(Math.floor(random() * 300)), Math.floor(random() * 5));
      } else {
        db.prepare(`DELETE FROM ${pick(tables)} WHERE id % 4 = ?`).run(Math.floor(random() * 4));
      }
    }
  };
}

/** dump is every table's rows, hashed: equal dumps mean equal data. */
function dump(db: Database.Database): string {
  const hash = createHash('sha256');
  const schema = db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name").all() as Array<{ type: string; name: string }>;
  hash.update(JSON.stringify(schema));
  for (const { name } of schema.filter((s) => s.type === 'table')) {
    for (const row of db.prepare(`SELECT * FROM ${name} ORDER BY rowid`).raw(true).iterate() as Iterable<unknown[]>) {
      hash.update(JSON.stringify(row.map((v) => (Buffer.isBuffer(v) ? v.toString('base64') : v))));
    }
  }
  return hash.digest('hex');
}


function expectError(fn: () => unknown, code: string, reason?: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected ${code}`).toBeInstanceOf(EdgeliteError);
  expect((thrown as EdgeliteError).code).toBe(code);
  if (reason) expect((thrown as EdgeliteError).details?.reason).toBe(reason);
}

let t: ReturnType<typeof tempDir>;
let open: Array<{ close(): unknown }>;
beforeEach(() => {
  t = tempDir('apply');
  open = [];
});
afterEach(() => {
  for (const c of open.reverse()) c.close();
  t.cleanup();
});
const file = (name: string) => path.join(t.dir, name);
const track = <T extends { close(): unknown }>(c: T): T => (open.push(c), c);
const reader = (p: string) => track(new Database(p, { readonly: true }));
const openApplier = (p: string, opts = {}) => track(PageApplier.open(p, { log: () => {}, ...opts }));

/** bootstrap makes a source with one table and a replica restored from its snapshot. */
function bootstrap(pageSize = 1024, mode: 'DELETE' | 'WAL' = 'DELETE', name = 'src.db') {
  const src = track(new Source(file(name), pageSize, mode));
  src.commit('CREATE TABLE t0 (id INTEGER PRIMARY KEY, a TEXT, b BLOB)');
  const replica = openApplier(file('replica.db'));
  replica.restoreSnapshot(src.image(), src.position, src.databaseId);
  return { src, replica };
}

describe('PageApplier replicates a real primary', () => {
  it.each([
    ['DELETE', 1024, 200, 'NONE', 0.6],
    ['WAL', 4096, 150, 'NONE', 0.6],
    ['WAL', 1024, 200, 'FULL', 1],
  ] as const)('source in %s mode, %i-byte pages, %i random transactions, auto_vacuum %s; a reader opened first sees every apply', (mode, pageSize, count, autoVacuum, applyEvery) => {
    const seed = seedFromEnv();
    const random = prng(seed);
    const replica = openApplier(file('replica.db'));
    const early = reader(file('replica.db')); // opened on the empty file, before anything is applied
    const src = track(new Source(file('src.db'), pageSize, mode, 7, 1, autoVacuum));
    src.commit('CREATE TABLE t0 (id INTEGER PRIMARY KEY, a TEXT, b BLOB)');
    expect(replica.position).toBeNull();
    replica.restoreSnapshot(src.image(), src.position, src.databaseId);
    expect(dump(early)).toEqual(dump(src.db));
    let batch: ChangeSet[] = [];
    for (let i = 0; i < count; i++) {
      if (i % 40 === 39) batch.push(src.commit('DELETE FROM t0 WHERE id % 3 > 0'), src.commit('VACUUM'));
      else batch.push(src.commit(randomWork(random, pageSize)));
      if (random() < applyEvery || i === count - 1) {
        const position = replica.apply(batch);
        batch = [];
        expect(position, `seed ${seed}`).toEqual(src.position);
        expect(replica.checksum).toBe(src.sum.value);
        expect(replica.pageCount).toBe(src.db.pragma('page_count', { simple: true }));
        expect(dump(early), `seed ${seed} txid ${src.txid}`).toEqual(dump(src.db));
        if (i % 10 === 0) expect(replica.fileChecksum(), `seed ${seed}`).toBe(src.sum.value);
      }
    }
    expect(replica.fileChecksum()).toBe(src.sum.value);
    const fresh = reader(file('replica.db'));
    expect(dump(fresh)).toBe(dump(src.db));
    expect(fresh.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(fresh.pragma('journal_mode', { simple: true })).toBe('wal');
  });

  it('fact: a writer that keeps its page cache across a schema change reads the schema through stale pages', () => {
    // The same writes PageApplier makes, minus dropping the cache when the schema cookie changes.
    const { src, replica } = bootstrap(1024, 'WAL');
    replica.close();
    const random = prng(1);
    let count = src.image().length / 1024;
    const sets = Array.from({ length: 300 }, () => src.commit(randomWork(random, 1024)));
    const raw = track(new Database(file('replica.db')));
    raw.unsafeMode(true);
    let rows: Array<[number, Uint8Array | null]> = [];
    raw.table('pages', { columns: ['pgno', 'data'], rows: function* () { yield* rows; } });
    const write = raw.prepare('INSERT INTO sqlite_dbpage (pgno, data) SELECT pgno, data FROM pages()');
    let failure: unknown;
    try {
      for (const cs of sets) {
        const pages = [...cs.pages].sort((a, b) => (a.pgno === 1 ? 1 : b.pgno === 1 ? -1 : a.pgno - b.pgno));
        rows = pages.map((p) => [p.pgno, p.data]);
        if (cs.commit < count) rows.push([cs.commit + 1, null]);
        count = cs.commit;
        write.run();
      }
    } catch (err) {
      failure = err;
    }
    expect(String(failure)).toMatch(/malformed/);
  });

  it('shrinks in the same transaction, and the file shrinks on disk only after a checkpoint', () => {
    const { src, replica } = bootstrap();
    const cs = [src.commit((db) => db.prepare('INSERT INTO t0 (b) VALUES (?)').run(Buffer.alloc(200_000, 1)))];
    replica.apply(cs);
    const big = fs.statSync(file('replica.db')).size;
    replica.checkpoint();
    expect(fs.statSync(file('replica.db')).size).toBeGreaterThan(big);
    const shrink = [src.commit('DELETE FROM t0'), src.commit('VACUUM')];
    replica.apply(shrink);
    expect(replica.pageCount).toBe(shrink[1]!.commit);
    expect(reader(file('replica.db')).prepare('SELECT count(*) FROM sqlite_dbpage').pluck().get()).toBe(shrink[1]!.commit);
    const before = fs.statSync(file('replica.db')).size;
    expect(before).toBeGreaterThan(shrink[1]!.commit * 1024);
    expect(replica.checkpoint().busy).toBe(false);
    expect(fs.statSync(file('replica.db')).size).toBe(shrink[1]!.commit * 1024);
    expect(replica.fileChecksum()).toBe(src.sum.value);
  });

  it('checkpoint does not wait for a reader in a read transaction: it reports busy', () => {
    const { src, replica } = bootstrap();
    replica.apply([src.commit("INSERT INTO t0 (a) VALUES ('x')")]);
    const r = reader(file('replica.db'));
    r.exec('BEGIN');
    r.prepare('SELECT count(*) FROM t0').get();
    replica.apply([src.commit("INSERT INTO t0 (a) VALUES ('y')")]);
    expect(replica.checkpoint().busy).toBe(true);
    r.exec('COMMIT');
    expect(replica.checkpoint().busy).toBe(false);
  });
});

describe('sqlite_dbpage facts this design rests on', () => {
  /** replicaWith writes `image` as a rollback-journal file, then opens it in WAL mode in unsafe mode. */
  function replicaWith(name: string, image: Uint8Array): Database.Database {
    fs.writeFileSync(file(name), image);
    const db = track(new Database(file(name)));
    db.pragma('journal_mode = WAL');
    db.unsafeMode(true);
    return db;
  }

  it('writes need unsafe mode; the truncation row counts only last in the one statement of an autocommit transaction', () => {
    const { src } = bootstrap();
    src.commit((db) => db.prepare('INSERT INTO t0 (b) VALUES (?)').run(Buffer.alloc(60_000, 1)));
    const big = src.image();
    src.commit('DELETE FROM t0');
    src.commit('VACUUM');
    const small = Buffer.from(src.image());
    small[18] = small[19] = 2;
    const n = small.length / 1024;
    const safe = track(new Database(file('replica.db')));
    expect(() => safe.prepare('INSERT INTO sqlite_dbpage (pgno, data) VALUES (2, ?)').run(small.subarray(1024, 2048))).toThrow(/read-only/);
    const page = (p: number): [number, Uint8Array | null] => [p, small.subarray((p - 1) * 1024, p * 1024)];
    const inOrder = [...Array.from({ length: n - 1 }, (_, i) => page(i + 2)), page(1), [n + 1, null] as [number, null]];
    const variants: Array<[string, Array<[number, Uint8Array | null]>, boolean, number]> = [
      ['autocommit, truncation last', inOrder, false, n],
      ['autocommit, a page written after the truncation row', [...inOrder, page(2)], false, big.length / 1024],
      ['inside BEGIN…COMMIT', inOrder, true, big.length / 1024],
    ];
    for (const [name, rows, explicit, pages] of variants) {
      const db = replicaWith(`${name}.db`, big);
      let feed = rows;
      db.table('pages', { columns: ['pgno', 'data'], rows: function* () { yield* feed; } });
      const write = db.prepare('INSERT INTO sqlite_dbpage (pgno, data) SELECT pgno, data FROM pages()');
      if (explicit) db.transaction(() => write.run())();
      else write.run();
      feed = [];
      db.pragma('wal_checkpoint(TRUNCATE)');
      expect(fs.statSync(file(`${name}.db`)).size / 1024, name).toBe(pages);
    }
  });
});

describe('page-1 header, page reads, SQLite errors', () => {
  it('page 1 header: local and primary forms convert both ways and never touch their input', () => {
    const primary = new Uint8Array(512);
    primary.set([1, 1], 18);
    new DataView(primary.buffer).setUint32(40, 0xffff_fffe);
    primary[16] = 0x02; // 512-byte pages
    const override = { cookieDelta: 5, format: formatOf(primary) };
    const local = toLocalPage1(primary, override);
    expect([formatOf(local), schemaCookieOf(local), schemaCookieOf(primary)]).toEqual([0x0202, 3, 0xffff_fffe]);
    expect(toPrimaryPage1(local, override)).toEqual(primary);
    const wal = toLocalPage1(primary, { cookieDelta: 0, format: 0x0202 });
    expect(toPrimaryPage1(wal, { cookieDelta: 0, format: 0x0202 })).toBe(wal); // nothing to undo: same bytes
    expect(pageSizeOf(primary)).toBe(512);
    primary.set([0, 1], 16);
    expect(pageSizeOf(primary)).toBe(65536);
  });

  it('readFromScratch reads every page; sqliteError maps SQLite codes to ours', () => {
    const { src } = bootstrap();
    const local = readFromScratch(file('replica.db'));
    expect([local.pageSize, local.pageCount]).toEqual([1024, src.image().length / 1024]);
    expect(local.page1 && schemaCookieOf(local.page1)).toBe(schemaCookieOf(src.image()));
    expectError(() => readFromScratch(file('absent.db')), 'IO_ERROR');
    expect(sqliteError(Object.assign(new Error('x'), { code: 'SQLITE_BUSY_SNAPSHOT' }), 'op').code).toBe('BUSY');
    expect(sqliteError(Object.assign(new Error('x'), { code: 'SQLITE_FULL' }), 'op').code).toBe('DISK_FULL');
    expect(sqliteError(new Error('x'), 'op').code).toBe('INTERNAL');
  });
});

describe('PageApplier refuses what does not follow its position, writing nothing', () => {
  it('wrong txid, generation, database id, page size, pre-checksum, post-checksum, pages above commit', () => {
    const { src, replica } = bootstrap();
    replica.apply([src.commit("INSERT INTO t0 (a) VALUES ('a')")]);
    const good = src.commit((db) => db.prepare('INSERT INTO t0 (a, b) VALUES (?, ?)').run('b', Buffer.alloc(3000, 2)));
    const next = src.commit("INSERT INTO t0 (a) VALUES ('c')");
    const sidecar = fs.readFileSync(positionFilePath(file('replica.db')));
    const before = { position: replica.position, checksum: replica.fileChecksum() };
    const tampered = good.pages.map((p, i) => (i === good.pages.length - 1 ? { pgno: p.pgno, data: Buffer.from(p.data).fill(9, 200, 210) } : p));
    const cases: Array<[ChangeSet[], string, string]> = [
      [[next], 'POSITION_MISMATCH', 'txid'],
      [[{ ...good, generation: 2 }], 'POSITION_MISMATCH', 'generation'],
      [[{ ...good, databaseId: 8 }], 'POSITION_MISMATCH', 'database-id'],
      [[{ ...good, pageSize: 4096 }], 'POSITION_MISMATCH', 'page-size'],
      [[{ ...good, preChecksum: good.preChecksum ^ 1n }], 'CHECKSUM_MISMATCH', 'pre-checksum'],
      [[{ ...good, pages: tampered }], 'CHECKSUM_MISMATCH', 'post-checksum'],
      [[good, { ...next, pages: next.pages.map((p) => ({ pgno: p.pgno, data: Buffer.from(p.data).fill(7, 300, 301) })) }], 'CHECKSUM_MISMATCH', 'post-checksum'],
      [[good, { ...next, preChecksum: 5n }], 'CHECKSUM_MISMATCH', 'pre-checksum'],
    ];
    for (const [sets, code, reason] of cases) {
      expectError(() => replica.apply(sets), code, reason);
      expect(replica.position).toEqual(before.position);
      expect(replica.checksum).toBe(before.checksum);
      expect(replica.fileChecksum()).toBe(before.checksum);
      expect(fs.readFileSync(positionFilePath(file('replica.db')))).toEqual(sidecar);
    }
    expectError(() => replica.apply([{ ...good, commit: 1 }]), 'CORRUPT_CHANGESET');
    expectError(() => replica.apply([]), 'BAD_REQUEST');
    expect(replica.apply([good, next])).toEqual(src.position);
  });

  it('a write that fails (lock held, sidecar unwritable) changes nothing and can be retried', () => {
    const { src, replica: first } = bootstrap();
    first.close();
    const replica = openApplier(file('replica.db'), { busyTimeoutMs: 10, durable: true });
    const cs = src.commit("INSERT INTO t0 (a) VALUES ('x')");
    const before = { position: replica.position, checksum: replica.checksum };
    const locker = track(new Database(file('replica.db')));
    locker.exec('BEGIN IMMEDIATE');
    expectError(() => replica.apply([cs]), 'BUSY');
    locker.exec('ROLLBACK');
    const sidecar = positionFilePath(file('replica.db'));
    expect(readPositionFile(sidecar)?.pending).toBeNull();
    fs.mkdirSync(`${sidecar}.tmp`); // the durable write's temp name is taken: the pending write fails
    expectError(() => replica.apply([cs]), 'IO_ERROR');
    fs.rmdirSync(`${sidecar}.tmp`);
    expect({ position: replica.position, checksum: replica.checksum }).toEqual(before);
    expect(replica.fileChecksum()).toBe(before.checksum);
    expect(replica.apply([cs])).toEqual(src.position);
  });

  it('a replica without a position refuses change sets; a closed one refuses everything', () => {
    const replica = openApplier(file('replica.db'));
    const src = track(new Source(file('src.db'), 1024, 'DELETE'));
    expectError(() => replica.apply([src.commit('CREATE TABLE x (a)')]), 'POSITION_MISMATCH', 'no-position');
    replica.close();
    expectError(() => replica.restoreSnapshot(src.image(), src.position, 7), 'UNAVAILABLE');
  });

  it('validates options', () => {
    expectError(() => PageApplier.open(file('r.db'), { pageSize: 4096 } as never), 'BAD_REQUEST');
    expectError(() => PageApplier.open(file('r.db'), { pageSizeHint: 1000 }), 'BAD_REQUEST');
    expectError(() => PageApplier.open(file('r.db'), { busyTimeoutMs: -1 }), 'BAD_REQUEST');
    expect(fs.existsSync(file('r.db'))).toBe(false);
  });
});

describe('restoreSnapshot', () => {
  it('over an unrelated database with an equal schema cookie: an open reader sees the new schema', () => {
    const { src, replica } = bootstrap();
    replica.apply([src.commit("INSERT INTO t0 (a) VALUES ('from A')")]);
    const r = reader(file('replica.db'));
    expect(r.prepare('SELECT a FROM t0').pluck().all()).toEqual(['from A']);
    const other = track(new Source(file('other.db'), 1024, 'WAL', 99, 3));
    other.commit("CREATE TABLE other (v TEXT); INSERT INTO other VALUES ('from B')");
    const otherPage1 = other.image().subarray(0, 1024);
    expect(schemaCookieOf(otherPage1)).toBeLessThanOrEqual(schemaCookieOf(reader(file('replica.db')).prepare('SELECT data FROM sqlite_dbpage WHERE pgno = 1').pluck().get() as Buffer));
    expect(replica.restoreSnapshot(other.image(), other.position, 99)).toEqual(other.position);
    expect(replica.headerOverride.cookieDelta).toBeGreaterThan(0);
    expect(r.prepare('SELECT v FROM other').pluck().all()).toEqual(['from B']);
    expect(() => r.prepare('SELECT a FROM t0').all()).toThrow(/no such table/);
    // Later change sets of B, page 1 and schema changes included, verify exactly against B's checksums.
    for (const work of ["INSERT INTO other VALUES ('b2')", 'CREATE TABLE more (x)', "ALTER TABLE other ADD COLUMN w; UPDATE other SET w = 'w'", 'DROP TABLE more']) {
      expect(replica.apply([other.commit(work)])).toEqual(other.position);
      expect(dump(r)).toEqual(dump(other.db));
    }
    expect(replica.fileChecksum()).toBe(other.sum.value);
    replica.close();
    const reopened = openApplier(file('replica.db'));
    expect(reopened.recovery.source).toBe('committed');
    expect(reopened.position).toEqual(other.position);
    expect(reopened.databaseId).toBe(99);
    expect(reopened.apply([other.commit("INSERT INTO other VALUES ('b3', 'w3')")])).toEqual(other.position);
    expect(dump(reader(file('replica.db')))).toBe(dump(other.db));
  });

  it('fact: without raising the schema cookie, a reader keeps the old schema', () => {
    const { src } = bootstrap();
    const other = track(new Source(file('other.db'), 1024, 'DELETE'));
    other.commit('CREATE TABLE other (v TEXT)');
    const r = reader(file('replica.db'));
    r.prepare('SELECT * FROM t0').all();
    const raw = track(new Database(file('replica.db')));
    raw.unsafeMode(true);
    const image = Buffer.from(other.image());
    image[18] = image[19] = 2;
    const insert = raw.prepare('INSERT INTO sqlite_dbpage (pgno, data) VALUES (?, ?)');
    for (let p = image.length / 1024; p >= 1; p--) insert.run(p, image.subarray((p - 1) * 1024, p * 1024));
    expect(schemaCookieOf(image)).toBe(schemaCookieOf(src.image()));
    expect(() => r.prepare('SELECT * FROM other').all()).toThrow(/no such table/);
  });

  it('takes pages from an iterator, verifies the checksum and the page size, and keeps WAL mode', () => {
    const { src, replica } = bootstrap(1024, 'DELETE');
    replica.apply([src.commit("INSERT INTO t0 (a) VALUES ('x')")]);
    const image = src.image();
    const pages = function* () {
      for (let p = 1; p <= image.length / 1024; p++) yield { pgno: p, data: image.subarray((p - 1) * 1024, p * 1024) };
    };
    const before = replica.fileChecksum();
    expectError(() => replica.restoreSnapshot(pages(), { ...src.position, checksum: 1n }, 7), 'CHECKSUM_MISMATCH', 'snapshot-checksum');
    expectError(() => replica.restoreSnapshot(image.subarray(0, 1500), src.position, 7), 'BAD_REQUEST');
    expectError(() => replica.restoreSnapshot([...pages()].reverse(), src.position, 7), 'BAD_REQUEST');
    const big = track(new Source(file('big.db'), 4096, 'DELETE'));
    big.commit('CREATE TABLE x (a)');
    expectError(() => replica.restoreSnapshot(big.image(), big.position, 7), 'POSITION_MISMATCH', 'page-size');
    expect(replica.fileChecksum()).toBe(before);
    expect(readPositionFile(positionFilePath(file('replica.db')))?.pending).toBeNull();
    expect(replica.restoreSnapshot(pages(), src.position, 7)).toEqual(src.position);
    const r = reader(file('replica.db'));
    expect(r.pragma('journal_mode', { simple: true })).toBe('wal');
    expect((r.prepare('SELECT data FROM sqlite_dbpage WHERE pgno = 1').pluck().get() as Buffer).subarray(18, 20)).toEqual(Buffer.from([2, 2]));
    expect(replica.headerOverride.format).toBe(0x0101); // the rollback-journal source says (1, 1)
    expect(replica.fileChecksum()).toBe(src.sum.value);
  });

  it('a page size hint creates the file in WAL mode at once', () => {
    const replica = openApplier(file('replica.db'), { pageSizeHint: 8192 });
    const r = reader(file('replica.db'));
    expect([r.pragma('page_size', { simple: true }), r.pragma('journal_mode', { simple: true })]).toEqual([8192, 'wal']);
    expect(replica.pageSize).toBe(8192);
  });
});

describe('the position survives crashes', () => {
  it('reopens at the committed position; a crash after commit resumes at pending.to, one before it at committed', () => {
    const { src, replica } = bootstrap();
    const old = replica.position!;
    replica.apply([src.commit("INSERT INTO t0 (a) VALUES ('x')")]);
    const sidecar = positionFilePath(file('replica.db'));
    const done = readPositionFile(sidecar)!;
    replica.close();
    expect(openApplier(file('replica.db')).recovery.source).toBe('committed');
    open.pop()!.close();
    // Crash after the SQLite commit, before the second write: the sidecar still says pending.
    const oldState = { ...done.committed!, position: old };
    writePositionFile(sidecar, { committed: oldState, pending: { from: old, to: done.committed! } }, { durable: true });
    let reopened = openApplier(file('replica.db'));
    expect([reopened.recovery.source, reopened.position]).toEqual(['pending', src.position]);
    expect(readPositionFile(sidecar)).toEqual(done);
    expect(reopened.apply([src.commit("INSERT INTO t0 (a) VALUES ('y')")])).toEqual(src.position);
    // Crash before the commit: pending written, the file still at committed.
    const now = readPositionFile(sidecar)!.committed!;
    const ahead = { ...now, position: { ...now.position, txid: now.position.txid + 1, checksum: 12345n } };
    reopened.close();
    writePositionFile(sidecar, { committed: now, pending: { from: now.position, to: ahead } }, { durable: false });
    reopened = openApplier(file('replica.db'));
    expect([reopened.recovery.source, reopened.position]).toEqual(['committed', src.position]);
    expect(readPositionFile(sidecar)?.pending).toBeNull();
  });

  it('a file that matches no recorded position, or a malformed sidecar, means no position (snapshot needed)', () => {
    const { src, replica } = bootstrap();
    replica.close();
    const sidecar = positionFilePath(file('replica.db'));
    const rec = readPositionFile(sidecar)!;
    writePositionFile(sidecar, { committed: { ...rec.committed!, position: { ...src.position, checksum: 1n } }, pending: null }, { durable: false });
    const logs: string[] = [];
    let reopened = openApplier(file('replica.db'), { log: (m: string) => logs.push(m) });
    expect(reopened.position).toBeNull();
    expect(logs.join()).toMatch(/matches no recorded position/);
    expect(reopened.restoreSnapshot(src.image(), src.position, 7)).toEqual(src.position);
    reopened.close();
    fs.writeFileSync(sidecar, '{"version": 1, "committed": ');
    reopened = openApplier(file('replica.db'), { log: (m: string) => logs.push(m) });
    expect(reopened.position).toBeNull();
    expect(logs.join()).toMatch(/malformed/);
  });

  it('a replica whose schema no longer parses is found wrong on open and repaired by a snapshot', () => {
    const { src, replica } = bootstrap();
    replica.apply([src.commit("INSERT INTO t0 (a) VALUES ('x')")]);
    replica.close();
    const raw = new Database(file('replica.db'));
    raw.unsafeMode(true);
    const page1 = Buffer.from(raw.prepare('SELECT data FROM sqlite_dbpage WHERE pgno = 1').pluck().get() as Buffer);
    page1.write('CREATX', page1.indexOf('CREATE TABLE'));
    raw.prepare('INSERT INTO sqlite_dbpage (pgno, data) VALUES (1, ?)').run(page1);
    raw.close();
    expect(() => reader(file('replica.db')).prepare('SELECT * FROM t0').all()).toThrow(/malformed database schema/);
    const reopened = openApplier(file('replica.db'));
    expect(reopened.position).toBeNull();
    expect(reopened.restoreSnapshot(src.image(), src.position, 7)).toEqual(src.position);
    expect(dump(reader(file('replica.db')))).toBe(dump(src.db));
  });

  it('kill -9 at random moments while applying: reopening always finds a verified position and catches up', async () => {
    const { src, replica } = bootstrap(1024, 'WAL');
    const random = prng(seedFromEnv());
    const sets = Array.from({ length: 400 }, () => src.commit(randomWork(random, 1024)));
    replica.close();
    const setsFile = file('sets.json');
    const wire = sets.map((cs) => ({ ...cs, preChecksum: `${cs.preChecksum}`, postChecksum: `${cs.postChecksum}`, pages: cs.pages.map((p) => ({ pgno: p.pgno, data: Buffer.from(p.data).toString('base64') })) }));
    fs.writeFileSync(setsFile, JSON.stringify(wire));
    const child = file('child.ts');
    fs.writeFileSync(child, childSource(new URL('../../replica/apply.ts', import.meta.url).pathname));
    const checksums = new Map(sets.map((cs) => [cs.maxTxid, cs.postChecksum]));
    const sources = new Set<string>();
    let txid = 1;
    for (let round = 0; round < 3 && txid < 400; round++) {
      const proc = spawn(process.execPath, ['--import', 'tsx', child, file('replica.db'), setsFile], { stdio: ['ignore', 'pipe', 'inherit'] });
      const target = Math.min(401, txid + 20 + Math.floor(random() * 60));
      await new Promise<void>((resolve) => {
        proc.stdout.on('data', (chunk: Buffer) => {
          if (Number(chunk.toString().trim().split('\n').pop()) >= target) proc.kill('SIGKILL');
        });
        proc.on('exit', () => resolve());
      });
      const reopened = PageApplier.open(file('replica.db'), { log: () => {} });
      sources.add(reopened.recovery.source);
      const position = reopened.position!;
      expect(position.txid).toBeGreaterThanOrEqual(target);
      expect(position.checksum).toBe(checksums.get(position.txid));
      expect(reopened.fileChecksum()).toBe(position.checksum);
      txid = position.txid;
      reopened.close();
    }
    const last = openApplier(file('replica.db'));
    last.apply(sets.slice(last.position!.txid - 1));
    expect(last.position).toEqual(src.position);
    expect(dump(reader(file('replica.db')))).toBe(dump(src.db));
    expect([...sources].every((s) => s === 'committed' || s === 'pending')).toBe(true);
  }, 60_000);
});

/** childSource applies the change sets in a JSON file one by one, printing each txid applied. */
function childSource(applyModule: string): string {
  return `
import fs from 'node:fs';
import { PageApplier } from ${JSON.stringify(applyModule)};
const [db, setsFile] = process.argv.slice(2);
const sets = JSON.parse(fs.readFileSync(setsFile, 'utf8'), (k, v) =>
  k === 'preChecksum' || k === 'postChecksum' ? BigInt(v) : k === 'data' ? Buffer.from(v, 'base64') : v);
const applier = PageApplier.open(db, { log: () => {} });
for (const cs of sets.slice(applier.position.txid - 1)) {
  applier.apply([cs]);
  process.stdout.write(cs.maxTxid + '\\n');
}
`;
}
