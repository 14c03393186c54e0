/**
 * The replica's HTTP API: the same routes as the primary (README.md#http-api). Reads are served from the
 * local file at the requested consistency; writes and database creation are forwarded to the primary,
 * and a forwarded write is answered once this replica has applied it (so the client's next read here
 * sees it), bounded by `writeWaitMs`.
 */
import type { AppExtension } from '../shared/http.ts';
import { Hono, type Context } from 'hono';
import { getCookie } from 'hono/cookie';
import type { AuthConfig } from '../shared/auth.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { stringifyRequestJson } from '../shared/exact-json.ts';
import { type Answer, answerResponse, closeAfterRefusedBody, corsMiddleware, errorResponse, jsonAnswer, jsonResponse, readJsonBody, requestGrant, requireRight, resultAnswer } from '../shared/http.ts';
import type { QueryPool } from '../shared/node/query-pool.ts';
import { snapshotAnswer } from '../shared/node/snapshot-view.ts';
import { PROMETHEUS_CONTENT_TYPE } from '../shared/prometheus.ts';
import { parseStatementsBody, POSITION_HEADERS, positionHeaders, type Statement } from '../shared/protocol.ts';
import { simpleStatement } from '../shared/simple-statement.ts';
import { TOKEN_COOKIE, TOKEN_HEADER } from '../shared/token.ts';
import { formatChecksum, validateDatabaseName } from '../shared/types.ts';
import { CONSISTENCY_HEADER, parseConsistency, satisfy, type Consistency } from '../shared/consistency.ts';
import { CONTACT_GRACE_MS, type ReplicaDatabase } from './database.ts';
import type { Follower } from './follower.ts';
import { forwardExec, newForwardCounts } from './forward.ts';
import type { LazyDatabases, Release } from './lazy.ts';
import { renderReplicaMetrics } from './metrics.ts';
import type { PrimaryClient } from '../shared/primary-client.ts';
import type { ReplicaStore } from './store.ts';
import { lagSampleOf, mountStatusUi, publicUrl, type StatusUi } from '../shared/ui/routes.ts';
import { mountOpenApi } from '../shared/openapi/route.ts';
import { REPLICA_ROUTE_DOCS } from '../shared/openapi/routes.ts';
import { ForkBodySchema } from '../shared/openapi/requests.ts';
import { validateBody } from '../shared/openapi/validate.ts';

export interface ReplicaAppOptions {
  /** Added by a caller that runs this replica as part of a failover node (bin/ha.ts): more routes and metric lines. */
  extend?: AppExtension;
  store: ReplicaStore;
  follower: Follower | null;
  /** null: a replica fed from a bucket alone; writes, database creation and strong reads get NO_PRIMARY. */
  primary: PrimaryClient | null;
  auth: AuthConfig;
  maxBodyBytes: number;
  /** How long a read waits for a token / strong / bounded level before REPLICA_BEHIND. */
  readWaitMs: number;
  /** How long a forwarded write waits to be applied here before answering anyway. */
  writeWaitMs: number;
  /** When a read cannot be served in time: fail (REPLICA_BEHIND) or send it to the primary. */
  onBehind: 'error' | 'primary';
  /** Health fails when lag passes this (ms). */
  maxHealthyLagMs: number;
  /** Lazy mode: databases fetched on first use and evicted under an LRU limit (replica/lazy.ts). */
  lazy?: LazyDatabases | null;
  /** The store's query pool, if any: its figures go into /metrics. */
  queryPool?: QueryPool | null;
  logger: (e: Record<string, unknown>) => void;
  /** The status page (README.md#status-page): its sampler (stopped by the server on close) and assets; absent: no /ui. */
  ui?: StatusUi | null;
}

