/**
 * startReplica runs a replica in this process: local store, follower, HTTP API. The CLI (main.ts) and
 * tests use it.
 */
import { serve, type ServerType } from '@hono/node-server';
import { createServer, type IncomingMessage, type RequestListener, type ServerOptions } from 'node:http';
import type { AddressInfo } from 'node:net';
import { authEnabled } from '../shared/auth.ts';
import { isLoopback } from '../shared/config.ts';
import { compilePatterns, isPattern } from '../shared/db-pattern.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { type AppExtension, readNodeJsonBody } from '../shared/http.ts';
import type { Logger } from '../shared/log.ts';
import { BucketFeed } from '../shared/bucket-feed.ts';
import { LeaseStore } from '../shared/lease.ts';
import { PrimaryLocator } from '../shared/primary-locator.ts';
import { createReplicaApp, createReplicaQuery, type ReplicaAppOptions } from './app.ts';
import { queryFastPath } from './query-fast-path.ts';
import { AppliedReporter } from './applied-reporter.ts';
import { openObjectStore } from '../shared/node/open-object-store.ts';
import type { ReplicaConfig } from './config.ts';
import { Follower } from './follower.ts';
import type { ProgressTerminal } from './snapshot-file.ts';
import { LazyDatabases } from './lazy.ts';
import { nodePrimaryClient } from './primary-fetch.ts';
import { QueryPool } from '../shared/node/query-pool.ts';
import { createStatusUi } from '../shared/node/ui-assets.ts';
import { ReplicaStore } from './store.ts';

export interface ReplicaHandle {
  url: string;
  port: number;
  store: ReplicaStore;
  follower: Follower;
  /** A candidate's applied reports to the primary (`--candidate --lease`), or null. */
  reporter: AppliedReporter | null;
  /** Lazy mode's followed set (fetch on first use, LRU eviction); null otherwise. */
  lazy: LazyDatabases | null;
  close(): Promise<void>;
}

/** ReplicaExtras are what a caller running the replica as part of a failover node (bin/ha.ts) passes in. */
export interface ReplicaExtras {
  extend?: AppExtension;
  /**
   * The node's one PrimaryLocator (shared/primary-locator.ts), so the highest epoch seen outlives this
   * role: started here if it is not yet, never stopped here. Without it, a replica with `--lease` makes
   * (and stops) its own.
   */
  locator?: PrimaryLocator | null;
  /** Where large snapshot downloads (bootstrap, re-snapshot) draw a progress bar, if a terminal (README.md#progress). */
  terminal?: ProgressTerminal | undefined;
}

