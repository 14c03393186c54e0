/**
 * startReplica runs a replica in this process: local store, follower, HTTP API. The CLI (main.ts) and
 * tests use it.
 */
import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { authEnabled } from '../shared/auth.ts';
import { isLoopback } from '../shared/config.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import { BucketFeed } from '../shared/bucket-feed.ts';
import { createReplicaApp } from './app.ts';
import { AppliedReporter } from './applied-reporter.ts';
import { openObjectStore } from '../shared/node/open-object-store.ts';
import type { ReplicaConfig } from './config.ts';
import { Follower } from './follower.ts';
import { LazyDatabases } from './lazy.ts';
import { nodePrimaryClient } from './primary-fetch.ts';
import { QueryPool } from '../shared/node/query-pool.ts';
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

export async function startReplica(config: ReplicaConfig, logger: Logger): Promise<ReplicaHandle> {
  if (!authEnabled(config.auth) && !isLoopback(config.host)) {
    throw new EdgeliteError('FORBIDDEN', `refusing to listen on ${config.host} without auth: set EDGELITE_TOKEN or EDGELITE_TOKENS`);
  }
  const queryPool = config.queryTimeoutMs > 0 ? new QueryPool({ timeoutMs: config.queryTimeoutMs, busyTimeoutMs: config.busyTimeoutMs, logger }) : null;
  const store = new ReplicaStore(config.dataDir, { busyTimeoutMs: config.busyTimeoutMs, logger, queryPool });
  if (config.databases !== '*') for (const n of config.databases) store.ensure(n);
  const primary = config.primaryUrl === null ? null : nodePrimaryClient({ url: config.primaryUrl, token: config.primaryToken });
  // A bucket-fed replica's object store, opening sealed objects with the keyring when one is given.
  const feed = config.source ? new BucketFeed(openObjectStore(config.source.target, config.source.keyring), logger) : null;
  const lazy: LazyDatabases | null = config.lazy && primary
    ? new LazyDatabases({
        store,
        primaryHas: (name) => primary.position(name),
        follow: (names): Promise<void> => follower.follow(names),
        maxDatabases: config.maxDatabases,
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
    logger,
  });
  follower.start();
  // A candidate tells the primary what it applied, for `--sync-replicas` (README.md#synchronous-replicas).
  const reporter = config.candidate && config.lease && primary ? new AppliedReporter({ client: primary, store, node: config.lease.node, url: config.lease.advertise, logger }) : null;
  reporter?.start();
  const app = createReplicaApp({
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
  });
  let server: ServerType;
  const port = await new Promise<number>((resolve, reject) => {
    server = serve({ fetch: app.fetch, hostname: config.host, port: config.port }, (info: AddressInfo) => resolve(info.port));
    server.once('error', reject);
  });
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  queryPool?.warm(1);
  logger({ msg: 'replica listening', url, primary: config.primaryUrl, ...(feed ? { source: feed.description } : {}), data: config.dataDir, databases: lazy ? 'lazy' : config.databases, ...(lazy ? { local: lazy.followed.length, maxDatabases: config.maxDatabases } : {}) });
  return {
    url,
    port,
    store,
    follower,
    reporter,
    lazy,
    close: async () => {
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
