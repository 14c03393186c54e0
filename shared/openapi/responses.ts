/**
 * The JSON answers of the HTTP API (README.md#http-api) as zod schemas, for GET /v1/openapi.json.
 * The handlers build these bodies by hand; test/integration/openapi.test.ts validates every route's
 * real answers against the document, so a shape that changes without its schema fails there. Objects
 * allow fields beyond those listed (a newer server may add some). Worker-safe: zod only.
 */
import { z } from 'zod';
import { ERROR_STATUS, type ErrorCode } from '../errors.ts';
import { RIGHTS } from '../auth.ts';

const CODES = Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]];

/** ErrorSchema is every error answer: `{"error": {"code", "message", "details"?}}` with a stable code. */
export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.enum(CODES).meta({ description: 'A stable code (shared/errors.ts); its HTTP status is fixed.' }),
      message: z.string().meta({ description: 'For people; may change.' }),
      details: z.record(z.string(), z.unknown()).optional().meta({ description: 'For programs, where a code documents them (e.g. `outcome`).' }),
    }),
  })
  .meta({ description: 'An error.' });

const Checksum = z.string().regex(/^[0-9a-f]{16}$/).meta({ description: 'A rolling checksum: 16 lowercase hex digits.' });
const Ms = z.number().meta({ description: 'Milliseconds.' });

/** A result cell: integers beyond 2^53 are strings of digits, blobs `{"base64"}`. */
export const ResultValueSchema = z.union([
  z.null(),
  z.number(),
  z.string().meta({ description: 'Text, or an integer beyond 2^53 as its digits.' }),
  z.object({ base64: z.string() }).meta({ description: 'A blob.' }),
]);

const QueryResult = z.object({ columns: z.array(z.string()), rows: z.array(z.array(ResultValueSchema)) });
const ExecResult = z.object({
  changes: z.int(),
  lastInsertRowid: z.union([z.int(), z.string().regex(/^-?\d+$/)]).meta({ description: 'A string beyond 2^53.' }),
});

export const QueryResponseSchema = z.object({ results: z.array(QueryResult).meta({ description: 'One per statement.' }) });
export const ExecResponseSchema = z.object({
  results: z.array(ExecResult).meta({ description: 'One per statement, run in one transaction.' }),
  token: z.string().meta({ description: 'The read-your-writes token (also the Edgelite-Token header).' }),
});

const Backup = z.object({ uploadedTxid: z.int().nullable(), lagMs: Ms.nullable() });

export const PrimaryDatabaseSchema = z.object({
  name: z.string(),
  role: z.literal('primary'),
  databaseId: z.int(),
  generation: z.int(),
  txid: z.int(),
  checksum: Checksum,
  lagMs: Ms,
  lagTxids: z.int(),
  pageSize: z.int(),
  pageCount: z.int(),
  lastCommitTime: Ms,
  generations: z.array(z.object({ generation: z.int(), startTxid: z.int() })).meta({ description: 'Where each generation started, oldest first, the current one last.' }),
  backup: Backup.optional().meta({ description: 'With --backup.' }),
});

export const CreatedDatabaseSchema = PrimaryDatabaseSchema.extend({
  created: z.boolean(),
  forkedFrom: z.object({ name: z.string(), txid: z.int(), checksum: Checksum }).optional().meta({ description: 'A fork: the source position it holds.' }),
});

export const ReplicaDatabaseSchema = z.object({
  name: z.string(),
  role: z.literal('replica'),
  databaseId: z.int().nullable(),
  generation: z.int().nullable(),
  txid: z.int().nullable(),
  checksum: Checksum.nullable(),
  lagMs: Ms.nullable(),
  lagTxids: z.int().nullable(),
  primaryTxid: z.int().nullable(),
  pageCount: z.int().nullable(),
  ready: z.boolean(),
  needsSnapshot: z.string().nullable().meta({ description: 'Why this copy waits for a new snapshot, or null.' }),
});

export const DatabaseListSchema = <T extends z.ZodType>(db: T) => z.object({ databases: z.array(db) });

export const DroppedSchema = z.object({ name: z.string(), dropped: z.literal(true) });

export const PrimaryHealthSchema = z.object({ status: z.literal('ok'), role: z.literal('primary'), databases: z.int() });

export const ReplicaHealthSchema = z.object({
  status: z.enum(['ok', 'lagging']),
  role: z.literal('replica'),
  databases: z.int(),
  lagging: z.array(z.string()).meta({ description: 'Databases past --max-lag-ms.' }),
  lastContactMs: Ms.nullable(),
  stream: z.string().meta({ description: 'The follower\'s state, or `embedded`.' }),
});

/** WorkerHealthSchema: the Worker replica's GET /v1/health (deploy/worker). */
export const WorkerHealthSchema = z.object({
  status: z.literal('ok'),
  role: z.literal('replica'),
  runtime: z.literal('workerd'),
  databases: z.union([z.literal('*'), z.array(z.string())]).meta({ description: 'DATABASES: the names it replicates, or "*".' }),
});

/** RepeatSchema: the Worker's POST /v1/db/{name}/debug/repeat, a query's cost inside its object. */
export const RepeatSchema = QueryResponseSchema.extend({ n: z.int(), totalMs: Ms, perQueryUs: z.number() });

const Series = z.array(z.number().nullable());

export const UiSamplesSchema = z.object({
  node: z.object({ role: z.enum(['primary', 'replica']) }).meta({ description: 'This node\'s place in the topology.' }),
  intervalMs: Ms,
  capacity: z.int(),
  top: z.int(),
  failures: z.int(),
  t: z.array(Ms),
  all: z.object({ databases: Series, lagging: Series, maxLagMs: Series, maxBackupLagMs: Series }).nullable().meta({ description: 'Null for a tenant-scoped token.' }),
  series: z.record(z.string(), z.object({ lagMs: Series, lagTxids: Series, txid: Series, backupLagMs: Series })),
});

export const AppliedAnswerSchema = z.object({ ok: z.literal(true), members: z.array(z.string()) });

export const ReplicasListSchema = z.object({
  syncReplicas: z.int(),
  members: z.array(z.string()),
  publishing: z.array(z.string()).nullable().meta({ description: 'The sync set being published, or null.' }),
  nodes: z.array(z.object({ node: z.string(), url: z.string(), lastSeen: Ms, ageMs: Ms, alive: z.boolean(), member: z.boolean() })),
});

/** OpenApiDocumentSchema: the answer of GET /v1/openapi.json itself. */
export const OpenApiDocumentSchema = z.object({ openapi: z.string().regex(/^3\.1\./), info: z.object({ title: z.string(), version: z.string() }), paths: z.record(z.string(), z.unknown()) });

/** RightSchema names the rights a token may hold (docs/ARCHITECTURE.md#security). */
export const RightSchema = z.enum(RIGHTS);
