/**
 * The OpenAPI contract (README.md#http-api) against a real primary and a real Node replica, auth on:
 * GET /v1/openapi.json of each is a valid OpenAPI 3.1 document (@seriousme/openapi-schema-validator);
 * it lists exactly the routes the app serves (read from the app's own route list here, not from the
 * document builder) with the right each needs; and every route is called with real requests, at least
 * one success and one error where one is cheap, each answer's status is in the document and its JSON
 * body validates against the document's schema for it (ajv, JSON Schema 2020-12).
 */
import { join } from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

const ADMIN = 'openapi-admin-token-01234';
const READ = 'openapi-read-token-012345';
const WRITE = 'openapi-write-token-01234';
const REPL = 'openapi-replicate-token-0';
const SPEC = `admin=${ADMIN}; read=${READ}; read+write=${WRITE}; replicate=${REPL}`;

/** ajv-formats is CommonJS: its plugin is the default export's `default` under Node's ESM interop. */
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv2020) => Ajv2020;
const t = tempDir('openapi');
let primary: PrimaryHandle;
let replica: ReplicaHandle;
let primaryApp: Hono;
let replicaApp: Hono;

/** Case is one real request to one documented route, and the status it must get. */
interface Case {
  path: string;
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
  status: number | number[];
}

type Doc = { paths: Record<string, Record<string, Operation>>; components: Record<string, unknown> };
type Operation = { responses: Record<string, { content?: Record<string, { schema: unknown }> }>; 'x-edgelite-right'?: string; 'x-edgelite-undocumented'?: boolean };

const P = { generation: 1, txid: 1, checksum: '0123456789abcdef' };

/** PRIMARY_CASES: every primary route, by its documented `METHOD /path`. */
function primaryCases(gen: string, txid: string): Record<string, Case[]> {
  return {
    'GET /v1/health': [{ path: '/v1/health', status: 200 }],
    'GET /metrics': [{ path: '/metrics', token: ADMIN, status: 200 }, { path: '/metrics', status: 401 }],
    'GET /v1/db': [{ path: '/v1/db', token: READ, status: 200 }, { path: '/v1/db', token: 'not-a-known-token-0000', status: 401 }],
    'GET /v1/db/{name}': [{ path: '/v1/db/app', token: READ, status: 200 }, { path: '/v1/db/nope', token: READ, status: 404 }],
    'PUT /v1/db/{name}': [
      { path: '/v1/db/made', token: WRITE, status: 201 },
      { path: '/v1/db/made', token: WRITE, body: {}, status: 200 },
      { path: '/v1/db/forked', token: WRITE, body: { from: 'app' }, status: 201 },
      { path: '/v1/db/bad', token: WRITE, body: { from: 'app', x: 1 }, status: 400 },
      { path: '/v1/db/made', token: READ, status: 403 },
    ],
    'DELETE /v1/db/{name}': [{ path: '/v1/db/made', token: WRITE, status: 403 }, { path: '/v1/db/made', token: ADMIN, status: 200 }],
    'POST /v1/db/{name}/query': [
      { path: '/v1/db/app/query', token: READ, body: { sql: 'SELECT k, v, 9007199254740993, x\'0001\' FROM kv WHERE k = ?', params: ['a'] }, status: 200 },
      { path: '/v1/db/app/query', token: READ, body: { statements: [{ sql: 'SELECT 1' }, { sql: 'SELECT ?', params: [{ base64: 'AQID' }] }] }, status: 200 },
      { path: '/v1/db/app/query', token: READ, body: { sql: '' }, status: 400 },
    ],
    'POST /v1/db/{name}/exec': [
      { path: '/v1/db/app/exec', token: WRITE, body: { statements: [{ sql: 'INSERT INTO kv VALUES (?, ?)', params: ['p', 9223372036854775807n] }, { sql: 'DELETE FROM kv WHERE k = :k', params: { k: 'p' } }] }, status: 200 },
      { path: '/v1/db/app/exec', token: WRITE, body: { sql: 'INSERT INTO missing VALUES (1)' }, status: 400 },
      { path: '/v1/db/app/exec', token: READ, body: { sql: 'SELECT 1' }, status: 403 },
    ],
    'GET /v1/db/{name}/snapshot': [{ path: '/v1/db/app/snapshot', token: REPL, status: 200 }, { path: '/v1/db/app/snapshot', token: READ, status: 403 }],
    'GET /v1/db/{name}/changes/{generation}/{txid}': [{ path: `/v1/db/app/changes/${gen}/${txid}`, token: REPL, status: [200, 308, 409] }, { path: '/v1/db/app/changes/x/y', token: REPL, status: 400 }],
    'POST /v1/stream': [{ path: '/v1/stream', token: REPL, body: { databases: ['app'], positions: { app: null } }, status: 200 }, { path: '/v1/stream', token: REPL, body: { databases: 'app' }, status: 400 }],
    'POST /v1/replicas/applied': [
      { path: '/v1/replicas/applied', token: REPL, body: { node: 'n1', url: 'http://127.0.0.1:1', positions: { app: P } }, status: 200 },
      { path: '/v1/replicas/applied', token: REPL, body: { node: 'n1' }, status: 400 },
    ],
    'GET /v1/replicas': [{ path: '/v1/replicas', token: READ, status: 200 }],
    ...uiCases(),
  };
}

