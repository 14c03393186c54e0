/**
 * commander from the flag tables of shared/cli-flags.ts (README.md#cli): `describeCommand` gives a
 * command its arguments, options and help from its CommandSpec, for the `edgelite` program
 * (bin/commands/program.ts) and for each command's own parser (`parseFlags`), so the flags a command
 * reads are the ones its `--help` lists.
 */
import { Command, CommanderError, Option } from 'commander';
import type { CommandSpec, FlagSpec } from '../../shared/cli-flags.ts';
import { EdgeliteError } from '../../shared/errors.ts';

/** FAILOVER_GROUP: the help heading of a role's `failoverFlags`. */
export const FAILOVER_GROUP = 'Failover node only (primary --lease, replica --candidate): the other role\'s flags, kept for a role switch:';

/** optionOf is one flag as commander's Option: `--name <VALUE>` (`<VALUE...>` when it may repeat), or a switch. */
export function optionOf(f: FlagSpec): Option {
  const flags = f.value === undefined ? `--${f.name}` : `--${f.name} <${f.value}${f.multiple ? '...' : ''}>`;
  return new Option(flags, f.fallback === undefined ? f.description : `${f.description} (default: ${f.fallback})`);
}

/** describeCommand adds a spec's summary, arguments and flags (its failover flags under their own heading) to `cmd`. */
export function describeCommand(cmd: Command, spec: CommandSpec): Command {
  cmd.description(spec.summary).helpOption('-h, --help', 'show help').allowExcessArguments(false);
  for (const a of spec.args ?? []) cmd.argument(a);
  for (const f of spec.flags) cmd.addOption(optionOf(f));
  for (const f of spec.failoverFlags ?? []) cmd.addOption(optionOf(f).helpGroup(FAILOVER_GROUP));
  if (spec.env?.length) cmd.addHelpText('after', `\nEnvironment:\n${spec.env.map((e) => `  ${e}`).join('\n')}`);
  return cmd;
}

/** Flags is what a command's parser reads: values by flag name (as the tables spell them) and positionals. */
export interface Flags {
  args: string[];
  str(name: string): string | undefined;
  list(name: string): string[] | undefined;
  on(name: string): boolean;
}

/**
 * parseFlags parses a command's argv (what follows its name) against its table. A flag it does not know
 * or one without its value throws MISCONFIGURED naming it, with `usage`; the `edgelite` program has
 * already refused those with exit 2, so this matters to callers that pass argv themselves (tests).
 */
export function parseFlags(spec: CommandSpec, argv: readonly string[], usage: string): Flags {
  const cmd = describeCommand(new Command(spec.name), spec)
    .exitOverride()
    .configureOutput({ writeErr: () => {}, writeOut: () => {} });
  cmd.action(() => {});
  try {
    cmd.parse([...argv], { from: 'user' });
  } catch (err) {
    const message = err instanceof CommanderError ? err.message.replace(/^error: /, '') : String(err);
    throw new EdgeliteError('MISCONFIGURED', `${message}\n${usage}`, { cause: err });
  }
  const byName = new Map(spec.flags.map((f) => [f.name, optionOf(f).attributeName()]));
  const value = (name: string): unknown => {
    const attr = byName.get(name);
    if (attr === undefined) throw new Error(`${spec.name} has no flag --${name} in its table`);
    return cmd.getOptionValue(attr);
  };
  return {
    args: cmd.args.filter((a): a is string => typeof a === 'string'),
    str: (name) => {
      const v = value(name);
      return typeof v === 'string' ? v : undefined;
    },
    list: (name) => {
      const v = value(name);
      return Array.isArray(v) ? v.map(String) : typeof v === 'string' ? [v] : undefined;
    },
    on: (name) => value(name) === true,
  };
}
