/** Dispatches `edgelite <command>`; each role parses its own flags. */
import { EdgeliteError } from '../shared/errors.ts';

const USAGE = `usage:
  edgelite primary --data DIR [--listen 127.0.0.1:PORT] [--query-timeout-ms N]
  edgelite replica --primary URL --data DIR [--listen 127.0.0.1:PORT] [--databases NAMES|* | --lazy [--max-databases N]]
  edgelite primary ... --backup s3://BUCKET/PREFIX | file:///DIR [--backup-interval 1s] [--s3-endpoint URL] [--encryption-key-file PATH]
  edgelite replica --source s3://BUCKET/PREFIX | file:///DIR [--primary URL] --data DIR [--source-interval 1s] [--s3-endpoint URL] [--encryption-key-file PATH]
  edgelite restore s3://BUCKET/PREFIX | file:///DIR --db NAME [--txid N | --time ISO] --out FILE [--force] [--encryption-key-file PATH]
  edgelite restore s3://BUCKET/PREFIX | file:///DIR --all --data DIR [--time ISO] [--force] [--encryption-key-file PATH]
  edgelite primary ... --backup URL --backup-ack [--backup-ack-timeout 10s]   (a write answered once it is in the bucket)
  edgelite backups s3://BUCKET/PREFIX | file:///DIR [--db NAME] [--json]
  edgelite primary ... --lease etcd://HOST:PORT/PREFIX [--lease-ttl 5s] [--advertise URL] [--node-id ID] [--sync-replicas N]
  edgelite replica --candidate --lease etcd://HOST:PORT/PREFIX --data DIR [--listen ...] [--advertise URL] [--sync-replicas N]
  edgelite promote URL [--timeout 10s]   (make the failover node at URL the primary; the holder hands over once URL caught up)
  edgelite status URL
  edgelite status --lease etcd://HOST:PORT/PREFIX [--json]   (holder, epoch, candidates and sync set of the failover lease)
  edgelite doctor --db NAME | --all --primary URL [--json] [--fix DIR] [--token T]   (schema, integrity and settings findings with their fixes)
  edgelite migrate DIR --db NAME | --all --primary URL [--token T] [--dry-run] [--fail-fast] [--concurrency N] [--json]   (apply NNNN_name.sql files, each in one transaction)
  edgelite export NAME | --all --format parquet|csv|duckdb --out PATH --primary URL [--token T]   (a snapshot into analytics files)
  edgelite demo        (what \`npm start\` runs: a primary, two replicas and a small workload)`;

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'primary':
      case 'replica':
        if (isFailoverNode(command, rest)) {
          // Under the lease, one process holds both roles and switches on failover (bin/ha.ts).
          const { haMain } = await import('./ha.ts');
          const { nodeConfigs } = await import('./ha-roles.ts');
          const { jsonLogger } = await import('../shared/log.ts');
          stopOnSignal(await haMain(nodeConfigs(command, rest, process.env), jsonLogger(command, (line) => process.stdout.write(line))));
        } else if (command === 'primary') {
          stopOnSignal(await (await import('../primary/main.ts')).primaryMain(rest));
        } else {
          stopOnSignal(await (await import('../replica/main.ts')).replicaMain(rest));
        }
        return;
      case 'restore':
        await (await import('./restore.ts')).restoreMain(rest);
        return;
      case 'backups':
        await (await import('./restore.ts')).backupsMain(rest);
        return;
      case 'promote':
        await (await import('./promote.ts')).promoteMain(rest);
        return;
      case 'status':
        await (await import('./status.ts')).statusMain(rest);
        return;
      case 'doctor':
        await (await import('./doctor.ts')).doctorMain(rest);
        return;
      case 'migrate':
        await (await import('./migrate.ts')).migrateMain(rest);
        return;
      case 'export':
        await (await import('./export.ts')).exportMain(rest);
        return;
      case 'demo':
        await (await import('./demo.ts')).demoMain(rest);
        return;
      default:
        process.stderr.write(`${USAGE}\n`);
        process.exitCode = command === undefined || command === 'help' || command === '--help' ? 0 : 2;
    }
  } catch (err) {
    // A bad flag or variable (MISCONFIGURED) is the operator's to fix: its message names it, no stack.
    const message = err instanceof EdgeliteError ? `${err.code}: ${err.message}` : String((err as Error)?.stack ?? err);
    process.stderr.write(`edgelite ${command}: ${message}\n`);
    if (err instanceof EdgeliteError && err.code === 'MISCONFIGURED' && !err.message.includes('usage:')) process.stderr.write(`${USAGE}\n`);
    process.exit(1);
  }
}

/** isFailoverNode: `primary --lease …` or `replica --candidate …` run as a failover node (README.md#high-availability). */
function isFailoverNode(command: 'primary' | 'replica', argv: string[]): boolean {
  const has = (flag: string) => argv.some((a) => a === flag || a.startsWith(`${flag}=`));
  return command === 'primary' ? has('--lease') : has('--candidate');
}

/** stopOnSignal closes a running role cleanly on SIGINT/SIGTERM, then exits. */
function stopOnSignal(role: { close(): Promise<void>; logger: (e: Record<string, unknown>) => void }): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    role.logger({ msg: 'shutting down', signal });
    role.close().then(
      () => process.exit(0),
      (err: unknown) => {
        role.logger({ msg: 'shutdown failed', error: String(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}
