/** Dispatches `edgelite <command>` (README.md#cli): commander checks flags and prints help; each command parses its own argv. */
import { CommanderError } from 'commander';
import { EdgeliteError } from '../shared/errors.ts';
import { buildProgram } from './commands/program.ts';
import { runCommand } from './commands/run.ts';

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram(runCommand, () => argv);
  if (argv.length === 0) {
    process.stdout.write(program.helpInformation());
    return;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its message (naming the flag); help and --version exit 0, usage errors 2.
      process.exit(err.exitCode === 0 ? 0 : 2);
    }
    // A bad flag value or variable (MISCONFIGURED) is the operator's to fix: its message names it, no stack.
    const message = err instanceof EdgeliteError ? `${err.code}: ${err.message}` : String((err as Error)?.stack ?? err);
    process.stderr.write(`edgelite ${argv[0]}: ${message}\n`);
    if (err instanceof EdgeliteError && err.code === 'MISCONFIGURED' && !err.message.includes('usage:')) process.stderr.write(`run \`edgelite ${argv[0]} --help\` for its flags\n`);
    process.exit(1);
  }
}
