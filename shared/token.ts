/**
 * Read-your-writes tokens (docs/ARCHITECTURE.md#tokens-and-consistency). A token says "this client has seen database `db` (incarnation
 * `databaseId`) at `txid`": a replica holding a read with a token waits until it has applied that far.
 * Clients treat it as opaque; it uses only characters safe in HTTP headers and cookie values.
 *
 * Format: `1.<txid: 16 hex>.<generation: 8 hex>.<databaseId: 8 hex>.<database name>`, lowercase hex,
 * fixed width. The txid comes first so that, for one database, sorting tokens as strings orders them
 * like compareTokens. The name is last because it may contain dots.
 */
import { EdgeliteError } from './errors.ts';
import { TXID_HEX_WIDTH, formatTxid, validateDatabaseName } from './types.ts';
import type { Generation, Txid } from './types.ts';

export interface Token {
  db: string;
  /** Random u32 the primary assigns to a database; a dropped and recreated database gets another. */
  databaseId: number;
  generation: Generation;
  txid: Txid;
}

/** TOKEN_HEADER carries a token on requests (read-your-writes) and on write responses. */
export const TOKEN_HEADER = 'Edgelite-Token';
/** TOKEN_COOKIE carries a token for browsers. */
export const TOKEN_COOKIE = 'edgelite_token';

export const TOKEN_VERSION = '1';
/** MAX_TOKEN_LENGTH is checked before parsing; the longest valid token is 101 characters. */
export const MAX_TOKEN_LENGTH = 200;

const U32_MAX = 0xffffffff;
const TOKEN_PATTERN = new RegExp(`^${TOKEN_VERSION}\\.([0-9a-f]{${TXID_HEX_WIDTH}})\\.([0-9a-f]{8})\\.([0-9a-f]{8})\\.(.+)$`);

/** encodeToken prints a token; INVALID_TOKEN if a field is out of range. */
export function encodeToken(t: Token): string {
  checkFields(t.db, t.databaseId, t.generation, t.txid);
  return `${TOKEN_VERSION}.${formatTxid(t.txid)}.${hex8(t.generation)}.${hex8(t.databaseId)}.${t.db}`;
}

/** decodeToken parses what encodeToken printed; INVALID_TOKEN on anything else, never another error. */
export function decodeToken(text: string): Token {
  if (typeof text !== 'string') throw invalid(`token must be a string, got ${typeof text as string}`);
  if (text.length > MAX_TOKEN_LENGTH) throw invalid(`token is ${text.length} characters; the limit is ${MAX_TOKEN_LENGTH}`);
  const m = TOKEN_PATTERN.exec(text);
  if (!m) throw invalid(`malformed token ${JSON.stringify(text)}: want ${TOKEN_VERSION}.<txid>.<generation>.<databaseId>.<database>`);
  const txid = Number.parseInt(m[1]!, 16);
  const generation = Number.parseInt(m[2]!, 16);
  const databaseId = Number.parseInt(m[3]!, 16);
  const db = m[4]!;
  checkFields(db, databaseId, generation, txid);
  return { db, databaseId, generation, txid };
}

/**
 * compareTokens orders two tokens of the same database incarnation by txid (txids keep increasing
 * across generations), then generation. Tokens of different databases, or of a dropped and recreated
 * one (another databaseId), have no order: TOKEN_DATABASE_MISMATCH.
 */
export function compareTokens(a: Token, b: Token): number {
  if (a.db !== b.db) {
    throw new EdgeliteError('TOKEN_DATABASE_MISMATCH', `cannot compare a token for "${a.db}" with one for "${b.db}"`);
  }
  if (a.databaseId !== b.databaseId) {
    throw new EdgeliteError(
      'TOKEN_DATABASE_MISMATCH',
      `tokens for "${a.db}" come from different incarnations of it (database id ${hex8(a.databaseId)} vs ${hex8(b.databaseId)})`,
    );
  }
  return a.txid - b.txid || a.generation - b.generation;
}

/** maxToken returns the later of two tokens for the same database (null counts as "none"). */
export function maxToken(a: Token | null, b: Token | null): Token | null {
  if (a === null) return b;
  if (b === null) return a;
  return compareTokens(a, b) >= 0 ? a : b;
}

/** MAX_TOKENS_PER_SET bounds a TokenSet so a session touching many databases keeps a small header. */
export const MAX_TOKENS_PER_SET = 32;

/**
 * TokenSet keeps a session's latest token per database and travels as one header value,
 * `t1,t2,...` (HTTP list syntax, so `, ` from joined header lines parses too). A comma is not a valid
 * cookie-octet (RFC 6265), so a cookie should hold a single token. A token for another incarnation of
 * a database replaces the old one: the newest answer from the server knows the database exists now.
 * Past MAX_TOKENS_PER_SET databases, the least recently updated one is forgotten.
 */
export class TokenSet {
  readonly #tokens = new Map<string, Token>();

  /** parse reads a header value; INVALID_TOKEN if any entry is malformed or there are too many. */
  static parse(text: string): TokenSet {
    const set = new TokenSet();
    if (typeof text !== 'string') throw invalid(`token list must be a string, got ${typeof text}`);
    if (text.length > MAX_TOKENS_PER_SET * (MAX_TOKEN_LENGTH + 2)) throw invalid(`token list is too long (${text.length} characters)`);
    const parts = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
    if (parts.length > MAX_TOKENS_PER_SET) {
      throw invalid(`token list holds ${parts.length} tokens; the limit is ${MAX_TOKENS_PER_SET}`);
    }
    for (const part of parts) set.add(decodeToken(part));
    return set;
  }

  get size(): number {
    return this.#tokens.size;
  }

  get(db: string): Token | null {
    const token = this.#tokens.get(db);
    return token === undefined ? null : { ...token };
  }

  /** add records a token, keeping the later one per database; returns the token now held for it. */
  add(token: Token): Token {
    checkFields(token.db, token.databaseId, token.generation, token.txid);
    const old = this.#tokens.get(token.db);
    const keep = { ...(old !== undefined && old.databaseId === token.databaseId && compareTokens(old, token) > 0 ? old : token) };
    this.#tokens.delete(token.db);
    this.#tokens.set(token.db, keep);
    if (this.#tokens.size > MAX_TOKENS_PER_SET) {
      const oldest = this.#tokens.keys().next().value as string;
      this.#tokens.delete(oldest);
    }
    return { ...keep };
  }

  tokens(): Token[] {
    return [...this.#tokens.values()].map((t) => ({ ...t }));
  }

  /** toString is the header value, or '' when empty. */
  toString(): string {
    return [...this.#tokens.values()].map(encodeToken).join(',');
  }
}

function checkFields(db: unknown, databaseId: unknown, generation: unknown, txid: unknown): void {
  try {
    validateDatabaseName(db);
  } catch (err) {
    throw invalid(`token names an invalid database ${typeof db === 'string' ? JSON.stringify(db) : typeof db}`, err);
  }
  if (!isUint(txid, Number.MAX_SAFE_INTEGER)) throw invalid(`token txid ${String(txid)} is not a safe non-negative integer`);
  if (!isUint(generation, U32_MAX)) throw invalid(`token generation ${String(generation)} is not a u32`);
  if (!isUint(databaseId, U32_MAX)) throw invalid(`token database id ${String(databaseId)} is not a u32`);
}

function isUint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function invalid(message: string, cause?: unknown): EdgeliteError {
  return new EdgeliteError('INVALID_TOKEN', message, cause === undefined ? {} : { cause });
}
