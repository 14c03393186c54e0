/**
 * The CLI run for real (README.md#cli): `--log-format json --log-level warn` leaves no info line, on a
 * server's stdout nor on a tool's stderr, where the default level prints them; `edgelite status --watch`
 * redraws the positions until Ctrl-C and then exits 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.ts';
import { exec, freePort, http } from '../kit/api.ts';
import { EDGELITE_BIN, REPO_ROOT, runEdgelite, spawnEdgelite, type EdgeliteProcess } from '../kit/spawn.ts';
import { waitFor } from '../kit/wait.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Child {
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(args: string[]): Child {
  const proc = spawn(process.execPath, [EDGELITE_BIN, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  cleanups.push(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  return { proc, stdout: () => out, stderr: () => err, exited };
}

/** jsonLines parses every line of a log (each must be JSON: `--log-format json`). */
function jsonLines(text: string): Array<Record<string, unknown>> {
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function primary(dir: string): Promise<EdgeliteProcess> {
  const p = await spawnEdgelite(['primary', '--data', dir, '--listen', '127.0.0.1:0']);
  cleanups.push(async () => void (await p.kill()));
  return p;
}

describe('edgelite logs', () => {
  it('--log-format json --log-level warn: a primary and a migrate print no info line; at the default level both do', async () => {
    const t = tempDir('cli-logs');
    cleanups.push(t.cleanup);
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const quiet = start(['primary', '--data', join(t.dir, 'p'), '--listen', `127.0.0.1:${port}`, '--log-format', 'json', '--log-level', 'warn']);
    await waitFor(async () => (await http(url, 'GET', '/v1/health').catch(() => null))?.status === 200 || null, 'the primary to answer', 30_000);
    expect((await http(url, 'PUT', '/v1/db/app')).status).toBe(201);
    await exec(url, 'app', { sql: 'CREATE TABLE t (x)' });
    await exec(url, 'app', { sql: 'INSERT INTO t VALUES (1)' });

    const dir = join(t.dir, 'migrations');
    mkdirSync(dir);
    writeFileSync(join(dir, '0001_init.sql'), 'CREATE TABLE m (id INTEGER PRIMARY KEY);\n');
    const warnOnly = await runEdgelite(['migrate', dir, '--all', '--primary', url, '--log-format', 'json', '--log-level', 'warn']);
    expect(warnOnly.status, warnOnly.stderr).toBe(0);
    expect(warnOnly.stdout).toContain('app: applied 0001_init.sql');
    expect(jsonLines(warnOnly.stderr)).toEqual([]);
    // The same run at the default level (JSON, stderr not a terminal) logs its progress at info.
    const chatty = await runEdgelite(['migrate', dir, '--all', '--primary', url]);
    expect(chatty.status, chatty.stderr).toBe(0);
    expect(jsonLines(chatty.stderr)).toContainEqual(expect.objectContaining({ level: 'info', role: 'migrate', msg: 'migrate: app up-to-date (1/1)' }));

    quiet.proc.kill('SIGTERM');
    expect(await quiet.exited).toEqual({ code: 0, signal: null });
    const lines = jsonLines(quiet.stdout());
    expect(lines.filter((l) => l.level === 'info' || l.level === 'debug'), quiet.stdout()).toEqual([]);

    // The default level logs `primary listening` and `shutting down` at info, in the shape the test kit reads.
    const loud = await primary(join(t.dir, 'p2'));
    const listening = loud.logs.find((l) => l.msg === 'primary listening')!;
    expect(listening).toMatchObject({ level: 'info', role: 'primary', url: loud.url });
    expect(Number.isFinite(Date.parse(listening.time as string))).toBe(true);
  });
});

describe('edgelite status --watch', () => {
  it('redraws positions and lag every --interval-ms, a write showing up in a later frame, and exits 0 on SIGINT', async () => {
    const t = tempDir('cli-watch');
    cleanups.push(t.cleanup);
    const p = await primary(join(t.dir, 'p'));
    expect((await http(p.url, 'PUT', '/v1/db/app')).status).toBe(201);
    await exec(p.url, 'app', { sql: 'CREATE TABLE t (x)' });
    const w = start(['status', p.url, '--watch', '--interval-ms', '200']);
    const frames = () => w.stdout().split(/^(?=edgelite status )/m).filter((f) => f.startsWith('edgelite status '));
    const txidOf = (frame: string) => Number(/^app\s+\d+\s+(\d+)\s/m.exec(frame)?.[1] ?? NaN);
    await waitFor(() => frames().length >= 2 || null, 'two frames', 30_000);
    const first = frames()[0]!;
    expect(first).toMatch(new RegExp(`^edgelite status ${p.url}  \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z  \\(every 200 ms; Ctrl-C stops\\)\\n${p.url}  role=primary  health=ok`));
    expect(first).toMatch(/^database\s+generation\s+txid\s+checksum\s+lag ms\s+lag txids$/m);
    const before = txidOf(first);
    expect(before).toBeGreaterThan(0);
    await exec(p.url, 'app', { sql: 'INSERT INTO t VALUES (1)' });
    const written = (await http(p.url, 'GET', '/v1/db/app')).json.txid as number;
    expect(written).toBeGreaterThan(before);
    await waitFor(() => frames().some((f) => txidOf(f) === written) || null, `a frame with txid ${written}`, 30_000);
    w.proc.kill('SIGINT');
    expect(await w.exited, w.stderr()).toEqual({ code: 0, signal: null });
    expect(w.stderr()).toBe('');
  });
});
