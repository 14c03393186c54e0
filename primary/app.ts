/**
 * The primary's HTTP API (README.md#http-api), as a hono app so tests can call `app.request()` without a
 * socket. Handlers are thin: parse, authorize, call the store, render.
 */
import { Hono, type Context } from 'hono';
import { getCookie } from 'hono/cookie';
import { type AccessGrant, assertDatabase, type AuthConfig } from '../shared/auth.ts';
import { isPattern } from '../shared/db-pattern.ts';
import { tokenFor, tokenLost, tokenLostError } from '../shared/consistency.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { type AppExtension, closeAfterRefusedBody, corsMiddleware, errorResponse, jsonResponse, readJsonBody, requestGrant, requireRight, resultResponse } from '../shared/http.ts';
import type { QueryPool } from '../shared/node/query-pool.ts';
import { PROMETHEUS_CONTENT_TYPE } from '../shared/prometheus.ts';
import { parseStatementsBody, parseStreamRequest, positionHeaders, STREAM_PATH, type StreamRequest } from '../shared/protocol.ts';
import { encodeToken, TOKEN_COOKIE, TOKEN_HEADER } from '../shared/token.ts';
import { formatChecksum, validateDatabaseName } from '../shared/types.ts';
import type { BackupRunner } from './backup.ts';
import { changesResponse, DEFAULT_RANGE_LAYOUT, rangesBehind, type RangeLayout } from './changes.ts';
import { CHANGES_NO_STORE, FRESH_PARAM, parseChangesPathParams } from '../shared/changes.ts';
import { waitBackedUp } from './backup-ack.ts';
import { assertWritable, EPOCH_HEADER, notPrimary, type PrimaryHa } from './ha.ts';
import type { PrimaryDatabase } from './database.ts';
import { renderMetrics } from './metrics.ts';
import { parseForkBody } from './fork.ts';
import { imageResponse, snapshotResponse } from './snapshot.ts';
import { parseAppliedReport, type SyncReplicas } from './sync.ts';
import type { DbInfo, PrimaryStore } from './store.ts';
import { resumeProblem, Subscription } from './stream.ts';
import { mountStatusUi, type StatusUi } from '../shared/ui/routes.ts';
import type { LagSample } from '../shared/ui/samples.ts';
import { mountOpenApi } from '../shared/openapi/route.ts';
import { PRIMARY_ROUTE_DOCS } from '../shared/openapi/routes.ts';

export interface PrimaryAppOptions {
  store: PrimaryStore;
  auth: AuthConfig;
  maxBodyBytes: number;
  /** The store's query pool, if any: its figures go into /metrics. */
  queryPool?: QueryPool | null;
  /** The continuous backup, if on: its figures go into GET /v1/db/{name} and /metrics. */
  backup?: BackupRunner | null;
  /** How catch-up ranges are cut (primary/changes.ts); the defaults unless a test needs small ones. */
  ranges?: RangeLayout;
  /** `--backup-ack`: writes are answered once their change set is in the bucket (primary/backup-ack.ts). */
  backupAck?: { timeoutMs: number } | null;
  /** Under the failover lease (primary/ha.ts): writes only while it is held; answers carry its epoch. */
  ha?: PrimaryHa | null;
  /** Added by a caller that runs this primary as part of a failover node (bin/ha.ts): more routes and metric lines. */
  extend?: AppExtension;
  /** `--sync-replicas` (primary/sync.ts): candidates' applied reports, and the wait for the sync set; null: no route, no wait. */
  sync?: SyncReplicas | null;
  logger: (e: Record<string, unknown>) => void;
  /** The status page (README.md#status-page): its sampler (stopped by the server on close) and assets; absent: no /ui. */
  ui?: StatusUi | null;
}

