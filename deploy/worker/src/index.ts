/**
 * The edgelite Worker replica: the same HTTP API as the Node replica (README.md#http-api), served at the edge.
 * This entry authenticates (bearer tokens from the EDGELITE_TOKEN / EDGELITE_TOKENS secrets, the same
 * rights as everywhere), validates the database name, and hands the request to the database's Durable
 * Object (replica-do.ts), which holds the pages, follows the primary and runs the SQL. Database creation
 * goes straight to the primary. A cron trigger wakes the objects of the DATABASES list so they bootstrap
 * and keep following before their first request.
 */
import { Hono, type Context } from 'hono';
import { EdgeliteError, errorFromBody } from '../../../shared/errors.ts';
import { stringifyRequestJson } from '../../../shared/exact-json.ts';
import { corsMiddleware, errorResponse, jsonResponse, readJsonBody, requestGrant, requireRight, tagRight } from '../../../shared/http.ts';
import { mountOpenApi } from '../../../shared/openapi/route.ts';
import { ForkBodySchema } from '../../../shared/openapi/requests.ts';
import { WORKER_ROUTE_DOCS } from '../../../shared/openapi/routes.ts';
import { validateBody } from '../../../shared/openapi/validate.ts';
import { validateDatabaseName } from '../../../shared/types.ts';
import { parseWorkerConfig, type Env, type WorkerConfig } from './config.ts';
import { clientAuth, DB_HEADER, primaryClientOf } from './replica-do.ts';

export { ReplicaObject } from './replica-do.ts';

/** Parsed once per env object (once per isolate in practice); a bad environment is kept as its error. */
const configs = new WeakMap<Env, WorkerConfig | EdgeliteError>();

/**
 * configOf is the Worker's configuration, or throws its MISCONFIGURED error (503, naming the variable):
 * a Worker cannot fail at start, so every request, /v1/health included, says what is wrong.
 */
function configOf(env: Env): WorkerConfig {
  let config = configs.get(env);
  if (!config) {
    try {
      config = parseWorkerConfig(env);
    } catch (err) {
      config = err instanceof EdgeliteError ? err : new EdgeliteError('MISCONFIGURED', String(err), { cause: err });
    }
    configs.set(env, config);
  }
  if (config instanceof EdgeliteError) throw config;
  return config;
}

type App = { Bindings: Env; Variables: { config: WorkerConfig } };

const app = new Hono<App>();

app.onError((err) => errorResponse(err, (e) => console.log(JSON.stringify({ role: 'worker-replica', ...e }))));
app.notFound((c) => errorResponse(new EdgeliteError('NOT_FOUND', `no route ${c.req.method} ${c.req.path}`)));
app.use('*', async (c, next) => {
  c.set('config', configOf(c.env));
  await next();
  // A Durable Object's response has immutable headers: copy it so the CORS middleware can add its own.
  c.res = new Response(c.res.body, c.res);
});
app.use('*', corsMiddleware());

/** right returns the auth middleware for `r`, with the configured grants (tagged for GET /v1/openapi.json). */
function right(r: 'read' | 'write' | 'admin') {
  return tagRight((c: Context<App>, next: () => Promise<void>) => requireRight(c.get('config').auth, r)(c, next), { right: r, every: false });
}

app.get('/v1/health', (c) => {
  const { databases } = c.get('config');
  return jsonResponse({ status: 'ok', role: 'replica', runtime: 'workerd', databases });
});

app.get('/v1/db', right('read'), async (c) => {
  const { databases, auth } = c.get('config');
  if (databases === '*') return jsonResponse({ databases: [], note: 'DATABASES is "*": objects exist per database asked for; list them on the primary' });
  // A tenant-scoped token lists only its databases (README.md#tenant-scoped-tokens).
  const grant = requestGrant(auth, c, 'read');
  const described = await Promise.all(databases.filter(grant.allows).map(async (name) => (await toObject(c, name, 'describe', new Request('https://replica/describe'))).json()));
  return jsonResponse({ databases: described });
});

app.get('/v1/db/:name', right('read'), (c) => toObject(c, c.req.param('name'), 'describe', new Request('https://replica/describe')));

app.put('/v1/db/:name', right('write'), async (c) => {
  const config = c.get('config');
  const name = validateDatabaseName(c.req.param('name'));
  // A fork's body ({"from", "txid"}) is checked here, then goes on as it came (the primary checks it again).
  const hasBody = Number(c.req.header('content-length') ?? '0') > 0 || c.req.header('transfer-encoding') !== undefined;
  const parsed = hasBody ? await readJsonBody(c, config.maxBodyBytes) : undefined;
  if (parsed !== undefined) validateBody(ForkBodySchema, parsed, '');
  const body = parsed === undefined ? undefined : stringifyRequestJson(parsed);
  const r = await primaryClientOf(config).forward('PUT', `/v1/db/${encodeURIComponent(name)}`, body, clientAuth(c.req.raw));
  if (r.status >= 400) throw errorFromBody(r.body, r.status);
  return jsonResponse(r.body, r.status, { 'Edgelite-Served-By': 'primary' });
});

// A drop goes to the primary; the stream's db-dropped then clears the object's storage (README.md#http-api).
app.delete('/v1/db/:name', right('admin'), async (c) => {
  const name = validateDatabaseName(c.req.param('name'));
  const r = await primaryClientOf(c.get('config')).forward('DELETE', `/v1/db/${encodeURIComponent(name)}`, undefined, clientAuth(c.req.raw));
  if (r.status >= 400) throw errorFromBody(r.body, r.status);
  return jsonResponse(r.body, r.status, { 'Edgelite-Served-By': 'primary' });
});

app.post('/v1/db/:name/query', right('read'), (c) => toObject(c, c.req.param('name'), 'query', c.req.raw));
app.post('/v1/db/:name/exec', right('write'), (c) => toObject(c, c.req.param('name'), 'exec', c.req.raw));
app.post('/v1/db/:name/debug/repeat', right('admin'), (c) => toObject(c, c.req.param('name'), 'debug/repeat', c.req.raw));
mountOpenApi(app, { read: right('read'), role: 'Worker replica', docs: WORKER_ROUTE_DOCS });

/** toObject sends `request` to the database's Durable Object as `/<op>`, with the database name. */
function toObject(c: Context<App>, rawName: string | undefined, op: string, request: Request): Promise<Response> {
  const name = validateDatabaseName(rawName);
  const { databases } = c.get('config');
  if (databases !== '*' && !databases.includes(name)) {
    throw new EdgeliteError('DATABASE_NOT_FOUND', `database ${name} is not replicated by this Worker (DATABASES)`);
  }
  const url = new URL(request.url);
  const forwarded = new Request(`https://replica/${op}${url.search}`, request);
  forwarded.headers.set(DB_HEADER, name);
  const stub = c.env.REPLICA.get(c.env.REPLICA.idFromName(name));
  return stub.fetch(forwarded);
}

export default {
  fetch: app.fetch,
  /** scheduled wakes every listed database's object, which (re)starts its follower and its alarm. */
  async scheduled(_controller: ScheduledController, env: Env, ctx: ExecutionContext): Promise<void> {
    const { databases } = configOf(env);
    if (databases === '*') return;
    for (const name of databases) {
      const request = new Request('https://replica/describe', { headers: { [DB_HEADER]: name } });
      ctx.waitUntil(env.REPLICA.get(env.REPLICA.idFromName(name)).fetch(request));
    }
  },
};
