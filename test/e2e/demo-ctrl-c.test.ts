/**
 * `edgelite demo` (what `npm start` runs) ends cleanly on Ctrl-C: exit code 0, no stack trace, every
 * child stopped. A terminal's Ctrl-C signals the whole process group (the demo and its children at
 * once, the case that printed "TypeError: fetch failed"); a SIGINT to the demo alone must stop the
 * children too. The demo prints the URLs it serves.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.ts';

const BIN = fileURLToPath(new URL('../../bin/edgelite.mjs', import.meta.url));

interface Run {
  urls: Record<string, string>;
  stdout: string[];
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  pid: number;
}

async function startDemo(dir: string): Promise<Run> {
  const proc = spawn(process.execPath, [BIN, 'demo'], {
    detached: true, // its own process group, as under a terminal
    env: { ...process.env, EDGELITE_DEMO_DIR: dir, EDGELITE_DEMO_PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  proc.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  const urls = await new Promise<Record<string, string>>((resolve, reject) => {
    const found: Record<string, string> = {};
    const timer = setTimeout(() => reject(new Error(`demo did not start:\n${stdout.join('\n')}\n${stderr.join('')}`)), 60_000);
    void exited.then(() => reject(new Error(`demo exited before it was ready:\n${stdout.join('\n')}\n${stderr.join('')}`)));
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      stdout.push(line);
      const m = /^\s+(primary|replica A|replica B)\s+(http:\/\/\S+)$/.exec(line);
      if (m) found[m[1]!] = m[2]!;
      // Ready, and the workload has run: the Ctrl-C lands with requests in flight.
      if (found['replica B'] && /writes through A: \d+; B sees \d+ rows/.test(line)) {
        clearTimeout(timer);
        resolve(found);
      }
    });
  });
  return { urls, stdout, stderr, exited, pid: proc.pid! };
}

async function expectCleanStop(run: Run): Promise<void> {
  const { code, signal } = await run.exited;
  const stderr = run.stderr.join('');
  expect(stderr).not.toMatch(/TypeError|Error:|\n\s+at /);
  expect({ code, signal }).toEqual({ code: 0, signal: null });
  expect(run.stdout).toContain('stopped.');
  for (const url of Object.values(run.urls)) await expect(fetch(`${url}/v1/health`)).rejects.toThrow();
}

describe('edgelite demo on Ctrl-C', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());

  it('prints its URLs and exits 0 without a stack trace when the whole group gets SIGINT', async () => {
    const t = tempDir('demo-ctrl-c');
    cleanup = t.cleanup;
    const run = await startDemo(t.dir);
    expect(Object.keys(run.urls).sort()).toEqual(['primary', 'replica A', 'replica B']);
    // A status page line for each server exactly when that server serves /ui.
    for (const [name, url] of Object.entries(run.urls)) {
      const res = await fetch(`${url}/ui`);
      await res.body?.cancel();
      const listed = run.stdout.some((l) => l.trim().split(/\s+/).join(' ') === `${name} ${url}/ui`);
      expect(listed, `${name}: /ui answered ${res.status}`).toBe(res.status === 200);
    }
    process.kill(-run.pid, 'SIGINT');
    await expectCleanStop(run);
  }, 90_000);

  it('stops its children itself when only the demo gets SIGINT', async () => {
    const t = tempDir('demo-ctrl-c');
    cleanup = t.cleanup;
    const run = await startDemo(t.dir);
    process.kill(run.pid, 'SIGINT');
    await expectCleanStop(run);
  }, 90_000);
});
