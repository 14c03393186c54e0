/**
 * The request bodies of the HTTP API (README.md#http-api) as zod schemas: the one definition both the
 * validation (validateBody, shared/openapi/validate.ts) and GET /v1/openapi.json
 * (shared/openapi/document.ts) read, so the contract cannot drift from the code. Messages are
 * templates (`{at}`: the field's path) and keep the texts clients and tests match. Worker-safe: zod only.
 *
 * Values as the exact-JSON parse (shared/exact-json.ts) and the msgpack decoder hand them over: an
 * integer beyond 2^53 is a bigint (documented `{type: integer, format: int64}`), a blob is
 * `{"base64": "..."}` in JSON and bin in msgpack, a boolean binds as 1 or 0.
 */
import { z } from 'zod';
import { base64ToBytes, BASE64_PATTERN, isBase64 } from '../base64.ts';
import { isPattern, validatePattern } from '../db-pattern.ts';
import { DATABASE_NAME_PATTERN, parseChecksum, validateDatabaseName, type Position } from '../types.ts';
import { customIssue, TYPE_CHECK } from './validate.ts';

/** SqlValue is what a parameter or a result cell may hold (shared/protocol.ts). */
export type SqlValue = null | number | bigint | string | Uint8Array;
export type SqlParams = SqlValue[] | Record<string, SqlValue>;

/** MAX_STATEMENTS bounds one request; MAX_SQL_LENGTH one statement's text. */
export const MAX_STATEMENTS = 1000;
export const MAX_SQL_LENGTH = 100_000;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * PARAM_NAME is a named parameter's key: `name` binds `:name`, `@name` and `$name` (as better-sqlite3
 * binds them); the key may also carry its prefix (`":name"`), which is dropped. Numbered parameters
 * (`?1`, `?NNN`) take an array, by position (README.md#http-api).
 */
export const PARAM_NAME = /^[:@$]?([A-Za-z_][A-Za-z0-9_]*)$/;

const Int64 = z
  .bigint()
  .refine((v) => v >= INT64_MIN && v <= INT64_MAX, { error: (iss) => `{at}: integer ${String(iss.input)} is outside SQLite's 64-bit integer range (${INT64_MIN} to ${INT64_MAX})` })
  .meta({ type: 'integer', format: 'int64', description: 'An integer beyond 2^53, sent as a bare JSON integer literal: it arrives exactly (never rounded).' });

const UNSUPPORTED = '{up}: unsupported value (use null, number, string, boolean or {"base64": ...})';

/** BlobSchema is a blob in JSON: `{"base64": "..."}`, padded standard base64. */
export const BlobSchema = z
  .object({
    base64: z
      .string({ error: UNSUPPORTED })
      .regex(BASE64_PATTERN, { error: '{up}: invalid base64' })
      .refine(isBase64, { error: '{up}: invalid base64' })
      .meta({ description: 'Padded standard base64 (length a multiple of 4).' }),
  })
  .meta({ description: 'A blob.' });

const Bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, TYPE_CHECK).meta({ type: 'string', format: 'binary', description: 'A blob as msgpack bin (application/msgpack bodies only).' });

/** SqlValue: null, a number, an int64 beyond 2^53, text, a boolean (1 or 0) or a blob. */
export const SqlValueSchema = z
  .union([z.string(), z.number(), z.null(), Int64, z.boolean(), BlobSchema, Bytes], {
    error: (iss) => (typeof iss.input === 'number' ? '{at} must be a finite number' : UNSUPPORTED.replace('{up}', '{at}')),
  })
  .transform((v): SqlValue => {
    if (typeof v === 'boolean') return v ? 1 : 0;
    if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v;
    if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) return base64ToBytes(v.base64);
    return v;
  });

const NamedParams = z
  .record(
    z.string().regex(PARAM_NAME, { error: (iss) => `{up}: invalid parameter name ${JSON.stringify(iss.input)} (a name, optionally with its :, @ or $ prefix; numbered parameters take an array)` }),
    SqlValueSchema,
  )
  .meta({ propertyNames: { pattern: PARAM_NAME.source }, description: 'Named parameters: `a` (or `:a`) binds :a, @a and $a.' })
  .transform((record, ctx) => {
    const out: Record<string, SqlValue> = {};
    for (const [k, v] of Object.entries(record)) {
      const name = PARAM_NAME.exec(k)![1]!;
      if (Object.prototype.hasOwnProperty.call(out, name)) {
        ctx.issues.push({ code: 'custom', message: `{at}: parameter ${JSON.stringify(name)} is given twice (keys with and without a prefix name the same parameter)`, input: record });
        return z.NEVER;
      }
      out[name] = v;
    }
    return out;
  });

