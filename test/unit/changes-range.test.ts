/**
 * The alignment of catch-up ranges (primary/changes.ts, locateRange): blocks of txids cut by bytes, the
 * same cut whichever txid is asked for, sealed only once durable, and what is not servable said so.
 * Over a log index written here (the function is pure over the index; the route is tested for real in
 * test/integration/catch-up-cdn.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { locateRange, type Located, type RangeDatabase } from '../../primary/changes.ts';
import type { RecordInfo } from '../../primary/log.ts';

const LAYOUT = { rangeTxids: 10, rangeBytes: 300 };

/** db builds a database of generation 1 whose log holds `records` (minTxid, maxTxid, size), durable to `durable`. */
function db(records: Array<[number, number, number]>, o: { durable?: number; start?: number; first?: number } = {}): RangeDatabase {
  const infos: RecordInfo[] = records.map(([minTxid, maxTxid, size]) => ({ generation: 1, minTxid, maxTxid, size }));
  const last = infos.at(-1)?.maxTxid ?? 0;
  return {
    position: { generation: 1, txid: last, checksum: 0n },
    generationStart: { generation: 1, txid: o.start ?? 0, checksum: 0n },
    log: {
      index: (g, from, to) => infos.filter((r) => r.generation === g && r.maxTxid >= from && r.minTxid <= to),
      durableTxid: o.durable ?? last,
      firstTxid: o.first ?? infos[0]?.minTxid ?? null,
    },
  };
}

/** one-txid records of 100 bytes, txids a..b */
function run(a: number, b: number, size = 100): Array<[number, number, number]> {
  return Array.from({ length: b - a + 1 }, (_, i) => [a + i, a + i, size] as [number, number, number]);
}

describe('locateRange', () => {
  it('cuts each block of txids into ranges of at most rangeBytes, the same cut whatever txid is asked', () => {
    const d = db(run(1, 25));
    // Block 1..10 at 100 bytes a record: 1..3, 4..6, 7..9, 10..10.
    expect(locateRange(d, LAYOUT, 1, 1)).toEqual({ kind: 'range', from: 1, to: 3 });
    expect(locateRange(d, LAYOUT, 1, 4)).toEqual({ kind: 'range', from: 4, to: 6 });
    expect(locateRange(d, LAYOUT, 1, 10)).toEqual({ kind: 'range', from: 10, to: 10 });
    expect(locateRange(d, LAYOUT, 1, 11)).toEqual({ kind: 'range', from: 11, to: 13 });
    for (const [t, from] of [[2, 1], [3, 1], [5, 4], [9, 7], [12, 11]]) expect(locateRange(d, LAYOUT, 1, t!)).toEqual({ kind: 'redirect', from });
  });

  it('gives a record bigger than rangeBytes a range of its own', () => {
    const d = db([[1, 1, 100], [2, 2, 1000], [3, 3, 100], ...run(4, 25)]);
    expect(locateRange(d, LAYOUT, 1, 1)).toEqual({ kind: 'range', from: 1, to: 1 });
    expect(locateRange(d, LAYOUT, 1, 2)).toEqual({ kind: 'range', from: 2, to: 2 });
    expect(locateRange(d, LAYOUT, 1, 3)).toEqual({ kind: 'range', from: 3, to: 5 });
  });

  it('puts a record of several txids in the block of its first, which then starts after it', () => {
    const d = db([...run(1, 8), [9, 12, 100], ...run(13, 25)]);
    expect(locateRange(d, LAYOUT, 1, 7)).toEqual({ kind: 'range', from: 7, to: 12 });
    expect(locateRange(d, LAYOUT, 1, 11)).toEqual({ kind: 'redirect', from: 7 });
    expect(locateRange(d, LAYOUT, 1, 13)).toEqual({ kind: 'range', from: 13, to: 15 });
  });

  it('serves a block only once the log is durable past its end; the tail and the open block are the stream\'s', () => {
    const d = db(run(1, 25), { durable: 19 });
    expect(locateRange(d, LAYOUT, 1, 1).kind).toBe('range');
    expect(locateRange(d, LAYOUT, 1, 11)).toEqual({ kind: 'use-stream', reason: expect.stringMatching(/11\.\.20 are not sealed/) });
    expect(locateRange(d, LAYOUT, 1, 21).kind).toBe('use-stream');
    expect(locateRange(d, LAYOUT, 1, 26)).toEqual({ kind: 'use-stream', reason: expect.stringMatching(/nothing after txid 25/) });
  });

  it('leaves a block the log holds only part of to the stream, and what it does not hold to a snapshot', () => {
    const pruned = db(run(14, 45), { first: 14 });
    expect(locateRange(pruned, LAYOUT, 1, 14).kind).toBe('use-stream'); // 11..13 may have been in the block
    expect(locateRange(pruned, LAYOUT, 1, 21)).toEqual({ kind: 'range', from: 21, to: 23 });
    expect(locateRange(pruned, LAYOUT, 1, 13)).toEqual({ kind: 'snapshot-needed', reason: expect.stringMatching(/outside the retained log/) });
    // A generation that began inside a block: its first record starts the block's ranges.
    const fresh = db(run(16, 45), { start: 15, first: 16 });
    expect(locateRange(fresh, LAYOUT, 1, 16)).toEqual({ kind: 'range', from: 16, to: 18 });
    expect(locateRange(fresh, LAYOUT, 1, 15).kind).toBe('snapshot-needed');
  });

  it('sends another generation and a txid ahead of the primary to a snapshot', () => {
    const d = db(run(1, 25));
    const kinds = (l: Located) => l.kind;
    expect(kinds(locateRange(d, LAYOUT, 2, 1))).toBe('snapshot-needed');
    expect(kinds(locateRange(d, LAYOUT, 0, 1))).toBe('snapshot-needed');
    expect(kinds(locateRange(d, LAYOUT, 1, 27))).toBe('snapshot-needed');
  });
});
