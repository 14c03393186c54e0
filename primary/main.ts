/** `edgelite primary`: parse argv/env once and start; bin/cli.ts stops it on SIGINT/SIGTERM. */
import type { Logger } from '../shared/log.ts';
import { logOptions, nodeLogger } from '../shared/node/log.ts';
import { parsePrimaryConfig } from './config.ts';
import { startPrimary } from './server.ts';

export async function primaryMain(argv: string[]): Promise<{ close(): Promise<void>; logger: Logger }> {
  const config = parsePrimaryConfig(argv, process.env);
  const logger = nodeLogger('primary', logOptions(argv, process.env));
  const handle = await startPrimary(config, logger);
  return { close: () => handle.close(), logger };
}
