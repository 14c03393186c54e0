import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CHANGESET_MAGIC,
  CHANGESET_VERSION,
  ChangeSetDecoder,
  ChangeSetEncoder,
  type ChangeSetHeader,
  changeSetByteLength,
  decodeChangeSet,
  encodeChangeSet,
  FLAG_COMPRESSED,
  HEADER_SIZE,
  readChangeSetHeader,
  TRAILER_SIZE,
} from '../../shared/changeset.ts';
import { hash64, lockPageNumber } from '../../shared/checksum.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import type { ChangeSet } from '../../shared/types.ts';

const PAGE_SIZE = 512;

function pageData(size: number, seed: number): Uint8Array {
  const data = new Uint8Array(size);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    data[i] = x >>> 24;
  }
  return data;
}

function sample(pgnos: number[], overrides: Partial<ChangeSet> = {}): ChangeSet {
  return {
    databaseId: 0xdeadbeef,
    pageSize: PAGE_SIZE,
    generation: 3,
    minTxid: 41,
    maxTxid: 42,
    commit: 10,
    timestamp: 1_700_000_000_123,
    preChecksum: 0x0123456789abcdefn,
    postChecksum: 0xfedcba9876543210n,
    pages: pgnos.map((pgno) => ({ pgno, data: pageData(overrides.pageSize ?? PAGE_SIZE, pgno) })),
    ...overrides,
  };
}

function headerOf(cs: ChangeSet): ChangeSetHeader {
  const { pages, postChecksum: _post, ...rest } = cs;
  return { ...rest, pageCount: pages.length };
}

function expectCode(fn: () => unknown, code: string, message?: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(EdgeliteError);
    expect((err as EdgeliteError).code).toBe(code);
    if (message) expect((err as EdgeliteError).message).toMatch(message);
    return;
  }
  throw new Error(`expected EdgeliteError ${code}, nothing was thrown`);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** expectSameChangeSet compares page bytes with Buffer.equals: toEqual walks 64 KiB pages too slowly. */
function expectSameChangeSet(actual: ChangeSet, expected: ChangeSet): void {
  const strip = (cs: ChangeSet) => ({ ...cs, pages: cs.pages.map((p) => p.pgno) });
  expect(strip(actual)).toEqual(strip(expected));
  actual.pages.forEach((page, i) => expect(sameBytes(page.data, expected.pages[i]!.data), `page ${page.pgno}`).toBe(true));
}

/** reseal recomputes the file checksum, so a test reaches the decoder's field checks behind it. */
function reseal(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view.setBigUint64(bytes.length - 8, hash64(bytes.subarray(0, bytes.length - 8)));
  return bytes;
}

function patched(bytes: Uint8Array, patch: (view: DataView) => void): Uint8Array {
  const copy = bytes.slice();
  patch(new DataView(copy.buffer));
  return reseal(copy);
}

const changeSetArb: fc.Arbitrary<ChangeSet> = fc
  .record({
    pageSize: fc.constantFrom(512, 1024, 4096, 65536),
    commit: fc.integer({ min: 1, max: 40 }),
    picks: fc.uniqueArray(fc.integer({ min: 1, max: 40 }), { maxLength: 6 }),
    databaseId: fc.integer({ min: 1, max: 0xffffffff }),
    generation: fc.integer({ min: 0, max: 0xffffffff }),
    minTxid: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    span: fc.integer({ min: 0, max: 1000 }),
    timestamp: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    preChecksum: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    postChecksum: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    seed: fc.nat(),
  })
  .map((r) => ({
    databaseId: r.databaseId,
    pageSize: r.pageSize,
    generation: r.generation,
    minTxid: r.minTxid,
    maxTxid: Math.min(Number.MAX_SAFE_INTEGER, r.minTxid + r.span),
    commit: r.commit,
    timestamp: r.timestamp,
    preChecksum: r.preChecksum,
    postChecksum: r.postChecksum,
    pages: r.picks
      .filter((p) => p <= r.commit)
      .sort((a, b) => a - b)
      .map((pgno) => ({ pgno, data: pageData(r.pageSize, r.seed + pgno) })),
  }));