const Params = z
  .union([z.array(SqlValueSchema).meta({ description: 'Positional (and numbered, ?NNN) parameters.' }), NamedParams], { error: '{at} must be an array or an object' })
  .nullable()
  .optional();

const NON_EMPTY_SQL = '{at} must be a non-empty string';

/** Statement is one statement: `{"sql", "params"}`. */
export const StatementSchema = z.object(
  {
    sql: z
      .string({ error: NON_EMPTY_SQL })
      .regex(/\S/, { error: NON_EMPTY_SQL })
      .max(MAX_SQL_LENGTH, { error: `{at} is longer than ${MAX_SQL_LENGTH} characters` }),
    params: Params,
  },
  { error: '{at} must be an object with "sql"' },
).transform((s): { sql: string; params: SqlParams } => ({ sql: s.sql, params: s.params ?? [] }));

/** Batch is `{"statements": [...]}`: one read snapshot (query) or one transaction (exec). */
export const BatchSchema = z.object({
  statements: z
    .array(StatementSchema, { error: '"statements" must be a non-empty array' })
    .min(1, { error: '"statements" must be a non-empty array' })
    .max(MAX_STATEMENTS, { error: `at most ${MAX_STATEMENTS} statements per request` }),
}).meta({ not: { required: ['sql'] }, description: 'Give either "sql" or "statements", not both.' });

/** SingleStatementSchema is a body of one statement: a Statement, without "statements". */
export const SingleStatementSchema = StatementSchema.meta({ not: { required: ['statements'] } });

/** StatementsBody is the body of query and exec: one statement, or a batch (README.md#http-api). */
export const StatementsBodySchema = z.union([SingleStatementSchema, BatchSchema]);

// ---- The stream request (docs/ARCHITECTURE.md#the-stream-protocol) ----

/** validated runs a shared validator (which throws our own EdgeliteError) as a zod check. */
function validated(check: (v: string) => unknown) {
  return (ctx: z.core.ParsePayload<string>): void => {
    try {
      check(ctx.value);
    } catch (err) {
      ctx.issues.push(customIssue(err, ctx.value));
    }
  };
}

const DatabaseName = z.string().check(validated(validateDatabaseName)).meta({ pattern: DATABASE_NAME_PATTERN.source, description: 'A database name.' });

/** DatabaseEntry takes any value to the shared validators, which also word the refusal of a non-string. */
const DatabaseEntry = z
  .unknown()
  .meta({ type: 'string', description: 'A database name, or a pattern (`tenant-*`) that also covers databases created later.' })
  .transform((n, ctx): string => {
    try {
      return typeof n === 'string' && isPattern(n) ? validatePattern(n, '"databases"', 'INVALID_DATABASE_NAME') : validateDatabaseName(n);
    } catch (err) {
      ctx.issues.push(customIssue(err, n));
      return z.NEVER;
    }
  });

const CHECKSUM = /^[0-9a-f]{16}$/;

const NOT_A_POSITION = '{up} must be {generation, txid, checksum}';

const StreamPosition = z
  .object(
    {
      generation: z.int({ error: NOT_A_POSITION }),
      txid: z.int({ error: NOT_A_POSITION }),
      checksum: z.string({ error: NOT_A_POSITION }).meta({ pattern: CHECKSUM.source }),
    },
    { error: '{at} must be {generation, txid, checksum}' },
  )
  .transform((p, ctx): Position => {
    try {
      return { generation: p.generation, txid: p.txid, checksum: parseChecksum(p.checksum) };
    } catch (err) {
      ctx.issues.push(customIssue(err, p));
      return z.NEVER;
    }
  });

