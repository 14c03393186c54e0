/**
 * Bearer-token auth with separate rights (docs/ARCHITECTURE.md#security). Worker-safe: pure JS, constant-time compare.
 *
 * Configuration text (env `EDGELITE_TOKENS` or a file): entries separated by `;`, commas or newlines,
 * each `rights=token` where rights are `+`-joined names, e.g. `read=r1; read+write=w1; replicate=p1`.
 * `EDGELITE_TOKEN=secret` alone grants every right. With no token configured, auth is off — allowed
 * only while the server binds to loopback (the CLI refuses otherwise).
 */
import { EdgeliteError } from './errors.ts';

export const RIGHTS = ['read', 'write', 'replicate', 'admin'] as const;
export type Right = (typeof RIGHTS)[number];

export interface TokenGrant {
  token: string;
  rights: ReadonlySet<Right>;
}

export interface AuthConfig {
  grants: TokenGrant[];
}

export const AUTH_DISABLED: AuthConfig = { grants: [] };

/** MIN_TOKEN_LENGTH keeps trivially guessable secrets out of configuration. */
export const MIN_TOKEN_LENGTH = 16;

/** parseAuthConfig reads `EDGELITE_TOKEN` (all rights) and `EDGELITE_TOKENS` (per-right) values. */
export function parseAuthConfig(allRightsToken: string | undefined, spec: string | undefined): AuthConfig {
  const grants: TokenGrant[] = [];
  if (allRightsToken) grants.push({ token: checkSecret(allRightsToken, 'EDGELITE_TOKEN'), rights: new Set(RIGHTS) });
  for (const entry of (spec ?? '').split(/[;,\n]/).map((e) => e.trim()).filter(Boolean)) {
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new EdgeliteError('BAD_REQUEST', `auth entry "${entry.slice(0, 20)}…" must be rights=token`);
    const rights = entry.slice(0, eq).split('+').map((r) => r.trim());
    for (const r of rights) {
      if (!(RIGHTS as readonly string[]).includes(r)) {
        throw new EdgeliteError('BAD_REQUEST', `unknown right "${r}" (known: ${RIGHTS.join(', ')})`);
      }
    }
    grants.push({ token: checkSecret(entry.slice(eq + 1).trim(), 'EDGELITE_TOKENS'), rights: new Set(rights as Right[]) });
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
 * unknown, FORBIDDEN when it lacks the right. `admin` holds every right. Every grant is compared, in
 * constant time, so timing does not tell which token or how much of it matched.
 */
export function authorize(config: AuthConfig, header: string | null | undefined, right: Right): void {
  if (!authEnabled(config)) return;
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
}

/** constantTimeEqual compares two strings in time that depends only on their lengths. */
export function constantTimeEqual(a: string, b: string): boolean {
  const n = Math.max(a.length, b.length);
  let diff = a.length ^ b.length;
  for (let i = 0; i < n; i++) diff |= (a.charCodeAt(i % (a.length || 1)) || 0) ^ (b.charCodeAt(i % (b.length || 1)) || 0);
  return diff === 0;
}
