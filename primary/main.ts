/** `edgelite primary`: parse argv/env once and start; bin/cli.ts stops it on SIGINT/SIGTERM. */
import { jsonLogger, type Logger } from '../shared/log.ts';
import { parsePrimaryConfig } from './config.ts';
import { startPrimary } from './server.ts';

export async function primaryMain(argv: string[]): Promise<{ close(): Promise<void>; logger: Logger }> {
  const logger = jsonLogger('primary', (line) => process.stdout.write(line));
  const handle = await startPrimary(parsePrimaryConfig(argv, process.env), logger);
  return { close: () => handle.close(), logger };
}
