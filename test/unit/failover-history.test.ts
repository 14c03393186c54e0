/**
 * The failover history checker (test/fault/failover-history.ts) on histories made by hand: a clean one
 * passes, and each violation it exists to catch is reported (a lost acknowledged write, overlapping
 * epochs, a token read served behind its token or without its row, a duplicate, a row nobody sent).
 */
import { describe, expect, it } from 'vitest';
import { checkHistory, type TokenRead, type WriteRecord } from '../fault/failover-history.ts';

const w = (seq: number, epoch: number, sentAt: number, doneAt: number, outcome: WriteRecord['outcome'] = 'ok'): WriteRecord => ({ client: 0, seq, sentAt, doneAt, outcome, epoch, generation: 1, txid: seq + 10 });
const read = (seq: number, txid: number, found = true): TokenRead => ({ client: 0, seq, tokenGeneration: 1, tokenTxid: seq + 10, generation: 1, txid, found });

describe('failover history checker', () => {
  const writes = [w(1, 5, 0, 10), w(2, 5, 11, 20), w(3, 9, 100, 110), w(4, 9, 111, 120, 'unknown')];
  const rows: Array<[number, number]> = [[0, 1], [0, 2], [0, 3]];

  it('passes a clean history', () => {
    const r = checkHistory(writes, [read(1, 11), read(3, 20)], rows, true);
    expect(r).toMatchObject({ acknowledged: 3, missing: [], duplicates: [], unexpected: [], overlaps: [], backwards: [], epochs: [5, 9] });
  });

  it('reports a lost acknowledged write (only when acknowledgement is synchronous)', () => {
    expect(checkHistory(writes, [], [[0, 1], [0, 3]], true).missing).toEqual([{ client: 0, seq: 2 }]);
    expect(checkHistory(writes, [], [[0, 1], [0, 3]], false).missing).toEqual([]);
  });

  it('reports epochs whose acknowledgements overlap in time', () => {
    const r = checkHistory([...writes, w(5, 5, 105, 130)], [], [...rows, [0, 5]], true);
    expect(r.overlaps).toEqual([{ epoch: 5, lastAnswerAt: 130, later: 9, firstSentAt: 100 }]);
  });

  it('reports a token read served behind its token, or without its row', () => {
    expect(checkHistory(writes, [read(2, 11)], rows, true).backwards).toHaveLength(1);
    expect(checkHistory(writes, [read(2, 40, false)], rows, true).backwards).toHaveLength(1);
  });

  it('reports duplicates and rows nobody sent', () => {
    const r = checkHistory(writes, [], [...rows, [0, 2], [7, 7]], true);
    expect(r.duplicates).toEqual([{ client: 0, seq: 2 }]);
    expect(r.unexpected).toEqual([{ client: 7, seq: 7 }]);
  });
});
