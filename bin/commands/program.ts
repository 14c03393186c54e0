/**
 * The `edgelite` commander program, built from the flag tables in shared/cli-flags.ts (README.md#cli):
 * commander checks every flag and value and prints `--help`; the command's runner then reads the same
 * argv with its own config parser (the roles' parsers take argv arrays, as the tests call them).
 */
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { COMMANDS, type CommandSpec, type FlagSpec } from '../../shared/cli-flags.ts';

/** Runner runs one command with its argv (everything after the command's name). */
export type Runner = (argv: string[]) => Promise<void>;

export const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** buildProgram declares every command of COMMANDS; `run` gets the command's name and its own argv once commander accepted them. */
export function buildProgram(run: (command: string, argv: string[]) => Promise<void>, argvOf: () => string[]): Command {
  const program = new Command('edgelite')
    .description('SQLite read replicas over HTTP: run a primary, replicas, backups and the tools around them')
    .version(VERSION, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .addHelpText('after', '\nRun `edgelite <command> --help` for a command\'s flags.')
    .showSuggestionAfterError(true)
    .exitOverride();
  for (const spec of COMMANDS) addCommand(program, spec, run, argvOf);
  return program;
}

function addCommand(program: Command, spec: CommandSpec, run: (command: string, argv: string[]) => Promise<void>, argvOf: () => string[]): void {
  const cmd = program.command(spec.name).description(spec.summary).helpOption('-h, --help', 'show help').allowExcessArguments(false);
  for (const a of spec.args ?? []) cmd.argument(a);
  for (const f of spec.flags) cmd.addOption(option(f));
  cmd.action(async () => run(spec.name, argvOf().slice(1)));
}

function option(f: FlagSpec): Option {
  const flags = f.value === undefined ? `--${f.name}` : `--${f.name} <${f.value}${f.multiple ? '...' : ''}>`;
  return new Option(flags, f.fallback === undefined ? f.description : `${f.description} (default: ${f.fallback})`);
}
