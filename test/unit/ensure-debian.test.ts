/** scripts/ensure-debian.mjs: a package counts as missing exactly when its program is not on PATH. */
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs script, without types
import { ensureDebian, missingPackages, TEST_PACKAGES } from '../../scripts/ensure-debian.mjs';

const missing = missingPackages as (specs: string[]) => string[];

describe('ensure-debian', () => {
  it('finds a program on PATH present and a made-up one missing; refuses a spec without a program', () => {
    expect(missing(['coreutils:ls'])).toEqual([]);
    expect(missing(['coreutils:ls', 'no-such-package:edgelite-no-such-program'])).toEqual(['no-such-package']);
    expect(() => missing(['etcd-server'])).toThrow('want PACKAGE:PROGRAM');
  });

  it('installs nothing when the test packages are there (the global setup has run)', () => {
    expect((ensureDebian as (s: string[]) => string[])(TEST_PACKAGES as string[])).toEqual([]);
  });
});