/** StreamRequestSchema is the body of POST /v1/stream (shared/protocol.ts StreamRequest). */
export const StreamRequestSchema = z.object(
  {
    databases: z.union([z.literal('*'), z.array(DatabaseEntry)], { error: '"databases" must be "*" or an array of names and patterns' }).default('*'),
    positions: z
      .record(DatabaseName, StreamPosition.nullable(), { error: '"positions" must be an object' })
      .meta({ propertyNames: { pattern: DATABASE_NAME_PATTERN.source }, description: 'Where the replica stands per database (null or absent: it needs a snapshot).' })
      .default({}),
    deltas: z.boolean({ error: '"deltas" must be a boolean' }).default(false),
    ranges: z.boolean({ error: '"ranges" must be a boolean' }).default(false),
  },
  { error: 'stream body must be an object' },
);

// ---- Creating a database, and a candidate's applied report ----

const FORK_SHAPE = 'the body of PUT /v1/db/{name} is a JSON object: {} or {"from": "other", "txid": N}';

/**
 * ForkBodySchema is the body of `PUT /v1/db/{name}`: `{}` (or none) creates an empty database,
 * `{"from": "other", "txid": N}` forks one (README.md#http-api); null stands for a plain create.
 */
export const ForkBodySchema = z
  .strictObject(
    {
      from: z
        .string({ error: '"from" must be a database name' })
        .check(validated(validateDatabaseName))
        .meta({ pattern: DATABASE_NAME_PATTERN.source, description: 'The database to fork.' })
        .optional(),
      txid: z
        .int({ error: '"txid" must be a non-negative integer' })
        .min(0, { error: '"txid" must be a non-negative integer' })
        .meta({ description: 'The txid to fork at (default: the source\'s latest).' })
        .optional(),
    },
    { error: (iss) => (iss.code === 'unrecognized_keys' ? `unknown field ${JSON.stringify(iss.keys[0])} in PUT /v1/db/{name} (known: "from", "txid")` : FORK_SHAPE) },
  )
  .transform((b, ctx): { from: string; txid: number | null } | null => {
    if (b.from !== undefined) return { from: b.from, txid: b.txid ?? null };
    if (b.txid !== undefined) {
      ctx.issues.push({ code: 'custom', message: '"txid" needs "from": the database to fork', input: b });
      return z.NEVER;
    }
    return null;
  });

/** MAX_REPORTED_DATABASES bounds one applied report (a report is small; this stops a runaway body). */
export const MAX_REPORTED_DATABASES = 10_000;
/** NODE_ID is a failover node's name. */
export const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const REPORT = 'an applied report is {"node", "url", "positions": {db: {"generation", "txid", "checksum": 16 hex}}}: ';
const WHOLE = `${REPORT}{at} must be a whole number >= 0`;

const ReportedPosition = z.object(
  {
    generation: z.int({ error: WHOLE }).min(0, { error: WHOLE }),
    txid: z.int({ error: WHOLE }).min(0, { error: WHOLE }),
    checksum: z.string({ error: `${REPORT}{at} must be 16 lowercase hex digits` }).regex(CHECKSUM, { error: `${REPORT}{at} must be 16 lowercase hex digits` }),
  },
  { error: `${REPORT}{at} is not an object` },
);

const HTTP_URL = /^https?:\/\/[^/]/;

/** AppliedReportSchema is the body of `POST /v1/replicas/applied` (README.md#synchronous-replicas). */
export const AppliedReportSchema = z
  .strictObject(
    {
      node: z.string({ error: `${REPORT}"node" must be 1-64 letters, digits, ".", "_" or "-"` }).regex(NODE_ID, { error: `${REPORT}"node" must be 1-64 letters, digits, ".", "_" or "-"` }),
      url: z
        .string({ error: `${REPORT}"url" must be an http(s) URL` })
        .regex(HTTP_URL, { error: `${REPORT}"url" must be an http(s) URL` })
        .refine((u) => URL.canParse(u), { error: `${REPORT}"url" must be an http(s) URL` })
        .transform((u) => u.replace(/\/+$/, '')),
      positions: z
        .record(DatabaseName, ReportedPosition, { error: `${REPORT}"positions" must be an object` })
        .meta({ propertyNames: { pattern: DATABASE_NAME_PATTERN.source } })
        .refine((p) => Object.keys(p).length <= MAX_REPORTED_DATABASES, { error: `${REPORT}more than ${MAX_REPORTED_DATABASES} databases` }),
    },
    { error: (iss) => `${REPORT}${iss.code === 'unrecognized_keys' ? `unknown field "${iss.keys[0]}"` : 'the body is not an object'}` },
  );
