import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatabaseChecksum, hash64, imagePages, lockPageNumber, pageHash } from '../../shared/checksum.ts';
import { EdgeliteError } from '../../shared/errors.ts';

const PAGE_SIZE = 512;
const seq = (n: number, start = 0): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i + start) & 255);

function expectCode(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(EdgeliteError);
    expect((err as EdgeliteError).code).toBe(code);
    return;
  }
  throw new Error(`expected EdgeliteError ${code}, nothing was thrown`);
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-checksum-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** newDatabase creates a real SQLite file in rollback-journal mode, so the file alone is the database. */
function newDatabase(name: string): { db: Database.Database; file: string } {
  const file = path.join(dir, name);
  const db = new Database(file);
  db.pragma(`page_size = ${PAGE_SIZE}`);
  db.pragma('journal_mode = DELETE');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT); CREATE INDEX t_body ON t (body);');
  return { db, file };
}

describe('lockPageNumber', () => {
  it('is the page holding byte offset 1 GiB', () => {
    expect(lockPageNumber(512)).toBe(2097153);
    expect(lockPageNumber(1024)).toBe(1048577);
    expect(lockPageNumber(4096)).toBe(262145);
    expect(lockPageNumber(65536)).toBe(16385);
    for (const size of [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]) {
      const first = (lockPageNumber(size) - 1) * size;
      expect(first).toBeLessThanOrEqual(0x40000000);
      expect(first + size).toBeGreaterThan(0x40000000);
    }
  });
});

describe('hash64', () => {
  it('matches pinned values (the hash is part of the wire format)', () => {
    const text = new TextEncoder();
    expect(hash64(new Uint8Array(0))).toBe(0x11a8459b30490632n);
    expect(hash64(text.encode('a'))).toBe(0xb168142a2190b545n);
    expect(hash64(text.encode('edgelite'), 7)).toBe(0x82161f177016c10cn);
    expect(hash64(seq(1000))).toBe(0x27355a4ab5101579n);
    expect(pageHash(2, seq(4096))).toBe(0x5efc04ebc4f99e8cn);
    expect(pageHash(1, seq(4096))).toBe(0xa4d42a8f2246b7ben);
  });

  it('gives the same result for any byteOffset (the little-endian DataView path)', () => {
    const backing = seq(5000, 3);
    for (const offset of [0, 1, 2, 3, 4, 5]) {
      for (const length of [0, 1, 3, 4, 31, 32, 33, 100, 4096]) {
        const view = backing.subarray(offset, offset + length);
        expect(hash64(view, 9)).toBe(hash64(view.slice(), 9));
      }
    }
  });

  it('returns an unsigned 64-bit value that depends on seed, length and every byte', () => {
    const data = seq(100);
    const h = hash64(data);
    expect(h >= 0n && h < 1n << 64n).toBe(true);
    expect(hash64(data, 1)).not.toBe(h);
    expect(hash64(data.subarray(0, 99))).not.toBe(h);
    expect(hash64(new Uint8Array(33))).not.toBe(hash64(new Uint8Array(34))); // zero padding is not free
    for (let i = 0; i < data.length; i++) {
      const copy = data.slice();
      copy[i]! ^= 0x80;
      expect(hash64(copy)).not.toBe(h);
    }
  });
});

describe('pageHash', () => {
  it('ignores page-1 bytes 24-27 and 92-99 and nothing else, without mutating the page', () => {
    const page = seq(PAGE_SIZE, 7);
    const before = page.slice();
    const base = pageHash(1, page);
    for (let i = 0; i < PAGE_SIZE; i++) {
      const copy = page.slice();
      copy[i]! ^= 0xff;
      const volatile = (i >= 24 && i < 28) || (i >= 92 && i < 100);
      if (volatile) expect(pageHash(1, copy), `byte ${i}`).toBe(base);
      else expect(pageHash(1, copy), `byte ${i}`).not.toBe(base);
    }
    expect(page).toEqual(before);
  });

  it('normalises page 1 only, and mixes in the page number', () => {
    const page = seq(PAGE_SIZE);
    const changed = page.slice();
    changed[24]! ^= 1;
    expect(pageHash(2, changed)).not.toBe(pageHash(2, page));
    expect(pageHash(2, page)).toBe(hash64(page, 2));
    expect(pageHash(3, page)).not.toBe(pageHash(2, page));
  });
});

