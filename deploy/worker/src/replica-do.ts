/**
 * ReplicaObject is the Durable Object that holds one replicated database: one object per database name
 * (`idFromName(name)`), so its pages, position and stream live in one place and requests for the
 * database meet there. The Worker (index.ts) authenticates and routes; this object serves
 * `/describe`, `/query`, `/exec` and `/debug/repeat` on its internal URL.
 *
 * Life cycle: the constructor loads wa-sqlite and the stored position (blockConcurrencyWhile, so no
 * request sees a half-loaded object) and verifies the stored pages against it; the first request or
 * alarm starts the follower; the alarm fires every ALARM_INTERVAL_MS to restart a follower that stopped
 * (an evicted object comes back on its alarm, reloads from storage, and resumes without a snapshot).
 */
import { withKeyring } from '../../../shared/object-crypt.ts';
import { DurableObject } from 'cloudflare:workers';
import { Hono, type Context } from 'hono';
import { getCookie } from 'hono/cookie';
import SQLiteESMFactory from 'wa-sqlite/dist/wa-sqlite.mjs';
import wasm from 'wa-sqlite/dist/wa-sqlite.wasm';
import { BucketFeed } from '../../../shared/bucket-feed.ts';
import { EdgeliteError, errorFromBody } from '../../../shared/errors.ts';
import { stringifyRequestJson } from '../../../shared/exact-json.ts';
import { errorResponse, jsonResponse, readJsonBody } from '../../../shared/http.ts';
import { jsonLogger, type Logger } from '../../../shared/log.ts';
import type { ObjectStore } from '../../../shared/object-store.ts';
import { S3ObjectStore } from '../../../shared/object-store-s3.ts';
import { PrimaryClient } from '../../../shared/primary-client.ts';
import { parseStatementsBody, positionHeaders } from '../../../shared/protocol.ts';
import { decodeToken, TOKEN_COOKIE, TOKEN_HEADER } from '../../../shared/token.ts';
import { formatChecksum, validateDatabaseName } from '../../../shared/types.ts';
import { Conditions } from '../../../shared/waiters.ts';
import { parseWorkerConfig, type Env, type WorkerConfig } from './config.ts';
import { CONSISTENCY_HEADER, parseConsistency, satisfy } from '../../../shared/consistency.ts';
import { DEFAULT_BACKOFF_MAX_MS, DEFAULT_BACKOFF_MIN_MS } from '../../../shared/follower-port.ts';
import { WorkerFollower } from './follower.ts';
import { LeasePrimary, type WorkerPrimary } from './lease-primary.ts';
import { PageStore } from './page-store.ts';
import { WorkerReplica } from './replica.ts';
import type { WasmModule } from './sqlite.ts';

/** DB_HEADER carries the database name from the Worker to its object. */
export const DB_HEADER = 'Edgelite-Db';

let sqlite: Promise<WasmModule> | null = null;

/** loadSqlite instantiates wa-sqlite once per isolate from the bundled, precompiled wasm module. */
function loadSqlite(): Promise<WasmModule> {
  sqlite ??= SQLiteESMFactory({
    locateFile: (file: string) => file,
    instantiateWasm(imports: WebAssembly.Imports, done: (instance: WebAssembly.Instance, module: WebAssembly.Module) => void) {
      const instance = new WebAssembly.Instance(wasm, imports);
      done(instance, wasm);
      return instance.exports;
    },
  });
  return sqlite;
}

const log = jsonLogger('worker-replica', (line) => console.log(line.trimEnd()));

