/// <reference path="../../deploy/worker/src/worker-env.d.ts" />
/**
 * The shared change-set verifier (shared/verify.ts) on change sets cut from a real SQLite file: every
 * check fires with its code, `details.reason` and divergence; structural faults are CORRUPT_CHANGESET
 * with none. Then the Worker's applier (WorkerReplica over a PageStore on real SQLite storage) refuses
 * what its own, weaker verifier used to accept, and the page-size module's rule and header reads.
 */
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeDeltaChangeSet, encodeDeltaChangeSet } from '../../shared/changeset-delta.ts';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { type Divergence, divergenceOf } from '../../shared/errors.ts';
import { isPageSize, lockPageNumber, pageSizeOf } from '../../shared/page-size.ts';
import type { ChangeSet, PageImage } from '../../shared/types.ts';
import { advanceBatch, checkBatch, noPosition, verifyBatch, type VerifyBase } from '../../shared/verify.ts';
import { PageStore } from '../../deploy/worker/src/page-store.ts';
import { WorkerReplica } from '../../deploy/worker/src/replica.ts';
import type { WasmModule } from '../../deploy/worker/src/sqlite.ts';
import { kvFile, pagesOf as pagesOfImage, thrownEdgelite } from '../helpers.ts';
import { loadWaSqlite } from '../kit/wa-sqlite.ts';

const PAGE_SIZE = 4096;


const kv = kvFile('verify', PAGE_SIZE, 100);
const image = kv.image;
const pagesOf = (img: Uint8Array): PageImage[] => pagesOfImage(img, PAGE_SIZE);

/** changeSet is the change set that turns image `a` into image `b` (the pages that differ). */
function changeSet(a: Uint8Array, b: Uint8Array, minTxid: number): ChangeSet {
  const pages = pagesOf(b).filter(({ pgno, data }) => {
    const old = a.subarray((pgno - 1) * PAGE_SIZE, pgno * PAGE_SIZE);
    return old.length !== PAGE_SIZE || !old.every((v, i) => v === data[i]);
  });
  return {
    databaseId: 7, pageSize: PAGE_SIZE, generation: 1, minTxid, maxTxid: minTxid, commit: b.length / PAGE_SIZE, timestamp: 1000 + minTxid,
    preChecksum: DatabaseChecksum.fromFile(a).value, postChecksum: DatabaseChecksum.fromFile(b).value, pages,
  };
}

function at(img: Uint8Array, txid: number): VerifyBase {
  return { databaseId: 7, pageSize: PAGE_SIZE, pageCount: img.length / PAGE_SIZE, position: { generation: 1, txid, checksum: DatabaseChecksum.fromFile(img).value } };
}

/** three images a → b → c, one transaction apart. */
function history(): [Uint8Array, Uint8Array, Uint8Array] {
  const a = image();
  kv.db.prepare('INSERT INTO kv VALUES (?, ?)').run(1000 + Math.floor(Math.random() * 1e6), 'b');
  const b = image();
  kv.db.prepare('UPDATE kv SET v = ? WHERE k = 1').run(`changed ${Math.random()}`);
  return [a, b, image()];
}

