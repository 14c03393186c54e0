/**
 * Bearer-token auth with separate rights (docs/ARCHITECTURE.md#security). Worker-safe: pure JS, constant-time compare.
 *
 * Configuration text (env `EDGELITE_TOKENS` or a file): entries separated by `;`, commas or newlines,
 * each `rights=token` where rights are `+`-joined names, e.g. `read=r1; read+write=w1; replicate=p1`.
 * An entry `rights@patterns=token` limits the token to the databases matching `patterns` (names or
 * globs, shared/db-pattern.ts, `|`-joined: `read+write@acme-*|global=t1`); without `@` a token reaches
 * every database. The rule per route is in README.md#tenant-scoped-tokens.
 * `EDGELITE_TOKEN=secret` alone grants every right. With no token configured, auth is off — allowed
 * only while the server binds to loopback (the CLI refuses otherwise).
 */
import { compilePatterns, type DatabaseMatcher, validatePattern } from './db-pattern.ts';
import { EdgeliteError } from './errors.ts';

export const RIGHTS = ['read', 'write', 'replicate', 'admin'] as const;
export type Right = (typeof RIGHTS)[number];

/** AccessGrant is what a request may do: its rights, and the databases it may name (null: every database). */
export interface AccessGrant {
  rights: ReadonlySet<Right>;
  /** The entry's patterns (`rights@patterns=token`), or null for a token that reaches every database. */
  databases: readonly string[] | null;
  /** allows says whether the grant reaches database `name`. */
  allows: DatabaseMatcher;
}

export interface TokenGrant extends AccessGrant {
  token: string;
}

/** OPEN_GRANT is what a request holds when auth is off: every right on every database. */
export const OPEN_GRANT: AccessGrant = { rights: new Set(RIGHTS), databases: null, allows: () => true };

const EVERY_DATABASE: DatabaseMatcher = () => true;

export interface AuthConfig {
  grants: TokenGrant[];
}

export const AUTH_DISABLED: AuthConfig = { grants: [] };

/** MIN_TOKEN_LENGTH keeps trivially guessable secrets out of configuration. */
export const MIN_TOKEN_LENGTH = 16;

/** parseAuthConfig reads `EDGELITE_TOKEN` (all rights) and `EDGELITE_TOKENS` (per-right) values. */
export function parseAuthConfig(allRightsToken: string | undefined, spec: string | undefined): AuthConfig {
  const grants: TokenGrant[] = [];
  if (allRightsToken) grants.push({ token: checkSecret(allRightsToken, 'EDGELITE_TOKEN'), rights: new Set(RIGHTS), databases: null, allows: EVERY_DATABASE });
  for (const entry of (spec ?? '').split(/[;,\n]/).map((e) => e.trim()).filter(Boolean)) {
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new EdgeliteError('BAD_REQUEST', `auth entry "${entry.slice(0, 20)}…" must be rights=token or rights@pattern=token`);
    const head = entry.slice(0, eq);
    const at = head.indexOf('@');
    let databases: string[] | null = null;
    if (at >= 0) {
      const where = `EDGELITE_TOKENS entry for "${head}"`;
      databases = head.slice(at + 1).split('|').map((p) => validatePattern(p.trim(), where, 'BAD_REQUEST'));
    }
    const rights = (at >= 0 ? head.slice(0, at) : head).split('+').map((r) => r.trim());
    for (const r of rights) {
      if (!(RIGHTS as readonly string[]).includes(r)) {
        throw new EdgeliteError('BAD_REQUEST', `unknown right "${r}" (known: ${RIGHTS.join(', ')})`);
      }
    }
    const token = checkSecret(entry.slice(eq + 1).trim(), 'EDGELITE_TOKENS');
    grants.push({ token, rights: new Set(rights as Right[]), databases, allows: databases ? compilePatterns(databases) : EVERY_DATABASE });
  }
  return { grants };
}

function checkSecret(token: string, where: string): string {
  if (token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
    throw new EdgeliteError('BAD_REQUEST', `${where}: a token needs at least ${MIN_TOKEN_LENGTH} characters and no spaces`);
  }
  return token;
}

export function authEnabled(config: AuthConfig): boolean {
  return config.grants.length > 0;
}

/**
 * authorize checks an `Authorization` header for `right`: UNAUTHORIZED when the token is missing or
 * unknown, FORBIDDEN when it lacks the right or, given a `database`, when the token is scoped to other
 * databases. `admin` holds every right (on its databases). Every grant is compared, in constant time, so
 * timing does not tell which token or how much of it matched. Returns the grant, for routes that name
 * no database (a listing filters by it, /metrics asks assertEveryDatabase, the stream narrows to it).
 */
export function authorize(config: AuthConfig, header: string | null | undefined, right: Right, database?: string): AccessGrant {
  if (!authEnabled(config)) return OPEN_GRANT;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m) throw new EdgeliteError('UNAUTHORIZED', 'missing bearer token (Authorization: Bearer <token>)');
  const presented = m[1]!;
  let found: TokenGrant | null = null;
  for (const g of config.grants) {
    if (constantTimeEqual(g.token, presented) && !found) found = g;
  }
  if (!found) throw new EdgeliteError('UNAUTHORIZED', 'unknown bearer token');
  if (!found.rights.has(right) && !found.rights.has('admin')) {
    throw new EdgeliteError('FORBIDDEN', `this token lacks the "${right}" right`);
  }
  const grant: AccessGrant = { rights: found.rights, databases: found.databases, allows: found.allows };
  if (database !== undefined) assertDatabase(grant, database);
  return grant;
}

/** assertDatabase throws FORBIDDEN unless the grant reaches `name` (the message names the patterns, never the token). */
export function assertDatabase(grant: AccessGrant, name: string): void {
  if (grant.allows(name)) return;
  throw new EdgeliteError('FORBIDDEN', `this token is limited to databases matching ${grant.databases!.join(' | ')}: not ${JSON.stringify(name.slice(0, 80))}`);
}

/** assertEveryDatabase throws FORBIDDEN for a tenant-scoped token on a route that shows every database (`what`). */
export function assertEveryDatabase(grant: AccessGrant, what: string): void {
  if (grant.databases === null) return;
  throw new EdgeliteError('FORBIDDEN', `${what} covers every database: it needs a token without @pattern`);
}

/** constantTimeEqual compares two strings in time that depends only on their lengths. */
export function constantTimeEqual(a: string, b: string): boolean {
  const n = Math.max(a.length, b.length);
  let diff = a.length ^ b.length;
  for (let i = 0; i < n; i++) diff |= (a.charCodeAt(i % (a.length || 1)) || 0) ^ (b.charCodeAt(i % (b.length || 1)) || 0);
  return diff === 0;
}
