/**
 * simpleStatement reads the commonest query body, `{"sql": "...", "params": [strings, numbers, nulls]}`,
 * without running the zod schemas (a point read's largest validation cost,
 * docs/BENCHMARKS.md#p2-after-the-read-fast-path). It takes only a body that parseStatementsBody
 * (shared/protocol.ts) accepts and turns into exactly the statement it returns; anything else (a batch,
 * named parameters, a blob, a boolean, a bigint, another key, anything invalid) gives null, and the
 * caller runs parseStatementsBody, which holds every rule and every error message. Worker-safe.
 */
import { MAX_SQL_LENGTH } from './openapi/requests.ts';
import type { SqlValue, Statement } from './protocol.ts';

const NOT_BLANK = /\S/;

export function simpleStatement(body: unknown): Statement[] | null {
  if (body === null || typeof body !== 'object' || Object.getPrototypeOf(body) !== Object.prototype) return null;
  for (const k in body) if (k !== 'sql' && k !== 'params') return null;
  const { sql, params } = body as { sql?: unknown; params?: unknown };
  if (typeof sql !== 'string' || sql.length > MAX_SQL_LENGTH || !NOT_BLANK.test(sql)) return null;
  if (params === undefined || params === null) return [{ sql, params: [] }];
  if (!Array.isArray(params)) return null;
  const values: SqlValue[] = new Array<SqlValue>(params.length);
  for (let i = 0; i < params.length; i++) {
    const v: unknown = params[i];
    if (typeof v === 'string' || v === null || (typeof v === 'number' && Number.isFinite(v))) values[i] = v;
    else return null;
  }
  return [{ sql, params: values }];
}
