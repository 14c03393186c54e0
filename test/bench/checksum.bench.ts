/**
 * Checksum and change-set codec throughput, and the measurements behind the compression decision
 * (docs/FORMAT.md). Run: npx vitest bench --run test/bench/checksum.bench.ts
 *
 * Pages are real: a SQLite table (4 KiB pages, rollback journal so the file is the database) after
 * single-row updates, each transaction's changed pages found by diffing file images.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import Database from 'better-sqlite3';
import { bench, describe } from 'vitest';
import { decodeChangeSet, encodeChangeSet } from '../../shared/changeset.ts';
import { DatabaseChecksum, hash64, pageHash } from '../../shared/checksum.ts';
import type { ChangeSet, PageImage } from '../../shared/types.ts';

const PAGE_SIZE = 4096;
const WORDS = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore'.split(' ');

interface Fixture {
  image: Uint8Array;
  /** The pages each single-row update transaction changed. */
  transactions: PageImage[][];
}

function buildFixture(): Fixture {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-bench-'));
  try {
    const file = path.join(dir, 'bench.db');
    const db = new Database(file);
    db.pragma('journal_mode = DELETE');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, uid TEXT, email TEXT, score REAL, body TEXT); CREATE INDEX t_email ON t (email);');
    let seed = 1;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const text = () => Array.from({ length: 10 + Math.floor(random() * 20) }, () => WORDS[Math.floor(random() * WORDS.length)]).join(' ');
    const insert = db.prepare('INSERT INTO t (uid, email, score, body) VALUES (?, ?, ?, ?)');
    db.transaction(() => {
      for (let i = 0; i < 10000; i++) insert.run(crypto.randomUUID(), `u${i}.${Math.floor(random() * 1e9)}@example.com`, random() * 100, text());
    })();
    const update = db.prepare('UPDATE t SET score = ?, body = ? WHERE id = ?');
    let image = new Uint8Array(fs.readFileSync(file));
    const transactions: PageImage[][] = [];
    for (let k = 0; k < 100; k++) {
      update.run(random() * 100, text(), 1 + Math.floor(random() * 10000));
      const next = new Uint8Array(fs.readFileSync(file));
      const changed: PageImage[] = [];
      for (let pgno = 1; pgno * PAGE_SIZE <= next.length; pgno++) {
        const data = next.subarray((pgno - 1) * PAGE_SIZE, pgno * PAGE_SIZE);
        const old = image.subarray((pgno - 1) * PAGE_SIZE, pgno * PAGE_SIZE);
        if (!Buffer.from(data).equals(Buffer.from(old))) changed.push({ pgno, data: data.slice() });
      }
      transactions.push(changed);
      image = next;
    }
    db.close();
    return { image, transactions };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const fixture = buildFixture();
const pageCount = fixture.image.length / PAGE_SIZE;
const page = (pgno: number): PageImage => ({ pgno, data: fixture.image.slice((pgno - 1) * PAGE_SIZE, pgno * PAGE_SIZE) });

function changeSet(pages: PageImage[]): ChangeSet {
  return {
    databaseId: 1, pageSize: PAGE_SIZE, generation: 1, minTxid: 10, maxTxid: 10, commit: pageCount,
    timestamp: Date.now(), preChecksum: 1n, postChecksum: 2n, pages,
  };
}

const onePage = changeSet([page(2)]);
const hundredPages = changeSet(Array.from({ length: 100 }, (_, i) => page(i + 2)));
const onePageBytes = encodeChangeSet(onePage);
const hundredPagesBytes = encodeChangeSet(hundredPages);
const leaf = page(pageCount - 1).data;
const sum = DatabaseChecksum.fromFile(fixture.image);

/** Page sections of the real single-row-update transactions, as they would be compressed. */
const sections = fixture.transactions.map((pages) => Buffer.concat(pages.map((p) => p.data)));
const sectionBytes = sections.reduce((n, s) => n + s.length, 0);
const deflated1 = sections.map((s) => zlib.deflateRawSync(s, { level: 1 }));
const deflated6 = sections.map((s) => zlib.deflateRawSync(s, { level: 6 }));
const ratio = (parts: Uint8Array[]) => (sectionBytes / parts.reduce((n, s) => n + s.length, 0)).toFixed(2);

/** streamRatio is what transport-level compression gets: one deflate stream, flushed after each change set. */
async function streamRatio(): Promise<string> {
  const deflate = zlib.createDeflateRaw({ level: 6 });
  let out = 0;
  deflate.on('data', (chunk: Buffer) => (out += chunk.length));
  for (const section of sections) {
    deflate.write(section);
    await new Promise<void>((resolve) => deflate.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve()));
  }
  deflate.end();
  return (sectionBytes / out).toFixed(2);
}

console.log(
  `fixture: ${pageCount} pages; ${sections.length} single-row updates changed ${(sectionBytes / sections.length / 1024).toFixed(1)} KiB ` +
    `(${(sectionBytes / sections.length / PAGE_SIZE).toFixed(2)} pages) each; deflate-raw ratio per change set level 1: ` +
    `${ratio(deflated1)}, level 6: ${ratio(deflated6)}; one stream flushed per change set, level 6: ${await streamRatio()}`,
);

async function throughStream(data: Uint8Array<ArrayBuffer>, stream: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  return new Uint8Array(await new Response(new Blob([data]).stream().pipeThrough(stream)).arrayBuffer());
}

let next = 0;
const nextSection = () => sections[next++ % sections.length]!;

describe('hash', () => {
  bench('pageHash, one 4 KiB page (× 4096 B = bytes/s)', () => {
    pageHash(7, leaf);
  });
  bench('hash64, 1 MiB (× 1 MiB = bytes/s)', () => {
    hash64(fixture.image.subarray(0, 1 << 20));
  });
  bench('DatabaseChecksum.setPage, one 4 KiB page', () => {
    sum.setPage(7, leaf);
  });
});

describe('change-set codec, 4 KiB pages', () => {
  bench('encode 1 page', () => {
    encodeChangeSet(onePage);
  });
  bench('decode 1 page', () => {
    decodeChangeSet(onePageBytes);
  });
  bench('encode 100 pages', () => {
    encodeChangeSet(hundredPages);
  });
  bench('decode 100 pages', () => {
    decodeChangeSet(hundredPagesBytes);
  });
});

describe('compression of one single-row update transaction (for the FLAG_COMPRESSED decision)', () => {
  bench('node:zlib deflateRawSync level 1', () => {
    zlib.deflateRawSync(nextSection(), { level: 1 });
  });
  bench('node:zlib deflateRawSync level 6', () => {
    zlib.deflateRawSync(nextSection(), { level: 6 });
  });
  bench('node:zlib inflateRawSync', () => {
    zlib.inflateRawSync(deflated6[next++ % deflated6.length]!);
  });
  bench('CompressionStream deflate-raw', async () => {
    await throughStream(nextSection(), new CompressionStream('deflate-raw'));
  });
  bench('DecompressionStream deflate-raw', async () => {
    await throughStream(deflated6[next++ % deflated6.length]!, new DecompressionStream('deflate-raw'));
  });
});