describe('change-set round trip', () => {
  it('decode(encode(cs)) equals cs, and re-encoding gives the same bytes', () => {
    fc.assert(
      fc.property(changeSetArb, (cs) => {
        const bytes = encodeChangeSet(cs);
        expect(bytes.length).toBe(changeSetByteLength(cs.pageSize, cs.pages.length));
        const decoded = decodeChangeSet(bytes);
        expectSameChangeSet(decoded, cs);
        expect(readChangeSetHeader(bytes)).toEqual(headerOf(cs));
        expect(sameBytes(encodeChangeSet(decoded), bytes)).toBe(true);
      }),
      { seed: 7, numRuns: 200 },
    );
  });

  it('lays out the header as documented', () => {
    const bytes = encodeChangeSet(sample([1, 2]));
    const view = new DataView(bytes.buffer);
    expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe(CHANGESET_MAGIC);
    expect(view.getUint16(4)).toBe(CHANGESET_VERSION);
    expect(view.getUint16(6)).toBe(0);
    expect(view.getUint32(8)).toBe(PAGE_SIZE);
    expect(view.getUint32(12)).toBe(0xdeadbeef);
    expect(view.getUint32(16)).toBe(3);
    expect(view.getBigUint64(20)).toBe(41n);
    expect(view.getBigUint64(28)).toBe(42n);
    expect(view.getUint32(36)).toBe(10);
    expect(view.getUint32(40)).toBe(2);
    expect(view.getBigUint64(44)).toBe(1_700_000_000_123n);
    expect(view.getBigUint64(52)).toBe(0x0123456789abcdefn);
    expect(view.getUint32(60)).toBe(0);
    expect(view.getUint32(HEADER_SIZE)).toBe(1);
    expect(view.getUint32(HEADER_SIZE + 4 + PAGE_SIZE)).toBe(2);
    expect(view.getBigUint64(bytes.length - TRAILER_SIZE)).toBe(0xfedcba9876543210n);
    expect(view.getBigUint64(bytes.length - 8)).toBe(hash64(bytes.subarray(0, bytes.length - 8)));
  });

  it('round-trips an empty page list and pages past the lock page', () => {
    const lock = lockPageNumber(PAGE_SIZE);
    for (const cs of [sample([]), sample([1, lock - 1, lock + 1], { commit: lock + 1 })]) {
      expectSameChangeSet(decodeChangeSet(encodeChangeSet(cs)), cs);
    }
  });

  it('decodes from any byteOffset, returning views into the given bytes', () => {
    const cs = sample([2, 5, 9]);
    const bytes = encodeChangeSet(cs);
    for (const offset of [0, 1, 3, 8]) {
      const backing = new Uint8Array(bytes.length + offset);
      backing.set(bytes, offset);
      const decoded = decodeChangeSet(backing.subarray(offset));
      expect(decoded).toEqual(cs);
      expect(decoded.pages[0]!.data.buffer).toBe(backing.buffer);
    }
  });

  it('ChangeSetDecoder streams pages and exposes the trailer only at the end', () => {
    const bytes = encodeChangeSet(sample([1, 4]));
    const decoder = new ChangeSetDecoder(bytes);
    expect(decoder.header()).toBe(decoder.header());
    expect(decoder.next()?.pgno).toBe(1);
    expectCode(() => decoder.postChecksum, 'INTERNAL');
    expect(decoder.next()?.pgno).toBe(4);
    expect(decoder.next()).toBeNull();
    expect(decoder.next()).toBeNull();
    expect(decoder.postChecksum).toBe(0xfedcba9876543210n);
  });

  it('readChangeSetHeader needs only the header bytes', () => {
    const cs = sample([3]);
    const bytes = encodeChangeSet(cs);
    expect(readChangeSetHeader(bytes.subarray(0, HEADER_SIZE))).toEqual(headerOf(cs));
    expectCode(() => readChangeSetHeader(bytes.subarray(0, HEADER_SIZE - 1)), 'CORRUPT_CHANGESET');
    expectCode(() => readChangeSetHeader(new Uint8Array(HEADER_SIZE)), 'CORRUPT_CHANGESET', /magic/);
  });
});

describe('the decoder rejects damage', () => {
  const bytes = encodeChangeSet(sample([1, 3, 10]));

  it('rejects every single-bit flip of every byte', () => {
    for (let i = 0; i < bytes.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const copy = bytes.slice();
        copy[i]! ^= 1 << bit;
        expectCode(() => decodeChangeSet(copy), 'CORRUPT_CHANGESET');
      }
    }
  });

  it('rejects every truncation', () => {
    for (let n = 0; n < bytes.length; n++) {
      expectCode(() => decodeChangeSet(bytes.slice(0, n)), 'CORRUPT_CHANGESET');
    }
  });

  it('rejects trailing bytes', () => {
    for (const extra of [1, 8, 516]) {
      const longer = new Uint8Array(bytes.length + extra);
      longer.set(bytes);
      expectCode(() => decodeChangeSet(longer), 'CORRUPT_CHANGESET', /trailing/);
    }
  });

  it('rejects bad fields even behind a valid file checksum', () => {
    const lock = lockPageNumber(PAGE_SIZE);
    const nearLock = encodeChangeSet(sample([lock - 1], { commit: lock + 1 }));
    const firstPgno = HEADER_SIZE;
    const secondPgno = HEADER_SIZE + 4 + PAGE_SIZE;
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ['version', patched(bytes, (v) => v.setUint16(4, 2)), /version/],
      ['compressed flag', patched(bytes, (v) => v.setUint16(6, FLAG_COMPRESSED)), /compressed/],
      ['unknown flag', patched(bytes, (v) => v.setUint16(6, 0x8000)), /flags/],
      ['reserved', patched(bytes, (v) => v.setUint8(63, 1)), /reserved/],
      ['page size', patched(bytes, (v) => v.setUint32(8, 1000)), /page size/],
      ['database id', patched(bytes, (v) => v.setUint32(12, 0)), /database id/],
      ['min txid 0', patched(bytes, (v) => v.setBigUint64(20, 0n)), /min txid/],
      ['unsafe txid', patched(bytes, (v) => v.setBigUint64(28, 1n << 53n)), /max txid/],
      ['min > max', patched(bytes, (v) => v.setBigUint64(20, 43n)), /max txid/],
      ['unsafe timestamp', patched(bytes, (v) => v.setBigUint64(44, 1n << 60n)), /timestamp/],
      ['commit 0', patched(bytes, (v) => v.setUint32(36, 0)), /commit/],
      ['page count > commit', patched(bytes, (v) => v.setUint32(40, 11)), /page count/],
      ['page count vs length', patched(bytes, (v) => v.setUint32(40, 2)), /trailing/],
      ['pgno 0', patched(bytes, (v) => v.setUint32(firstPgno, 0)), /page number/],
      ['descending', patched(bytes, (v) => v.setUint32(secondPgno, 1)), /ascending/],
      ['above commit', patched(bytes, (v) => v.setUint32(secondPgno, 11)), /commit/],
      ['lock page', patched(nearLock, (v) => v.setUint32(firstPgno, lock)), /lock page/],
    ];
    for (const [name, damaged, message] of cases) {
      expect(() => decodeChangeSet(damaged), name).toThrow(message);
      expectCode(() => decodeChangeSet(damaged), 'CORRUPT_CHANGESET');
    }
  });
});