describe('DatabaseChecksum', () => {
  it('is 0n when empty, and XORs page hashes', () => {
    const sum = new DatabaseChecksum(PAGE_SIZE);
    expect(sum.value).toBe(0n);
    expect(sum.pageCount).toBe(0);
    expect(sum.pageSize).toBe(PAGE_SIZE);
    sum.setPage(3, seq(PAGE_SIZE, 1));
    sum.setPage(1, seq(PAGE_SIZE, 2));
    expect(sum.pageCount).toBe(3);
    expect(sum.value).toBe(pageHash(3, seq(PAGE_SIZE, 1)) ^ pageHash(1, seq(PAGE_SIZE, 2)));
    sum.setPage(3, seq(PAGE_SIZE, 5));
    expect(sum.value).toBe(pageHash(3, seq(PAGE_SIZE, 5)) ^ pageHash(1, seq(PAGE_SIZE, 2)));
    sum.truncate(2);
    expect(sum.value).toBe(pageHash(1, seq(PAGE_SIZE, 2)));
    sum.truncate(0);
    expect(sum.value).toBe(0n);
  });

  it('grows on truncate to a larger size without inventing page hashes', () => {
    const sum = new DatabaseChecksum(PAGE_SIZE);
    sum.setPage(1, seq(PAGE_SIZE));
    sum.truncate(1000);
    expect(sum.pageCount).toBe(1000);
    expect(sum.value).toBe(pageHash(1, seq(PAGE_SIZE)));
  });

  it('refuses the lock page, wrong sizes, bad page numbers and bad page sizes', () => {
    const sum = new DatabaseChecksum(PAGE_SIZE);
    expectCode(() => sum.setPage(lockPageNumber(PAGE_SIZE), seq(PAGE_SIZE)), 'INTERNAL');
    expectCode(() => sum.setPage(1, seq(PAGE_SIZE - 1)), 'INTERNAL');
    expectCode(() => sum.setPage(0, seq(PAGE_SIZE)), 'INTERNAL');
    expectCode(() => sum.setPage(1.5, seq(PAGE_SIZE)), 'INTERNAL');
    expectCode(() => sum.truncate(-1), 'INTERNAL');
    for (const size of [0, 256, 1000, 131072]) expectCode(() => new DatabaseChecksum(size), 'INTERNAL');
    expect(sum.value).toBe(0n);
  });

  it('counts pages past the lock page while the lock page contributes nothing', () => {
    const size = 65536;
    const lock = lockPageNumber(size);
    const sum = new DatabaseChecksum(size);
    const page = seq(size, 9);
    sum.setPage(lock + 1, page);
    expect(sum.pageCount).toBe(lock + 1);
    expect(sum.value).toBe(pageHash(lock + 1, page));
  });

  it('clone is independent of the original', () => {
    const sum = DatabaseChecksum.fromPages(PAGE_SIZE, [{ pgno: 1, data: seq(PAGE_SIZE) }]);
    const copy = sum.clone();
    copy.setPage(2, seq(PAGE_SIZE, 1));
    expect(sum.pageCount).toBe(1);
    expect(sum.value).toBe(pageHash(1, seq(PAGE_SIZE)));
    expect(copy.value).toBe(sum.value ^ pageHash(2, seq(PAGE_SIZE, 1)));
  });

  it('fromFile rejects images without a valid header or with a partial page', () => {
    expectCode(() => DatabaseChecksum.fromFile(new Uint8Array(0)), 'INTERNAL');
    const image = new Uint8Array(1024);
    image[16] = 0x03; // page size 1000
    image[17] = 0xe8;
    expectCode(() => DatabaseChecksum.fromFile(image), 'INTERNAL');
    image[16] = 0x02; // 512
    image[17] = 0x00;
    expectCode(() => DatabaseChecksum.fromFile(image.subarray(0, 700)), 'INTERNAL');
    expect(DatabaseChecksum.fromFile(image).pageCount).toBe(2);
  });

  it('fromFile reads page size 65536 from the header value 1', () => {
    const image = new Uint8Array(65536);
    image[17] = 1;
    const sum = DatabaseChecksum.fromFile(image);
    expect(sum.pageSize).toBe(65536);
    expect(sum.value).toBe(pageHash(1, image));
  });

  it('imagePages skips the lock page', () => {
    const image = seq(PAGE_SIZE * 5);
    const pages = [...imagePages(image, PAGE_SIZE, 3)];
    expect(pages.map((p) => p.pgno)).toEqual([1, 2, 4, 5]);
    expect(pages[2]!.data).toEqual(image.subarray(3 * PAGE_SIZE, 4 * PAGE_SIZE));
    expect([...imagePages(image, PAGE_SIZE)].map((p) => p.pgno)).toEqual([1, 2, 3, 4, 5]);
  });
});