export function createReplicaApp(o: ReplicaAppOptions): Hono {
  const { store, auth } = o;
  const primary = (): PrimaryClient => primaryOf(o.primary);
  const app = new Hono();
  const read = requireRight(auth, 'read');
  const write = requireRight(auth, 'write');
  const forwarded = newForwardCounts();
  const lazy = o.lazy ?? null;
  /** using runs a request's work with its database held (lazy mode: fetched if absent, not evicted meanwhile). */
  const using = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    const release: Release | null = lazy ? await lazy.acquire(name) : null;
    try {
      return await work();
    } finally {
      release?.();
    }
  };

  app.onError((err) => errorResponse(err, o.logger));
  app.notFound((c) => errorResponse(new EdgeliteError('NOT_FOUND', `no route ${c.req.method} ${c.req.path}`)));
  app.use('*', closeAfterRefusedBody(o.maxBodyBytes), corsMiddleware());

  app.get('/v1/health', () => {
    // A lazy replica's database still bootstrapping for its first request is not lagging: it is arriving.
    const lagging = store.names().filter((n) => store.get(n)!.lagMs > o.maxHealthyLagMs && !(lazy && !store.get(n)!.position));
    // Heartbeats come every second: silence shorter than CONTACT_GRACE_MS is normal, whatever the limit.
    const contact = o.follower ? o.follower.lastContactMs : 0;
    const ok = lagging.length === 0 && contact <= Math.max(o.maxHealthyLagMs, CONTACT_GRACE_MS);
    const fed = o.follower?.bucket ? { source: o.follower.bucket.feeding } : {};
    return jsonResponse(
      { status: ok ? 'ok' : 'lagging', role: 'replica', databases: store.names().length, lagging, lastContactMs: finite(contact), stream: o.follower?.state ?? 'embedded', ...fed, ...leaseView() },
      ok ? 200 : 503,
    );
  });

  // A tenant-scoped token sees its own databases only: /metrics (every database) needs an unscoped one.
  app.get('/metrics', requireRight(auth, 'read', { every: true }), () => {
    const text = renderReplicaMetrics({ store, follower: o.follower, forwarded, queryPool: o.queryPool ?? null, lazy, ranges: o.primary?.rangeStats ?? null, lease: o.primary?.locator ? { staleRefusals: o.primary.staleRefusals, readFailures: o.primary.locator.failures } : null }) + (o.extend?.metrics?.() ?? '');
    return new Response(text, { headers: { 'content-type': PROMETHEUS_CONTENT_TYPE } });
  });

  /** leaseView: under the lease (README.md#high-availability), the holder followed now and its epoch. */
  const leaseView = (): Record<string, unknown> => {
    const locator = o.primary?.locator;
    return locator ? { primary: locator.current?.url ?? null, epoch: locator.current?.epoch ?? null } : {};
  };
  const described = (db: ReplicaDatabase): Record<string, unknown> => {
    const feed = o.follower?.feed;
    return { ...(feed ? { ...describe(db), bucket: feed.status(db.name) } : describe(db)), ...leaseView() };
  };
  app.get('/v1/db', read, (c) => {
    const grant = requestGrant(auth, c, 'read');
    return jsonResponse({ databases: store.names().filter(grant.allows).map((n) => described(store.get(n)!)) });
  });
  app.get('/v1/db/:name', read, async (c) => {
    const name = validateDatabaseName(c.req.param('name'));
    if (!lazy) return jsonResponse(described(store.require(name)));
    return using(name, async () => {
      await waitForDatabase(store, name, o.readWaitMs);
      return jsonResponse(described(store.require(name)));
    });
  });

  app.put('/v1/db/:name', write, async (c) => {
    const name = validateDatabaseName(c.req.param('name'));
    // A fork's body ({"from", "txid"}) is checked here, then goes on as it came (the primary checks it again).
    const parsed = hasBody(c) ? await readJsonBody(c, o.maxBodyBytes) : undefined;
    if (parsed !== undefined) validateBody(ForkBodySchema, parsed, '');
    const body = parsed === undefined ? undefined : stringifyRequestJson(parsed);
    const r = await primary().forward('PUT', `/v1/db/${name}`, body, passAuth(c));
    return jsonResponse(r.body, r.status);
  });

  app.delete('/v1/db/:name', requireRight(auth, 'admin'), async (c) => {
    const name = validateDatabaseName(c.req.param('name'));
    const r = await primary().forward('DELETE', `/v1/db/${name}`, undefined, passAuth(c));
    // Answered once the stream's db-dropped removed the local copy here too (bounded like a forwarded write).
    if (r.status === 200) await store.until(() => store.get(name) === undefined, o.writeWaitMs);
    return jsonResponse(r.body, r.status);
  });

  const runQuery = createReplicaQuery(o, (c: Context) => readJsonBody(c, o.maxBodyBytes));
  app.post('/v1/db/:name/query', read, async (c) =>
    answerResponse(
      await runQuery({
        name: c.req.param('name'),
        source: c,
        consistency: c.req.header(CONSISTENCY_HEADER) ?? c.req.query('consistency'),
        token: tokenOf(c),
        accept: c.req.header('accept'),
        authorization: c.req.header('authorization'),
      }),
    ),
  );
  // The local copy as a snapshot, at this replica's position (README.md#http-api): what `edgelite export`
  // reads through a replica. The read right, as for a query: it gives nothing a SELECT does not.
  // Consistency as for a read (a token waits until applied here); a lazy database stays held until
  // the body is read.
  app.get('/v1/db/:name/snapshot', read, async (c) => {
    const name = validateDatabaseName(c.req.param('name'));
    const consistency = parseConsistency(name, c.req.header(CONSISTENCY_HEADER) ?? c.req.query('consistency'), tokenOf(c));
    const release: Release | null = lazy ? await lazy.acquire(name) : null;
    try {
      const db = consistency.level !== 'eventual' || lazy ? await waitForDatabase(store, name, o.readWaitMs) : store.get(name);
      if (!db) throw new EdgeliteError('DATABASE_NOT_FOUND', `database ${name} is not replicated here`);
      await satisfy(db, consistency, o.readWaitMs, () => primary().position(name));
      return snapshotAnswer(c, name, db.beginSnapshot(release ?? undefined));
    } catch (err) {
      release?.();
      throw err;
    }
  });

  app.post('/v1/db/:name/exec', write, async (c) => {
    const name = validateDatabaseName(c.req.param('name'));
    const body = await readJsonBody(c, o.maxBodyBytes);
    parseStatementsBody(body);
    const w = await using(name, () => forwardExec(primary(), store, name, stringifyRequestJson(body), o.writeWaitMs, passAuth(c), forwarded));
    const headers: Record<string, string> = { 'Edgelite-Served-By': 'primary', 'Edgelite-Applied': String(w.applied) };
    if (w.token) headers[TOKEN_HEADER] = w.token;
    return jsonResponse(w.body, 200, headers);
  });

  if (o.ui) {
    const follower = o.follower;
    const node = () => ({ ...leaseView(), primary: publicUrl(o.primary?.url), stream: follower?.state ?? 'embedded', lastContactMs: follower ? finite(follower.lastContactMs) : null, ...(follower?.bucket ? { source: follower.bucket.feeding } : {}) });
    const sample = () => store.names().flatMap((n) => { const db = store.get(n); return db ? [lagSampleOf(describe(db))] : []; });
    mountStatusUi(app, o.ui, { auth, role: 'replica', sample, node, logger: o.logger });
  }
  o.extend?.routes?.(app);
  mountOpenApi(app, { read, role: 'replica', docs: { ...REPLICA_ROUTE_DOCS, ...o.extend?.docs } });
  return app;
}

