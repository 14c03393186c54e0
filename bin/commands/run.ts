/**
 * runCommand: what each `edgelite` command runs once commander accepted its flags (README.md#cli). A
 * new command adds its row to COMMANDS in shared/cli-flags.ts and its case here.
 */
import { logOptions, nodeLogger } from '../../shared/node/log.ts';

export async function runCommand(command: string, rest: string[]): Promise<void> {
  switch (command) {
    case 'primary':
    case 'replica':
      if (isFailoverNode(command, rest)) {
        // Under the lease, one process holds both roles and switches on failover (bin/ha.ts).
        const { haMain } = await import('../ha.ts');
        const { nodeConfigs } = await import('../ha-roles.ts');
        stopOnSignal(await haMain(nodeConfigs(command, rest, process.env), nodeLogger(command, logOptions(rest, process.env))));
      } else if (command === 'primary') {
        stopOnSignal(await (await import('../../primary/main.ts')).primaryMain(rest));
      } else {
        stopOnSignal(await (await import('../../replica/main.ts')).replicaMain(rest));
      }
      return;
    case 'restore':
      return (await import('../restore.ts')).restoreMain(rest);
    case 'backups':
      return (await import('../restore.ts')).backupsMain(rest);
    case 'promote':
      return (await import('../promote.ts')).promoteMain(rest);
    case 'status':
      return (await import('../status.ts')).statusMain(rest);
    case 'doctor':
      return (await import('../doctor.ts')).doctorMain(rest);
    case 'migrate':
      return (await import('../migrate.ts')).migrateMain(rest);
    case 'export':
      return (await import('../export.ts')).exportMain(rest);
    case 'demo':
      return (await import('../demo.ts')).demoMain(rest);
    default:
      throw new Error(`no runner for command ${command}`);
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