export function createPrimaryApp(o: PrimaryAppOptions): Hono {
  const { store, auth } = o;
  const backup = o.backup ?? null;
  const sync = o.sync ?? null;
  const describe = (db: DbInfo): Record<string, unknown> => describeDatabase(db, backup);
  /** Catch-up range answers by HTTP status, for /metrics: a cache in front shows as few 200s for many replicas. */
  const rangeAnswers = new Map<number, number>();
  const app = new Hono();
  const read = requireRight(auth, 'read');
  const write = requireRight(auth, 'write');
  const replicate = requireRight(auth, 'replicate');

  app.onError((err) => errorResponse(err, o.logger));
  app.notFound((c) => errorResponse(new EdgeliteError('NOT_FOUND', `no route ${c.req.method} ${c.req.path}`)));
  app.use('*', closeAfterRefusedBody(o.maxBodyBytes), corsMiddleware());
  // Every answer under the lease says its epoch (snapshots, errors): a replica refuses an older one.
  // Set after the handler, so the snapshot route, whose head may go out before (straight to Node's
  // socket), takes the same headers from here up front.
  const ha = o.ha ?? null;
  const afterHandler = (): Record<string, string> => (ha ? { [EPOCH_HEADER]: String(ha.epoch) } : {});
  if (ha) {
    app.use('*', async (c, next) => {
      await next();
      for (const [k, v] of Object.entries(afterHandler())) c.res.headers.set(k, v);
    });
  }

  app.get('/v1/health', () => jsonResponse({ status: 'ok', role: 'primary', databases: store.names().length }));
  // A tenant-scoped token sees its own databases only: /metrics (every database) needs an unscoped one.
  app.get('/metrics', requireRight(auth, 'read', { every: true }), () => new Response(renderMetrics(store, o.queryPool ?? null, backup, rangeAnswers, sync) + (o.extend?.metrics?.() ?? ''), { headers: { 'content-type': PROMETHEUS_CONTENT_TYPE } }));

  app.get('/v1/db', read, (c) => {
    const grant = requestGrant(auth, c, 'read');
    return jsonResponse({ databases: store.names().filter(grant.allows).map((n) => describe(store.requireInfo(n))) });
  });

  app.get('/v1/db/:name', read, (c) => jsonResponse(describe(store.requireInfo(c.req.param('name')))));

  const admin = requireRight(auth, 'admin');
  app.delete('/v1/db/:name', admin, async (c) => {
    const name = validateDatabaseName(c.req.param('name'));
    assertWritable(o.ha, 'not-applied');
    await store.drop(name);
    return jsonResponse({ name, dropped: true });
  });

  app.put('/v1/db/:name', write, async (c) => {
    const name = validateDatabaseName(c.req.param('name'));
    const fork = hasBody(c) ? parseForkBody(await readJsonBody(c, o.maxBodyBytes)) : null;
    // A fork reads its source: a tenant-scoped token must be allowed the source too (README.md#tenant-scoped-tokens).
    if (fork) assertDatabase(requestGrant(auth, c, 'read'), fork.from);
    assertWritable(o.ha, 'not-applied');
    const forked = fork ? await store.fork(name, fork.from, fork.txid) : null;
    const { db, created } = forked ? { db: forked.db, created: true } : store.create(name);
    // What the fork holds: the source's position it was built from (README.md#http-api).
    const forkedFrom = forked && fork ? { forkedFrom: { name: fork.from, txid: forked.source.txid, checksum: formatChecksum(forked.source.checksum) } } : {};
    if (backup && o.backupAck) {
      const pending = await waitBackedUp(backup, o.backupAck.timeoutMs, db.name, db.position, null, c.req.raw.signal);
      if (pending) return errorResponse(pending);
    }
    const unsynced = sync ? await sync.wait(db.name, db.position, null, c.req.raw.signal) : null;
    if (unsynced) {
      assertWritable(o.ha, 'unknown');
      return errorResponse(unsynced);
    }
    return jsonResponse({ ...describe(db), created, ...forkedFrom }, created ? 201 : 200);
  });

  app.post('/v1/db/:name/query', read, async (c) => {
    const db = store.require(c.req.param('name'));
    checkToken(c, db, o.ha ?? null);
    const statements = parseStatementsBody(await readJsonBody(c, o.maxBodyBytes));
    const results = await db.query(statements);
    return resultResponse(c.req.header('accept'), { results }, 200, positionHeaders(db.position, db.databaseId, 'primary'));
  });

  app.post('/v1/db/:name/exec', write, async (c) => {
    const name = c.req.param('name');
    const db = store.require(name);
    const statements = parseStatementsBody(await readJsonBody(c, o.maxBodyBytes));
    assertWritable(o.ha, 'not-applied');
    const { results, position } = await db.write(statements);
    await db.whenDurable();
    const token = encodeToken({ db: name, databaseId: db.databaseId, generation: position.generation, txid: position.txid });
    const headers = { [TOKEN_HEADER]: token, ...positionHeaders(position, db.databaseId, 'primary'), ...(o.ha ? { [EPOCH_HEADER]: String(o.ha.epoch) } : {}) };
    if (backup && o.backupAck) {
      const pending = await waitBackedUp(backup, o.backupAck.timeoutMs, name, position, token, c.req.raw.signal);
      if (pending) return errorResponseWith(pending, headers);
    }
    const unsynced = sync ? await sync.wait(name, position, token, c.req.raw.signal) : null;
    if (unsynced) {
      // Committed here but on too few candidates: 'applied' holds only while this node still holds the lease.
      assertWritable(o.ha, 'unknown');
      return errorResponseWith(unsynced, headers);
    }
    // Acknowledged only while the lease is held: every answer of an epoch comes before a later epoch can exist.
    assertWritable(o.ha, 'unknown');
    return resultResponse(c.req.header('accept'), { results, token }, 200, headers);
  });

  if (sync) {
    // Candidates' applied positions (README.md#synchronous-replicas), and the list `edgelite status` shows.
    app.post('/v1/replicas/applied', requireRight(auth, 'replicate', { every: true }), async (c) => {
      sync.report(parseAppliedReport(await readJsonBody(c, o.maxBodyBytes)));
      return jsonResponse({ ok: true, members: sync.members });
    });
    app.get('/v1/replicas', requireRight(auth, 'read', { every: true }), () => jsonResponse(sync.list()));
  }

  app.get('/v1/db/:name/snapshot', replicate, (c) => {
    const name = c.req.param('name');
    // A small closed database is its file: served without opening it (primary/store-files.ts).
    const closed = store.closedImage(name);
    if (!closed) return snapshotResponse(c, store.require(name), afterHandler);
    const { position, databaseId, pageSize } = closed.info;
    return imageResponse(name, { position, databaseId, pageSize, length: closed.bytes.length }, closed.bytes);
  });

  const layout = o.ranges ?? DEFAULT_RANGE_LAYOUT;
  // Catch-up ranges (shared/changes.ts): every answer but a sealed range and its redirect is no-store,
  // so no cache in front keeps an error, an auth refusal or an open tail.
  app.use('/v1/db/:name/changes/*', async (c, next) => {
    await next();
    if (c.res.status >= 400) c.res.headers.set('cache-control', CHANGES_NO_STORE);
    rangeAnswers.set(c.res.status, (rangeAnswers.get(c.res.status) ?? 0) + 1);
  });
  app.get('/v1/db/:name/changes/:generation/:txid', replicate, (c) => {
    const name = c.req.param('name');
    const db = store.require(name);
    const at = parseChangesPathParams(c.req.param('generation'), c.req.param('txid'));
    if (!at) throw new EdgeliteError('BAD_REQUEST', 'a changes path is /v1/db/{name}/changes/{generation: 8 hex}/{txid: 16 hex}, lowercase, txid >= 1');
    return changesResponse(db, layout, { name, ...at, ifNoneMatch: c.req.header('if-none-match') ?? null, fresh: c.req.query(FRESH_PARAM) ?? null });
  });

  app.post(STREAM_PATH, replicate, async (c) => {
    const grant = requestGrant(auth, c, 'replicate');
    const req = scopeStreamRequest(parseStreamRequest(await readJsonBody(c, o.maxBodyBytes)), grant);
    if (req.ranges) {
      // Only a database behind the request's position is opened (a closed one caught up stays closed).
      const opened = (n: string) => {
        const info = store.info(n);
        const pos = req.positions[n];
        return info && pos && (pos.generation !== info.position.generation || pos.txid < info.position.txid) ? store.get(n) : undefined;
      };
      const behind = rangesBehind(opened, req.positions, layout, (db, pos) => resumeProblem(db, pos) === null);
      if (behind.length > 0) throw new EdgeliteError('USE_RANGES', `${behind.join(', ')} ${behind.length === 1 ? 'is' : 'are'} a sealed range or more behind: GET the ranges first`, { details: { databases: behind } });
    }
    const sub = new Subscription(store, store.hub, req, grant.allows);
    return new Response(sub.stream, {
      headers: { 'content-type': 'application/vnd.edgelite.stream', 'cache-control': 'no-store', ...(o.ha ? { [EPOCH_HEADER]: String(o.ha.epoch) } : {}) },
    });
  });

  if (o.ui) mountStatusUi(app, o.ui, { auth, role: 'primary', sample: () => Array.from(store.infos(), (db) => primarySample(db, backup)), node: () => ({ streams: store.hub.size, backup: backup !== null }), logger: o.logger });
  o.extend?.routes?.(app);
  mountOpenApi(app, { read, role: 'primary', docs: { ...PRIMARY_ROUTE_DOCS, ...o.extend?.docs } });
  return app;
}

