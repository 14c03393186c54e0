import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NO_OVERRIDE } from '../../replica/page1-header.ts';
import {
  type LocalDatabase,
  type PositionRecord,
  PositionWriter,
  positionFilePath,
  RECORD_SIZE,
  readPositionFile,
  reconcile,
  type ReplicaState,
  writePositionFile,
} from '../../replica/position-file.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { tempDir } from '../helpers.ts';

const state = (txid: number, checksum: bigint, cookieDelta = 0): ReplicaState => ({
  databaseId: 0xdeadbeef,
  pageSize: 4096,
  position: { generation: 3, txid, checksum },
  header: { cookieDelta, format: 0x0202 },
});

let t: ReturnType<typeof tempDir>;
let file: string;
beforeEach(() => {
  t = tempDir('position-file');
  file = positionFilePath(path.join(t.dir, 'db.db'));
});
afterEach(() => t.cleanup());

function expectIoError(fn: () => unknown, message: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(EdgeliteError);
  expect((thrown as EdgeliteError).code).toBe('IO_ERROR');
  expect((thrown as EdgeliteError).message).toMatch(message);
}

describe('position file', () => {
  it('is the database path plus -edgelite.json', () => {
    expect(positionFilePath('/data/app.db')).toBe('/data/app.db-edgelite.json');
  });

  it('round-trips every record shape, 64-bit checksums included, durable or not', () => {
    const records: PositionRecord[] = [
      { committed: null, pending: null },
      { committed: state(7, 0xffff_ffff_ffff_ffffn), pending: null },
      { committed: state(7, 1n), pending: { from: state(7, 1n).position, to: state(9, 0x8000_0000_0000_0001n, 5) } },
      { committed: null, pending: { from: null, to: state(1, 2n, 0xffff_ffff) } },
    ];
    for (const [i, record] of records.entries()) {
      writePositionFile(file, record, { durable: i % 2 === 0 });
      expect(readPositionFile(file)).toEqual(record);
    }
    expect(fs.readdirSync(t.dir)).toEqual(['db.db-edgelite.json']);
  });

  it('writes the documented JSON layout', () => {
    writePositionFile(file, { committed: state(7, 0xabn), pending: { from: state(7, 0xabn).position, to: state(8, 0xcdn) } }, { durable: false });
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({
      version: 1,
      databaseId: 0xdeadbeef,
      pageSize: 4096,
      header: { cookieDelta: 0, format: 514 },
      committed: { generation: 3, txid: 7, checksum: '00000000000000ab' },
      pending: {
        from: { generation: 3, txid: 7, checksum: '00000000000000ab' },
        to: { generation: 3, txid: 8, checksum: '00000000000000cd' },
        databaseId: 0xdeadbeef,
        pageSize: 4096,
        header: { cookieDelta: 0, format: 514 },
      },
    });
  });

  it('reads an absent file as null and a malformed one as IO_ERROR', () => {
    expect(readPositionFile(file)).toBeNull();
    const bad: Array<[string, RegExp]> = [
      ['{"version": 1, "committed"', /malformed/],
      ['[]', /not an object/],
      ['{"version": 2, "committed": null, "pending": null}', /unsupported version 2/],
      ['{"version": 1, "databaseId": 1, "pageSize": 4096, "header": {"cookieDelta": 0, "format": 514}, "committed": {"generation": 1, "txid": -1, "checksum": "0000000000000000"}, "pending": null}', /txid/],
      ['{"version": 1, "databaseId": 1, "pageSize": 4096, "header": {"cookieDelta": 0, "format": 514}, "committed": {"generation": 1, "txid": 1, "checksum": "xyz"}, "pending": null}', /checksum/],
      ['{"version": 1, "databaseId": 1, "pageSize": 4096, "header": null, "committed": {"generation": 1, "txid": 1, "checksum": "0000000000000000"}, "pending": null}', /header/],
    ];
    for (const [text, message] of bad) {
      fs.writeFileSync(file, text);
      expectIoError(() => readPositionFile(file), message);
    }
  });

  it('a durable write that cannot complete throws IO_ERROR and leaves the previous record', () => {
    writePositionFile(file, { committed: state(1, 1n), pending: null }, { durable: true });
    fs.mkdirSync(`${file}.tmp`); // the temp file's name is taken by a directory: open fails
    expectIoError(() => writePositionFile(file, { committed: state(2, 2n), pending: null }, { durable: true }), /writing position file/);
    expect(readPositionFile(file)?.committed?.position.txid).toBe(1);
    fs.rmdirSync(`${file}.tmp`);
    fs.mkdirSync(`${file}-dir`);
    expectIoError(() => writePositionFile(`${file}-dir`, { committed: null, pending: null }, { durable: false }), /writing position file/);
  });

  it('a PositionWriter keeps writing the same file, and reopens it after a failure', () => {
    fs.mkdirSync(file);
    const writer = new PositionWriter(file, { durable: false });
    expectIoError(() => writer.write({ committed: state(1, 1n), pending: null }), /writing position file/);
    fs.rmdirSync(file);
    for (let txid = 1; txid <= 3; txid++) {
      writer.write({ committed: state(txid, BigInt(txid)), pending: null });
      expect(readPositionFile(file)?.committed?.position.txid).toBe(txid);
    }
    writer.close();
    writer.close();
  });

  it('every record is RECORD_SIZE bytes and overwrites the previous one whole, whatever was there', () => {
    fs.writeFileSync(file, 'x'.repeat(3 * RECORD_SIZE));
    for (const durable of [false, true, false]) {
      writePositionFile(file, { committed: state(5, 5n), pending: { from: state(5, 5n).position, to: state(6, 6n) } }, { durable });
      writePositionFile(file, { committed: null, pending: null }, { durable });
      expect(fs.statSync(file).size).toBe(RECORD_SIZE);
      expect(readPositionFile(file)).toEqual({ committed: null, pending: null });
    }
  });
});

