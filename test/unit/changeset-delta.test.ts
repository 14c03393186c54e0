/** Delta change sets: exact rebuild against the right base, refusal against any other, every flip caught. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { pageHash } from '../../shared/checksum.ts';
import { decodeChangeSet } from '../../shared/changeset.ts';
import { decodeDeltaChangeSet, diffRuns, encodeDeltaChangeSet, isDeltaChangeSet } from '../../shared/changeset-delta.ts';
import { encodeChangeSet } from '../../shared/changeset.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import type { ChangeSet } from '../../shared/types.ts';

const PAGE = 512;

function changeSet(pages: Array<{ pgno: number; data: Uint8Array }>): ChangeSet {
  return {
    databaseId: 7, pageSize: PAGE, generation: 1, minTxid: 5, maxTxid: 5, commit: 40, timestamp: 1000,
    preChecksum: 11n, postChecksum: 22n, pages,
  };
}

function edited(base: Uint8Array, edits: Array<[number, number]>): Uint8Array {
  const out = base.slice();
  for (const [at, v] of edits) out[at % PAGE] = v;
  return out;
}

describe('delta change sets', () => {
  it('rebuild every page exactly from its base (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 2, max: 40 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 30 }),
        fc.uint8Array({ minLength: PAGE, maxLength: PAGE }),
        (pgnos, edits, seed) => {
          const bases = new Map(pgnos.map((p) => [p, edited(seed, [[p, p & 255]])]));
          const pages = [...pgnos].sort((a, b) => a - b).map((pgno) => ({ pgno, data: edited(bases.get(pgno)!, edits) }));
          const cs = changeSet(pages);
          const bytes = encodeDeltaChangeSet(cs, (p) => bases.get(p) ?? null);
          expect(isDeltaChangeSet(bytes)).toBe(true);
          const back = decodeDeltaChangeSet(bytes, (p) => bases.get(p) ?? null);
          expect(back).toEqual({ ...cs, pages: pages.map((p) => ({ pgno: p.pgno, data: p.data })) });
        },
      ),
    );
  });

  it('is far smaller than whole pages for a small edit, and sends page 1 whole', () => {
    const base = new Uint8Array(4096).fill(3);
    const cs = { ...changeSet([{ pgno: 1, data: base.slice() }, { pgno: 9, data: edited(base, [[100, 9], [104, 9], [2000, 1]]) }]), pageSize: 4096 };
    const bytes = encodeDeltaChangeSet(cs, () => base);
    expect(bytes.length).toBeLessThan(encodeChangeSet(cs).length / 1.8);
    expect(bytes.length).toBeLessThan(64 + 16 + 5 + 4096 + 5 + 10 + 30);
    expect(decodeDeltaChangeSet(bytes, () => base).pages[1]!.data).toEqual(cs.pages[1]!.data);
  });

  it('refuses a base that is not the one the delta was made against', () => {
    const base = new Uint8Array(PAGE).fill(1);
    const bytes = encodeDeltaChangeSet(changeSet([{ pgno: 3, data: edited(base, [[7, 9]]) }]), () => base);
    const other = edited(base, [[300, 2]]);
    expect(pageHash(3, other)).not.toBe(pageHash(3, base));
    for (const lookup of [() => other, () => null]) {
      try {
        decodeDeltaChangeSet(bytes, lookup);
        expect.unreachable();
      } catch (err) {
        expect(err).toBeInstanceOf(EdgeliteError);
        expect((err as EdgeliteError).code).toBe('CHECKSUM_MISMATCH');
      }
    }
  });

  it('rejects every single-byte flip and every truncation', () => {
    const base = new Uint8Array(PAGE).fill(5);
    const bytes = encodeDeltaChangeSet(changeSet([{ pgno: 2, data: edited(base, [[1, 1], [200, 2]]) }, { pgno: 4, data: new Uint8Array(PAGE).fill(8) }]), () => base);
    for (let i = 0; i < bytes.length; i++) {
      const bad = bytes.slice();
      bad[i] = bad[i]! ^ 0x10;
      expect(() => decodeDeltaChangeSet(bad, () => base), `flip at ${i}`).toThrow(EdgeliteError);
    }
    for (let n = 0; n < bytes.length; n++) expect(() => decodeDeltaChangeSet(bytes.subarray(0, n), () => base)).toThrow(EdgeliteError);
  });

  it('is refused by the plain decoder with a clear message', () => {
    const base = new Uint8Array(PAGE);
    const bytes = encodeDeltaChangeSet(changeSet([{ pgno: 2, data: edited(base, [[1, 1]]) }]), () => base);
    expect(() => decodeChangeSet(bytes)).toThrow(/decodeDeltaChangeSet/);
  });

  it('diffRuns covers exactly the changed bytes, merging close ones', () => {
    const a = new Uint8Array(64);
    const b = a.slice();
    b[3] = 1;
    b[5] = 1;
    b[40] = 1;
    expect(diffRuns(a, b)).toEqual([{ start: 3, end: 6 }, { start: 40, end: 41 }]);
    expect(diffRuns(a, a)).toEqual([]);
  });
});

describe('delta decoding never writes into its base', () => {
  it('leaves a Buffer base untouched (Buffer.slice is a view)', () => {
    const base = Buffer.alloc(PAGE, 4);
    const before = Buffer.from(base);
    const bytes = encodeDeltaChangeSet(changeSet([{ pgno: 2, data: edited(new Uint8Array(base), [[10, 1]]) }]), () => base);
    decodeDeltaChangeSet(bytes, () => base);
    expect(base.equals(before)).toBe(true);
  });
});
