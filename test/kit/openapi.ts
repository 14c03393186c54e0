/**
 * Checking a server against its own OpenAPI document (README.md#http-api), for
 * test/integration/openapi.test.ts (primary, Node replica) and test/worker/worker-openapi.test.ts
 * (the Worker replica): the document validated as OpenAPI 3.1 (@seriousme/openapi-schema-validator),
 * then every documented route called with real requests, each answer's status found in the document
 * and its JSON body validated against the schema there (ajv, JSON Schema 2020-12).
 */
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { Hono } from 'hono';
import { expect } from 'vitest';

/** ajv-formats is CommonJS: its plugin is the default export's `default` under Node's ESM interop. */
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv2020) => Ajv2020;

/** Case is one real request to one documented route, and the status (or statuses) it must get. */
export interface Case {
  path: string;
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
  status: number | number[];
}

export type Operation = { responses: Record<string, { content?: Record<string, { schema: unknown }> }>; requestBody?: unknown; 'x-edgelite-right'?: string; 'x-edgelite-undocumented'?: boolean };
export type Doc = { openapi: string; info: { title?: string }; paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, unknown> } };

/** Send is how a test reaches a server: global fetch on its URL, or unstable_dev's worker.fetch. */
export type Send = (path: string, init: RequestInit) => Promise<Response>;

export const sendTo = (base: string): Send => (path, init) => fetch(`${base}${path}`, init);

/** appRoutes reads an app's served routes from hono's own list: not middleware (ALL), each once. */
export function appRoutes(app: Hono): string[] {
  const keys = app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, '{$1}')}`);
  return [...new Set(keys)].sort();
}

/** documented lists a document's operations as `METHOD /path`. */
export function documented(doc: Doc): string[] {
  return Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)).sort();
}

/** documentOf fetches GET /v1/openapi.json with a read token. */
export async function documentOf(send: Send, token: string): Promise<Doc> {
  const res = await send('/v1/openapi.json', { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as Doc;
}

/** expectValidDocument: valid OpenAPI 3.1, no undocumented route; and the validator refuses a broken copy. */
export async function expectValidDocument(doc: Doc): Promise<void> {
  const result = await new Validator().validate(doc as unknown as Record<string, unknown>);
  expect(result.errors ?? []).toEqual([]);
  expect(result.valid).toBe(true);
  expect(doc.openapi).toBe('3.1.0');
  const ops = Object.entries(doc.paths).flatMap(([p, o]) => Object.entries(o).map(([m, op]) => [`${m} ${p}`, op] as const));
  expect(ops.filter(([, op]) => op['x-edgelite-undocumented']).map(([k]) => k)).toEqual([]);
  const broken = JSON.parse(JSON.stringify(doc)) as Doc;
  delete broken.info.title;
  expect((await new Validator().validate(broken as unknown as Record<string, unknown>)).valid).toBe(false);
}

async function call(send: Send, method: string, c: Case): Promise<{ status: number; type: string; text: string }> {
  const headers: Record<string, string> = { ...(c.token ? { authorization: `Bearer ${c.token}` } : {}), ...c.headers };
  let body: string | undefined;
  if (c.body !== undefined) {
    headers['content-type'] = 'application/json';
    // Bigints as bare integer literals, as a client sends int64 values.
    body = JSON.stringify(c.body, (_k, v) => (typeof v === 'bigint' ? `@@${v}@@` : v)).replace(/"@@(-?\d+)@@"/g, '$1');
  }
  const res = await send(c.path, { method, headers, body, redirect: 'manual' });
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
  ajv.addSchema({ $id: 'openapi', $defs: doc.components.schemas });
  return ajv;
}

/**
 * checkRoutes sends every case and validates each answer against `doc`; every documented route must
 * have cases and every case be for a documented route. Cases run in the order given (a database is
 * created before it is dropped). Returns how many answers it checked.
 */
export async function checkRoutes(send: Send, doc: Doc, cases: Record<string, Case[]>): Promise<number> {
  const ajv = validatorFor(doc);
  let checked = 0;
  expect(Object.keys(cases).sort()).toEqual(documented(doc));
  for (const [key, list] of Object.entries(cases)) {
    const [method, path] = key.split(' ') as [string, string];
    const op = doc.paths[path]![method.toLowerCase()]!;
    for (const c of list) {
      const r = await call(send, method, c);
      const where = `${key} as ${c.path} (${c.token === undefined ? 'no token' : 'token'}): ${r.text.slice(0, 300)}`;
      expect([c.status].flat(), where).toContain(r.status);
      const answer = op.responses[String(r.status)] ?? op.responses.default;
      expect(answer, `${where}: status ${r.status} not in the document`).toBeDefined();
      const json = answer!.content?.['application/json'];
      if (r.status >= 400 || json) {
        expect(r.type, where).toMatch(/^application\/json/);
        const schema = JSON.parse(JSON.stringify(json!.schema).replaceAll('"#/components/schemas/', '"openapi#/$defs/'));
        const validate = ajv.compile(schema);
        const valid = validate(JSON.parse(r.text));
        expect(valid ? [] : validate.errors, where).toEqual([]);
      } else if (answer!.content) {
        const types = Object.keys(answer!.content);
        expect(types.some((type) => r.type.startsWith(type)), `${where}: ${r.type} not in ${types.join(', ')}`).toBe(true);
      }
      checked++;
    }
  }
  return checked;
}