export class ReplicaObject extends DurableObject<Env> {
  #config: WorkerConfig | null = null;
  #configError: unknown = null;
  #module: WasmModule | null = null;
  #store: PageStore | null = null;
  #replica: WorkerReplica | null = null;
  #follower: WorkerFollower | null = null;
  #feed: BucketFeed | null = null;
  #client: WorkerPrimary | null = null;
  #bootedFrom: 'storage' | 'snapshot' | null = null;
  #snapshotsAtBoot = 0;
  #alarmSet = false;
  /**
   * Waits on the replica and its follower (#bootstrapped), woken by every change of the replica and
   * every event the follower logs (each failed session logs after recording its error code).
   */
  readonly #followerWaits = new Conditions();
  readonly #app: Hono;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    try {
      this.#config = parseWorkerConfig(env);
      this.#client = primaryClientOf(this.#config);
    } catch (err) {
      this.#configError = err;
    }
    void ctx.blockConcurrencyWhile(async () => {
      this.#module = await loadSqlite();
      this.#store = new PageStore(ctx.storage, this.#config?.pageCacheBytes);
      if (this.#client instanceof LeasePrimary) keepEpochs(ctx.storage.sql, this.#client);
      const name = this.#store.name ?? ctx.id.name;
      if (name) this.#init(name);
    });
    this.#app = this.#routes();
  }

  override async fetch(request: Request): Promise<Response> {
    try {
      const name = validateDatabaseName(request.headers.get(DB_HEADER));
      this.#ensure(name);
      await this.#keepAlive();
    } catch (err) {
      return errorResponse(err, log);
    }
    return this.#app.fetch(request);
  }

  override async alarm(): Promise<void> {
    // Under LEASE_URL, a holder that changed while the old primary still streams is found here too.
    if (this.#client instanceof LeasePrimary) await this.#client.refresh();
    if (this.#replica) this.#follower!.start();
    await this.ctx.storage.setAlarm(Date.now() + (this.#config?.alarmIntervalMs ?? 10_000));
    this.#alarmSet = true;
  }

  #ensure(name: string): WorkerReplica {
    if (this.#configError) throw this.#configError;
    if (this.#replica) {
      if (this.#replica.name !== name) throw new EdgeliteError('INTERNAL', `object of ${this.#replica.name} asked for ${name}`);
    } else {
      this.#store!.setName(name);
      this.#init(name);
    }
    this.#follower!.start();
    return this.#replica!;
  }

  #init(name: string): void {
    const config = this.#config;
    if (!config || !this.#client) return;
    const replica = new WorkerReplica(name, this.#store!, this.#module!);
    this.#bootedFrom = replica.boot() ? 'storage' : null;
    this.#snapshotsAtBoot = this.#store!.meta?.snapshots ?? 0;
    this.#replica = replica;
    replica.onChange(() => this.#followerWaits.wake());
    const followerLog: Logger = (e) => {
      log({ ...e, object: 'replica' });
      this.#followerWaits.wake();
    };
    this.#feed = config.source ? new BucketFeed(sourceStoreOf(config.source), followerLog) : null;
    this.#follower = new WorkerFollower({
      client: this.#client,
      bucket: this.#feed && config.source ? { feed: this.#feed, intervalMs: config.source.intervalMs } : null,
      replica,
      heartbeatTimeoutMs: config.heartbeatTimeoutMs,
      backoffMinMs: DEFAULT_BACKOFF_MIN_MS,
      backoffMaxMs: DEFAULT_BACKOFF_MAX_MS,
      log: followerLog,
    });
  }

  /** #keepAlive makes sure an alarm is pending (checked in storage once per object life, not per request). */
  async #keepAlive(): Promise<void> {
    if (this.#alarmSet) return;
    if ((await this.ctx.storage.getAlarm()) === null) {
      await this.ctx.storage.setAlarm(Date.now() + this.#config!.alarmIntervalMs);
    }
    this.#alarmSet = true;
  }

  #routes(): Hono {
    const app = new Hono();
    app.onError((err) => errorResponse(err, log));
    app.get('/describe', () => jsonResponse(this.#describe()));

    app.post('/query', async (c) => {
      const replica = this.#replica!;
      const config = this.#config!;
      const body = await readJsonBody(c, config.maxBodyBytes);
      const statements = parseStatementsBody(body);
      const consistency = parseConsistency(replica.name, c.req.header(CONSISTENCY_HEADER) ?? c.req.query('consistency'), tokenOf(c));
      await this.#bootstrapped(config.readWaitMs);
      await satisfy(replica, consistency, config.readWaitMs, () => this.#client!.position(replica.name));
      const results = replica.query(statements);
      return jsonResponse({ results }, 200, positionHeaders(replica.position!, replica.databaseId, 'replica'));
    });

    app.post('/exec', async (c) => {
      const replica = this.#replica!;
      const config = this.#config!;
      const body = await readJsonBody(c, config.maxBodyBytes);
      parseStatementsBody(body);
      const r = await this.#client!.forward('POST', `/v1/db/${encodeURIComponent(replica.name)}/exec`, stringifyRequestJson(body), clientAuth(c.req.raw));
      if (r.status !== 200) throw errorFromBody(r.body, r.status);
      const token = (r.body as { token?: unknown }).token;
      const headers: Record<string, string> = { 'Edgelite-Served-By': 'primary', 'Edgelite-Applied': 'false' };
      if (typeof token === 'string') {
        headers[TOKEN_HEADER] = token;
        const t = decodeToken(token);
        try {
          await replica.waitFor(t.generation, t.txid, config.writeWaitMs);
          headers['Edgelite-Applied'] = 'true';
        } catch (err) {
          if (!(err instanceof EdgeliteError && err.code === 'REPLICA_BEHIND')) throw err;
        }
      }
      return jsonResponse(r.body, 200, headers);
    });

    // Measures query cost inside the object, without HTTP: runs one read-only statement n times.
    app.post('/debug/repeat', async (c) => {
      const replica = this.#replica!;
      const body = (await readJsonBody(c, this.#config!.maxBodyBytes)) as { n?: unknown };
      const statements = parseStatementsBody(body);
      const n = typeof body.n === 'number' && Number.isSafeInteger(body.n) && body.n > 0 ? Math.min(body.n, 100_000) : 1000;
      await this.#bootstrapped(this.#config!.readWaitMs);
      const started = performance.now();
      let results;
      for (let i = 0; i < n; i++) results = replica.query(statements);
      const ms = performance.now() - started;
      return jsonResponse({ n, totalMs: ms, perQueryUs: (ms * 1000) / n, results });
    });
    return app;
  }

  /** #bootstrapped waits (bounded) for the first snapshot; DATABASE_NOT_FOUND if the primary has no such database. */
  async #bootstrapped(timeoutMs: number): Promise<void> {
    const replica = this.#replica!;
    const notFound = (): boolean => this.#follower!.lastErrorCode === 'DATABASE_NOT_FOUND';
    await this.#followerWaits.until(() => replica.position !== null || notFound(), timeoutMs);
    if (replica.position) return;
    if (notFound()) throw new EdgeliteError('DATABASE_NOT_FOUND', `database ${replica.name} does not exist on the primary`);
    throw new EdgeliteError('REPLICA_BEHIND', `database ${replica.name} is not replicated here yet`);
  }

  /** #primaryDescription is /describe's `primary` (the URL in use) and `epoch` (the lease holder's, null without LEASE_URL). */
  #primaryDescription(): Record<string, unknown> {
    const c = this.#client;
    if (!(c instanceof LeasePrimary)) return { primary: c instanceof PrimaryClient ? c.url : null, epoch: null };
    return { primary: c.primary, epoch: c.epoch, lease: { url: c.store.description, highestEpoch: c.highestEpoch, switches: c.switches, lastError: c.lastLeaseError } };
  }

  #describe(): Record<string, unknown> {
    const replica = this.#replica!;
    const follower = this.#follower!;
    const store = replica.store;
    const p = replica.position;
    const meta = replica.meta;
    const total = meta?.snapshots ?? 0;
    if (!this.#bootedFrom && p) this.#bootedFrom = 'snapshot';
    return {
      name: replica.name,
      role: 'replica',
      runtime: 'workerd',
      ...this.#primaryDescription(),
      databaseId: replica.databaseId,
      generation: p?.generation ?? null,
      txid: p?.txid ?? null,
      checksum: p ? formatChecksum(p.checksum) : null,
      lagMs: finite(replica.lagMs),
      lagTxids: replica.lagTxids,
      primaryTxid: replica.primary?.txid ?? null,
      pageSize: meta?.pageSize ?? null,
      pageCount: meta?.pageCount ?? 0,
      ready: replica.ready,
      needsSnapshot: replica.needsSnapshot,
      bootedFrom: this.#bootedFrom,
      snapshots: total - this.#snapshotsAtBoot,
      snapshotsTotal: total,
      stream: follower.state,
      connects: follower.connects,
      rejected: follower.rejected,
      lastError: follower.lastError,
      lastContactMs: finite(follower.lastContactMs),
      apply: replica.stats,
      cache: { pages: store.cachedPages, hits: store.hits, misses: store.misses },
      memory: replica.memory(),
      vfsPageReads: replica.vfs.pageReads,
      vfsLastError: replica.vfs.lastError === null ? null : String(replica.vfs.lastError),
      storedBytes: store.storedBytes,
      ...(this.#feed ? { source: follower.bucket?.feeding ?? null, bucket: this.#feed.status(replica.name) } : {}),
    };
  }
}

/** keepEpochs keeps the lease's highest epoch seen in the object's storage (LeasePrimary.keepEpochs). */
function keepEpochs(sql: SqlStorage, lease: LeasePrimary): void {
  sql.exec('CREATE TABLE IF NOT EXISTS lease_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), epoch INTEGER NOT NULL)');
  const row = sql.exec<{ epoch: number }>('SELECT epoch FROM lease_epoch').toArray()[0];
  lease.keepEpochs(row?.epoch ?? 0, (epoch) => void sql.exec('INSERT OR REPLACE INTO lease_epoch (id, epoch) VALUES (1, ?)', epoch));
}

function finite(n: number): number | null {
  return Number.isFinite(n) ? Math.round(n) : null;
}

/** sourceStoreOf opens the bucket of SOURCE_URL, opening sealed objects with SOURCE_ENCRYPTION_KEYS when set (shared/object-crypt.ts). */
export function sourceStoreOf(source: NonNullable<WorkerConfig['source']>): ObjectStore {
  return withKeyring(new S3ObjectStore(source.s3), source.keyring);
}

const primaries = new WeakMap<WorkerConfig, WorkerPrimary>();

/**
 * primaryClientOf is the Worker's client of its primary, over the runtime's fetch, one per parsed
 * configuration: PRIMARY_URL's, or with LEASE_URL the lease holder's (lease-primary.ts).
 */
export function primaryClientOf(config: WorkerConfig): WorkerPrimary {
  let p = primaries.get(config);
  if (!p) {
    const token = config.primaryToken ? { token: config.primaryToken } : {};
    p = config.lease ? new LeasePrimary({ lease: config.lease, fallbackUrl: config.primaryUrl, log, ...token }) : new PrimaryClient({ url: config.primaryUrl!, ...token });
    primaries.set(config, p);
  }
  return p;
}

/**
 * clientAuth is the client's own Authorization header, forwarded unchanged (the forwarding-credential
 * rule in shared/primary-client.ts); without one the Worker's own EDGELITE_PRIMARY_TOKEN is used.
 */
export function clientAuth(request: Request): Record<string, string> {
  const a = request.headers.get('authorization');
  return a ? { authorization: a } : {};
}

function tokenOf(c: Context): string | undefined {
  return c.req.header(TOKEN_HEADER) ?? getCookie(c, TOKEN_COOKIE);
}