/**
 * scopeStreamRequest narrows a stream request to a tenant-scoped token's databases
 * (README.md#tenant-scoped-tokens): a listed name outside them is FORBIDDEN; `"*"` and patterns mean
 * what the token may see (Subscription applies the limit); positions of other databases are dropped.
 */
function scopeStreamRequest(req: StreamRequest, grant: AccessGrant): StreamRequest {
  if (grant.databases === null) return req;
  if (req.databases !== '*') for (const e of req.databases) if (!isPattern(e)) assertDatabase(grant, e);
  const positions = Object.fromEntries(Object.entries(req.positions).filter(([n]) => grant.allows(n)));
  return { ...req, positions };
}

/** hasBody says whether a request carries a body (a PUT /v1/db/{name} without one is a plain create). */
function hasBody(c: Context): boolean {
  return Number(c.req.header('content-length') ?? '0') > 0 || c.req.header('transfer-encoding') !== undefined;
}

/** errorResponseWith is errorResponse plus headers (a BACKUP_PENDING answer carries its write's token and position). */
function errorResponseWith(err: EdgeliteError, headers: Record<string, string>): Response {
  const res = errorResponse(err);
  for (const [k, v] of Object.entries(headers)) res.headers.set(k, v);
  return res;
}

/**
 * checkToken refuses a read whose token (header or cookie) the primary cannot honour: one for another
 * incarnation of the database (TOKEN_DATABASE_MISMATCH), or one whose write a newer generation started
 * without (TOKEN_LOST, docs/ARCHITECTURE.md#tokens-and-consistency), and, on a node that does not hold
 * the failover lease, one for a write it does not have (a newer primary's: NOT_PRIMARY, naming it).
 * Any other token is served: the primary holds every write it acknowledged.
 */
