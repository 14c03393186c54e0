/** `edgelite replica`: parse argv/env once and start; bin/cli.ts stops it on SIGINT/SIGTERM. */
import type { Logger } from '../shared/log.ts';
import { logOptions, nodeLogger } from '../shared/node/log.ts';
import { aboveBars } from '../shared/node/progress.ts';
import { parseReplicaConfig } from './config.ts';
import { startReplica } from './server.ts';

export async function replicaMain(argv: string[]): Promise<{ close(): Promise<void>; logger: Logger }> {
  const config = parseReplicaConfig(argv, process.env);
  // On a terminal, large snapshot downloads draw a bar on stdout and log lines go above it (README.md#progress).
  const tty = process.stdout.isTTY === true;
  const logger = nodeLogger('replica', logOptions(argv, process.env), tty ? Object.assign(aboveBars(process.stdout), { isTTY: true }) : 1);
  const handle = await startReplica(config, logger, tty ? { terminal: process.stdout } : {});
  return { close: () => handle.close(), logger };
}
