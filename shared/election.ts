/**
 * Who takes over a lapsed lease (README.md#high-availability, docs/ARCHITECTURE.md#high-availability):
 * a pure ranking of the candidates' records, the same on every candidate, so they agree on the winner
 * without talking to each other beyond the lease store. Worker-safe.
 *
 * The order, best first:
 * 1. Members of the newest sync set (`--sync-replicas`): each was caught up with every acknowledged
 *    write when it joined and acknowledged every one after, so it holds them all.
 * 2. Most databases where the candidate is at the furthest position of all (generation first, then
 *    txid: a later generation is a later history).
 * 3. The largest sum of txids, then the node name (a stable tie-break).
 */
import type { CandidatePosition, CandidateRecord, SyncSetRecord } from './lease.ts';

/** comparePositions orders two positions of one database: generation, then txid; absent is lowest. */
export function comparePositions(a: CandidatePosition | undefined, b: CandidatePosition | undefined): number {
  if (!a || !b) return a ? 1 : b ? -1 : 0;
  return a.generation - b.generation || a.txid - b.txid;
}

/** rankCandidates sorts candidates best first (see the module comment). */
export function rankCandidates(candidates: readonly CandidateRecord[], sync: SyncSetRecord | null): CandidateRecord[] {
  const dbs = new Set(candidates.flatMap((c) => Object.keys(c.positions)));
  const furthest = new Map<string, CandidatePosition | undefined>();
  for (const db of dbs) {
    let best: CandidatePosition | undefined;
    for (const c of candidates) if (comparePositions(c.positions[db], best) > 0) best = c.positions[db];
    furthest.set(db, best);
  }
  const score = (c: CandidateRecord) => {
    let leads = 0;
    let sum = 0;
    for (const db of dbs) {
      if (comparePositions(c.positions[db], furthest.get(db)) === 0) leads++;
      sum += c.positions[db]?.txid ?? 0;
    }
    return { member: sync?.nodes.includes(c.node) ? 1 : 0, leads, sum };
  };
  const scored = candidates.map((c) => ({ c, s: score(c) }));
  scored.sort((x, y) => y.s.member - x.s.member || y.s.leads - x.s.leads || y.s.sum - x.s.sum || (x.c.node < y.c.node ? -1 : x.c.node > y.c.node ? 1 : 0));
  return scored.map((x) => x.c);
}

/** dominates: `a` is at or past `b` in every database `b` has. */
export function dominates(a: CandidateRecord, b: CandidateRecord): boolean {
  return Object.keys(b.positions).every((db) => comparePositions(a.positions[db], b.positions[db]) >= 0);
}
