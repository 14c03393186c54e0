/**
 * startPrimary runs a primary in this process: opens the store, serves the API on host:port, and
 * returns a handle to stop it. The CLI (main.ts) and the tests both use it.
 */
import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { authEnabled } from '../shared/auth.ts';
import { isLoopback } from '../shared/config.ts';
import type { AppExtension } from '../shared/http.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import { QueryPool } from '../shared/node/query-pool.ts';
import { createStatusUi } from '../shared/node/ui-assets.ts';
import { createPrimaryApp } from './app.ts';
import { BackupRunner } from './backup.ts';
import { openObjectStore } from '../shared/node/open-object-store.ts';
import type { PrimaryConfig } from './config.ts';
import type { PrimaryHa } from './ha.ts';
import { PrimaryStore } from './store.ts';
import { SyncReplicas } from './sync.ts';

export interface PrimaryHandle {
  url: string;
  port: number;
  store: PrimaryStore;
  /** Where API reads and writes run, time-limited; null with `--query-timeout-ms 0`. */
  queryPool: QueryPool | null;
  /** The continuous backup (`--backup`), or null. */
  backup: BackupRunner | null;
  /** Candidates' applied reports and `--sync-replicas` (primary/sync.ts). */
  sync: SyncReplicas;
  close(): Promise<void>;
}

/** PrimaryExtras are what a caller running the primary under the failover lease (bin/ha.ts) passes in. */
export interface PrimaryExtras {
  ha?: PrimaryHa | null;
  extend?: AppExtension;
}

export async function startPrimary(config: PrimaryConfig, logger: Logger, extras: PrimaryExtras = {}): Promise<PrimaryHandle> {
  if (config.lease && !extras.ha) throw new EdgeliteError('MISCONFIGURED', '--lease runs through the failover node (edgelite primary --lease ..., bin/ha.ts), which holds the lease for the primary');
  if (!authEnabled(config.auth) && !isLoopback(config.host)) {
    throw new EdgeliteError('FORBIDDEN', `refusing to listen on ${config.host} without auth: set EDGELITE_TOKEN or EDGELITE_TOKENS`);
  }
  if (config.sync.replicas > 0 && !extras.ha) throw new EdgeliteError('MISCONFIGURED', '--sync-replicas needs the failover lease held for it (PrimaryExtras.ha): the sync set is published under its epoch');
  const queryPool = config.queryTimeoutMs > 0 ? new QueryPool({ timeoutMs: config.queryTimeoutMs, busyTimeoutMs: config.busyTimeoutMs, logger }) : null;
  const backup = config.backup ? new BackupRunner(openObjectStore(config.backup.target, config.backup.keyring), { intervalMs: config.backup.intervalMs, retentionMs: config.backup.retentionMs, logger, ...(config.backup.snapshotEverySegments ? { snapshotEverySegments: config.backup.snapshotEverySegments } : {}), ...(config.backup.compaction ? { compaction: config.backup.compaction } : {}) }) : null;
  const store = new PrimaryStore(config.dataDir, {
    synchronous: config.synchronous,
    busyTimeoutMs: config.busyTimeoutMs,
    compress: config.compress,
    checkpointFrames: config.checkpointFrames,
    pollIntervalMs: config.pollIntervalMs,
    idleCloseMs: config.idleCloseMs,
    maxOpen: config.maxOpenDatabases,
    log: { retention: config.retention },
    queryPool,
    logger,
    ...(backup ? { logHold: (name: string) => backup.holdFor(name), onDrop: (name: string) => backup.forget(name) } : {}),
  }).open();
  queryPool?.warm(1);
  backup?.start(store);
  const initial = Object.fromEntries(store.names().map((n) => [n, store.requireInfo(n).position]));
  const sync = new SyncReplicas({ replicas: config.sync.replicas, timeoutMs: config.sync.timeoutMs, ha: extras.ha ?? null, initial, logger });
  const ui = createStatusUi();
  const app = createPrimaryApp({ ui, store, auth: config.auth, maxBodyBytes: config.maxBodyBytes, queryPool, backup, backupAck: config.backupAck, ha: extras.ha ?? null, sync, ...(extras.extend ? { extend: extras.extend } : {}), logger, ...(config.ranges ? { ranges: config.ranges } : {}) });
  let server: ServerType;
  const port = await new Promise<number>((resolve, reject) => {
    server = serve({ fetch: app.fetch, hostname: config.host, port: config.port }, (info: AddressInfo) => resolve(info.port));
    server.once('error', reject);
  });
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  logger({ msg: 'primary listening', url, data: config.dataDir, ...databasesLog(store), auth: authEnabled(config.auth), backup: backup?.objects.description ?? null });
  return {
    url,
    port,
    store,
    queryPool,
    backup,
    sync,
    close: async () => {
      ui.sampler.stop();
      sync.close();
      await new Promise<void>((resolve) => {
        const s = server as ServerType & { closeAllConnections?: () => void };
        s.close(() => resolve());
        s.closeAllConnections?.();
      });
      await backup?.close();
      await queryPool?.close();
      store.close();
    },
  };
}

/** databasesLog names the databases in the start line, or only counts them when there are many. */
function databasesLog(store: PrimaryStore): Record<string, unknown> {
  const names = store.names();
  const { open } = store.counts();
  return names.length <= 20 ? { databases: names, open } : { databases: names.length, open };
}
