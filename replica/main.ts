/** `edgelite replica`: parse argv/env once and start; bin/cli.ts stops it on SIGINT/SIGTERM. */
import type { Logger } from '../shared/log.ts';
import { logOptions, nodeLogger } from '../shared/node/log.ts';
import { parseReplicaConfig } from './config.ts';
import { startReplica } from './server.ts';

export async function replicaMain(argv: string[]): Promise<{ close(): Promise<void>; logger: Logger }> {
  const config = parseReplicaConfig(argv, process.env);
  const logger = nodeLogger('replica', logOptions(argv, process.env));
  const handle = await startReplica(config, logger);
  return { close: () => handle.close(), logger };
}
