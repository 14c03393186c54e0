/**
 * What GET /v1/openapi.json says of each route of the primary and of the Node replica
 * (README.md#http-api) beyond what the apps themselves tell (their route list and rights,
 * shared/openapi/document.ts): a summary, the request body's schema (the one validation uses) and the
 * answers. Worker-safe: zod only.
 */
import { z } from 'zod';
import { CONSISTENCY_HEADER } from '../consistency.ts';
import { FRESH_PARAM } from '../changes.ts';
import { TOKEN_HEADER } from '../token.ts';
import type { ResponseDoc, RouteDocs } from './document.ts';
import { AppliedReportSchema, ForkBodySchema, StatementsBodySchema, StreamRequestSchema } from './requests.ts';
import {
  AppliedAnswerSchema,
  CreatedDatabaseSchema,
  DatabaseListSchema,
  DroppedSchema,
  ExecResponseSchema,
  OpenApiDocumentSchema,
  PrimaryDatabaseSchema,
  PrimaryHealthSchema,
  QueryResponseSchema,
  ReplicaDatabaseSchema,
  ReplicaHealthSchema,
  ReplicasListSchema,
  RepeatSchema,
  UiSamplesSchema,
  WorkerHealthSchema,
} from './responses.ts';

const POSITION = {
  'Edgelite-Generation': 'The generation the answer was read or written at.',
  'Edgelite-Txid': 'The txid the answer was read or written at.',
  'Edgelite-Checksum': 'The checksum at that txid (16 hex).',
  'Edgelite-Database-Id': 'The database incarnation.',
  'Edgelite-Served-By': '`primary` or `replica`.',
};

const STATEMENTS = {
  schema: StatementsBodySchema,
  required: true,
  msgpack: true,
  description: 'One statement `{"sql", "params"}` or a batch `{"statements": [...]}`. Integers beyond 2^53 are bare JSON integers (int64), blobs `{"base64"}` (msgpack: bin).',
};

const readHeaders = z.object({
  [TOKEN_HEADER]: z.string().optional().meta({ description: 'A read-your-writes token: the read waits until this server has its write (also the edgelite_token cookie).' }),
});

const json = (description: string, schema: z.ZodType, extra: Partial<ResponseDoc> = {}): ResponseDoc => ({ description, json: schema, ...extra });

/** commonDocs are the routes both servers serve; `db` is how each describes a database. */
function commonDocs(db: z.ZodType, role: 'primary' | 'replica'): RouteDocs {
  return {
    'GET /metrics': { summary: 'Prometheus metrics of every database (an unscoped token)', responses: { 200: { description: 'Prometheus text format', media: [{ type: 'text/plain', binary: false }] } } },
    'GET /v1/db': { summary: 'The databases (a tenant-scoped token sees its own)', responses: { 200: json('The databases', DatabaseListSchema(db)) } },
    'GET /v1/db/{name}': { summary: 'One database: position, lag, pages', responses: { 200: json('The database', db) } },
    'DELETE /v1/db/{name}': { summary: role === 'primary' ? 'Drop a database' : 'Drop a database (forwarded to the primary; answered once dropped here)', responses: { 200: json('Dropped', DroppedSchema) } },
    'POST /v1/db/{name}/query': {
      summary: role === 'primary' ? 'Read: one statement or a batch in one snapshot' : 'Read at a consistency level: one statement or a batch in one snapshot',
      ...(role === 'replica' ? { query: z.object({ consistency: z.string().optional().meta({ description: 'eventual, strong, token or bounded:MS (also the Edgelite-Consistency header).' }) }) } : {}),
      headers: role === 'replica' ? readHeaders.extend({ [CONSISTENCY_HEADER]: z.string().optional().meta({ description: 'eventual, strong, token or bounded:MS.' }) }) : readHeaders,
      body: STATEMENTS,
      responses: { 200: json('One result per statement', QueryResponseSchema, { msgpack: true, headers: POSITION }) },
    },
    'POST /v1/db/{name}/exec': {
      summary: role === 'primary' ? 'Write: one statement or a batch in one transaction' : 'Write (forwarded to the primary; answered once applied here, or after --write-wait-ms)',
      body: STATEMENTS,
      responses: {
        200: json('Committed: one result per statement, and the token', ExecResponseSchema, {
          msgpack: role === 'primary',
          headers: { [TOKEN_HEADER]: 'The read-your-writes token.', ...(role === 'primary' ? POSITION : { 'Edgelite-Applied': 'Whether this replica applied the write before answering.' }) },
        }),
      },
    },
    'GET /ui': { summary: 'The status page (public shell; its data needs the read right)', responses: { 200: { description: 'HTML', media: [{ type: 'text/html', binary: false }] } } },
    'GET /ui/': { summary: 'Redirects to /ui', responses: { 308: { description: 'To /ui' } } },
    'GET /ui/assets/{file}': { summary: 'The status page\'s script, styles and uPlot, served from this server', responses: { 200: { description: 'JavaScript or CSS', media: [{ type: 'text/javascript', binary: false }, { type: 'text/css', binary: false }] } } },
    'GET /v1/ui/samples': {
      summary: 'The status page\'s lag history and this node\'s place in the topology',
      query: z.object({ since: z.string().regex(/^\d{1,16}$/).optional().meta({ description: 'Only ticks after this time (ms since the epoch).' }) }),
      responses: { 200: json('Samples', UiSamplesSchema) },
    },
    'GET /v1/openapi.json': { summary: 'This document', responses: { 200: json('OpenAPI 3.1', OpenApiDocumentSchema) } },
  };
}

