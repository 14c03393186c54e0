/// <reference path="../../deploy/worker/src/worker-env.d.ts" />
/**
 * The Worker replica's parts that do not need workerd, run in Node on real SQLite images: change-set
 * verification (apply.ts), delta change sets rebuilt from stored pages, snapshot assembly, wa-sqlite over the page-map VFS (an apply seen by the
 * same open connection, read-only classification, errors), configuration and consistency parsing.
 */
import fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeChangeSet } from '../../shared/changeset.ts';
import { encodeDeltaChangeSet, isDeltaChangeSet } from '../../shared/changeset-delta.ts';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { runRead } from '../../shared/sql.ts';
import { encodeToken } from '../../shared/token.ts';
import type { ChangeSet, PageImage } from '../../shared/types.ts';
import { SnapshotAssembler, verifyBatch, type ReplicaPosition } from '../../deploy/worker/src/apply.ts';
import { decodeStreamChangeSet } from '../../shared/follower-decode.ts';
import { parseWorkerConfig, type Env } from '../../deploy/worker/src/config.ts';
import { parseConsistency } from '../../shared/consistency.ts';
import { WaSqliteConnection, type WasmModule } from '../../deploy/worker/src/sqlite.ts';
import { MAIN_FILE, PageMapVfs, presentHeader, type PageSource } from '../../deploy/worker/src/vfs.ts';
import { kvFile, pagesOf as pagesOfImage } from '../helpers.ts';
import { loadWaSqlite } from '../kit/wa-sqlite.ts';

const PAGE_SIZE = 4096;

function expectCode(fn: () => unknown, code: string): EdgeliteError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(EdgeliteError);
    expect((err as EdgeliteError).code).toBe(code);
    return err as EdgeliteError;
  }
  throw new Error(`expected EdgeliteError ${code}, nothing was thrown`);
}

const kv = kvFile('worker-units', PAGE_SIZE, 200);
const image = kv.image;
const pagesOf = (img: Uint8Array): PageImage[] => pagesOfImage(img, PAGE_SIZE);

/** changeSet builds the change set that turns image `a` into image `b` (pages that differ). */
function changeSet(a: Uint8Array, b: Uint8Array, minTxid: number, databaseId = 7, generation = 1): ChangeSet {
  const pages = pagesOf(b).filter(({ pgno, data }) => {
    const old = a.subarray((pgno - 1) * PAGE_SIZE, pgno * PAGE_SIZE);
    return old.length !== PAGE_SIZE || !old.every((v, i) => v === data[i]);
  });
  return {
    databaseId, pageSize: PAGE_SIZE, generation, minTxid, maxTxid: minTxid, commit: b.length / PAGE_SIZE, timestamp: 1000 + minTxid,
    preChecksum: DatabaseChecksum.fromFile(a).value, postChecksum: DatabaseChecksum.fromFile(b).value, pages,
  };
}

function at(img: Uint8Array, txid: number): ReplicaPosition {
  return { databaseId: 7, pageSize: PAGE_SIZE, pageCount: img.length / PAGE_SIZE, position: { generation: 1, txid, checksum: DatabaseChecksum.fromFile(img).value } };
}

describe('verifyBatch', () => {
  it('accepts consecutive change sets, merges their pages and ends at the last post-checksum', () => {
    const a = image();
    kv.db.prepare('INSERT INTO kv VALUES (?, ?)').run(1000, 'b');
    const b = image();
    kv.db.prepare('DELETE FROM kv WHERE k < 100').run();
    const c = image();
    const sum = DatabaseChecksum.fromFile(a);
    const batch = verifyBatch(sum, at(a, 10), [changeSet(a, b, 11), changeSet(b, c, 12)]);
    expect(batch.position).toEqual({ generation: 1, txid: 12, checksum: DatabaseChecksum.fromFile(c).value });
    expect(batch.pageCount).toBe(c.length / PAGE_SIZE);
    expect(sum.value).toBe(DatabaseChecksum.fromFile(c).value);
    const rebuilt = a.slice(0, c.length);
    for (const [pgno, data] of batch.pages) rebuilt.set(data, (pgno - 1) * PAGE_SIZE);
    expect(DatabaseChecksum.fromFile(rebuilt).value).toBe(DatabaseChecksum.fromFile(c).value);
  });

  it('refuses a wrong pre-checksum, a wrong post-checksum, a txid gap, another generation or database', () => {
    const a = image();
    kv.db.prepare('INSERT INTO kv VALUES (?, ?)').run(2000, 'c');
    const b = image();
    const good = changeSet(a, b, 11);
    const cases: Array<[ChangeSet, string, string]> = [
      [{ ...good, preChecksum: good.preChecksum ^ 1n }, 'CHECKSUM_MISMATCH', 'pre-checksum'],
      [{ ...good, postChecksum: good.postChecksum ^ 1n }, 'CHECKSUM_MISMATCH', 'post-checksum'],
      [{ ...good, minTxid: 12, maxTxid: 12 }, 'POSITION_MISMATCH', 'txid'],
      [{ ...good, generation: 2 }, 'POSITION_MISMATCH', 'generation'],
      [{ ...good, databaseId: 8 }, 'POSITION_MISMATCH', 'database-id'],
    ];
    for (const [cs, code, reason] of cases) {
      const err = expectCode(() => verifyBatch(DatabaseChecksum.fromFile(a), at(a, 10), [cs]), code);
      expect(err.details?.reason).toBe(reason);
    }
    expectCode(() => verifyBatch(DatabaseChecksum.fromFile(a), at(a, 10), []), 'BAD_REQUEST');
  });
});

