import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EDGELITE_BIN, REPO_ROOT } from '../kit/spawn.ts';

/** NOT_EDGELITE_FLAGS: flags README.md names that belong to other programs (`npm run bench -- --quick`). */
const NOT_EDGELITE_FLAGS = new Set(['--quick', '--only']);

/** README_FLAGS: the flags README.md names for each command (its usage blocks and Configuration table). */
const README_FLAGS: Record<string, string[]> = {
  primary: ['--data', '--listen', '--synchronous', '--query-timeout-ms', '--idle-close-ms', '--max-open-databases', '--checkpoint-frames', '--max-body-bytes', '--backup', '--backup-interval', '--s3-endpoint', '--encryption-key-file', '--backup-retention', '--backup-ack', '--backup-ack-timeout', '--lease', '--lease-ttl', '--advertise', '--node-id', '--sync-replicas', '--sync-timeout', '--log-format', '--log-level'],
  replica: ['--primary', '--data', '--listen', '--databases', '--lazy', '--max-databases', '--bootstrap-concurrency', '--idle-close-ms', '--max-open-databases', '--read-wait-ms', '--write-wait-ms', '--on-behind', '--max-lag-ms', '--heartbeat-timeout-ms', '--query-timeout-ms', '--max-body-bytes', '--source', '--source-interval', '--s3-endpoint', '--encryption-key-file', '--lease', '--candidate', '--lease-ttl', '--advertise', '--node-id', '--sync-replicas', '--sync-timeout', '--log-format', '--log-level'],
  restore: ['--db', '--txid', '--time', '--out', '--force', '--encryption-key-file', '--all', '--data', '--s3-endpoint', '--log-format', '--log-level'],
  backups: ['--db', '--json', '--s3-endpoint'],
  promote: ['--timeout', '--json'],
  status: ['--lease', '--json', '--watch', '--interval-ms'],
  migrate: ['--db', '--all', '--primary', '--token', '--dry-run', '--fail-fast', '--concurrency', '--json', '--log-format', '--log-level'],
  doctor: ['--db', '--all', '--primary', '--json', '--fix', '--token', '--log-format', '--log-level'],
  export: ['--all', '--format', '--out', '--primary', '--token', '--log-format', '--log-level'],
  demo: [],
};

function edgelite(...args: string[]) {
  const r = spawnSync(process.execPath, [EDGELITE_BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('edgelite CLI', () => {
  it('--help lists every command', () => {
    const r = edgelite('--help');
    expect(r.code).toBe(0);
    for (const c of Object.keys(README_FLAGS)) expect(r.out).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
  });

  for (const [command, flags] of Object.entries(README_FLAGS)) {
    it(`${command} --help lists its README flags`, () => {
      const r = edgelite(command, '--help');
      expect(r.code, r.err).toBe(0);
      expect(r.out).toContain(`Usage: edgelite ${command}`);
      for (const f of flags) expect(r.out).toMatch(new RegExp(`^\\s+${f}\\b`, 'm'));
    });
  }

  it('every flag README.md names is in some command\'s --help', () => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const named = new Set([...readme.matchAll(/(?<![\w-])--[a-z][a-z0-9-]*/g)].map((m) => m[0]).filter((f) => !NOT_EDGELITE_FLAGS.has(f)));
    expect(named.size).toBeGreaterThan(40);
    const helps = ['--help', ...Object.keys(README_FLAGS).map((c) => `${c} --help`)].map((a) => edgelite(...a.split(' ')).out).join('\n');
    const missing = [...named].filter((f) => !new RegExp(`(^|\\s)(-\\w, )?${f}\\b`, 'm').test(helps));
    expect(missing).toEqual([]);
  });

  it('the other role\'s flag outside a failover node exits 2 naming it and what it needs', () => {
    const r = edgelite('primary', '--data', '/tmp/x', '--read-wait-ms', '900');
    expect(r.code).toBe(2);
    expect(r.err).toContain("option '--read-wait-ms' is a replica flag");
    expect(r.err).toContain('--lease');
    const c = edgelite('replica', '--primary', 'http://127.0.0.1:1', '--data', '/tmp/x', '--backup', 'file:///tmp/b');
    expect(c.code).toBe(2);
    expect(c.err).toContain("option '--backup' is a primary flag");
  });

  it('an unknown flag exits 2 naming it, without a stack trace', () => {
    const r = edgelite('primary', '--data', '/tmp/x', '--no-such-flag');
    expect(r.code).toBe(2);
    expect(r.err).toContain('--no-such-flag');
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  it('a flag without its value exits 2 naming it', () => {
    const r = edgelite('replica', '--primary');
    expect(r.code).toBe(2);
    expect(r.err).toContain("'--primary <URL>' argument missing");
  });

  it('an unknown command exits 2', () => {
    const r = edgelite('frobnicate');
    expect(r.code).toBe(2);
    expect(r.err).toContain("unknown command 'frobnicate'");
  });

  it('a bad value is MISCONFIGURED naming the flag (exit 1, no stack)', () => {
    const r = edgelite('primary', '--data', '/tmp/x', '--synchronous', 'sometimes');
    expect(r.code).toBe(1);
    expect(r.err).toContain('MISCONFIGURED: --synchronous must be normal or full');
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  it('--version prints the package version', async () => {
    const { version } = (await import('../../package.json', { with: { type: 'json' } })).default as { version: string };
    const r = edgelite('--version');
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe(version);
  });
});
