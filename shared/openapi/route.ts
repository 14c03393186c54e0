/**
 * mountOpenApi adds `GET /v1/openapi.json` (read right, README.md#http-api) to an app: the OpenAPI 3.1
 * document of every route the app serves (shared/openapi/document.ts), built on the first request,
 * once every route is mounted, and kept. Worker-safe.
 */
import type { Env, Hono, MiddlewareHandler } from 'hono';
import { openApiDocument, type RouteDocs } from './document.ts';

/** OPENAPI_PATH is where each server serves its contract. */
export const OPENAPI_PATH = '/v1/openapi.json';

export interface MountOpenApiOptions<E extends Env> {
  /** The read-right middleware (requireRight(auth, 'read'), or the Worker's, tagged the same way). */
  read: MiddlewareHandler<E>;
  role: 'primary' | 'replica' | 'Worker replica';
  docs: RouteDocs;
}

export function mountOpenApi<E extends Env>(app: Hono<E>, o: MountOpenApiOptions<E>): void {
  let text: string | null = null;
  app.get(OPENAPI_PATH, o.read, () => {
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
