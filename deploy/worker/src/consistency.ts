/**
 * Consistency levels for reads on the Worker replica, with the Node replica's header syntax and errors
 * (replica/consistency.ts; that file is not imported because it is typed against the Node replica's
 * database class):
 * - eventual (default), read-your-writes (an `Edgelite-Token` header or `edgelite_token` cookie),
 *   `bounded:<ms>`, strong (ask the primary for its txid, then wait);
 * a wait is bounded by READ_WAIT_MS, then REPLICA_BEHIND (504).
 */
import { EdgeliteError } from '../../../shared/errors.ts';
import { decodeToken, TokenSet, type Token } from '../../../shared/token.ts';
import type { Position } from '../../../shared/types.ts';

export type Consistency =
  | { level: 'eventual' }
  | { level: 'read-your-writes'; token: Token }
  | { level: 'bounded'; maxLagMs: number }
  | { level: 'strong' };

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
  if (l === 'strong') return { level: 'strong' };
  const m = /^bounded[:=](\d+)$/.exec(l);
  if (m) return { level: 'bounded', maxLagMs: Number(m[1]) };
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
  switch (c.level) {
    case 'eventual':
      return;
    case 'read-your-writes': {
      const id = db.databaseId;
      if (id !== null && id !== c.token.databaseId) {
        throw new EdgeliteError('TOKEN_DATABASE_MISMATCH', `the token is for another incarnation of ${db.name} (database id ${c.token.databaseId}, here ${id})`);
      }
      await db.waitFor(c.token.generation, c.token.txid, timeoutMs);
      return;
    }
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
