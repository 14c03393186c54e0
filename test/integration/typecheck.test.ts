/** The whole project typechecks (strict, noUncheckedIndexedAccess), the Worker included: `npm run typecheck`. */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');

function tsc(project: string): string {
  try {
    execFileSync(process.execPath, [TSC, '--noEmit', '-p', project], { cwd: ROOT, encoding: 'utf8', stdio: 'pipe' });
    return '';
  } catch (err) {
    return String((err as { stdout?: string }).stdout ?? err);
  }
}

describe('typecheck', () => {
  it('the project has no type errors', () => {
    expect(tsc('.')).toBe('');
  });
  it('the Worker has no type errors', () => {
    expect(tsc('deploy/worker')).toBe('');
  });
});
