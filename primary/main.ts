/** `edgelite primary`: parse argv/env once, start, stop cleanly on SIGINT/SIGTERM. */
import { jsonLogger } from '../shared/log.ts';
import { parsePrimaryConfig } from './config.ts';
import { startPrimary } from './server.ts';

export async function primaryMain(argv: string[]): Promise<void> {
  const logger = jsonLogger('primary', (line) => process.stdout.write(line));
  const config = parsePrimaryConfig(argv, process.env);
  const handle = await startPrimary(config, logger);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger({ msg: 'shutting down', signal });
    handle.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger({ msg: 'shutdown failed', error: String(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}
