/**
 * The primary's HTTP API (README.md#http-api), as a hono app so tests can call `app.request()` without a
 * socket. Handlers are thin: parse, authorize, call the store, render.
 */
import { Hono, type Context } from 'hono';
import { getCookie } from 'hono/cookie';
import type { AuthConfig } from '../shared/auth.ts';
import { tokenFor, tokenLost, tokenLostError } from '../shared/consistency.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { closeAfterRefusedBody, corsMiddleware, errorResponse, jsonResponse, readJsonBody, requireRight, resultResponse } from '../shared/http.ts';
import type { QueryPool } from '../shared/node/query-pool.ts';
import { PROMETHEUS_CONTENT_TYPE } from '../shared/prometheus.ts';
import { parseStatementsBody, parseStreamRequest, positionHeaders, STREAM_PATH } from '../shared/protocol.ts';
import { encodeToken, TOKEN_COOKIE, TOKEN_HEADER } from '../shared/token.ts';
import { formatChecksum, validateDatabaseName } from '../shared/types.ts';
import type { BackupRunner } from './backup.ts';
import type { PrimaryDatabase } from './database.ts';
import { renderMetrics } from './metrics.ts';
import { snapshotResponse } from './snapshot.ts';
import type { PrimaryStore } from './store.ts';
import { Subscription } from './stream.ts';

export interface PrimaryAppOptions {
  store: PrimaryStore;
  auth: AuthConfig;
  maxBodyBytes: number;
  /** The store's query pool, if any: its figures go into /metrics. */
  queryPool?: QueryPool | null;
  /** The continuous backup, if on: its figures go into GET /v1/db/{name} and /metrics. */
  backup?: BackupRunner | null;
  logger: (e: Record<string, unknown>) => void;
}

export function createPrimaryApp(o: PrimaryAppOptions): Hono {
  const { store, auth } = o;
  const backup = o.backup ?? null;
  const describe = (db: PrimaryDatabase): Record<string, unknown> => describeDatabase(db, backup);
  const app = new Hono();
  const read = requireRight(auth, 'read');
  const write = requireRight(auth, 'write');
  const replicate = requireRight(auth, 'replicate');

  app.onError((err) => errorResponse(err, o.logger));
  app.notFound((c) => errorResponse(new EdgeliteError('NOT_FOUND', `no route ${c.req.method} ${c.req.path}`)));
  app.use('*', closeAfterRefusedBody(), corsMiddleware());

  app.get('/v1/health', () => jsonResponse({ status: 'ok', role: 'primary', databases: store.names().length }));
  app.get('/metrics', read, () => new Response(renderMetrics(store, o.queryPool ?? null, backup), { headers: { 'content-type': PROMETHEUS_CONTENT_TYPE } }));

  app.get('/v1/db', read, () => jsonResponse({ databases: store.names().map((n) => describe(store.require(n))) }));

  app.get('/v1/db/:name', read, (c) => jsonResponse(describe(store.require(c.req.param('name')))));

  app.put('/v1/db/:name', write, (c) => {
    const { db, created } = store.create(validateDatabaseName(c.req.param('name')));
    return jsonResponse({ ...describe(db), created }, created ? 201 : 200);
  });

  app.post('/v1/db/:name/query', read, async (c) => {
    const db = store.require(c.req.param('name'));
    checkToken(c, db);
    const statements = parseStatementsBody(await readJsonBody(c, o.maxBodyBytes));
    const results = await db.query(statements);
    return resultResponse(c.req.header('accept'), { results }, 200, positionHeaders(db.position, db.databaseId, 'primary'));
  });

  app.post('/v1/db/:name/exec', write, async (c) => {
    const name = c.req.param('name');
    const db = store.require(name);
    const statements = parseStatementsBody(await readJsonBody(c, o.maxBodyBytes));
    const { results, position } = await db.write(statements);
    await db.whenDurable();
    const token = encodeToken({ db: name, databaseId: db.databaseId, generation: position.generation, txid: position.txid });
    return resultResponse(c.req.header('accept'), { results, token }, 200, { [TOKEN_HEADER]: token, ...positionHeaders(position, db.databaseId, 'primary') });
  });

  app.get('/v1/db/:name/snapshot', replicate, (c) => snapshotResponse(store.require(c.req.param('name'))));

  app.post(STREAM_PATH, replicate, async (c) => {
    const req = parseStreamRequest(await readJsonBody(c, o.maxBodyBytes));
    const sub = new Subscription(store, store.hub, req);
    return new Response(sub.stream, {
      headers: { 'content-type': 'application/vnd.edgelite.stream', 'cache-control': 'no-store' },
    });
  });

  return app;
}

/**
 * checkToken refuses a read whose token (header or cookie) the primary cannot honour: one for another
 * incarnation of the database (TOKEN_DATABASE_MISMATCH), or one whose write a newer generation started
 * without (TOKEN_LOST, docs/ARCHITECTURE.md#tokens-and-consistency). Any other token is served: the
 * primary holds every write it acknowledged.
 */
function checkToken(c: Context, db: PrimaryDatabase): void {
  const text = c.req.header(TOKEN_HEADER) ?? getCookie(c, TOKEN_COOKIE);
  const token = text ? tokenFor(db.name, text) : null;
  if (token === null) return;
  if (token.databaseId !== db.databaseId) {
    throw new EdgeliteError('TOKEN_DATABASE_MISMATCH', `the token is for another incarnation of ${db.name} (database id ${token.databaseId}, here ${db.databaseId})`);
  }
  const lost = tokenLost(token, db.generations);
  if (lost !== null) throw tokenLostError(db.name, token, lost);
}

/** describe is GET /v1/db/{name} (README.md#http-api); `backup` only when continuous backup is on. */
export function describeDatabase(db: PrimaryDatabase, backup: BackupRunner | null = null): Record<string, unknown> {
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
