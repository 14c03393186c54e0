/**
 * vitest's global setup: the Debian packages the tests need are installed when missing
 * (scripts/ensure-debian.mjs, which .ci/run also runs), so `npm test` works on a new machine. Where it
 * cannot install (not root), it warns: the tests that need a package then fail naming it.
 */
// @ts-expect-error: a plain .mjs script, without types
import { ensureDebian, TEST_PACKAGES } from '../scripts/ensure-debian.mjs';

export default function setup(): void {
  try {
    (ensureDebian as (specs: string[]) => string[])(TEST_PACKAGES as string[]);
  } catch (err) {
    process.stderr.write(`[global setup] ${err instanceof Error ? err.message : String(err)}\n`);
  }
}
