/**
 * The OpenAPI document builder (shared/openapi/document.ts, route.ts) on a small hono app without a
 * socket: routes come from the app's own list (middleware skipped, `:name` as `{name}`, a route with
 * two handlers once), each route's right from its tagged auth middleware, request bodies from the
 * zod schemas that validate them, every error answer a reference to the one Error schema, and a
 * served route without a doc still listed, marked undocumented. GET /v1/openapi.json needs the read
 * right and is built once.
 */
import { Validator } from '@seriousme/openapi-schema-validator';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import type { FailoverNode } from '../../bin/ha.ts';
import { haExtension } from '../../bin/ha-routes.ts';
import { AUTH_DISABLED, parseAuthConfig } from '../../shared/auth.ts';
import { errorResponse, requireRight, routeRight, tagRight } from '../../shared/http.ts';
import { openApiDocument, servedRoutes, type RouteDocs } from '../../shared/openapi/document.ts';
import { StatementsBodySchema } from '../../shared/openapi/requests.ts';
import { QueryResponseSchema } from '../../shared/openapi/responses.ts';
import { mountOpenApi, OPENAPI_PATH } from '../../shared/openapi/route.ts';

const READ = 'unit-openapi-read-token-0';
const auth = parseAuthConfig(undefined, `read=${READ}`);

function app(): Hono {
  const a = new Hono();
  a.onError((err) => errorResponse(err));
  a.use('*', async (_c, next) => next());
  a.get('/v1/health', (c) => c.json({ ok: true }));
  a.post('/v1/db/:name/query', requireRight(auth, 'read'), (c) => c.json({ results: [] }));
  a.get('/metrics', requireRight(auth, 'read', { every: true }), (c) => c.text(''));
  a.get('/v1/secret/:id', (c) => c.text(c.req.param('id')));
  return a;
}

const DOCS: RouteDocs = {
  'GET /v1/health': { summary: 'Liveness', responses: { 200: { description: 'ok' } } },
  'POST /v1/db/{name}/query': { summary: 'Read', body: { schema: StatementsBodySchema, required: true }, responses: { 200: { description: 'Results', json: QueryResponseSchema } } },
  'GET /metrics': { summary: 'Metrics', responses: { 200: { description: 'text', media: [{ type: 'text/plain', binary: false }] } } },
};

type Op = Record<string, any>;

describe('openApiDocument', () => {
  it('lists the routes the app serves, once each, with `{param}` paths and the rights their middleware checks', () => {
    expect(servedRoutes(app()).map((r) => [r.method, r.path, r.right?.right ?? null, r.right?.every ?? null])).toEqual([
      ['GET', '/v1/health', null, null],
      ['POST', '/v1/db/{name}/query', 'read', false],
      ['GET', '/metrics', 'read', true],
      ['GET', '/v1/secret/{id}', null, null],
    ]);
    expect(routeRight(tagRight(() => undefined, { right: 'admin', every: false }))).toEqual({ right: 'admin', every: false });
    expect(routeRight(() => undefined)).toBeNull();
  });

  it('writes security, the body schema, answers and Error references; an undocumented route is marked', () => {
    const doc = openApiDocument(app(), DOCS, { title: 't', version: 'v1', description: 'd' }) as { openapi: string; paths: Record<string, Record<string, Op>>; components: Op };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths).sort()).toEqual(['/metrics', '/v1/db/{name}/query', '/v1/health', '/v1/secret/{id}']);
    const query = doc.paths['/v1/db/{name}/query']!.post!;
    expect(query.security).toEqual([{ bearer: ['read'] }]);
    expect(query['x-edgelite-right']).toBe('read');
    expect(query.parameters).toEqual([expect.objectContaining({ in: 'path', name: 'name', required: true })]);
    expect(JSON.stringify(query.requestBody.content['application/json'].schema)).toContain('"format":"int64"');
    expect(Object.keys(query.responses).sort()).toEqual(['200', '401', '403', 'default']);
    for (const s of ['401', '403', 'default']) expect(query.responses[s].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/Error' });
    expect(doc.paths['/metrics']!.get!['x-edgelite-unscoped']).toBe(true);
    expect(doc.paths['/v1/health']!.get!.security).toEqual([]);
    expect(doc.paths['/v1/secret/{id}']!.get!['x-edgelite-undocumented']).toBe(true);
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(Object.keys(doc.components.schemas)).toEqual(['Error']);
  });

  it('serves the document at GET /v1/openapi.json with the read right, listing itself', async () => {
    const a = app();
    mountOpenApi(a, { read: requireRight(auth, 'read'), role: 'primary', docs: DOCS });
    expect((await a.request(OPENAPI_PATH)).status).toBe(401);
    const res = await a.request(OPENAPI_PATH, { headers: { authorization: `Bearer ${READ}` } });
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { info: { title: string }; paths: Record<string, Record<string, Op>> };
    expect(doc.info.title).toBe('edgelite primary');
    expect(doc.paths[OPENAPI_PATH]!.get!['x-edgelite-right']).toBe('read');
    const again = await (await a.request(OPENAPI_PATH, { headers: { authorization: `Bearer ${READ}` } })).text();
    expect(JSON.parse(again)).toEqual(doc);
  });

  it("documents a failover node's routes (bin/ha-routes.ts), and step-down refuses a bad body with its message", async () => {
    // Registering the routes reads only the node's auth; no handler runs but step-down's validation.
    const ext = haExtension({ auth: AUTH_DISABLED } as unknown as FailoverNode);
    const a = new Hono();
    a.onError((err) => errorResponse(err));
    ext.routes!(a);
    const doc = openApiDocument(a, ext.docs!, { title: 'ha', version: 'v1', description: 'd' }) as { paths: Record<string, Record<string, Op>> };
    expect(Object.keys(doc.paths).sort()).toEqual(['/v1/ha', '/v1/ha/promote', '/v1/ha/step-down']);
    expect(Object.values(doc.paths).flatMap((o) => Object.values(o)).filter((op) => op['x-edgelite-undocumented'])).toEqual([]);
    expect(doc.paths['/v1/ha/step-down']!.post!['x-edgelite-right']).toBe('admin');
    expect((await new Validator().validate(doc as unknown as Record<string, unknown>)).valid).toBe(true);
    for (const body of ['{}', '{"to": "n2"}', '{"to": "n2", "url": "not a url"}', '[]']) {
      const res = await a.request('/v1/ha/step-down', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect([res.status, await res.json()], body).toEqual([400, { error: { code: 'BAD_REQUEST', message: 'step-down wants {"to": NODE, "url": URL}' } }]);
    }
  });
});
