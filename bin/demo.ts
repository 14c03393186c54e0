/**
 * `npm start` / `edgelite demo`: a primary and two replicas as child processes on local files, with a
 * small workload — writes through replica A, reads through replica B with the token — and a live view
 * of positions and lag. Ctrl-C stops everything.
 *
 * Env: EDGELITE_DEMO_DIR (default .edgelite-demo), EDGELITE_DEMO_PORT (first port, default 7400;
 * 0 = ephemeral ports), EDGELITE_DEMO_SECONDS (stop by itself after that many seconds; default never).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { formatTable } from './status.ts';

const BIN = fileURLToPath(new URL('./edgelite.mjs', import.meta.url));

interface Child {
  name: string;
  url: string;
  proc: ChildProcess;
}

function start(name: string, args: string[]): Promise<Child> {
  const proc = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolveChild, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.on('line', (line) => {
      try {
        const e = JSON.parse(line) as { msg?: string; url?: string };
        if (e.msg?.endsWith('listening') && e.url) resolveChild({ name, url: e.url, proc });
      } catch {
        process.stdout.write(`${name}: ${line}\n`); // not a log line: show it as is
      }
    });
    proc.once('exit', (code) => reject(new Error(`${name} exited with ${code} before listening`)));
  });
}

async function call(url: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(`${url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...headers },
  });
  return { status: res.status, json: await res.json(), headers: res.headers };
}

/** STOP_GRACE_MS: how long Ctrl-C waits for the children to close before it kills them. */
const STOP_GRACE_MS = 5000;

/**
 * Stopper ends the demo on Ctrl-C (SIGINT) or SIGTERM: it stops the children (a terminal's Ctrl-C
 * reaches them too, as one process group), waits until they have exited, and exits 0. Requests the
 * workload had in flight fail meanwhile; `stopping` tells the loop that those failures are the stop,
 * not an error, so the demo ends without a stack trace.
 */
class Stopper {
  stopping = false;
  readonly children: Child[] = [];

  constructor() {
    process.once('SIGINT', () => void this.stop());
    process.once('SIGTERM', () => void this.stop());
  }

  async stop(): Promise<never> {
    if (!this.stopping) {
      this.stopping = true;
      process.stdout.write('\nstopping primary and replicas...\n');
      await this.stopChildren();
      process.stdout.write('stopped.\n');
      process.exit(0);
    }
    return new Promise<never>(() => {}); // the first stop exits the process
  }

  /**
   * wasStopped tells, after a request failed, whether a stop caused it. A terminal's Ctrl-C signals the
   * children too: one may close before this process has handled its own SIGINT, so a failure is
   * checked against the children (one that exited cleanly or by a signal was stopped) once one has
   * exited, or a signal came, bounded by STOP_GRACE_MS.
   */
  async wasStopped(): Promise<boolean> {
    const stopped = () => this.stopping || this.children.some((c) => c.proc.signalCode !== null || c.proc.exitCode === 0);
    const deadline = Date.now() + STOP_GRACE_MS;
    while (!stopped() && Date.now() < deadline && this.children.every((c) => c.proc.exitCode === null)) {
      await new Promise((r) => setTimeout(r, 20));
    }
    return stopped();
  }

  async stopChildren(): Promise<void> {
    const running = this.children.filter((c) => c.proc.exitCode === null && c.proc.signalCode === null);
    const exited = running.map((c) => new Promise<void>((r) => c.proc.once('exit', () => r())));
    for (const c of running) c.proc.kill('SIGTERM');
    const timer = setTimeout(() => {
      for (const c of running) c.proc.kill('SIGKILL');
    }, STOP_GRACE_MS);
    await Promise.all(exited);
    clearTimeout(timer);
  }
}

/**
 * statusPageLines names each server's status page, `/ui`, once the server serves one (asked with a
 * GET at start; a build without the page prints nothing rather than a dead link).
 */
async function statusPageLines(children: Child[]): Promise<string> {
  const lines: string[] = [];
  for (const c of children) {
    const res = await fetch(`${c.url}/ui`).catch(() => null);
    await res?.body?.cancel();
    if (res?.status === 200) lines.push(`  ${c.name.padEnd(10)} ${c.url}/ui`);
  }
  return lines.length > 0 ? `Status pages (replication, positions, lag):\n${lines.join('\n')}\n` : '';
}

