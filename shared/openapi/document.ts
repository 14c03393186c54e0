/**
 * openApiDocument builds the OpenAPI 3.1 document of one app (README.md#http-api) from what the app
 * really serves: its route list (hono's `app.routes`, middleware entries skipped, `:name` written
 * `{name}`), the right each route's auth middleware demands (tagged by requireRight, shared/http.ts),
 * and per route its doc (shared/openapi/routes.ts): summary, the request body's zod schema (the one
 * validation uses, shared/openapi/requests.ts) and the answers' schemas. Every error answer references
 * the one `Error` schema. A served route with no doc is still listed, marked
 * `x-edgelite-undocumented` (the contract test refuses any). Generated with @hono/zod-openapi's
 * OpenAPI 3.1 generator; Worker-safe.
 */
import { OpenAPIHono, type RouteConfig } from '@hono/zod-openapi';
import type { Env, Hono } from 'hono';
import { z } from 'zod';
import { routeRight, type RouteRight } from '../http.ts';
import { DATABASE_NAME_PATTERN } from '../types.ts';
import { ErrorSchema } from './responses.ts';

/** ResponseDoc is one answer: JSON with a schema, or another media type (a snapshot, a page). */
export interface ResponseDoc {
  description: string;
  json?: z.ZodType;
  /** Non-JSON media types, each described as text or bytes. */
  media?: Array<{ type: string; binary: boolean }>;
  /** Also offered as msgpack with `Accept: application/msgpack` (query and exec answers). */
  msgpack?: boolean;
  headers?: Record<string, string>;
}

/** RouteDoc is what the document says of one route beyond what the app itself tells. */
export interface RouteDoc {
  summary: string;
  description?: string;
  body?: { schema: z.ZodType; required: boolean; msgpack?: boolean; description?: string };
  query?: z.ZodObject;
  headers?: z.ZodObject;
  responses: Record<string, ResponseDoc>;
}

/** RouteDocs are keyed `METHOD /path/{param}`, as the document lists routes. */
export type RouteDocs = Record<string, RouteDoc>;

export interface DocumentInfo {
  title: string;
  version: string;
  description: string;
}

/** ServedRoute is one route an app serves, as the document names it. */
export interface ServedRoute {
  method: string;
  path: string;
  right: RouteRight | null;
}

/** servedRoutes lists an app's routes (not its middleware), each once, with the right it needs. */
export function servedRoutes<E extends Env>(app: Hono<E>): ServedRoute[] {
  const out = new Map<string, ServedRoute>();
  for (const r of app.routes) {
    if (r.method === 'ALL') continue; // app.use: middleware, not a route
    const path = r.path.replace(/:([A-Za-z_][A-Za-z0-9_]*)(\{[^}]*\})?/g, '{$1}');
    const key = `${r.method} ${path}`;
    const seen = out.get(key) ?? { method: r.method, path, right: null };
    seen.right = seen.right ?? routeRight(r.handler);
    out.set(key, seen);
  }
  return [...out.values()];
}

const BEARER = 'bearer';

/** openApiDocument is the document of `app`'s routes, described by `docs`. */
export function openApiDocument<E extends Env>(app: Hono<E>, docs: RouteDocs, info: DocumentInfo): Record<string, unknown> {
  const gen = new OpenAPIHono();
  const registry = gen.openAPIRegistry;
  const errorRef = registry.register('Error', ErrorSchema);
  registry.registerComponent('securitySchemes', BEARER, {
    type: 'http',
    scheme: 'bearer',
    description: 'A token from EDGELITE_TOKEN or EDGELITE_TOKENS (docs/ARCHITECTURE.md#security); each route names the right it needs (read, write, replicate, admin; admin holds them all). With no token configured (loopback only), auth is off.',
  });
  const error = (description: string) => ({ description, content: { 'application/json': { schema: errorRef } } });
  for (const route of servedRoutes(app)) {
    const doc = docs[`${route.method} ${route.path}`];
    const config: RouteConfig = {
      method: route.method.toLowerCase() as RouteConfig['method'],
      path: route.path,
      summary: doc?.summary ?? `${route.method} ${route.path}`,
      ...(doc?.description ? { description: doc.description } : {}),
      security: route.right ? [{ [BEARER]: [route.right.right] }] : [],
      ...(route.right ? { 'x-edgelite-right': route.right.right, ...(route.right.every ? { 'x-edgelite-unscoped': true } : {}) } : {}),
      ...(doc ? {} : { 'x-edgelite-undocumented': true }),
      request: request(route.path, doc),
      responses: {
        ...Object.fromEntries(Object.entries(doc?.responses ?? {}).map(([status, r]) => [status, response(r)])),
        ...(route.right ? { 401: error('UNAUTHORIZED: no or an unknown bearer token.'), 403: error(`FORBIDDEN: the token lacks the "${route.right.right}" right${route.right.every ? ', or is tenant-scoped' : ', or does not reach this database'}.`) } : {}),
        default: error('An error: `{"error": {"code", "message"}}`; the status follows the code (shared/errors.ts).'),
      },
    };
    registry.registerPath(config);
  }
  return gen.getOpenAPI31Document({ openapi: '3.1.0', info: { ...info } }) as unknown as Record<string, unknown>;
}

function request(path: string, doc: RouteDoc | undefined): RouteConfig['request'] {
  const names = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!);
  const params = names.length > 0 ? z.object(Object.fromEntries(names.map((n) => [n, n === 'name' ? z.string().meta({ pattern: DATABASE_NAME_PATTERN.source, description: 'The database.' }) : z.string()]))) : undefined;
  const body = doc?.body;
  return {
    ...(params ? { params } : {}),
    ...(doc?.query ? { query: doc.query } : {}),
    ...(doc?.headers ? { headers: doc.headers } : {}),
    ...(body
      ? {
          body: {
            required: body.required,
            ...(body.description ? { description: body.description } : {}),
            content: { 'application/json': { schema: body.schema }, ...(body.msgpack ? { 'application/msgpack': { schema: body.schema } } : {}) },
          },
        }
      : {}),
  };
}

function response(r: ResponseDoc): { description: string; content?: Record<string, { schema: unknown }>; headers?: Record<string, unknown> } {
  const content: Record<string, { schema: unknown }> = {};
  if (r.json) content['application/json'] = { schema: r.json };
  if (r.json && r.msgpack) content['application/msgpack'] = { schema: r.json };
  for (const m of r.media ?? []) content[m.type] = { schema: m.binary ? { type: 'string', contentMediaType: m.type } : { type: 'string' } };
  const headers = r.headers ? Object.fromEntries(Object.entries(r.headers).map(([h, d]) => [h, { description: d, schema: { type: 'string' } }])) : undefined;
  return { description: r.description, ...(Object.keys(content).length > 0 ? { content } : {}), ...(headers ? { headers } : {}) };
}