function checkToken(c: Context, db: PrimaryDatabase, ha: PrimaryHa | null): void {
  const text = c.req.header(TOKEN_HEADER) ?? getCookie(c, TOKEN_COOKIE);
  const token = text ? tokenFor(db.name, text) : null;
  if (token === null) return;
  if (token.databaseId !== db.databaseId) {
    throw new EdgeliteError('TOKEN_DATABASE_MISMATCH', `the token is for another incarnation of ${db.name} (database id ${token.databaseId}, here ${db.databaseId})`);
  }
  const lost = tokenLost(token, db.generations);
  if (lost !== null) throw tokenLostError(db.name, token, lost);
  const p = db.position;
  if (ha && !ha.writable() && (token.generation > p.generation || token.txid > p.txid)) throw notPrimary(ha, 'not-applied');
}

/** describe is GET /v1/db/{name} (README.md#http-api); `backup` only when continuous backup is on. */
/**
 * primarySample is a database's status-page sample: the figures describeDatabase answers (a primary has
 * no lag of its own), without building the whole answer, since the sampler reads every database each
 * second (10,000 of them: docs/BENCHMARKS.md#p10-ten-thousand-tenants).
 */
function primarySample(db: DbInfo, backup: BackupRunner | null): LagSample {
  return { name: db.name, txid: db.position.txid, lagMs: 0, lagTxids: 0, backupLagMs: backup ? backup.status(db.name).lagMs : null };
}

export function describeDatabase(db: DbInfo, backup: BackupRunner | null = null): Record<string, unknown> {
  const p = db.position;
  const out: Record<string, unknown> = {
    name: db.name,
    role: 'primary',
    databaseId: db.databaseId,
    generation: p.generation,
    txid: p.txid,
    checksum: formatChecksum(p.checksum),
    lagMs: 0,
    lagTxids: 0,
    pageSize: db.pageSize,
    pageCount: db.pageCount,
    lastCommitTime: db.lastCommitTime,
    generations: db.generations,
  };
  if (backup) {
    const { uploadedTxid, lagMs } = backup.status(db.name);
    out.backup = { uploadedTxid, lagMs };
  }
  return out;
}