/** QueryRequest is what the read route takes from a request, through hono or straight from Node (replica/query-fast-path.ts). */
export interface QueryRequest<S> {
  /** The database name from the path, not yet validated. */
  name: string;
  /** What createReplicaQuery's `readBody` reads the body from (the hono Context, Node's request). */
  source: S;
  /** The Edgelite-Consistency header, or the `consistency` query parameter. */
  consistency: string | undefined;
  /** The Edgelite-Token header, or the token cookie. */
  token: string | undefined;
  accept: string | undefined;
  authorization: string | undefined;
}

/** MAX_VALID_NAMES bounds the database names the read route remembers as valid. */
const MAX_VALID_NAMES = 1024;

/** QueryOptions: what the read route needs of the replica app's options. */
export type QueryOptions = Pick<ReplicaAppOptions, 'store' | 'primary' | 'readWaitMs' | 'onBehind' | 'lazy'>;

/**
 * createReplicaQuery is `POST /v1/db/{name}/query` after auth (README.md#http-api): the name checked,
 * the body read (`readBody`: readJsonBody's bounds and errors) and validated, the read served at its consistency, answered as JSON or msgpack. The
 * hono route and the Node fast path (replica/query-fast-path.ts) both run it, so they answer alike.
 */
export function createReplicaQuery<S>(o: QueryOptions, readBody: (source: S) => Promise<unknown>): (q: QueryRequest<S>) => Promise<Answer> {
  const { store } = o;
  const lazy = o.lazy ?? null;
  const primary = (): PrimaryClient => primaryOf(o.primary);
  /** Names validateDatabaseName accepted (it is pure): a hot database's name is checked once. */
  const valid = new Set<string>();
  const validName = (raw: string): string => {
    if (valid.has(raw)) return raw;
    const name = validateDatabaseName(raw);
    if (valid.size >= MAX_VALID_NAMES) valid.clear();
    valid.add(name);
    return name;
  };
  return async (q) => {
    const name = validName(q.name);
    const body = await readBody(q.source);
    const statements = simpleStatement(body) ?? parseStatementsBody(body);
    const consistency = parseConsistency(name, q.consistency, q.token);
    if (!lazy) return query(q, name, body, statements, consistency);
    const release: Release = await lazy.acquire(name);
    try {
      return await query(q, name, body, statements, consistency);
    } finally {
      release();
    }
  };

  async function query(q: QueryRequest<S>, name: string, body: unknown, statements: Statement[], consistency: Consistency): Promise<Answer> {
    // A read that names a position (token, strong) may arrive before this replica has the database:
    // wait for it like for any txid, bounded. So does a lazy replica's first read of a database, unless
    // the primary may serve it meanwhile.
    const wait = consistency.level !== 'eventual' || (lazy !== null && o.onBehind === 'error');
    const db = wait ? await waitForDatabase(store, name, o.readWaitMs) : store.get(name);
    try {
      if (!db?.position) throw new EdgeliteError('REPLICA_BEHIND', `database ${name} is not replicated here yet`);
      // An eventual read has nothing to wait for (satisfy returns at once): no await for most reads.
      if (consistency.level !== 'eventual') await satisfy(db, consistency, o.readWaitMs, () => primary().position(name));
    } catch (err) {
      if (o.onBehind === 'primary' && err instanceof EdgeliteError && err.code === 'REPLICA_BEHIND') {
        const r = await primary().forward('POST', `/v1/db/${name}/query`, stringifyRequestJson(body), passAuthOf(q.authorization));
        const headers: Record<string, string> = { 'Edgelite-Served-By': 'primary' };
        for (const h of [POSITION_HEADERS.generation, POSITION_HEADERS.txid, POSITION_HEADERS.checksum, POSITION_HEADERS.databaseId]) {
          const v = r.headers[h.toLowerCase()];
          if (v) headers[h.toLowerCase()] = v;
        }
        return jsonAnswer(r.body, r.status, headers);
      }
      if (!db && err instanceof EdgeliteError && err.code === 'REPLICA_BEHIND') {
        throw new EdgeliteError('DATABASE_NOT_FOUND', `database ${name} is not replicated here`);
      }
      throw err;
    }
    const results = await db.query(statements);
    return resultAnswer(q.accept, { results }, 200, positionHeaders(db.position, db.databaseId, 'replica'));
  }
}

