/**
 * PageApplier throughput. Run: npx vitest bench --run test/bench/apply.bench.ts
 *
 * The replica starts from a real database (10,000 rows, 4 KiB pages). Change sets are made up on the
 * fly from its own pages with a counter stamped into them, with correct pre/post checksums: content
 * does not matter to the applier, which never reads tables, and this keeps an endless supply.
 * Making one costs a page hash (~1 µs a page), included in the figures. Change sets/s is the hz
 * column; pages/s is hz × pages per apply.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, bench, describe } from 'vitest';
import { PageApplier } from '../../replica/apply.ts';
import { PositionWriter, writePositionFile } from '../../replica/position-file.ts';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import type { ChangeSet, PageImage } from '../../shared/types.ts';

const PAGE_SIZE = 4096;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-apply-bench-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function buildImage(): Uint8Array {
  const db = new Database(path.join(dir, 'source.db'));
  db.pragma(`page_size = ${PAGE_SIZE}`);
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT); CREATE INDEX t_body ON t (body);');
  const insert = db.prepare('INSERT INTO t (body) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < 10_000; i++) insert.run(`row ${i} ${'x'.repeat(i % 200)}`);
  })();
  const pages = db.prepare('SELECT data FROM sqlite_dbpage ORDER BY pgno').pluck().all() as Buffer[];
  db.close();
  return Buffer.concat(pages);
}

const image = buildImage();
const pageCount = image.length / PAGE_SIZE;

/** Replica is one PageApplier plus the primary-side state needed to make change sets for it. */
class Replica {
  readonly applier: PageApplier;
  readonly #sum = DatabaseChecksum.fromFile(image);
  #txid = 1;
  #next = 2;
  #stamp = 0;
  #page1 = new Uint8Array(image.subarray(0, PAGE_SIZE)); // copies (Buffer#slice would be a view)

  constructor(name: string, durable: boolean) {
    this.applier = PageApplier.open(path.join(dir, name), { durable });
    this.applier.restoreSnapshot(image, { generation: 1, txid: 1, checksum: this.#sum.value }, 1);
  }

  /** changeSet rewrites `n` data pages (round robin over pages 2..N), or page 1 with a new schema cookie. */
  changeSet(n: number, schemaChange = false): ChangeSet {
    const pages: PageImage[] = [];
    if (schemaChange) {
      this.#page1 = new Uint8Array(this.#page1);
      const view = new DataView(this.#page1.buffer);
      view.setUint32(40, view.getUint32(40) + 1);
      pages.push({ pgno: 1, data: this.#page1 });
    }
    for (let i = 0; i < n; i++) {
      const pgno = this.#next;
      this.#next = pgno >= pageCount ? 2 : pgno + 1;
      const data = new Uint8Array(image.subarray((pgno - 1) * PAGE_SIZE, pgno * PAGE_SIZE));
      new DataView(data.buffer).setFloat64(PAGE_SIZE - 8, ++this.#stamp);
      pages.push({ pgno, data });
    }
    pages.sort((a, b) => a.pgno - b.pgno);
    const preChecksum = this.#sum.value;
    this.#txid++;
    const postChecksum = this.#sum.apply(pages, pageCount);
    return { databaseId: 1, pageSize: PAGE_SIZE, generation: 1, minTxid: this.#txid, maxTxid: this.#txid, commit: pageCount, timestamp: Date.now(), preChecksum, postChecksum, pages };
  }
}

const fast = new Replica('fast.db', false);
const durable = new Replica('durable.db', true);
const batched = new Replica('batched.db', false);
console.log(`replica: ${pageCount} pages of ${PAGE_SIZE} bytes`);

describe('apply', () => {
  bench('1-page change set (durable: false)', () => {
    fast.applier.apply([fast.changeSet(1)]);
  });
  bench('1-page change set (durable: true: fsynced sidecar, synchronous=FULL)', () => {
    durable.applier.apply([durable.changeSet(1)]);
  });
  bench('100-page change set (× 100 = pages/s)', () => {
    fast.applier.apply([fast.changeSet(100)]);
  });
  bench('50 one-page change sets in ONE apply (× 50 = change sets/s)', () => {
    batched.applier.apply(Array.from({ length: 50 }, () => batched.changeSet(1)));
  });
  bench('50 one-page change sets, one apply each (× 50 = change sets/s)', () => {
    for (let i = 0; i < 50; i++) batched.applier.apply([batched.changeSet(1)]);
  });
  bench('1-page change set + page 1 with a new schema cookie (writer cache dropped)', () => {
    fast.applier.apply([fast.changeSet(1, true)]);
  });
});

describe('position sidecar write alone', () => {
  const record = { committed: { databaseId: 1, pageSize: PAGE_SIZE, position: { generation: 1, txid: 1, checksum: 1n }, header: { cookieDelta: 0, format: 514 } }, pending: null };
  const kept = new PositionWriter(path.join(dir, 'kept.json'), { durable: false });
  bench('PositionWriter.write (durable: false: one pwrite to the file kept open)', () => {
    kept.write(record);
  });
  bench('writePositionFile (durable: false: open, pwrite, close)', () => {
    writePositionFile(path.join(dir, 'sidecar.json'), record, { durable: false });
  });
  bench('writePositionFile (durable: true: temp, fdatasync, rename, directory fsync)', () => {
    writePositionFile(path.join(dir, 'sidecar.json'), record, { durable: true });
  });
});