export async function demoMain(_argv: string[]): Promise<void> {
  const dir = resolve(process.env.EDGELITE_DEMO_DIR ?? '.edgelite-demo');
  const base = Number(process.env.EDGELITE_DEMO_PORT ?? 7400);
  const port = (i: number) => (base === 0 ? 0 : base + i);
  mkdirSync(dir, { recursive: true });
  const stopper = new Stopper();
  try {
    await run(dir, port, stopper);
  } catch (err) {
    if (await stopper.wasStopped()) await stopper.stop(); // a request cut by the stop: not an error
    await stopper.stopChildren();
    throw err;
  }
  await stopper.stopChildren();
}

async function run(dir: string, port: (i: number) => number, stopper: Stopper): Promise<void> {
  const children = stopper.children;
  const primary = await start('primary', ['primary', '--data', join(dir, 'primary'), '--listen', `127.0.0.1:${port(0)}`]);
  children.push(primary);
  await fetch(`${primary.url}/v1/db/demo`, { method: 'PUT' });
  await call(primary.url, '/v1/db/demo/exec', { sql: 'CREATE TABLE IF NOT EXISTS visits (id INTEGER PRIMARY KEY, region TEXT, at INTEGER)' });
  const a = await start('replica A', ['replica', '--primary', primary.url, '--data', join(dir, 'replica-a'), '--listen', `127.0.0.1:${port(1)}`]);
  children.push(a);
  const b = await start('replica B', ['replica', '--primary', primary.url, '--data', join(dir, 'replica-b'), '--listen', `127.0.0.1:${port(2)}`]);
  children.push(b);
  const want = (await call(primary.url, '/v1/db/demo')).json.txid as number;
  for (const r of [a, b]) {
    const deadline = Date.now() + 30_000;
    while ((await call(r.url, '/v1/db/demo').catch(() => null))?.json?.txid !== want) {
      if (Date.now() > deadline) throw new Error(`${r.name} did not bootstrap within 30 s`);
      await new Promise((r2) => setTimeout(r2, 50));
    }
  }
  process.stdout.write(
    `edgelite demo is running (data in ${dir})\n` +
      `  primary    ${primary.url}\n  replica A  ${a.url}\n  replica B  ${b.url}\n` +
      (await statusPageLines([primary, a, b])) +
      `Point a client at a replica, e.g.:\n` +
      `  curl -s ${b.url}/v1/db/demo/query -H 'content-type: application/json' -d '{"sql":"SELECT count(*) FROM visits"}'\n` +
      `Ctrl-C stops all three.\n`,
  );
  const seconds = Number(process.env.EDGELITE_DEMO_SECONDS ?? 0);
  const until = seconds > 0 ? Date.now() + seconds * 1000 : Infinity;
  const regions = ['ams', 'iad', 'nrt', 'syd', 'gru'];
  let writes = 0;
  let lastPrint = 0;
  while (Date.now() < until && !stopper.stopping) {
    const w = await call(a.url, '/v1/db/demo/exec', { sql: 'INSERT INTO visits (region, at) VALUES (?, ?)', params: [regions[writes % regions.length], Date.now()] });
    writes++;
    const token = w.headers.get('edgelite-token') ?? '';
    const r = await call(b.url, '/v1/db/demo/query', { sql: 'SELECT count(*) FROM visits' }, { 'Edgelite-Token': token });
    if (Date.now() - lastPrint >= 1000) {
      lastPrint = Date.now();
      const rows: string[][] = [];
      for (const c of [primary, a, b]) {
        const d = (await call(c.url, '/v1/db/demo')).json;
        rows.push([c.name, c.url, String(d.txid), String(d.checksum), String(d.lagMs), String(d.lagTxids)]);
      }
      const seen = r.status === 200 ? `B sees ${String(r.json.results[0].rows[0][0])} rows` : `B answered ${r.status} ${JSON.stringify(r.json)}`;
      process.stdout.write(`\nwrites through A: ${writes}; ${seen} (read with A's token)\n`);
      process.stdout.write(formatTable(['node', 'url', 'txid', 'checksum', 'lag ms', 'lag txids'], rows));
    }
    await new Promise((r2) => setTimeout(r2, 200));
  }
  if (stopper.stopping) await stopper.stop();
}