type Edit =
  | { kind: 'set'; at: number; bytes: Uint8Array }
  | { kind: 'grow'; count: number; fill: number }
  | { kind: 'truncate'; at: number };

const editArb: fc.Arbitrary<Edit> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('set' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('grow' as const), count: fc.integer({ min: 1, max: 4 }), fill: fc.nat(255) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
);

describe('incremental checksum equals the checksum from scratch', () => {
  it('under random page-level edits of a real SQLite file image', () => {
    const { db, file } = newDatabase('edits.db');
    const insert = db.prepare('INSERT INTO t (body) VALUES (?)');
    for (let i = 0; i < 40; i++) insert.run(`row ${i} `.repeat(8));
    db.close();
    const original = new Uint8Array(fs.readFileSync(file));
    expect(original.length / PAGE_SIZE).toBeGreaterThan(5);

    fc.assert(
      fc.property(fc.array(editArb, { minLength: 100, maxLength: 200 }), (edits) => {
        let image = original.slice();
        const sum = DatabaseChecksum.fromFile(image);
        for (const edit of edits) {
          const count = image.length / PAGE_SIZE;
          if (edit.kind === 'set') {
            const pgno = 1 + (edit.at % count);
            const page = image.subarray((pgno - 1) * PAGE_SIZE, pgno * PAGE_SIZE);
            // Scatter the random bytes, but keep the page-size field so fromFile can read the image.
            const start = edit.at % PAGE_SIZE;
            for (let i = 0; i < edit.bytes.length; i++) page[(start + i * 13) % PAGE_SIZE] = edit.bytes[i]!;
            if (pgno === 1) page.set(original.subarray(16, 18), 16);
            sum.setPage(pgno, page);
          } else if (edit.kind === 'grow') {
            const grown = new Uint8Array(image.length + edit.count * PAGE_SIZE);
            grown.set(image);
            grown.fill(edit.fill, image.length);
            image = grown;
            for (let p = count + 1; p <= count + edit.count; p++) {
              grown[(p - 1) * PAGE_SIZE] = p & 255;
              sum.setPage(p, grown.subarray((p - 1) * PAGE_SIZE, p * PAGE_SIZE));
            }
          } else {
            const keep = 1 + (edit.at % count);
            image = image.slice(0, keep * PAGE_SIZE);
            sum.truncate(keep);
          }
          const scratch = DatabaseChecksum.fromFile(image);
          expect(sum.pageCount).toBe(scratch.pageCount);
          expect(sum.value).toBe(scratch.value);
        }
      }),
      { seed: 20240601, numRuns: 4 },
    );
  });

  it('under real SQL edits: inserts, updates, deletes and VACUUM, fed with the pages that changed', () => {
    const { db, file } = newDatabase('sql.db');
    let image = new Uint8Array(fs.readFileSync(file));
    const sum = DatabaseChecksum.fromFile(image);
    const insert = db.prepare('INSERT INTO t (body) VALUES (?)');
    const update = db.prepare('UPDATE t SET body = ? WHERE id % 7 = ?');
    const remove = db.prepare('DELETE FROM t WHERE id % 5 = ?');
    const steps: Array<(i: number) => void> = [
      (i) => insert.run(`inserted ${i} `.repeat(1 + (i % 30))),
      (i) => db.transaction(() => { for (let k = 0; k < 20; k++) insert.run(`batch ${i}/${k}`); })(),
      (i) => update.run(`updated ${i} `.repeat(1 + (i % 9)), i % 7),
      (i) => remove.run(i % 5),
      () => db.exec('VACUUM'),
    ];
    let shrank = false;
    for (let i = 0; i < 60; i++) {
      steps[i % steps.length]!(i);
      const next = new Uint8Array(fs.readFileSync(file));
      const count = next.length / PAGE_SIZE;
      const changed = [...imagePages(next, PAGE_SIZE)].filter(({ pgno, data }) => {
        const old = image.subarray((pgno - 1) * PAGE_SIZE, pgno * PAGE_SIZE);
        return old.length !== PAGE_SIZE || !data.every((b, k) => b === old[k]);
      });
      if (next.length < image.length) shrank = true;
      const value = sum.apply(changed, count);
      const scratch = DatabaseChecksum.fromFile(next);
      expect(value).toBe(scratch.value);
      expect(sum.pageCount).toBe(count);
      expect(DatabaseChecksum.fromPages(PAGE_SIZE, imagePages(next, PAGE_SIZE)).value).toBe(scratch.value);
      image = next;
    }
    db.close();
    expect(shrank).toBe(true);
  });
});
