/** `edgelite replica`: parse argv/env once and start; bin/cli.ts stops it on SIGINT/SIGTERM. */
import { jsonLogger, type Logger } from '../shared/log.ts';
import { parseReplicaConfig } from './config.ts';
import { startReplica } from './server.ts';

export async function replicaMain(argv: string[]): Promise<{ close(): Promise<void>; logger: Logger }> {
  const logger = jsonLogger('replica', (line) => process.stdout.write(line));
  const handle = await startReplica(parseReplicaConfig(argv, process.env), logger);
  return { close: () => handle.close(), logger };
}