describe('reconcile', () => {
  /** local is a database file whose from-scratch checksum is `sum` when read with cookie delta `delta`. */
  const local = (sum: bigint, delta = 0, pageSize: number | null = 4096): LocalDatabase => ({
    pageSize,
    pageCount: 10,
    checksumWith: (h) => (h.cookieDelta === delta ? sum : sum ^ 0xffn),
  });

  it('takes committed when the file matches it', () => {
    const r = reconcile({ committed: state(5, 50n), pending: { from: state(5, 50n).position, to: state(6, 60n) } }, local(50n));
    expect([r.source, r.state]).toEqual(['committed', state(5, 50n)]);
  });

  it('takes pending.to when the file is past committed (crash after the SQLite commit)', () => {
    const r = reconcile({ committed: state(5, 50n), pending: { from: state(5, 50n).position, to: state(6, 60n, 3) } }, local(60n, 3));
    expect([r.source, r.state]).toEqual(['pending', state(6, 60n, 3)]);
  });

  it('reads page 1 back with the header override of the candidate it checks', () => {
    const record = { committed: state(5, 50n, 0), pending: { from: state(5, 50n).position, to: state(6, 50n, 2) } };
    expect(reconcile(record, local(50n, 2)).source).toBe('pending');
    expect(reconcile(record, local(50n, 0)).source).toBe('committed');
  });

  it('gives no position when nothing matches, with the reason', () => {
    const none = reconcile({ committed: state(5, 50n), pending: null }, local(51n));
    expect(none.state).toBeNull();
    expect(none.reason).toMatch(/committed checksum 0000000000000032, file 0000000000000033/);
    expect(reconcile({ committed: state(5, 50n), pending: null }, local(50n, 0, 1024)).reason).toMatch(/page size 4096, file has 1024/);
    expect(reconcile(null, local(50n)).reason).toMatch(/10 pages but no position file/);
    expect(reconcile(null, { pageSize: null, pageCount: 0, checksumWith: () => 0n }).reason).toBe('empty database');
    expect(reconcile({ committed: null, pending: null }, local(0n)).source).toBe('none');
  });

  it('never takes pending.from: the file must equal committed or pending.to', () => {
    const r = reconcile({ committed: state(6, 60n), pending: { from: state(5, 50n).position, to: state(7, 70n) } }, local(50n));
    expect(r.state).toBeNull();
    expect(NO_OVERRIDE).toEqual({ cookieDelta: 0, format: 0x0202 });
  });
});
