/** `npm start` on a clone: starts a primary and two replicas with a workload; a replica answers; Ctrl-C stops all. */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('npm start', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());

  it('runs the demo, serves reads on a replica, and stops on SIGINT', async () => {
    const t = tempDir('demo');
    cleanup = t.cleanup;
    const proc = spawn('npm', ['start', '--silent'], {
      cwd: ROOT,
      detached: true,
      env: { ...process.env, EDGELITE_DEMO_DIR: t.dir, EDGELITE_DEMO_PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output: string[] = [];
    proc.stderr!.on('data', (d: Buffer) => output.push(d.toString()));
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    const urls = await new Promise<Record<string, string>>((resolve, reject) => {
      const found: Record<string, string> = {};
      const timer = setTimeout(() => reject(new Error(`demo did not start:\n${output.join('')}`)), 60_000);
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        output.push(`${line}\n`);
        const m = /^\s+(primary|replica A|replica B)\s+(http:\/\/[^/\s]+)$/.exec(line); // base URLs, not the /ui lines
        if (m) found[m[1]!] = m[2]!;
        if (found['replica B'] && /writes through A: \d+; B sees \d+ rows/.test(line)) {
          clearTimeout(timer);
          resolve(found);
        }
      });
    });
    const res = await fetch(`${urls['replica B']}/v1/db/demo/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sql: 'SELECT count(*) FROM visits' }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { results: Array<{ rows: number[][] }> };
    expect(body.results[0]!.rows[0]![0]).toBeGreaterThan(0);
    process.kill(-proc.pid!, 'SIGINT');
    await exited;
    // Every child was stopped with it: the replica's port no longer answers.
    await expect(fetch(`${urls['replica B']}/v1/health`)).rejects.toThrow();
  });
});
