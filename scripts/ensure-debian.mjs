#!/usr/bin/env node
// Installs the Debian packages the tests need when their programs are missing (DEVELOPERS' set-up rule:
// everything the project needs is installed by its own files). `.ci/run` runs it before the tests and
// the tests' global setup (test/global-setup.ts) runs it too, so `npm test` on a new machine works.
// Each argument is PACKAGE:PROGRAM (the program whose absence means the package is missing). As root
// it runs `apt-get update` once, then `apt-get install -y` for what is missing; otherwise it says what
// to install and exits 1. Nothing happens when every program is there.
import { execFileSync, spawnSync } from 'node:child_process';

/** missingPackages lists the packages of `specs` ("package:program") whose program is not on PATH. */
export function missingPackages(specs) {
  return specs
    .map((spec) => {
      const [pkg, program] = spec.split(':');
      if (!pkg || !program) throw new Error(`ensure-debian: want PACKAGE:PROGRAM, got "${spec}"`);
      return { pkg, program };
    })
    .filter(({ program }) => spawnSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' }).status !== 0)
    .map(({ pkg }) => pkg);
}

/** ensureDebian installs what is missing; returns the packages installed. */
export function ensureDebian(specs, log = (m) => process.stderr.write(`${m}\n`)) {
  const missing = missingPackages(specs);
  if (missing.length === 0) return [];
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error(`ensure-debian: missing ${missing.join(', ')}; install with: sudo apt-get install -y ${missing.join(' ')}`);
  }
  log(`ensure-debian: installing ${missing.join(', ')} (apt-get update, then apt-get install -y)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: ['ignore', 'ignore', 'inherit'], env });
  const still = missingPackages(specs);
  if (still.length > 0) throw new Error(`ensure-debian: ${still.join(', ')} still missing after apt-get install`);
  return missing;
}

/** TEST_PACKAGES: what the tests need from Debian. */
export const TEST_PACKAGES = ['etcd-server:etcd', 'sqlite3:sqlite3', 'chromium:chromium'];

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    ensureDebian(process.argv.length > 2 ? process.argv.slice(2) : TEST_PACKAGES);
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
