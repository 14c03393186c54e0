/**
 * WalReader against real WAL files made by SQLite 3.40.1 (test/fixtures/wal, see its README) and against
 * a live better-sqlite3 writer. Expected frame ranges and commit sizes come from expected.json, which the
 * fixture script measured from SQLite itself; the page numbers were checked by hand against the frames.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EdgeliteError } from '../../shared/errors.ts';
import {
  dbHeaderPageSize,
  parseFrameHeader,
  parseWalHeader,
  walChecksum,
  walFrameOffset,
  WAL_FRAME_HEADER_SIZE,
} from '../../primary/wal-format.ts';
import { WalReader, type WalCursor, type WalReadResult, type WalTransaction } from '../../primary/wal-reader.ts';

const FIXTURES = path.join(import.meta.dirname, '../fixtures/wal');
const fixture = (name: string): Buffer => fs.readFileSync(path.join(FIXTURES, name));

interface ExpectedTx { name: string; commit: number; lastFrame: number; rows: number; digest: string }
const expected = JSON.parse(fixture('expected.json').toString()) as {
  pageSize: number;
  ok: ExpectedTx[];
  uncommittedTail: { frames: number };
  restarted: { before: { commit: number; lastFrame: number }[]; after: { commit: number; lastFrame: number }[] };
};
const PAGE = expected.pageSize;

/** OK_PGNOS: pages each `ok` transaction leaves, after last-image-wins and dropping pages above commit. */
const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const OK_PGNOS = [[3], [3], range(1, 17), [4], [1, 2, 3, 16, 17], [1, 2, 3, 9, 10], range(1, 10)];

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-wal-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** walFile copies fixture bytes to a temp -wal path (fixtures are never opened in place). */
function walFile(bytes: Uint8Array, name = 'x.db-wal'): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
}

function readOnce(bytes: Uint8Array, from: WalCursor | null = null): WalReadResult {
  const r = new WalReader(walFile(bytes));
  try {
    return r.read(from);
  } finally {
    r.close();
  }
}

const summary = (txs: WalTransaction[]) =>
  txs.map((t) => ({ commit: t.commit, firstFrame: t.firstFrame, lastFrame: t.lastFrame, pgnos: [...t.pages.keys()] }));

const okSummary = (n: number) =>
  expected.ok.slice(0, n).map((t, i) => ({
    commit: t.commit,
    firstFrame: i === 0 ? 1 : expected.ok[i - 1]!.lastFrame + 1,
    lastFrame: t.lastFrame,
    pgnos: OK_PGNOS[i],
  }));

/** frameAt returns 1-based frame k's page and its stored checksums from raw WAL bytes. */
function frameAt(wal: Uint8Array, k: number) {
  const at = walFrameOffset(k, PAGE);
  return { header: parseFrameHeader(wal, at), page: wal.subarray(at + WAL_FRAME_HEADER_SIZE, at + WAL_FRAME_HEADER_SIZE + PAGE) };
}