describe('decodeStreamChangeSet', () => {
  /** stored is what the Worker's page store answers: the image's pages, null past its end. */
  const stored = (img: Uint8Array) => (pgno: number): Uint8Array | null =>
    pgno * PAGE_SIZE <= img.length ? img.slice((pgno - 1) * PAGE_SIZE, pgno * PAGE_SIZE) : null;
  const deltaOf = (cs: ChangeSet, base: Uint8Array) => encodeDeltaChangeSet(cs, stored(base));

  it('rebuilds a delta change set from the stored pages into what verifyBatch accepts', () => {
    const a = image();
    kv.db.prepare('UPDATE kv SET v = ? WHERE k = ?').run('updated', 150);
    const b = image();
    const cs = changeSet(a, b, 11);
    const bytes = deltaOf(cs, a);
    expect(isDeltaChangeSet(bytes)).toBe(true);
    // This file is in rollback mode, so page 1 (its change counter) changes and goes whole; the leaf is a delta.
    expect(cs.pages.length).toBe(2);
    expect(encodeChangeSet(cs).length).toBeGreaterThan(2 * PAGE_SIZE);
    expect(bytes.length).toBeLessThan(PAGE_SIZE + 512);
    const decoded = decodeStreamChangeSet(bytes, [], stored(a));
    expect(decoded.pages.map((p) => p.pgno)).toEqual(cs.pages.map((p) => p.pgno));
    decoded.pages.forEach((p, i) => expect(p.data).toEqual(cs.pages[i]!.data));
    const sum = DatabaseChecksum.fromFile(a);
    expect(verifyBatch(sum, at(a, 10), [decoded]).position.checksum).toBe(DatabaseChecksum.fromFile(b).value);
    // A plain change set still decodes without touching the store.
    expect(decodeStreamChangeSet(encodeChangeSet(cs), [], () => { throw new Error('read the store'); }).pages.length).toBe(cs.pages.length);
  });

  it('takes a base from the batch not yet applied before the store', () => {
    const a = image();
    kv.db.prepare('UPDATE kv SET v = ? WHERE k = ?').run('first', 151);
    const b = image();
    kv.db.prepare('UPDATE kv SET v = ? WHERE k = ?').run('second', 151);
    const c = image();
    const first = changeSet(a, b, 11);
    const second = changeSet(b, c, 12);
    const decodedFirst = decodeStreamChangeSet(deltaOf(first, a), [], stored(a));
    const decodedSecond = decodeStreamChangeSet(deltaOf(second, b), [decodedFirst], stored(a));
    const batch = verifyBatch(DatabaseChecksum.fromFile(a), at(a, 10), [decodedFirst, decodedSecond]);
    expect(batch.position.checksum).toBe(DatabaseChecksum.fromFile(c).value);
    // Against the store alone (the first not yet applied) the second delta's bases do not match.
    expect(expectCode(() => decodeStreamChangeSet(deltaOf(second, b), [], stored(a)), 'CHECKSUM_MISMATCH').details?.reason).toBe('delta-base');
  });

  it('refuses a delta when a stored page is not its base (one byte flipped): nothing to apply', () => {
    const a = image();
    kv.db.prepare('UPDATE kv SET v = ? WHERE k = ?').run('changed', 152);
    const b = image();
    const cs = changeSet(a, b, 11);
    const bytes = deltaOf(cs, a);
    const target = cs.pages.find((p) => p.pgno !== 1)!.pgno;
    const damaged = a.slice();
    damaged[(target - 1) * PAGE_SIZE + PAGE_SIZE - 1]! ^= 0xff;
    const err = expectCode(() => decodeStreamChangeSet(bytes, [], stored(damaged)), 'CHECKSUM_MISMATCH');
    expect(err.details).toMatchObject({ reason: 'delta-base', pgno: target });
    expect(expectCode(() => decodeStreamChangeSet(bytes, [], () => null), 'CHECKSUM_MISMATCH').details?.reason).toBe('delta-base');
  });
});

