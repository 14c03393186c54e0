/**
 * The Worker replica's OpenAPI contract (README.md#http-api), in workerd (wrangler unstable_dev)
 * against a real primary on 127.0.0.1, auth on: GET /v1/openapi.json is valid OpenAPI 3.1, lists the
 * routes deploy/worker/src/index.ts serves with their rights, and every route answers real requests
 * (a success and an error each) as the document says (test/kit/openapi.ts). No skip: a machine where
 * workerd cannot run fails this suite.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unstable_dev, type Unstable_DevWorker } from 'wrangler';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { tempDir } from '../helpers.ts';
import { checkRoutes, documented, documentOf, expectValidDocument, type Case, type Send } from '../kit/openapi.ts';
import { waitFor } from '../kit/wait.ts';

const WORKER_DIR = fileURLToPath(new URL('../../deploy/worker/', import.meta.url));
const ADMIN = 'worker-openapi-admin-token-01';
const READ = 'worker-openapi-read-token-012';
const WRITE = 'worker-openapi-write-token-01';
const SPEC = `admin=${ADMIN}; read=${READ}; read+write=${WRITE}`;

/** The routes of deploy/worker/src/index.ts (the Worker's app cannot be read from here). */
const WORKER_ROUTES = [
  'DELETE /v1/db/{name}',
  'GET /v1/db',
  'GET /v1/db/{name}',
  'GET /v1/health',
  'GET /v1/openapi.json',
  'POST /v1/db/{name}/debug/repeat',
  'POST /v1/db/{name}/exec',
  'POST /v1/db/{name}/query',
  'PUT /v1/db/{name}',
];

const CASES: Record<string, Case[]> = {
  'GET /v1/health': [{ path: '/v1/health', status: 200 }],
  'GET /v1/db': [{ path: '/v1/db', token: READ, status: 200 }, { path: '/v1/db', status: 401 }],
  'GET /v1/db/{name}': [{ path: '/v1/db/app', token: READ, status: 200 }, { path: '/v1/db/nope', token: READ, status: 404 }],
  'PUT /v1/db/{name}': [
    { path: '/v1/db/made', token: WRITE, status: 201 },
    { path: '/v1/db/bad', token: WRITE, body: { from: 'app', x: 1 }, status: 400 },
    { path: '/v1/db/made', token: READ, status: 403 },
  ],
  'DELETE /v1/db/{name}': [{ path: '/v1/db/made', token: WRITE, status: 403 }, { path: '/v1/db/made', token: ADMIN, status: 200 }],
  'POST /v1/db/{name}/query': [
    { path: '/v1/db/app/query', token: READ, body: { sql: "SELECT k, v, 9007199254740993, x'00ff' FROM kv WHERE k = ?", params: ['a'] }, status: 200 },
    { path: '/v1/db/app/query', token: READ, body: { sql: 'SELECT ?', params: [2n ** 63n] }, status: 400 },
  ],
  'POST /v1/db/{name}/exec': [
    { path: '/v1/db/app/exec', token: WRITE, body: { sql: 'INSERT INTO kv VALUES (?, ?)', params: ['w', 9223372036854775807n] }, status: 200 },
    { path: '/v1/db/app/exec', token: READ, body: { sql: 'SELECT 1' }, status: 403 },
  ],
  'POST /v1/db/{name}/debug/repeat': [
    { path: '/v1/db/app/debug/repeat', token: ADMIN, body: { sql: 'SELECT count(*) FROM kv', n: 10 }, status: 200 },
    { path: '/v1/db/app/debug/repeat', token: ADMIN, body: { statements: [] }, status: 400 },
  ],
  'GET /v1/openapi.json': [{ path: '/v1/openapi.json', token: READ, status: 200 }, { path: '/v1/openapi.json', status: 401 }],
};

describe('Worker replica: the OpenAPI contract (workerd)', () => {
  const t = tempDir('worker-openapi');
  let primary: PrimaryHandle;
  let worker: Unstable_DevWorker;
  const send: Send = (path, init) => worker.fetch(path, init as Parameters<Unstable_DevWorker['fetch']>[1]) as unknown as Promise<Response>;

  beforeAll(async () => {
    primary = await startPrimary(parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0', '--query-timeout-ms', '0'], { EDGELITE_TOKENS: SPEC }), silentLogger);
    const auth = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
    expect((await fetch(`${primary.url}/v1/db/app`, { method: 'PUT', headers: auth })).status).toBe(201);
    const schema = await fetch(`${primary.url}/v1/db/app/exec`, { method: 'POST', headers: auth, body: JSON.stringify({ statements: [{ sql: 'CREATE TABLE kv (k TEXT PRIMARY KEY, v)' }, { sql: "INSERT INTO kv VALUES ('a', 1)" }] }) });
    expect(schema.status).toBe(200);
    worker = await unstable_dev(join(WORKER_DIR, 'src/index.ts'), {
      config: join(WORKER_DIR, 'wrangler.toml'),
      persistTo: join(t.dir, 'worker-state'),
      logLevel: 'none',
      vars: { PRIMARY_URL: primary.url, DATABASES: 'app', EDGELITE_TOKENS: SPEC, EDGELITE_PRIMARY_TOKEN: ADMIN, READ_WAIT_MS: '3000', WRITE_WAIT_MS: '10000' },
      experimental: { disableExperimentalWarning: true },
    });
    // Bootstrapped: the first read waits for the snapshot.
    await waitFor(async () => (await send('/v1/db/app/query', { method: 'POST', headers: { authorization: `Bearer ${READ}`, 'content-type': 'application/json' }, body: '{"sql":"SELECT 1"}' })).status === 200, 'the Worker to bootstrap', 30_000);
  }, 90_000);

  afterAll(async () => {
    await worker?.stop();
    await primary?.close();
    t.cleanup();
  });

  it('serves a valid OpenAPI 3.1 document of its routes, and answers each as it says', async () => {
    const doc = await documentOf(send, READ);
    await expectValidDocument(doc);
    expect(documented(doc)).toEqual(WORKER_ROUTES);
    expect(doc.paths['/v1/db/{name}/debug/repeat']!.post!['x-edgelite-right']).toBe('admin');
    expect(doc.paths['/v1/db/{name}/query']!.post!['x-edgelite-right']).toBe('read');
    expect(await checkRoutes(send, doc, CASES)).toBeGreaterThan(15);
  }, 90_000);
});
