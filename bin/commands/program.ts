/**
 * The `edgelite` commander program, built from the flag tables in shared/cli-flags.ts (README.md#cli):
 * commander checks every flag and value and prints `--help`; the command's runner then reads the same
 * argv with its own parser (the roles' config parsers take argv arrays, as the tests call them).
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { COMMANDS, type CommandSpec } from '../../shared/cli-flags.ts';
import { describeCommand, optionOf } from './flags.ts';

export const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** buildProgram declares every command of COMMANDS; `run` gets the command's name and its own argv once commander accepted them. */
export function buildProgram(run: (command: string, argv: string[]) => Promise<void>, argvOf: () => string[]): Command {
  const program = new Command('edgelite')
    .description('SQLite read replicas over HTTP: run a primary, replicas, backups and the tools around them')
    .version(VERSION, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .addHelpText('after', '\nRun `edgelite <command> --help` for a command\'s flags.')
    .showSuggestionAfterError(true)
    .showHelpAfterError('(run with --help for the flags)')
    .exitOverride();
  for (const spec of COMMANDS) addCommand(program, spec, run, argvOf);
  return program;
}

function addCommand(program: Command, spec: CommandSpec, run: (command: string, argv: string[]) => Promise<void>, argvOf: () => string[]): void {
  const cmd = describeCommand(program.command(spec.name), spec);
  if (spec.failoverFlags) cmd.hook('preAction', (c) => refuseOtherRole(c, spec));
  cmd.action(async () => run(spec.name, argvOf().slice(1)));
}

/**
 * refuseOtherRole: the other role's flags belong to a failover node only (README.md#high-availability);
 * on a plain primary or replica one is a usage error (exit 2), named with what would make it valid.
 */
function refuseOtherRole(cmd: Command, spec: CommandSpec): void {
  const failover = spec.name === 'primary' ? cmd.getOptionValue('lease') !== undefined : cmd.getOptionValue('candidate') === true;
  if (failover) return;
  for (const f of spec.failoverFlags ?? []) {
    if (cmd.getOptionValue(optionOf(f).attributeName()) === undefined) continue;
    const other = spec.name === 'primary' ? 'replica' : 'primary';
    const node = spec.name === 'primary' ? '--lease' : '--candidate --lease';
    cmd.error(`error: option '--${f.name}' is a ${other} flag: \`edgelite ${spec.name}\` takes it only as a failover node (with ${node})`, { exitCode: 2, code: 'edgelite.otherRoleFlag' });
  }
}