describe('SnapshotAssembler', () => {
  it('cuts chunks of any size into pages with the checksum of the whole image', () => {
    const img = image();
    const asm = new SnapshotAssembler(PAGE_SIZE, img.length);
    const got: number[] = [];
    for (let off = 0; off < img.length; off += 1000) asm.push(img.subarray(off, off + 1000), (pgno) => got.push(pgno));
    expect(asm.finish(DatabaseChecksum.fromFile(img).value).value).toBe(DatabaseChecksum.fromFile(img).value);
    expect(got).toEqual(pagesOf(img).map((p) => p.pgno));
  });

  it('refuses a wrong checksum, a cut or overlong body, and a page size that disagrees with the header', () => {
    const img = image();
    const sum = DatabaseChecksum.fromFile(img).value;
    const full = new SnapshotAssembler(PAGE_SIZE, img.length);
    full.push(img, () => {});
    expectCode(() => full.finish(sum ^ 1n), 'CHECKSUM_MISMATCH');
    const cut = new SnapshotAssembler(PAGE_SIZE, img.length);
    cut.push(img.subarray(0, img.length - 1), () => {});
    expectCode(() => cut.finish(sum), 'CORRUPT_CHANGESET');
    expectCode(() => new SnapshotAssembler(PAGE_SIZE, img.length - PAGE_SIZE).push(img, () => {}), 'CORRUPT_CHANGESET');
    expectCode(() => new SnapshotAssembler(PAGE_SIZE * 2, img.length * 2).push(new Uint8Array(img.length * 2).fill(0).map((_, i) => img[i] ?? 0), () => {}), 'CORRUPT_CHANGESET');
    expectCode(() => new SnapshotAssembler(1000, 4000), 'CORRUPT_CHANGESET');
  });
});

/** MapSource is a PageSource over an image, replaced wholesale by `set` (what an apply does). */
class MapSource implements PageSource {
  readonly pageSize = PAGE_SIZE;
  pages = new Map<number, Uint8Array>();
  version = 1;
  get pageCount(): number {
    return this.pages.size;
  }
  set(img: Uint8Array): void {
    this.pages = new Map(pagesOf(img).map((p) => [p.pgno, p.data.slice()]));
    this.version++;
  }
  page(pgno: number): Uint8Array {
    const p = this.pages.get(pgno);
    if (!p) throw new Error(`no page ${pgno}`);
    return p;
  }
}