function uiCases(): Record<string, Case[]> {
  return {
    'GET /ui': [{ path: '/ui', status: 200 }],
    'GET /ui/': [{ path: '/ui/', status: 308 }],
    'GET /ui/assets/{file}': [{ path: '/ui/assets/status.js', status: 200 }, { path: '/ui/assets/nope.js', status: 404 }],
    'GET /v1/ui/samples': [{ path: '/v1/ui/samples', token: READ, status: 200 }, { path: '/v1/ui/samples?since=x', token: READ, status: 400 }],
    'GET /v1/openapi.json': [{ path: '/v1/openapi.json', token: READ, status: 200 }, { path: '/v1/openapi.json', status: 401 }],
  };
}

function replicaCases(): Record<string, Case[]> {
  return {
    'GET /v1/health': [{ path: '/v1/health', status: [200, 503] }],
    'GET /metrics': [{ path: '/metrics', token: ADMIN, status: 200 }, { path: '/metrics', status: 401 }],
    'GET /v1/db': [{ path: '/v1/db', token: READ, status: 200 }, { path: '/v1/db', status: 401 }],
    'GET /v1/db/{name}': [{ path: '/v1/db/app', token: READ, status: 200 }, { path: '/v1/db/nope', token: READ, status: 404 }],
    'PUT /v1/db/{name}': [
      { path: '/v1/db/r-made', token: WRITE, status: 201 },
      { path: '/v1/db/r-bad', token: WRITE, body: { txid: 1 }, status: 400 },
      { path: '/v1/db/r-made', token: READ, status: 403 },
    ],
    'DELETE /v1/db/{name}': [{ path: '/v1/db/r-made', token: ADMIN, status: 200 }, { path: '/v1/db/r-made', token: READ, status: 403 }],
    'POST /v1/db/{name}/query': [
      { path: '/v1/db/app/query', token: READ, body: { sql: 'SELECT k, v FROM kv' }, headers: { 'edgelite-consistency': 'strong' }, status: 200 },
      { path: '/v1/db/app/query', token: READ, body: { sql: 'SELECT ?', params: [{ base64: 'A' }] }, status: 400 },
    ],
    'POST /v1/db/{name}/exec': [
      { path: '/v1/db/app/exec', token: WRITE, body: { sql: 'INSERT INTO kv VALUES (?, ?)', params: ['r', { base64: 'AQID' }] }, status: 200 },
      { path: '/v1/db/app/exec', token: WRITE, body: { statements: [] }, status: 400 },
    ],
    ...uiCases(),
  };
}

/** appRoutes reads an app's served routes from hono's own list: not middleware (ALL), each once. */
function appRoutes(app: Hono): string[] {
  const keys = app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, '{$1}')}`);
  return [...new Set(keys)].sort();
}

function documented(doc: Doc): string[] {
  return Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)).sort();
}

async function call(base: string, method: string, c: Case): Promise<{ status: number; type: string; text: string }> {
  const headers: Record<string, string> = { ...(c.token ? { authorization: `Bearer ${c.token}` } : {}), ...c.headers };
  let body: string | undefined;
  if (c.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(c.body, (_k, v) => (typeof v === 'bigint' ? `@@${v}@@` : v)).replace(/"@@(-?\d+)@@"/g, '$1');
  }
  const res = await fetch(`${base}${c.path}`, { method, headers, body, redirect: 'manual' });
  const type = res.headers.get('content-type') ?? '';
  if (type.startsWith('application/vnd.edgelite.stream')) {
    await res.body?.cancel(); // never ends
    return { status: res.status, type, text: '' };
  }
  return { status: res.status, type, text: type.startsWith('application/json') ? await res.text() : String((await res.arrayBuffer()).byteLength) };
}

function validatorFor(doc: Doc): Ajv2020 {
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  addFormats(ajv);
  ajv.addFormat('int64', true);
  ajv.addFormat('binary', true);
  ajv.addSchema({ $id: 'openapi', $defs: (doc.components as { schemas: Record<string, unknown> }).schemas });
  return ajv;
}

/** checkRoutes calls every documented route of `base` and validates each answer against `doc`. */
async function checkRoutes(base: string, doc: Doc, cases: Record<string, Case[]>): Promise<number> {
  const ajv = validatorFor(doc);
  let checked = 0;
  // Every documented route has requests, and every request is for a documented route (in the order
  // given: a database is created before it is dropped).
  expect(Object.keys(cases).sort()).toEqual(documented(doc));
  for (const [key, list] of Object.entries(cases)) {
    const [method, path] = key.split(' ') as [string, string];
    const op = doc.paths[path]![method.toLowerCase()]!;
    for (const c of list) {
      const r = await call(base, method, c);
      const where = `${key} as ${c.path} (${c.token === undefined ? 'no token' : 'token'}): ${r.text.slice(0, 300)}`;
      expect([c.status].flat(), where).toContain(r.status);
      const documentedAnswer = op.responses[String(r.status)] ?? op.responses.default;
      expect(documentedAnswer, `${where}: status ${r.status} not in the document`).toBeDefined();
      const json = documentedAnswer!.content?.['application/json'];
      if (r.status >= 400 || json) {
        expect(r.type, where).toMatch(/^application\/json/);
        const schema = JSON.parse(JSON.stringify(json!.schema).replaceAll('"#/components/schemas/', '"openapi#/$defs/'));
        const validate = ajv.compile(schema);
        const valid = validate(JSON.parse(r.text));
        expect(valid ? [] : validate.errors, where).toEqual([]);
      } else if (documentedAnswer!.content) {
        const types = Object.keys(documentedAnswer!.content);
        expect(types.some((type) => r.type.startsWith(type)), `${where}: ${r.type} not in ${types.join(', ')}`).toBe(true);
      }
      checked++;
    }
  }
  return checked;
}

async function documentOf(base: string): Promise<Doc> {
  const res = await fetch(`${base}/v1/openapi.json`, { headers: { authorization: `Bearer ${READ}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as Doc;
}

