/**
 * Database patterns (README.md#database-patterns): a pattern is a database name in which `*` stands for any
 * run of name characters (none included) and `?` for exactly one; nothing else is special. A pattern
 * list is comma-separated names or patterns, e.g. `tenant-*,global`. Worker-safe: pure JS.
 *
 * Used by `--databases` / `EDGELITE_DATABASES` (which databases a replica follows, including ones created
 * later), by the stream request's `databases` list (shared/protocol.ts), and by tenant-scoped tokens
 * (`rights@pattern=token`, shared/auth.ts).
 */
import { EdgeliteError, type ErrorCode } from './errors.ts';
import { validateDatabaseName } from './types.ts';

/** PATTERN_SYNTAX: what one entry of a pattern list may hold (name characters, `*`, `?`), at most 64 long. */
const PATTERN_SYNTAX = /^[A-Za-z0-9_.*?-]{1,64}$/;
/** NAME_CHAR: one character a database name may hold (shared/types.ts DATABASE_NAME_PATTERN). */
const NAME_CHAR = '[A-Za-z0-9_.-]';

/** isPattern says whether a list entry is a pattern (holds `*` or `?`) rather than one database's name. */
export function isPattern(entry: string): boolean {
  return entry.includes('*') || entry.includes('?');
}

/**
 * validatePattern returns `entry` if it is a database name or a pattern that can match one, else throws
 * `code` (MISCONFIGURED for configuration, BAD_REQUEST for a request) naming the entry and `where`.
 */
export function validatePattern(entry: unknown, where: string, code: ErrorCode = 'MISCONFIGURED'): string {
  if (typeof entry !== 'string' || !PATTERN_SYNTAX.test(entry)) {
    throw new EdgeliteError(code, `${where}: bad database pattern ${JSON.stringify(entry)}: use name characters (letters, digits, "_", "-", ".") with "*" (any run) or "?" (one)`);
  }
  if (!isPattern(entry)) {
    try {
      return validateDatabaseName(entry);
    } catch (err) {
      throw new EdgeliteError(code, `${where}: ${(err as Error).message}`, { cause: err });
    }
  }
  // A pattern must be able to match a valid name: its first character, unless a wildcard, is a letter or digit.
  if (!/^[A-Za-z0-9*?]/.test(entry)) {
    throw new EdgeliteError(code, `${where}: database pattern ${JSON.stringify(entry)} can match no database (a name starts with a letter or digit)`);
  }
  return entry;
}

/** parsePatternList reads a comma-separated list of names and patterns (`*` alone is one pattern: every database). */
export function parsePatternList(text: string, where: string, code: ErrorCode = 'MISCONFIGURED'): string[] {
  const entries = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (entries.length === 0) throw new EdgeliteError(code, `${where}: wants a comma-separated list of database names or patterns`);
  return entries.map((e) => validatePattern(e, where, code));
}

/** DatabaseMatcher says whether a database name is in a set given by names and patterns. */
export type DatabaseMatcher = (name: string) => boolean;

/** compilePatterns turns validated entries into one matcher: a name matches if any entry matches it whole. */
export function compilePatterns(entries: readonly string[]): DatabaseMatcher {
  const names = new Set(entries.filter((e) => !isPattern(e)));
  const globs = entries.filter(isPattern).map(globRegExp);
  return (name) => names.has(name) || globs.some((re) => re.test(name));
}

/** hasPattern says whether a list holds at least one pattern (then databases created later may join it). */
export function hasPattern(entries: readonly string[]): boolean {
  return entries.some(isPattern);
}

function globRegExp(pattern: string): RegExp {
  let src = '';
  for (const ch of pattern) {
    if (ch === '*') src += `${NAME_CHAR}*`;
    else if (ch === '?') src += NAME_CHAR;
    else src += ch.replace(/[.\-]/g, (c) => `\\${c}`);
  }
  return new RegExp(`^${src}$`);
}
