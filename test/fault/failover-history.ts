/**
 * The history checker of the failover fault test (test/fault/failover.test.ts): given every write the
 * clients sent (with its outcome and the epoch that answered it), every read they made with a token,
 * and the rows the final primary holds, it proves or refutes:
 * 1. with synchronous acknowledgement, every acknowledged write is present at the end;
 * 2. no two epochs accepted writes at overlapping times: every answer of an epoch arrived before the
 *    first request that a later epoch answered was sent;
 * 3. reads with tokens never go backwards: a read carrying a token is served at or past the token's
 *    position, and shows the write;
 * 4. no write is present twice, and nothing is present that no client sent.
 * Pure: the test feeds it what it recorded, and test/unit/failover-history.test.ts feeds it bad
 * histories to show each check can fail.
 */

export interface WriteRecord {
  client: number;
  seq: number;
  sentAt: number;
  doneAt: number;
  /** ok: acknowledged (200); pending: committed, not on enough candidates (504); refused: not applied; unknown: may have committed. */
  outcome: 'ok' | 'pending' | 'refused' | 'unknown';
  epoch: number | null;
  generation: number | null;
  txid: number | null;
}

export interface TokenRead {
  client: number;
  /** The token's position (the client's newest acknowledged write). */
  tokenGeneration: number;
  tokenTxid: number;
  /** The write the token is for: the read asks whether its row is there. */
  seq: number;
  /** The position that served the read, and whether the row was there. */
  generation: number;
  txid: number;
  found: boolean;
}

export interface HistoryReport {
  acknowledged: number;
  missing: Array<{ client: number; seq: number }>;
  duplicates: Array<{ client: number; seq: number }>;
  unexpected: Array<{ client: number; seq: number }>;
  overlaps: Array<{ epoch: number; lastAnswerAt: number; later: number; firstSentAt: number }>;
  backwards: TokenRead[];
  epochs: number[];
}

/** checkHistory runs the four checks; `rows` are the (client, seq) pairs the final primary holds. */
export function checkHistory(writes: readonly WriteRecord[], reads: readonly TokenRead[], rows: ReadonlyArray<readonly [number, number]>, sync: boolean): HistoryReport {
  const key = (c: number, s: number) => `${c}:${s}`;
  const present = new Map<string, number>();
  for (const [c, s] of rows) present.set(key(c, s), (present.get(key(c, s)) ?? 0) + 1);
  const sent = new Set(writes.map((w) => key(w.client, w.seq)));
  const acked = writes.filter((w) => w.outcome === 'ok');
  const missing = sync ? acked.filter((w) => !present.has(key(w.client, w.seq))).map(({ client, seq }) => ({ client, seq })) : [];
  const duplicates = [...present].filter(([, n]) => n > 1).map(([k]) => split(k));
  const unexpected = [...present.keys()].filter((k) => !sent.has(k)).map(split);

  const byEpoch = new Map<number, { first: number; last: number }>();
  for (const w of acked) {
    if (w.epoch === null) continue;
    const e = byEpoch.get(w.epoch) ?? { first: Infinity, last: -Infinity };
    e.first = Math.min(e.first, w.sentAt);
    e.last = Math.max(e.last, w.doneAt);
    byEpoch.set(w.epoch, e);
  }
  const epochs = [...byEpoch.keys()].sort((a, b) => a - b);
  const overlaps: HistoryReport['overlaps'] = [];
  for (let i = 0; i < epochs.length; i++) {
    for (let j = i + 1; j < epochs.length; j++) {
      const a = byEpoch.get(epochs[i]!)!;
      const b = byEpoch.get(epochs[j]!)!;
      if (a.last >= b.first) overlaps.push({ epoch: epochs[i]!, lastAnswerAt: a.last, later: epochs[j]!, firstSentAt: b.first });
    }
  }
  const backwards = reads.filter((r) => !r.found || r.txid < r.tokenTxid);
  return { acknowledged: acked.length, missing, duplicates, unexpected, overlaps, backwards, epochs };
}

function split(k: string): { client: number; seq: number } {
  const [c, s] = k.split(':');
  return { client: Number(c), seq: Number(s) };
}