beforeAll(async () => {
  primary = await startPrimary(parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0', '--query-timeout-ms', '0'], { EDGELITE_TOKENS: SPEC }), silentLogger, {
    extend: { routes: (app) => void (primaryApp = app) },
  });
  const put = await fetch(`${primary.url}/v1/db/app`, { method: 'PUT', headers: { authorization: `Bearer ${ADMIN}` } });
  expect(put.status).toBe(201);
  const schema = await fetch(`${primary.url}/v1/db/app/exec`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ statements: [{ sql: 'CREATE TABLE kv (k TEXT PRIMARY KEY, v)' }, { sql: "INSERT INTO kv VALUES ('a', 1), ('b', x'00ff')" }] }),
  });
  expect(schema.status).toBe(200);
  replica = await startReplica(parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0', '--query-timeout-ms', '0'], { EDGELITE_TOKENS: SPEC, EDGELITE_PRIMARY_TOKEN: ADMIN }), silentLogger, {
    extend: { routes: (app) => void (replicaApp = app) },
  });
  await waitFor(() => replica.store.get('app')?.position?.txid === primary.store.get('app')!.position.txid, 'the replica to catch up', 20_000);
}, 60_000);

afterAll(async () => {
  await replica?.close();
  await primary?.close();
  t.cleanup();
});

describe('OpenAPI 3.1 contract (real primary and replica)', () => {
  it('is a valid OpenAPI 3.1 document on both, listing exactly the routes each app serves, with their rights', async () => {
    for (const [base, app] of [[primary.url, primaryApp], [replica.url, replicaApp]] as const) {
      const doc = await documentOf(base);
      const result = await new Validator().validate(doc as unknown as Record<string, unknown>);
      expect(result.errors ?? [], base).toEqual([]);
      expect(result.valid).toBe(true);
      expect((doc as unknown as { openapi: string }).openapi).toBe('3.1.0');
      // The validator is not vacuous: the same document without its info title is refused.
      const broken = JSON.parse(JSON.stringify(doc)) as { info: { title?: string } };
      delete broken.info.title;
      expect((await new Validator().validate(broken as unknown as Record<string, unknown>)).valid).toBe(false);
      expect(documented(doc)).toEqual(appRoutes(app));
      const ops = Object.values(doc.paths).flatMap((o) => Object.values(o));
      expect(ops.filter((o) => o['x-edgelite-undocumented'])).toEqual([]);
      expect(doc.paths['/v1/db/{name}/exec']!.post!['x-edgelite-right']).toBe('write');
      expect(doc.paths['/v1/db/{name}']!.delete!['x-edgelite-right']).toBe('admin');
      expect(doc.paths['/v1/health']!.get!['x-edgelite-right']).toBeUndefined();
    }
    const doc = await documentOf(primary.url);
    expect(doc.paths['/v1/stream']!.post!['x-edgelite-right']).toBe('replicate');
    // Big integers are int64, blobs {"base64"}: read from the schemas that validate the bodies.
    const body = JSON.stringify((doc.paths['/v1/db/{name}/query']!.post as unknown as { requestBody: unknown }).requestBody);
    expect(body).toContain('"type":"integer","format":"int64"');
    expect(body).toContain('"required":["base64"]');
  });

  it('answers every primary route as the document says', async () => {
    const gen = primary.store.get('app')!.position.generation.toString(16).padStart(8, '0');
    const checked = await checkRoutes(primary.url, await documentOf(primary.url), primaryCases(gen, '0000000000000001'));
    expect(checked).toBeGreaterThan(30);
  }, 60_000);

  it('answers every replica route as the document says', async () => {
    const checked = await checkRoutes(replica.url, await documentOf(replica.url), replicaCases());
    expect(checked).toBeGreaterThan(20);
  }, 60_000);
});
