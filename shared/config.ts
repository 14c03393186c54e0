/** Parsing helpers for configuration shared by the primary and replica CLIs. Pure. */
import { EdgeliteError } from './errors.ts';

export const DEFAULT_HOST = '127.0.0.1';
/** DEFAULT_QUERY_TIMEOUT_MS: a read running longer is stopped (its query process killed), answering 408. */
export const DEFAULT_QUERY_TIMEOUT_MS = 5000;

/** parseListen reads HOST:PORT (or :PORT, or PORT); the host defaults to loopback. */
export function parseListen(text: string, defaultPort: number): { host: string; port: number } {
  const m = /^(?:\[?([^\]]*?)\]?:)?(\d+)$/.exec(text.trim());
  if (!m) throw new EdgeliteError('MISCONFIGURED', `--listen wants HOST:PORT, got "${text}"`);
  const port = Number(m[2] ?? defaultPort);
  if (port > 65535) throw new EdgeliteError('MISCONFIGURED', `port ${port} out of range`);
  return { host: m[1] || DEFAULT_HOST, port };
}

/** positiveInt reads an optional positive integer option. */
export function positiveInt(text: string | undefined, fallback: number, name: string): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0) throw new EdgeliteError('MISCONFIGURED', `${name} must be a positive integer`);
  return n;
}

/** queryTimeout reads `--query-timeout-ms`: a positive limit in ms, or 0 to run reads in-process with none. */
export function queryTimeout(text: string | undefined): number {
  return text === '0' ? 0 : positiveInt(text, DEFAULT_QUERY_TIMEOUT_MS, '--query-timeout-ms');
}

/**
 * configError turns whatever a configuration parser threw (an option's EdgeliteError, node:util's
 * parseArgs TypeError for an unknown flag, a bad URL) into MISCONFIGURED with the same message: a bad
 * configuration is the operator's to fix, never a client's bad request (docs/ARCHITECTURE.md#failure-rules).
 */
export function configError(err: unknown): EdgeliteError {
  if (err instanceof EdgeliteError && err.code === 'MISCONFIGURED') return err;
  return new EdgeliteError('MISCONFIGURED', err instanceof Error ? err.message : String(err), { cause: err });
}

/** isLoopback tells whether a bind address only accepts local connections. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

const DURATION_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** parseDurationMs reads `250ms`, `1s`, `2m`, `12h`, `7d` or a bare number of milliseconds (at least 1 ms). */
export function parseDurationMs(text: string, name: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  const ms = m ? Number(m[1]) * DURATION_UNIT_MS[m[2] ?? 'ms']! : NaN;
  if (!(ms >= 1) || !Number.isFinite(ms)) throw new EdgeliteError('MISCONFIGURED', `${name} wants a duration such as 250ms, 1s, 2m, 12h or 7d, got "${text}"`);
  return Math.round(ms);
}
