/**
 * mountOpenApi adds `GET /v1/openapi.json` (read right, README.md#http-api) to an app: the OpenAPI 3.1
 * document of every route the app serves (shared/openapi/document.ts), built on the first request,
 * once every route is mounted, and kept. Worker-safe.
 */
import type { Hono } from 'hono';
import type { AuthConfig } from '../auth.ts';
import { requireRight } from '../http.ts';
import { openApiDocument, type RouteDocs } from './document.ts';

/** OPENAPI_PATH is where each server serves its contract. */
export const OPENAPI_PATH = '/v1/openapi.json';

export interface MountOpenApiOptions {
  auth: AuthConfig;
  role: 'primary' | 'replica';
  docs: RouteDocs;
}

export function mountOpenApi(app: Hono, o: MountOpenApiOptions): void {
  let text: string | null = null;
  app.get(OPENAPI_PATH, requireRight(o.auth, 'read'), () => {
    text ??= JSON.stringify(
      openApiDocument(app, o.docs, {
        title: `edgelite ${o.role}`,
        version: 'v1',
        description: `The HTTP API of an edgelite ${o.role} (README.md#http-api), generated from the routes this server serves and the zod schemas that validate its request bodies. Errors are \`{"error": {"code", "message"}}\` with a stable code.`,
      }),
    );
    return new Response(text, { headers: { 'content-type': 'application/json' } });
  });
}