export async function startReplica(config: ReplicaConfig, logger: Logger, extras: ReplicaExtras = {}): Promise<ReplicaHandle> {
  if (!authEnabled(config.auth) && !isLoopback(config.host)) {
    throw new EdgeliteError('FORBIDDEN', `refusing to listen on ${config.host} without auth: set EDGELITE_TOKEN or EDGELITE_TOKENS`);
  }
  const queryPool = config.queryTimeoutMs > 0 ? new QueryPool({ timeoutMs: config.queryTimeoutMs, busyTimeoutMs: config.busyTimeoutMs, logger }) : null;
  const store = new ReplicaStore(config.dataDir, { busyTimeoutMs: config.busyTimeoutMs, logger, queryPool, idleCloseMs: config.idleCloseMs, maxOpen: config.maxOpenDatabases });
  if (config.databases !== '*') for (const n of config.databases) if (!isPattern(n)) store.ensure(n);
  // Under the lease the holder's record says where the primary is (README.md#high-availability).
  const ownLocator = !extras.locator && config.lease ? new PrimaryLocator({ store: new LeaseStore(config.lease.target), logger }) : null;
  const locator = extras.locator ?? ownLocator;
  locator?.start();
  const primaryUrl = locator ?? config.primaryUrl;
  const primary = primaryUrl === null ? null : nodePrimaryClient({ url: primaryUrl, token: config.primaryToken, logger });
  // A bucket-fed replica's object store, opening sealed objects with the keyring when one is given.
  const feed = config.source ? new BucketFeed(openObjectStore(config.source.target, config.source.keyring), logger) : null;
  const lazy: LazyDatabases | null = config.lazy && primary
    ? new LazyDatabases({
        store,
        primaryHas: (name) => primary.position(name),
        follow: (names): Promise<void> => follower.follow(names),
        maxDatabases: config.maxDatabases,
        allowed: config.lazyLimit ? compilePatterns(config.lazyLimit) : null,
        logger,
      })
    : null;
  const follower = new Follower({
    client: primary,
    bucket: feed && config.source ? { feed, intervalMs: config.source.intervalMs } : null,
    store,
    databases: lazy ? lazy.followed : config.databases,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    backoffMinMs: config.backoffMinMs,
    backoffMaxMs: config.backoffMaxMs,
    bootstrapConcurrency: config.bootstrapConcurrency,
    terminal: extras.terminal,
    logger,
  });
  follower.start();
  // A new holder (or none): nothing more is taken from the old one; the next session goes to the new one.
  const unfollow = locator?.onChange((now) => follower.reconnect(now ? `the lease moved to ${now.url} (epoch ${now.epoch})` : 'no node holds the lease')) ?? null;
  // A candidate tells the primary what it applied, for `--sync-replicas` (README.md#synchronous-replicas).
  const reporter = config.candidate && config.lease && primary ? new AppliedReporter({ client: primary, store, node: config.lease.node, url: config.lease.advertise, logger }) : null;
  reporter?.start();
  const ui = createStatusUi();
  const appOptions: ReplicaAppOptions = {
    ui,
    ...(extras.extend ? { extend: extras.extend } : {}),
    store,
    follower,
    primary,
    auth: config.auth,
    maxBodyBytes: config.maxBodyBytes,
    readWaitMs: config.readWaitMs,
    writeWaitMs: config.writeWaitMs,
    onBehind: config.onBehind,
    maxHealthyLagMs: config.maxHealthyLagMs,
    lazy,
    queryPool,
    logger,
  };
  const app = createReplicaApp(appOptions);
  // Point reads skip hono's web Request, Response and middleware (replica/query-fast-path.ts); anything
  // the fast path does not take goes to hono. An AppExtension adds routes, never middleware.
  const fast = queryFastPath({ auth: config.auth, maxBodyBytes: config.maxBodyBytes, logger, query: createReplicaQuery(appOptions, (req: IncomingMessage) => readNodeJsonBody(req, config.maxBodyBytes)) });
  const withFastPath = ((options: ServerOptions, listener: RequestListener) =>
    createServer(options, (req, res) => {
      if (!fast(req, res)) listener(req, res);
    })) as typeof createServer;
  let server: ServerType;
  const port = await new Promise<number>((resolve, reject) => {
    server = serve({ fetch: app.fetch, hostname: config.host, port: config.port, createServer: withFastPath }, (info: AddressInfo) => resolve(info.port));
    server.once('error', reject);
  });
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  queryPool?.warm(1);
  logger({ msg: 'replica listening', url, primary: locator ? (locator.current?.url ?? null) : config.primaryUrl, ...(locator ? { lease: locator.description } : {}), ...(feed ? { source: feed.description } : {}), data: config.dataDir, databases: lazy ? 'lazy' : config.databases, ...(lazy ? { local: lazy.followed.length, maxDatabases: config.maxDatabases } : {}) });
  return {
    url,
    port,
    store,
    follower,
    reporter,
    lazy,
    close: async () => {
      ui.sampler.stop();
      unfollow?.();
      ownLocator?.stop();
      await reporter?.stop();
      await follower.stop();
      await new Promise<void>((resolve) => {
        const s = server as ServerType & { closeAllConnections?: () => void };
        s.close(() => resolve());
        s.closeAllConnections?.();
      });
      await primary?.close();
      await queryPool?.close();
      store.close();
    },
  };
}