export function describe(db: ReplicaDatabase): Record<string, unknown> {
  const p = db.position;
  return {
    name: db.name,
    role: 'replica',
    databaseId: db.databaseId,
    generation: p?.generation ?? null,
    txid: p?.txid ?? null,
    checksum: p ? formatChecksum(p.checksum) : null,
    lagMs: finite(db.lagMs),
    lagTxids: db.lagTxids,
    primaryTxid: db.primary?.txid ?? null,
    pageCount: db.pageCount,
    ready: db.ready,
    needsSnapshot: db.needsSnapshot,
  };
}

/** waitForDatabase waits (bounded) for `name` to have a position: opened and bootstrapped. */
async function waitForDatabase(store: ReplicaStore, name: string, timeoutMs: number): Promise<ReplicaDatabase | undefined> {
  await store.until(() => !!store.get(name)?.position, timeoutMs);
  return store.get(name);
}

function finite(n: number): number | null {
  return Number.isFinite(n) ? Math.round(n) : null;
}

function tokenOf(c: Context): string | undefined {
  return c.req.header(TOKEN_HEADER) ?? getCookie(c, TOKEN_COOKIE);
}

/** hasBody says whether a request carries a body. */
function hasBody(c: Context): boolean {
  return Number(c.req.header('content-length') ?? '0') > 0 || c.req.header('transfer-encoding') !== undefined;
}

/** passAuth is the client's own Authorization header, forwarded unchanged (the rule in shared/primary-client.ts). */
function passAuth(c: Context): Record<string, string> {
  return passAuthOf(c.req.header('authorization'));
}

function passAuthOf(a: string | undefined): Record<string, string> {
  return a ? { authorization: a } : {};
}

/** primaryOf is the primary to send a request to; NO_PRIMARY for a replica fed from a bucket alone. */
function primaryOf(p: PrimaryClient | null): PrimaryClient {
  if (p) return p;
  throw new EdgeliteError('NO_PRIMARY', 'this replica follows a bucket and has no primary to send this to (start it with --primary)', { details: { outcome: 'not-applied' } });
}
