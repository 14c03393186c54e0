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
 *
 * A token from an older generation than the one a database is in now is checked against the
 * database's generation starts (tokenLost): a generation that starts at txid S holds the older
 * generations' writes up to S − 1 and none after, so such a token at S or beyond names a write that is
 * not in the history any more (a restore to an earlier point, a lost log tail): TOKEN_LOST (410), at
 * once, instead of a wait that could end by serving a state without that write.
 */
import { EdgeliteError } from './errors.ts';
import { decodeToken, TokenSet, type Token } from './token.ts';
import type { Generation, Position, Txid } from './types.ts';
import { reached } from './waiters.ts';

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

/** tokenFor reads the token for `db` from a header or cookie value (one token, or a set). */
export function tokenFor(db: string, text: string): Token | null {
  if (!text.includes(',')) {
    const t = decodeToken(text.trim());
    if (t.db !== db) throw new EdgeliteError('TOKEN_DATABASE_MISMATCH', `the token is for database ${t.db}, not ${db}`);
    return t;
  }
  return TokenSet.parse(text).get(db) ?? null;
}

/**
 * GenerationStart: generation `generation` of a database started at txid `startTxid` (its snapshot
 * point), holding the older generations' writes up to startTxid − 1. The primary lists them, oldest
 * first, in GET /v1/db/{name} as `generations`.
 */
export interface GenerationStart {
  generation: Generation;
  startTxid: Txid;
}

/**
 * tokenLost returns the generation start that left the token's write out of the history, or null if
 * the history holds it (or `starts` cannot tell). `starts` is ascending by generation; a list that
 * misses some generations (cut to its newest entries, or read from a bucket) can only miss a loss,
 * never report one that did not happen, since a start it holds is never before the one it misses.
 */
export function tokenLost(token: Pick<Token, 'generation' | 'txid'>, starts: readonly GenerationStart[]): GenerationStart | null {
  const next = starts.find((s) => s.generation > token.generation);
  return next !== undefined && token.txid >= next.startTxid ? next : null;
}

/** tokenLostError is TOKEN_LOST for a token tokenLost found lost at `start`. */
export function tokenLostError(db: string, token: Pick<Token, 'generation' | 'txid'>, start: GenerationStart): EdgeliteError {
  return new EdgeliteError(
    'TOKEN_LOST',
    `the write at txid ${token.txid} of generation ${token.generation} is not in database ${db}'s history: generation ${start.generation} started at txid ${start.startTxid} without it (a restore to an earlier point, or a lost log tail)`,
    { details: { db, tokenGeneration: token.generation, tokenTxid: token.txid, generation: start.generation, startTxid: start.startTxid } },
  );
}

/** Waitable is what satisfy needs from a replicated database. */
export interface Waitable {
  readonly name: string;
  readonly databaseId: number | null;
  readonly lagMs: number;
  /** Where the copy stands; null when it has none it can vouch for. */
  readonly position: Position | null;
  waitFor(generation: number, txid: number, timeoutMs: number): Promise<void>;
  /** waitForLag resolves once lagMs ≤ maxLagMs, or rejects with REPLICA_BEHIND after timeoutMs. */
  waitForLag(maxLagMs: number, timeoutMs: number): Promise<void>;
  /** until resolves true once `holds()` is true (checked at every change), false after timeoutMs. */
  until(holds: () => boolean, timeoutMs: number): Promise<boolean>;
}

/** PrimaryPosition is the primary's position, with its generation starts when it lists them. */
export type PrimaryPosition = Position & { generations?: readonly GenerationStart[] };

/**
 * satisfy returns once `db` may serve a read at `c`; REPLICA_BEHIND, TOKEN_LOST (or the primary's
 * error) otherwise. `primaryPosition` asks the primary (strong reads, and the generation starts a token
 * from an older generation is checked against).
 */
export async function satisfy(db: Waitable, c: Consistency, timeoutMs: number, primaryPosition: () => Promise<PrimaryPosition>): Promise<void> {
  if (c.level !== 'eventual' && c.token) {
    const id = db.databaseId;
    if (id !== null && id !== c.token.databaseId) {
      throw new EdgeliteError('TOKEN_DATABASE_MISMATCH', `the token is for another incarnation of ${db.name} (database id ${c.token.databaseId}, here ${id})`);
    }
    await waitForToken(db, c.token, timeoutMs, primaryPosition);
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

/**
 * waitForToken waits until `db` holds the token's write. Once the copy is in a newer generation than
 * the token's (now, or during the wait) it asks for the generation starts first: a lost write never
 * comes, so its token is answered TOKEN_LOST instead of waited for (or, worse, satisfied by later txids).
 */
async function waitForToken(db: Waitable, token: Token, timeoutMs: number, primaryPosition: () => Promise<PrimaryPosition>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const newer = (): boolean => (db.position?.generation ?? -1) > token.generation;
  if (!newer()) await db.until(() => newer() || reached(db.position, token.generation, token.txid), timeoutMs);
  if (newer()) {
    const generation = db.position!.generation;
    const starts = await generationStarts(db.name, token.databaseId, generation, primaryPosition);
    const lost = tokenLost(token, starts);
    if (lost !== null) throw tokenLostError(db.name, token, lost);
  }
  await db.waitFor(token.generation, token.txid, Math.max(0, deadline - Date.now()));
}

/** STARTS_CACHE_SIZE bounds the generation starts kept per (database, incarnation). */
const STARTS_CACHE_SIZE = 1024;
const startsCache = new Map<string, readonly GenerationStart[]>();

/**
 * generationStarts returns the primary's generation starts for a database, reaching at least
 * `generation`. They never change for generations that have started, so they are asked once per
 * generation and kept; a primary that does not list them yields [] (nothing can be found lost).
 */
async function generationStarts(db: string, databaseId: number, generation: number, primaryPosition: () => Promise<PrimaryPosition>): Promise<readonly GenerationStart[]> {
  const key = `${databaseId}/${db}`;
  const cached = startsCache.get(key);
  if (cached && (cached.at(-1)?.generation ?? -1) >= generation) return cached;
  const starts = (await primaryPosition()).generations ?? [];
  startsCache.delete(key);
  startsCache.set(key, starts);
  if (startsCache.size > STARTS_CACHE_SIZE) startsCache.delete(startsCache.keys().next().value as string);
  return starts;
}