/** replay writes transactions' pages onto a database file and truncates it to each commit size. */
function replay(dbPath: string, txs: WalTransaction[], pageSize = PAGE): void {
  const fd = fs.openSync(dbPath, 'r+');
  try {
    for (const tx of txs) {
      for (const [pgno, page] of tx.pages) fs.writeSync(fd, page, 0, page.byteLength, (pgno - 1) * pageSize);
      fs.ftruncateSync(fd, tx.commit * pageSize);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** tableDigest is the fixture script's digest: sha256 over "id:hex(v)\n" in id order. */
function tableDigest(dbPath: string): { rows: number; digest: string; integrity: string } {
  const db = new Database(dbPath);
  try {
    const h = crypto.createHash('sha256');
    const rows = db.prepare('SELECT id, v FROM t ORDER BY id').all() as { id: number; v: Buffer }[];
    for (const r of rows) h.update(`${r.id}:${r.v.toString('hex')}\n`);
    return { rows: rows.length, digest: h.digest('hex'), integrity: db.pragma('integrity_check', { simple: true }) as string };
  } finally {
    db.close();
  }
}

function expectCode(fn: () => unknown, code: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(EdgeliteError);
  expect((caught as EdgeliteError).code).toBe(code);
}

describe('walChecksum', () => {
  /** reference: SQLite's loop, word by word, through a DataView. */
  function reference(be: boolean, data: Uint8Array, s1: number, s2: number): [number, number] {
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    for (let i = 0; i < data.byteLength; i += 8) {
      s1 = (s1 + v.getUint32(i, !be) + s2) % 2 ** 32;
      s2 = (s2 + v.getUint32(i + 4, !be) + s1) % 2 ** 32;
    }
    return [s1, s2];
  }

  it('reproduces the checksums SQLite stored in a real WAL header and frame', () => {
    const wal = fixture('ok.wal');
    const h = parseWalHeader(wal);
    expect(walChecksum(false, wal.subarray(0, 24), 0, 0)).toEqual([h.checksum1, h.checksum2]);
    const f1 = frameAt(wal, 1);
    const at = walFrameOffset(1, PAGE);
    let s = walChecksum(false, wal.subarray(at, at + 8), h.checksum1, h.checksum2);
    s = walChecksum(false, f1.page, s[0], s[1]);
    expect(s).toEqual([f1.header.checksum1, f1.header.checksum2]);
  });

  it('matches the reference for both word orders, aligned or not', () => {
    const bytes = crypto.randomBytes(1025);
    const aligned = new Uint8Array(bytes.buffer.slice(0), 0, 1024);
    const unaligned = new Uint8Array(bytes.buffer.slice(0), 1, 1024);
    for (const be of [false, true]) {
      for (const data of [aligned, unaligned]) {
        expect(walChecksum(be, data, 0xfffffff0, 7)).toEqual(reference(be, data, 0xfffffff0, 7));
      }
    }
    expect(walChecksum(true, aligned, 0, 0)).not.toEqual(walChecksum(false, aligned, 0, 0));
  });

  it('refuses input that is not whole word pairs', () => {
    expectCode(() => walChecksum(false, new Uint8Array(12), 0, 0), 'INTERNAL');
  });
});

describe('parseWalHeader', () => {
  /** header builds a WAL header with a correct checksum, so one field at a time can be made wrong. */
  function header(fields: { magic?: number; version?: number; pageSize?: number }): Uint8Array {
    const buf = new Uint8Array(32);
    const v = new DataView(buf.buffer);
    v.setUint32(0, fields.magic ?? 0x377f0682);
    v.setUint32(4, fields.version ?? 3007000);
    v.setUint32(8, fields.pageSize ?? 4096);
    v.setUint32(12, 5);
    v.setUint32(16, 0xdeadbeef);
    v.setUint32(20, 42);
    const [c1, c2] = walChecksum(fields.magic === 0x377f0683, buf.subarray(0, 24), 0, 0);
    v.setUint32(24, c1);
    v.setUint32(28, c2);
    return buf;
  }

  it('decodes a real header', () => {
    const h = parseWalHeader(fixture('ok.wal'));
    expect(h).toMatchObject({ bigEndianChecksums: false, version: 3007000, pageSize: 1024, checkpointSeq: 1 });
    expect(parseWalHeader(fixture('big-endian.wal')).bigEndianChecksums).toBe(true);
  });

  it('takes page size 65536 as stored (the WAL header has no "1 means 65536" rule)', () => {
    expect(parseWalHeader(header({ pageSize: 65536 })).pageSize).toBe(65536);
    expect(parseWalHeader(header({ pageSize: 512, magic: 0x377f0683 })).pageSize).toBe(512);
  });

  it('rejects what SQLite would ignore: WAL_INVALID', () => {
    for (const bad of [{ magic: 0x377f0684 }, { version: 3007001 }, { pageSize: 1 }, { pageSize: 1000 }, { pageSize: 131072 }, { pageSize: 256 }]) {
      expectCode(() => parseWalHeader(header(bad)), 'WAL_INVALID');
    }
    const flipped = header({});
    flipped[21]! ^= 1; // salt-2 changed, checksum not
    expectCode(() => parseWalHeader(flipped), 'WAL_INVALID');
    expectCode(() => parseWalHeader(new Uint8Array(31)), 'WAL_INVALID');
  });
});

describe('dbHeaderPageSize', () => {
  it('reads the database header, where 65536 is stored as 1', () => {
    expect(dbHeaderPageSize(fixture('ok.db'))).toBe(1024);
    const page1 = new Uint8Array(100);
    page1[16] = 0;
    page1[17] = 1;
    expect(dbHeaderPageSize(page1)).toBe(65536);
    page1[17] = 3;
    expectCode(() => dbHeaderPageSize(page1), 'WAL_INVALID');
  });
});

describe('WalReader on the fixtures', () => {
  it('ok: seven transactions, last image wins, pages above commit dropped', () => {
    const wal = fixture('ok.wal');
    const r = readOnce(wal);
    expect(r.start).toBe('fresh');
    expect(r.stoppedBy).toBe('end');
    expect(summary(r.transactions)).toEqual(okSummary(7));
    // Transaction 5 wrote page 17 in frames 21 and 59: the image is frame 59's.
    expect(frameAt(wal, 21).header.pgno).toBe(17);
    expect(r.transactions[4]!.pages.get(17)).toEqual(new Uint8Array(frameAt(wal, 59).page));
    expect(r.transactions[4]!.pages.get(17)).not.toEqual(new Uint8Array(frameAt(wal, 21).page));
    const last = frameAt(wal, 77).header;
    expect(r.cursor).toEqual({ salt1: r.header!.salt1, salt2: r.header!.salt2, pageSize: PAGE, frame: 77, checksum1: last.checksum1, checksum2: last.checksum2 });
    for (const tx of r.transactions) {
      for (const page of tx.pages.values()) expect(page.buffer.byteLength).toBe(PAGE); // its own copy
    }
  });

  it('ok: replaying each prefix onto the -db file gives what the writer saw, intact', () => {
    const txs = readOnce(fixture('ok.wal')).transactions;
    for (let k = 1; k <= txs.length; k++) {
      const db = path.join(dir, `replay-${k}.db`);
      fs.writeFileSync(db, fixture('ok.db'));
      replay(db, txs.slice(0, k));
      expect(tableDigest(db)).toEqual({ rows: expected.ok[k - 1]!.rows, digest: expected.ok[k - 1]!.digest, integrity: 'ok' });
    }
  });

  it('ok: the replayed file is byte-identical to SQLite checkpointing the WAL into it', () => {
    const replayed = path.join(dir, 'replayed.db');
    fs.writeFileSync(replayed, fixture('ok.db'));
    replay(replayed, readOnce(fixture('ok.wal')).transactions);
    const real = path.join(dir, 'real.db');
    fs.writeFileSync(real, fixture('ok.db'));
    fs.writeFileSync(`${real}-wal`, fixture('ok.wal'));
    const db = new Database(real);
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
    expect(fs.readFileSync(replayed).equals(fs.readFileSync(real))).toBe(true);
  });

  it('salt-mismatch: stops before the transaction holding the bad frame', () => {
    const r = readOnce(fixture('salt-mismatch.wal'));
    expect(summary(r.transactions)).toEqual(okSummary(2));
    expect(r.stoppedBy).toBe('invalid-frame');
    expect(r.cursor?.frame).toBe(2);
  });

  it('frame-checksum-mismatch: stops at the flipped byte', () => {
    const r = readOnce(fixture('frame-checksum-mismatch.wal'));
    expect(summary(r.transactions)).toEqual(okSummary(3));
    expect(r.stoppedBy).toBe('invalid-frame');
  });

  it('torn-last-frame: the transaction whose commit frame is torn is not returned', () => {
    const r = readOnce(fixture('torn-last-frame.wal'));
    expect(summary(r.transactions)).toEqual(okSummary(6));
    expect(r.stoppedBy).toBe('uncommitted-tail');
  });

  it('uncommitted-tail: a WAL copied mid-transaction gives the committed ones; ok then continues from there', () => {
    const tail = fixture('uncommitted-tail.wal');
    expect((tail.length - 32) / (PAGE + 24)).toBe(expected.uncommittedTail.frames);
    const r = readOnce(tail);
    expect(summary(r.transactions)).toEqual(okSummary(4));
    expect(r.stoppedBy).toBe('uncommitted-tail');
    const again = readOnce(tail, r.cursor);
    expect(again).toMatchObject({ start: 'continued', transactions: [], cursor: r.cursor, stoppedBy: 'uncommitted-tail' });
    // The writer went on and committed: reading ok.wal from the cursor gives transactions 5..7.
    const rest = readOnce(fixture('ok.wal'), r.cursor);
    expect(rest.start).toBe('continued');
    expect(summary(rest.transactions)).toEqual(okSummary(7).slice(4));
  });

  it('restarted: new frames first, stale old-salt frames after them are ignored', () => {
    const before = readOnce(fixture('restarted.before.wal'));
    expect(before.transactions.map((t) => [t.commit, t.lastFrame])).toEqual(expected.restarted.before.map((t) => [t.commit, t.lastFrame]));
    const fresh = readOnce(fixture('restarted.wal'));
    expect(summary(fresh.transactions)).toEqual([{ commit: 9, firstFrame: 1, lastFrame: 1, pgnos: [9] }]);
    expect(fresh.transactions[0]!.lastFrame).toBe(expected.restarted.after[0]!.lastFrame);
    expect(fresh.stoppedBy).toBe('invalid-frame');
    expect(fresh.header!.salt1).toBe((before.header!.salt1 + 1) >>> 0);
    expect(fresh.header!.checkpointSeq).toBe(before.header!.checkpointSeq + 1);
    // From any cursor of the old WAL, the restart is recognised and reading starts at frame 1.
    for (const tx of before.transactions) {
      const r = readOnce(fixture('restarted.wal'), tx.cursor);
      expect(r.start).toBe('restarted');
      expect(summary(r.transactions)).toEqual(summary(fresh.transactions));
    }
    // Going back to the old WAL from the new one is a salt jump.
    expect(readOnce(fixture('restarted.before.wal'), fresh.cursor).start).toBe('mismatch');
  });

  it('big-endian: the same transactions, and real SQLite reads the file too', () => {
    const be = fixture('big-endian.wal');
    const r = readOnce(be);
    expect(r.header!.bigEndianChecksums).toBe(true);
    expect(summary(r.transactions)).toEqual(okSummary(7));
    const ok = readOnce(fixture('ok.wal')).transactions;
    r.transactions.forEach((tx, i) => expect(tx.pages).toEqual(ok[i]!.pages));
    // Our re-encoding of ok.wal gives the fixture's bytes exactly.
    expect(Buffer.from(reencode(fixture('ok.wal'), true)).equals(be)).toBe(true);
    const db = path.join(dir, 'be.db');
    fs.writeFileSync(db, fixture('ok.db'));
    fs.writeFileSync(`${db}-wal`, be);
    expect(tableDigest(db)).toEqual({ rows: expected.ok[6]!.rows, digest: expected.ok[6]!.digest, integrity: 'ok' });
  });
});

/** reencode rewrites a WAL's magic for the word order asked and recomputes every checksum in it. */
function reencode(wal: Uint8Array, bigEndian: boolean): Uint8Array {
  const out = new Uint8Array(wal);
  const v = new DataView(out.buffer);
  v.setUint32(0, bigEndian ? 0x377f0683 : 0x377f0682);
  let s = walChecksum(bigEndian, out.subarray(0, 24), 0, 0);
  v.setUint32(24, s[0]);
  v.setUint32(28, s[1]);
  for (let k = 1; walFrameOffset(k + 1, PAGE) <= out.length; k++) {
    const at = walFrameOffset(k, PAGE);
    s = walChecksum(bigEndian, out.subarray(at, at + 8), s[0], s[1]);
    s = walChecksum(bigEndian, out.subarray(at + 24, at + 24 + PAGE), s[0], s[1]);
    v.setUint32(at + 16, s[0]);
    v.setUint32(at + 20, s[1]);
  }
  return out;
}

describe('WalReader frame validity', () => {
  it('a frame for page 0 is invalid even with good salts and checksum, as in SQLite', () => {
    const wal = Buffer.from(fixture('ok.wal'));
    wal.writeUInt32BE(0, walFrameOffset(3, PAGE)); // first frame of transaction 3
    const bad = reencode(wal, false);
    const r = readOnce(bad);
    expect(summary(r.transactions)).toEqual(okSummary(2));
    expect(r.stoppedBy).toBe('invalid-frame');
    const db = path.join(dir, 'pgno0.db'); // SQLite stops at the same frame
    fs.writeFileSync(db, fixture('ok.db'));
    fs.writeFileSync(`${db}-wal`, bad);
    expect(tableDigest(db).digest).toBe(expected.ok[1]!.digest);
  });
});

describe('WalReader cursors', () => {
  it('maxTransactions: 1, repeated, gives exactly the transactions of one read', () => {
    const whole = readOnce(fixture('ok.wal'));
    const r = new WalReader(walFile(fixture('ok.wal')));
    const got: WalTransaction[] = [];
    let cursor: WalCursor | null = null;
    for (let i = 0; i < 10; i++) {
      const res: WalReadResult = r.read(cursor, { maxTransactions: 1 });
      expect(res.start).toBe(i === 0 ? 'fresh' : 'continued');
      got.push(...res.transactions);
      if (res.transactions.length === 0) {
        expect(res).toMatchObject({ stoppedBy: 'end', cursor });
        break;
      }
      expect(res.stoppedBy).toBe('limit');
      cursor = res.cursor;
    }
    r.close();
    expect(got).toEqual(whole.transactions);
  });

  it('maxBytes bounds a call but always returns a transaction', () => {
    const r = new WalReader(walFile(fixture('ok.wal')));
    expect(r.read(null, { maxBytes: 1 }).transactions).toHaveLength(1);
    const frames = 19 * (PAGE + 24); // transactions 1..3 end at frame 19
    expect(r.read(null, { maxBytes: frames }).transactions).toHaveLength(3);
    expect(r.read(null, { maxBytes: frames + 1 }).transactions).toHaveLength(4);
    r.close();
  });

  it('a continued read trusts the cursor: frames before it are neither re-read nor re-checksummed', () => {
    const cursor = readOnce(fixture('uncommitted-tail.wal')).cursor!; // after transaction 4, frame 20
    const wal = Buffer.from(fixture('ok.wal'));
    wal[walFrameOffset(5, PAGE) + 100]! ^= 0xff; // frame 5 now fails its checksum
    expect(readOnce(wal).transactions).toHaveLength(2);
    expect(summary(readOnce(wal, cursor).transactions)).toEqual(okSummary(7).slice(4));
  });

  it('mismatch: salt jump, rewritten or missing cursor frame, page size change', () => {
    const wal = fixture('ok.wal');
    const c = readOnce(wal).transactions[2]!.cursor;
    const cases: WalCursor[] = [
      { ...c, salt1: (c.salt1 + 2) >>> 0 },
      { ...c, salt2: (c.salt2 + 1) >>> 0 },
      { ...c, checksum2: (c.checksum2 + 1) >>> 0 },
      { ...c, frame: c.frame + 1 }, // a later commit frame: other checksum
      { ...c, frame: 5, checksum1: frameAt(wal, 5).header.checksum1, checksum2: frameAt(wal, 5).header.checksum2 }, // not a commit frame
      { ...c, frame: 78 }, // beyond the file
      { ...c, pageSize: 4096 },
      { ...c, frame: 0 }, // frame 0 must carry the header checksum
    ];
    for (const from of cases) {
      expect(readOnce(wal, from)).toMatchObject({ start: 'mismatch', transactions: [], cursor: from });
    }
    expect(readOnce(wal.subarray(0, walFrameOffset(19, PAGE)), c).start).toBe('mismatch'); // file shorter now
  });

  it('restarted: salt-1 wraps from 0xffffffff to 0', () => {
    const wal = Buffer.from(fixture('ok.wal'));
    wal.writeUInt32BE(0, 16);
    for (let k = 1; walFrameOffset(k + 1, PAGE) <= wal.length; k++) wal.writeUInt32BE(0, walFrameOffset(k, PAGE) + 8);
    const zero = reencode(wal, false);
    const c = { ...readOnce(fixture('ok.wal')).cursor!, salt1: 0xffffffff };
    const r = readOnce(zero, c);
    expect(r.start).toBe('restarted');
    expect(summary(r.transactions)).toEqual(okSummary(7));
    expect(readOnce(zero, { ...c, salt1: 0xfffffffe }).start).toBe('mismatch');
  });

  it('no header: missing, empty or short file', () => {
    const r = new WalReader(path.join(dir, 'missing.db-wal'));
    expect(r.read(null)).toEqual({ header: null, start: 'fresh', transactions: [], cursor: null, stoppedBy: 'end' });
    const c = readOnce(fixture('ok.wal')).cursor!;
    expect(r.read(c)).toEqual({ header: null, start: 'continued', transactions: [], cursor: c, stoppedBy: 'end' });
    fs.writeFileSync(r.path, fixture('ok.wal').subarray(0, 31));
    expect(r.read(c).header).toBeNull();
    fs.writeFileSync(r.path, fixture('ok.wal'));
    expect(r.read(null).transactions).toHaveLength(7); // the file appeared: opened on this read
    r.close();
  });

  it('a header only: fresh read returns a frame-0 cursor that continues', () => {
    const r = readOnce(fixture('ok.wal').subarray(0, 32 + 500));
    expect(r).toMatchObject({ start: 'fresh', transactions: [], stoppedBy: 'uncommitted-tail' });
    expect(r.cursor).toMatchObject({ frame: 0, checksum1: r.header!.checksum1 });
    expect(summary(readOnce(fixture('ok.wal'), r.cursor).transactions)).toEqual(okSummary(7));
  });

  it('rejects a corrupt header, a malformed cursor and bad options', () => {
    const wal = Buffer.from(fixture('ok.wal'));
    wal[3] = 0x99;
    expectCode(() => readOnce(wal), 'WAL_INVALID');
    expectCode(() => readOnce(fixture('ok.wal'), { salt1: -1, salt2: 0, pageSize: 1024, frame: 0, checksum1: 0, checksum2: 0 }), 'INTERNAL');
    const r = new WalReader(walFile(fixture('ok.wal')));
    expectCode(() => r.read(null, { maxTransactions: 0 }), 'INTERNAL');
    expectCode(() => r.read(null, { maxBytes: 1.5 }), 'INTERNAL');
    r.close();
    expectCode(() => new WalReader(''), 'INTERNAL');
  });
});
