/**
 * Consistency levels for reads on a replica (docs/ARCHITECTURE.md#tokens-and-consistency), the same on the Node replica and the
 * Worker, chosen per request:
 * - eventual (default): serve what is applied locally;
 * - read-your-writes: a token (header `Edgelite-Token`, one token or a comma-separated set, or the
 *   `edgelite_token` cookie) names a txid; wait until applied;
 * - bounded staleness (`bounded:<ms>`): serve only if the replica's lag is at most that;
 * - strong: ask the primary for its current txid, then wait for it.
 * A token counts under every level, so a session's reads never go backwards. A wait is bounded; past
 * it the read fails with REPLICA_BEHIND (504), or the caller sends it to the primary.
 */
import { EdgeliteError } from './errors.ts';
import { decodeToken, TokenSet, type Token } from './token.ts';
import type { Position } from './types.ts';

export type Consistency =
  | { level: 'eventual' }
  | { level: 'read-your-writes'; token: Token }
  | { level: 'bounded'; maxLagMs: number; token: Token | null }
  | { level: 'strong'; token: Token | null };

export const CONSISTENCY_HEADER = 'Edgelite-Consistency';

/** parseConsistency reads the level and the token; a token alone means read-your-writes. */
export function parseConsistency(db: string, level: string | undefined, tokenText: string | undefined): Consistency {
  const token = tokenText ? tokenFor(db, tokenText) : null;
  const l = (level ?? '').trim().toLowerCase();
  if (l === '' || l === 'eventual') return token ? { level: 'read-your-writes', token } : { level: 'eventual' };
  if (l === 'read-your-writes' || l === 'ryw') {
    if (!token) throw new EdgeliteError('INVALID_TOKEN', 'read-your-writes needs an Edgelite-Token for this database');
    return { level: 'read-your-writes', token };
  }
  if (l === 'strong') return { level: 'strong', token };
  const m = /^bounded[:=](\d+)$/.exec(l);
  if (m) return { level: 'bounded', maxLagMs: Number(m[1]), token };
  throw new EdgeliteError('BAD_REQUEST', `unknown consistency "${level}" (eventual, read-your-writes, bounded:<ms>, strong)`);
}

function tokenFor(db: string, text: string): Token | null {
  if (!text.includes(',')) {
    const t = decodeToken(text.trim());
    if (t.db !== db) throw new EdgeliteError('TOKEN_DATABASE_MISMATCH', `the token is for database ${t.db}, not ${db}`);
    return t;
  }
  return TokenSet.parse(text).get(db) ?? null;
}

/** Waitable is what satisfy needs from a replicated database. */
export interface Waitable {
  readonly name: string;
  readonly databaseId: number | null;
  readonly lagMs: number;
  waitFor(generation: number, txid: number, timeoutMs: number): Promise<void>;
  /** waitForLag resolves once lagMs ≤ maxLagMs, or rejects with REPLICA_BEHIND after timeoutMs. */
  waitForLag(maxLagMs: number, timeoutMs: number): Promise<void>;
}

/** satisfy returns once `db` may serve a read at `c`; REPLICA_BEHIND (or the primary's error) otherwise. */
export async function satisfy(db: Waitable, c: Consistency, timeoutMs: number, primaryPosition: () => Promise<Position>): Promise<void> {
  if (c.level !== 'eventual' && c.token) {
    const id = db.databaseId;
    if (id !== null && id !== c.token.databaseId) {
      throw new EdgeliteError('TOKEN_DATABASE_MISMATCH', `the token is for another incarnation of ${db.name} (database id ${c.token.databaseId}, here ${id})`);
    }
    await db.waitFor(c.token.generation, c.token.txid, timeoutMs);
  }
  switch (c.level) {
    case 'eventual':
    case 'read-your-writes':
      return;
    case 'strong': {
      const p = await primaryPosition();
      await db.waitFor(p.generation, p.txid, timeoutMs);
      return;
    }
    case 'bounded':
      await db.waitForLag(c.maxLagMs, timeoutMs);
      return;
  }
}