describe('the encoder rejects misuse', () => {
  it('rejects invalid change sets with CORRUPT_CHANGESET', () => {
    const lock = lockPageNumber(PAGE_SIZE);
    const bad: Array<[string, ChangeSet]> = [
      ['unsorted', sample([3, 2])],
      ['duplicate', sample([2, 2])],
      ['pgno 0', sample([0])],
      ['above commit', sample([11])],
      ['lock page', sample([lock], { commit: lock + 1 })],
      ['wrong size', { ...sample([]), pages: [{ pgno: 1, data: new Uint8Array(PAGE_SIZE - 1) }] }],
      ['page size', sample([], { pageSize: 1000 })],
      ['page size too large', sample([], { pageSize: 131072 })],
      ['database id 0', sample([], { databaseId: 0 })],
      ['database id > u32', sample([], { databaseId: 2 ** 32 })],
      ['generation', sample([], { generation: -1 })],
      ['min txid 0', sample([], { minTxid: 0 })],
      ['max < min', sample([], { maxTxid: 40 })],
      ['unsafe txid', sample([], { maxTxid: 2 ** 53 })],
      ['fractional txid', sample([], { minTxid: 1.5 })],
      ['commit 0', sample([], { commit: 0 })],
      ['timestamp', sample([], { timestamp: -1 })],
      ['pre checksum', sample([], { preChecksum: 1n << 64n })],
      ['post checksum', sample([], { postChecksum: -1n })],
    ];
    for (const [name, cs] of bad) {
      expect(() => encodeChangeSet(cs), name).toThrow(EdgeliteError);
      expectCode(() => encodeChangeSet(cs), 'CORRUPT_CHANGESET');
    }
  });

  it('rejects calls out of order with INTERNAL, and a rejected call changes nothing', () => {
    const cs = sample([1, 2]);
    expectCode(() => new ChangeSetEncoder().page(1, pageData(PAGE_SIZE, 1)), 'INTERNAL');
    expectCode(() => new ChangeSetEncoder().finish(0n), 'INTERNAL');

    const encoder = new ChangeSetEncoder();
    encoder.header(headerOf(cs));
    expectCode(() => encoder.header(headerOf(cs)), 'INTERNAL');
    expectCode(() => encoder.finish(cs.postChecksum), 'CORRUPT_CHANGESET', /pages written/);
    encoder.page(1, cs.pages[0]!.data);
    expectCode(() => encoder.page(2, new Uint8Array(PAGE_SIZE * 2)), 'CORRUPT_CHANGESET');
    encoder.page(2, cs.pages[1]!.data);
    expectCode(() => encoder.page(3, pageData(PAGE_SIZE, 3)), 'CORRUPT_CHANGESET', /more pages/);
    const bytes = encoder.finish(cs.postChecksum);
    expect(bytes).toEqual(encodeChangeSet(cs));
    expectCode(() => encoder.page(3, pageData(PAGE_SIZE, 3)), 'INTERNAL');
    expectCode(() => encoder.finish(cs.postChecksum), 'INTERNAL');
  });

  it('refuses compression, which format version 1 reserves', () => {
    expectCode(() => encodeChangeSet(sample([1]), { compress: true }), 'INTERNAL', /reserved/);
    expect(encodeChangeSet(sample([1]), { compress: false })).toEqual(encodeChangeSet(sample([1])));
  });
});
