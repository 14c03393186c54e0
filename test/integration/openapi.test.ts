/**
 * The OpenAPI contract (README.md#http-api) against a real primary and a real Node replica, auth on:
 * GET /v1/openapi.json of each is a valid OpenAPI 3.1 document (@seriousme/openapi-schema-validator);
 * it lists exactly the routes the app serves (read from the app's own route list here, not from the
 * document builder) with the right each needs; and every route is called with real requests, at least
 * one success and one error where one is cheap, each answer's status is in the document and its JSON
 * body validates against the document's schema for it (ajv, JSON Schema 2020-12).
 */
import { join } from 'node:path';
import type { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { tempDir } from '../helpers.ts';
import { appRoutes, checkRoutes, documented, documentOf, expectValidDocument, sendTo, type Case } from '../kit/openapi.ts';
import { waitFor } from '../kit/wait.ts';

const ADMIN = 'openapi-admin-token-01234';
const READ = 'openapi-read-token-012345';
const WRITE = 'openapi-write-token-01234';
const REPL = 'openapi-replicate-token-0';
const SPEC = `admin=${ADMIN}; read=${READ}; read+write=${WRITE}; replicate=${REPL}`;

const t = tempDir('openapi');
let primary: PrimaryHandle;
let replica: ReplicaHandle;
let primaryApp: Hono;
let replicaApp: Hono;

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
    'GET /v1/replicas': [{ path: '/v1/replicas', token: READ, status: 200 }, { path: '/v1/replicas', token: WRITE.replace('write', 'wrong'), status: 401 }],
    ...uiCases(),
  };
}

function uiCases(): Record<string, Case[]> {
  return {
    'GET /ui': [{ path: '/ui', status: 200 }],
    'GET /ui/': [{ path: '/ui/', status: 308 }],
    'GET /ui/assets/{file}': [{ path: '/ui/assets/status.js', status: 200 }, { path: '/ui/assets/uPlot.min.css', status: 200 }, { path: '/ui/assets/nope.js', status: 404 }],
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
    'GET /v1/db/{name}/snapshot': [{ path: '/v1/db/app/snapshot', token: READ, status: 200 }, { path: '/v1/db/nope/snapshot', token: READ, status: 404 }],
    ...uiCases(),
  };
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
      const doc = await documentOf(sendTo(base), READ);
      await expectValidDocument(doc);
      expect(documented(doc)).toEqual(appRoutes(app));
      expect(doc.paths['/v1/db/{name}/exec']!.post!['x-edgelite-right']).toBe('write');
      expect(doc.paths['/v1/db/{name}']!.delete!['x-edgelite-right']).toBe('admin');
      expect(doc.paths['/v1/health']!.get!['x-edgelite-right']).toBeUndefined();
    }
    const doc = await documentOf(sendTo(primary.url), READ);
    expect(doc.paths['/v1/stream']!.post!['x-edgelite-right']).toBe('replicate');
    // Big integers are int64, blobs {"base64"}: read from the schemas that validate the bodies.
    const body = JSON.stringify(doc.paths['/v1/db/{name}/query']!.post!.requestBody);
    expect(body).toContain('"type":"integer","format":"int64"');
    expect(body).toContain('"required":["base64"]');
  });

  it('answers every primary route as the document says', async () => {
    const gen = primary.store.get('app')!.position.generation.toString(16).padStart(8, '0');
    const checked = await checkRoutes(sendTo(primary.url), await documentOf(sendTo(primary.url), READ), primaryCases(gen, '0000000000000001'));
    expect(checked).toBeGreaterThan(30);
  }, 60_000);

  it('answers every replica route as the document says', async () => {
    const checked = await checkRoutes(sendTo(replica.url), await documentOf(sendTo(replica.url), READ), replicaCases());
    expect(checked).toBeGreaterThan(20);
  }, 60_000);
});