describe('the shared verifier', () => {
  it('accepts consecutive change sets and ends at the last post-checksum', () => {
    const [a, b, c] = history();
    const sum = DatabaseChecksum.fromFile(a);
    const batch = verifyBatch(sum, at(a, 10), [changeSet(a, b, 11), changeSet(b, c, 12)]);
    expect(batch.position).toEqual({ generation: 1, txid: 12, checksum: DatabaseChecksum.fromFile(c).value });
    expect([batch.pageCount, batch.timestamp, sum.value]).toEqual([c.length / PAGE_SIZE, 1012, DatabaseChecksum.fromFile(c).value]);
  });

  it('every position and checksum check throws its code, reason and divergence', () => {
    const [a, b, c] = history();
    const good = changeSet(a, b, 11);
    const next = changeSet(b, c, 12);
    const cases: Array<[string, ChangeSet[], string, Divergence]> = [
      ['database id', [{ ...good, databaseId: 8 }], 'POSITION_MISMATCH', 'database-id'],
      ['generation', [{ ...good, generation: 2 }], 'POSITION_MISMATCH', 'generation'],
      ['page size', [{ ...good, pageSize: 1024 }], 'POSITION_MISMATCH', 'page-size'],
      ['txid gap', [{ ...good, minTxid: 12, maxTxid: 12 }], 'POSITION_MISMATCH', 'txid'],
      ['maxTxid < minTxid', [{ ...good, maxTxid: 10 }], 'POSITION_MISMATCH', 'txid'],
      ['gap inside the batch', [good, { ...next, minTxid: 13, maxTxid: 13 }], 'POSITION_MISMATCH', 'txid'],
      ['pre-checksum', [{ ...good, preChecksum: good.preChecksum ^ 1n }], 'CHECKSUM_MISMATCH', 'pre-checksum'],
      ['chained pre-checksum', [good, { ...next, preChecksum: next.preChecksum ^ 1n }], 'CHECKSUM_MISMATCH', 'pre-checksum'],
      ['post-checksum', [{ ...good, postChecksum: good.postChecksum ^ 1n }], 'CHECKSUM_MISMATCH', 'post-checksum'],
    ];
    for (const [what, batch, code, divergence] of cases) {
      const err = thrownEdgelite(() => verifyBatch(DatabaseChecksum.fromFile(a), at(a, 10), batch));
      expect([what, err.code, err.details?.reason, divergenceOf(err)]).toEqual([what, code, divergence, divergence]);
    }
    const none = noPosition('no position');
    expect([none.code, none.details?.reason, none.divergence]).toEqual(['POSITION_MISMATCH', 'no-position', 'no-position']);
  });

  it('a structurally invalid change set is CORRUPT_CHANGESET without divergence', () => {
    const [a, b] = history();
    const good = changeSet(a, b, 11);
    const page = good.pages[0]!;
    const lock = lockPageNumber(PAGE_SIZE);
    const cases: Array<[string, ChangeSet]> = [
      ['commit 0', { ...good, commit: 0 }],
      ['page 0', { ...good, pages: [{ pgno: 0, data: page.data }] }],
      ['page above commit', { ...good, pages: [...good.pages, { pgno: good.commit + 1, data: page.data }] }],
      ['the lock page', { ...good, commit: lock + 1, pages: [{ pgno: lock, data: page.data }] }],
      ['a short page', { ...good, pages: [{ pgno: page.pgno, data: page.data.subarray(1) }] }],
      ['a long page', { ...good, pages: [{ pgno: page.pgno, data: new Uint8Array(PAGE_SIZE + 1) }] }],
    ];
    for (const [what, cs] of cases) {
      const err = thrownEdgelite(() => verifyBatch(DatabaseChecksum.fromFile(a), at(a, 10), [cs]));
      expect([what, err.code, err.divergence]).toEqual([what, 'CORRUPT_CHANGESET', null]);
    }
    expect(thrownEdgelite(() => verifyBatch(DatabaseChecksum.fromFile(a), at(a, 10), [])).code).toBe('BAD_REQUEST');
  });

  it('checkBatch touches nothing; only a post-checksum failure leaves the checksum moved', () => {
    const [a, b] = history();
    const good = changeSet(a, b, 11);
    const sum = DatabaseChecksum.fromFile(a);
    thrownEdgelite(() => verifyBatch(sum, at(a, 10), [{ ...good, preChecksum: 1n }]));
    thrownEdgelite(() => verifyBatch(sum, at(a, 10), [{ ...good, commit: 0 }]));
    expect(sum.value).toBe(DatabaseChecksum.fromFile(a).value);
    checkBatch(at(a, 10), sum.value, [good]);
    expect(advanceBatch(sum, at(a, 10), [good]).position.checksum).toBe(DatabaseChecksum.fromFile(b).value);
  });

  it('the delta decoder marks a base mismatch as a delta-base divergence', () => {
    const [a, b] = history();
    const stored = (img: Uint8Array) => (pgno: number) => (pgno * PAGE_SIZE <= img.length ? img.slice((pgno - 1) * PAGE_SIZE, pgno * PAGE_SIZE) : null);
    const bytes = encodeDeltaChangeSet(changeSet(a, b, 11), stored(a));
    const wrong = (pgno: number) => {
      const page = stored(a)(pgno);
      if (page && pgno > 1) page[100] = page[100]! ^ 0xff;
      return page;
    };
    const err = thrownEdgelite(() => decodeDeltaChangeSet(bytes, wrong));
    expect([err.code, err.details?.reason, err.divergence]).toEqual(['CHECKSUM_MISMATCH', 'delta-base', 'delta-base']);
  });
});

