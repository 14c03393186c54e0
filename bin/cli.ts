/** Dispatches `edgelite <command>`; each role parses its own flags. */
import { EdgeliteError } from '../shared/errors.ts';

const USAGE = `usage:
  edgelite primary --data DIR [--listen 127.0.0.1:PORT]
  edgelite replica --primary URL --data DIR [--listen 127.0.0.1:PORT] [--databases NAMES|*]
  edgelite status URL
  edgelite demo        (what \`npm start\` runs: a primary, two replicas and a small workload)`;

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'primary':
        await (await import('../primary/main.ts')).primaryMain(rest);
        return;
      case 'replica':
        await (await import('../replica/main.ts')).replicaMain(rest);
        return;
      case 'status':
        await (await import('./status.ts')).statusMain(rest);
        return;
      case 'demo':
        await (await import('./demo.ts')).demoMain(rest);
        return;
      default:
        process.stderr.write(`${USAGE}\n`);
        process.exitCode = command === undefined || command === 'help' || command === '--help' ? 0 : 2;
    }
  } catch (err) {
    const message = err instanceof EdgeliteError ? `${err.code}: ${err.message}` : String((err as Error)?.stack ?? err);
    process.stderr.write(`edgelite ${command}: ${message}\n`);
    process.exit(1);
  }
}