describe('wa-sqlite over the page-map VFS', () => {
  let module: WasmModule;
  beforeAll(async () => {
    module = await loadWaSqlite();
  });

  function open(source: MapSource, name: string): WaSqliteConnection {
    const vfs = new PageMapVfs(name);
    module.registerVFS(vfs, false);
    vfs.attach(source);
    return new WaSqliteConnection(module, MAIN_FILE, vfs.name);
  }

  it('sees an apply on the same open connection, with no reopen', () => {
    const source = new MapSource();
    source.set(image());
    const conn = open(source, 'units-apply');
    const count = () => runRead(conn, { sql: 'SELECT count(*), max(k) FROM kv', params: [] }).rows[0];
    const before = count();
    kv.db.prepare('INSERT INTO kv VALUES (?, ?)').run(5000, 'new');
    kv.db.exec('CREATE TABLE later (x)');
    source.set(image());
    expect(count()).toEqual([Number(before![0]) + 1, 5000]);
    expect(runRead(conn, { sql: "SELECT name FROM sqlite_master WHERE name = 'later'", params: [] }).rows).toEqual([['later']]);
    expect(runRead(conn, { sql: 'SELECT v FROM kv WHERE k = :k', params: { k: 5000 } }).rows).toEqual([['new']]);
    conn.close();
  });

  it('classifies writes as READ_ONLY and maps SQL errors, one statement per sql', () => {
    const source = new MapSource();
    source.set(image());
    const conn = open(source, 'units-errors');
    expectCode(() => runRead(conn, { sql: "INSERT INTO kv VALUES (99999, 'x')", params: [] }), 'READ_ONLY');
    expectCode(() => runRead(conn, { sql: 'CREATE TEMP TABLE t (x)', params: [] }), 'READ_ONLY');
    expectCode(() => runRead(conn, { sql: 'SELECT nope FROM kv', params: [] }), 'SQL_ERROR');
    expectCode(() => runRead(conn, { sql: 'SELECT 1; SELECT 2', params: [] }), 'SQL_ERROR');
    expectCode(() => runRead(conn, { sql: 'SELECT ?', params: [] }), 'SQL_ERROR');
    expect(runRead(conn, { sql: 'SELECT 1 AS one; -- trailing comment', params: [] })).toEqual({ columns: ['one'], rows: [[1]] });
    expect(runRead(conn, { sql: 'PRAGMA table_info(kv)', params: [] }).rows.map((r) => r[1])).toEqual(['k', 'v']);
    expectCode(() => runRead(conn, { sql: 'PRAGMA user_version(5)', params: [] }), 'READ_ONLY');
    expect(runRead(conn, { sql: 'SELECT ?, ?, ?, ?', params: [new Uint8Array([1, 2]), 2n ** 62n, 'é', 0.5] }).rows).toEqual([[new Uint8Array([1, 2]), 2n ** 62n, 'é', 0.5]]);
    conn.close();
  });

  it('presents page 1 as a rollback-journal file whose change counter is the source version', () => {
    const page = image().slice(0, 100);
    presentHeader(page, 0, 77, 0x01020304);
    expect([page[18], page[19]]).toEqual([1, 1]);
    expect([...page.subarray(24, 32)]).toEqual([1, 2, 3, 4, 0, 0, 0, 77]);
    expect([...page.subarray(92, 96)]).toEqual([1, 2, 3, 4]);
    const part = new Uint8Array(16);
    presentHeader(part, 24, 5, 9);
    expect([...part.subarray(0, 8)]).toEqual([0, 0, 0, 9, 0, 0, 0, 5]);
  });
});

describe('configuration and consistency', () => {
  const base: Env = { REPLICA: {} as DurableObjectNamespace, PRIMARY_URL: 'http://127.0.0.1:7400', EDGELITE_TOKENS: 'read=read-token-0123456789' };

  it('validates the environment once, naming the variable; every bad value is MISCONFIGURED (503), never a 400', () => {
    expect(parseWorkerConfig({ ...base, DATABASES: 'a, b' })).toMatchObject({ primaryUrl: 'http://127.0.0.1:7400', databases: ['a', 'b'], readWaitMs: 5000 });
    const bad: Array<[Partial<Env>, RegExp]> = [
      [{ PRIMARY_URL: '' }, /PRIMARY_URL/],
      [{ PRIMARY_URL: 'ftp://x' }, /PRIMARY_URL/],
      [{ PRIMARY_URL: 'not a url' }, /PRIMARY_URL/],
      [{ READ_WAIT_MS: '-1' }, /READ_WAIT_MS/],
      [{ DATABASES: 'ok,../x' }, /invalid database name/],
      [{ EDGELITE_TOKENS: 'read=short' }, /at least 16/],
      [{ EDGELITE_TOKENS: undefined }, /EDGELITE_TOKEN/],
    ];
    for (const [env, message] of bad) {
      const err = expectCode(() => parseWorkerConfig({ ...base, ...env }), 'MISCONFIGURED');
      expect(err.message).toMatch(message);
      expect(err.status).toBe(503);
    }
    expect(parseWorkerConfig({ ...base, EDGELITE_TOKENS: undefined, ALLOW_NO_AUTH: 'true' }).auth.grants).toEqual([]);
  });

  it('parses levels and tokens like the Node replica', () => {
    const token = encodeToken({ db: 'app', databaseId: 1, generation: 1, txid: 5 });
    expect(parseConsistency('app', undefined, undefined)).toEqual({ level: 'eventual' });
    expect(parseConsistency('app', undefined, token)).toMatchObject({ level: 'read-your-writes', token: { txid: 5 } });
    expect(parseConsistency('app', 'bounded:250', undefined)).toEqual({ level: 'bounded', maxLagMs: 250, token: null });
    expect(parseConsistency('app', 'strong', undefined)).toEqual({ level: 'strong', token: null });
    expectCode(() => parseConsistency('other', undefined, token), 'TOKEN_DATABASE_MISMATCH');
    expectCode(() => parseConsistency('app', 'ryw', undefined), 'INVALID_TOKEN');
    expectCode(() => parseConsistency('app', 'sometimes', undefined), 'BAD_REQUEST');
  });
});
