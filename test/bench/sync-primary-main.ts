/**
 * A primary under the failover lease in a process of its own, for P12 (`--sync-replicas`): the
 * `edgelite primary` flags (with `--lease`, `--advertise`, `--node-id`), the lease taken by a real
 * LeaseStore.campaign and kept by a LeaseKeeper (test/kit/held-lease.ts), then startPrimary with that
 * PrimaryHa. What bin/ha.ts does for a node that won, without its elections. Prints startPrimary's
 * JSON lines (`primary listening` with its URL); SIGTERM stops it.
 */
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary } from '../../primary/server.ts';
import { jsonLogger } from '../../shared/log.ts';
import { holdLease } from '../kit/held-lease.ts';

const config = parsePrimaryConfig(process.argv.slice(2), process.env);
if (!config.lease) throw new Error('sync-primary-main needs --lease');
const { lease } = config;
const held = await holdLease(lease.target.endpoint, lease.target.prefix, lease.node, lease.advertise, lease.ttlMs);
const primary = await startPrimary(config, jsonLogger('primary', (line) => process.stdout.write(line)), { ha: held.ha });
const stop = (): void => void primary.close().finally(() => void held.keeper.resign().finally(() => process.exit(0)));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