/** PRIMARY_ROUTE_DOCS describe the primary's routes. */
export const PRIMARY_ROUTE_DOCS: RouteDocs = {
  ...commonDocs(PrimaryDatabaseSchema, 'primary'),
  'GET /v1/health': { summary: 'Liveness', responses: { 200: json('Serving', PrimaryHealthSchema) } },
  'PUT /v1/db/{name}': {
    summary: 'Create a database, or fork one at a txid',
    body: { schema: ForkBodySchema, required: false, description: 'None or `{}`: an empty database; `{"from", "txid"}`: a fork.' },
    responses: { 200: json('It existed', CreatedDatabaseSchema), 201: json('Created', CreatedDatabaseSchema) },
  },
  'GET /v1/db/{name}/snapshot': {
    summary: 'The database file at one position (replicas bootstrap from it)',
    responses: { 200: { description: 'The SQLite image; its position in the headers, with their digest', media: [{ type: 'application/vnd.sqlite3', binary: true }] } },
  },
  'GET /v1/db/{name}/changes/{generation}/{txid}': {
    summary: 'A sealed catch-up range of change sets, cacheable (docs/ARCHITECTURE.md#the-stream-protocol)',
    query: z.object({ [FRESH_PARAM]: z.string().optional().meta({ description: 'Skip caches for an open tail.' }) }),
    headers: z.object({ 'if-none-match': z.string().optional() }),
    responses: {
      200: { description: 'Change sets (docs/FORMAT.md)', media: [{ type: 'application/vnd.edgelite.changes', binary: true }] },
      304: { description: 'Not modified' },
      308: { description: 'To the range that holds this txid' },
    },
  },
  'POST /v1/stream': {
    summary: 'The change-set stream a replica follows',
    body: { schema: StreamRequestSchema, required: true },
    responses: { 200: { description: 'A never-ending body of frames (docs/ARCHITECTURE.md#the-stream-protocol)', media: [{ type: 'application/vnd.edgelite.stream', binary: true }] } },
  },
  'POST /v1/replicas/applied': { summary: 'A candidate reports its applied positions (--sync-replicas)', body: { schema: AppliedReportSchema, required: true }, responses: { 200: json('Taken', AppliedAnswerSchema) } },
  'GET /v1/replicas': { summary: 'The candidates and the sync set (--sync-replicas)', responses: { 200: json('The candidates', ReplicasListSchema) } },
};

/** REPLICA_ROUTE_DOCS describe the Node replica's routes. */
export const REPLICA_ROUTE_DOCS: RouteDocs = {
  ...commonDocs(ReplicaDatabaseSchema, 'replica'),
  'GET /v1/health': {
    summary: 'Health: lag within --max-lag-ms and the primary heard from',
    responses: { 200: json('Healthy', ReplicaHealthSchema), 503: json('Lagging', ReplicaHealthSchema) },
  },
  'PUT /v1/db/{name}': {
    summary: 'Create a database, or fork one (forwarded to the primary)',
    body: { schema: ForkBodySchema, required: false, description: 'None or `{}`: an empty database; `{"from", "txid"}`: a fork.' },
    responses: { 200: json('It existed', CreatedDatabaseSchema), 201: json('Created', CreatedDatabaseSchema) },
  },
  'GET /v1/db/{name}/snapshot': {
    summary: "This replica's copy at its position, in the primary's snapshot format (export through a replica)",
    headers: z.object({ [CONSISTENCY_HEADER]: z.string().optional().meta({ description: 'eventual, strong, token or bounded:MS, as for a read.' }) }),
    responses: { 200: { description: 'The SQLite image at its position (headers with their digest); 504 REPLICA_BEHIND before the position asked for', media: [{ type: 'application/vnd.sqlite3', binary: true }] } },
  },
};

/**
 * WORKER_ROUTE_DOCS describe the Worker replica's routes (deploy/worker, README.md#edge-replica-on-cloudflare-workers):
 * the Node replica's database routes, without /metrics and the status page.
 */
export const WORKER_ROUTE_DOCS: RouteDocs = {
  ...Object.fromEntries(Object.entries(REPLICA_ROUTE_DOCS).filter(([k]) => /^(GET|PUT|DELETE|POST) \/v1\/(db|openapi)/.test(k))),
  'GET /v1/health': { summary: 'Liveness, and the databases it replicates', responses: { 200: json('Serving', WorkerHealthSchema) } },
  'POST /v1/db/{name}/debug/repeat': {
    summary: 'Run one read n times inside the database\'s object and time it',
    body: { ...STATEMENTS, description: 'A read, plus `"n"`: how many times (default 1000, at most 100000).' },
    responses: { 200: json('The timing and the last result', RepeatSchema) },
  },
};
