/**
 * Consistency levels for reads on a replica (DESIGN.md §7), chosen per request:
 * - eventual (default): serve what is applied locally;
 * - read-your-writes: a token (header `Edgelite-Token` or cookie) names a txid; wait until applied;
 * - bounded staleness (`bounded:<ms>`): serve only if the replica's lag is at most that;
 * - strong: ask the primary for its current txid, then wait for it.
 * A wait is bounded; past it the read fails with REPLICA_BEHIND, or is sent to the primary when the
 * replica is configured with `onBehind: 'primary'`.
 */
import { EdgeliteError } from '../shared/errors.ts';
import { decodeToken, TokenSet, type Token } from '../shared/token.ts';
import type { ReplicaDatabase } from './database.ts';
import type { PrimaryClient } from './primary-client.ts';

export type Consistency =
  | { level: 'eventual' }
  | { level: 'read-your-writes'; token: Token }
  | { level: 'bounded'; maxLagMs: number }
  | { level: 'strong' };

export const CONSISTENCY_HEADER = 'Edgelite-Consistency';

/**
 * parseConsistency reads the level from the header (or `?consistency=`), and the token from the
 * `Edgelite-Token` header (one token or a comma-separated set) or the `edgelite_token` cookie. A token
 * implies read-your-writes unless a stronger level is asked for.
 */
export function parseConsistency(db: string, level: string | undefined, tokenText: string | undefined): Consistency {
  const token = tokenText ? tokenFor(db, tokenText) : null;
  const l = (level ?? '').trim().toLowerCase();
  if (l === '' || l === 'eventual') return token ? { level: 'read-your-writes', token } : { level: 'eventual' };
  if (l === 'read-your-writes' || l === 'ryw') {
    if (!token) throw new EdgeliteError('INVALID_TOKEN', 'read-your-writes needs an Edgelite-Token for this database');
    return { level: 'read-your-writes', token };
  }
  if (l === 'strong') return { level: 'strong' };
  const m = /^bounded[:=](\d+)$/.exec(l);
  if (m) return { level: 'bounded', maxLagMs: Number(m[1]) };
  throw new EdgeliteError('BAD_REQUEST', `unknown consistency "${level}" (eventual, read-your-writes, bounded:<ms>, strong)`);
}

function tokenFor(db: string, text: string): Token | null {
  if (!text.includes(',')) {
    const t = decodeToken(text.trim());
    if (t.db !== db) {
      throw new EdgeliteError('TOKEN_DATABASE_MISMATCH', `the token is for database ${t.db}, not ${db}`);
    }
    return t;
  }
  return TokenSet.parse(text).get(db) ?? null;
}

export interface WaitOptions {
  timeoutMs: number;
  primary: PrimaryClient | null;
}

/**
 * satisfy waits until `db` meets `c`. Returns normally when the local replica may serve the read;
 * throws REPLICA_BEHIND (or the primary's error) otherwise.
 */
export async function satisfy(db: ReplicaDatabase, c: Consistency, o: WaitOptions): Promise<void> {
  switch (c.level) {
    case 'eventual':
      return;
    case 'read-your-writes': {
      const id = db.databaseId;
      if (id !== null && id !== c.token.databaseId) {
        throw new EdgeliteError('TOKEN_DATABASE_MISMATCH', `the token is for another incarnation of ${db.name} (database id ${c.token.databaseId}, here ${id})`);
      }
      await db.waitFor(c.token.generation, c.token.txid, o.timeoutMs);
      return;
    }
    case 'strong': {
      if (!o.primary) throw new EdgeliteError('UNAVAILABLE', 'strong reads need a primary');
      const p = await o.primary.position(db.name);
      await db.waitFor(p.generation, p.txid, o.timeoutMs);
      return;
    }
    case 'bounded': {
      const deadline = Date.now() + o.timeoutMs;
      while (db.lagMs > c.maxLagMs) {
        if (Date.now() >= deadline) {
          throw new EdgeliteError('REPLICA_BEHIND', `replica lag ${Math.round(db.lagMs)} ms exceeds ${c.maxLagMs} ms`, {
            details: { db: db.name, lagMs: db.lagMs, maxLagMs: c.maxLagMs },
          });
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      return;
    }
  }
}