/** sqlStorage is the part of a Durable Object's storage PageStore uses, over a real SQLite file. */
function sqlStorage(sqlite: Database.Database): DurableObjectStorage {
  const bind = (params: unknown[]) => params.map((p) => (p instanceof Uint8Array ? Buffer.from(p.buffer, p.byteOffset, p.byteLength) : p));
  const sql = {
    exec(query: string, ...params: unknown[]) {
      let rows: unknown[] = [];
      if (params.length === 0 && query.includes(';')) sqlite.exec(query);
      else {
        const stmt = sqlite.prepare(query);
        if (stmt.reader) rows = stmt.all(...bind(params));
        else stmt.run(...bind(params));
      }
      return { toArray: () => rows, [Symbol.iterator]: () => rows[Symbol.iterator]() };
    },
    get databaseSize() {
      return 0;
    },
  };
  return { sql, transactionSync: <T>(fn: () => T): T => sqlite.transaction(fn)() } as unknown as DurableObjectStorage;
}

describe("the Worker's applier", () => {
  let module: WasmModule;
  beforeAll(async () => {
    module = await loadWaSqlite();
  });

  /** replicaAt is a WorkerReplica holding image `img` at txid 10, as a verified snapshot leaves it. */
  function replicaAt(img: Uint8Array, name: string): { replica: WorkerReplica; storage: Database.Database } {
    const storage = new Database(':memory:');
    const store = new PageStore(sqlStorage(storage));
    const replica = new WorkerReplica(name, store, module);
    const sum = DatabaseChecksum.fromFile(img);
    store.stage(pagesOf(img).map((p) => [p.pgno, p.data] as [number, Uint8Array]));
    replica.installSnapshot({ generation: 1, txid: 10, checksum: sum.value }, 7, sum, 1000);
    return { replica, storage };
  }

  it('refuses a page above commit, a wrong-length page and the lock page, then still applies the good one', () => {
    const [a, b] = history();
    const good = changeSet(a, b, 11);
    const { replica, storage } = replicaAt(a, 'refuses');
    const page = good.pages[0]!;
    const lock = lockPageNumber(PAGE_SIZE);
    const refused: ChangeSet[] = [
      { ...good, pages: [...good.pages, { pgno: good.commit + 1, data: page.data }] },
      { ...good, pages: [{ pgno: page.pgno, data: page.data.subarray(0, 512) }] },
      { ...good, commit: lock + 1, pages: [...good.pages, { pgno: lock, data: page.data }] },
    ];
    for (const cs of refused) {
      const err = thrownEdgelite(() => replica.apply([cs]));
      expect([err.code, err.divergence]).toEqual(['CORRUPT_CHANGESET', null]);
      expect(replica.position?.txid).toBe(10);
    }
    expect(replica.apply([good])).toEqual({ generation: 1, txid: 11, checksum: good.postChecksum });
    expect(replica.query([{ sql: 'SELECT count(*) AS n FROM kv', params: [] }])[0]!.rows).toEqual([[countRows()]]);
    storage.close();
  });
});

function countRows(): number {
  return (kv.db.prepare('SELECT count(*) AS n FROM kv').get() as { n: number }).n;
}

describe('page-size module', () => {
  it('isPageSize takes exactly the powers of two in 512..65536', () => {
    const valid = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
    for (const n of valid) expect(isPageSize(n)).toBe(true);
    for (const n of [0, 1, 256, 511, 513, 1000, 3072, 131072, -512, 4096.5, Number.NaN, '4096', null]) expect(isPageSize(n)).toBe(false);
  });

  it('pageSizeOf reads header bytes 16–17, 1 meaning 65536, and 0 from bytes too short', () => {
    expect(pageSizeOf(image())).toBe(PAGE_SIZE);
    const header = new Uint8Array(100);
    header.set([0x02, 0x00], 16);
    expect(pageSizeOf(header)).toBe(512);
    header.set([0x00, 0x01], 16);
    expect(pageSizeOf(header)).toBe(65536);
    header.set([0x03, 0x00], 16);
    expect(isPageSize(pageSizeOf(header))).toBe(false);
    expect(pageSizeOf(new Uint8Array(17))).toBe(0);
  });

  it('lockPageNumber is the page holding byte offset 1 GiB', () => {
    expect(lockPageNumber(4096)).toBe(262145);
    expect(lockPageNumber(65536)).toBe(16385);
    expect(lockPageNumber(512)).toBe(2097153);
  });
});
