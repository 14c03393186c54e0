/**
 * A real etcd (Debian's etcd-server, installed by scripts/ensure-debian.mjs) on 127.0.0.1 for tests:
 * its own data directory and loopback ports, stopped by PID. The v3 API is spoken through etcd's JSON
 * gateway (`POST /v3/kv/put`, `/v3/kv/range`, `/v3/lease/grant`, ...: keys and values base64).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './api.ts';
import { waitFor } from './wait.ts';

export interface Etcd {
  /** The client URL, e.g. http://127.0.0.1:23790. */
  url: string;
  pid: number;
  /** call POSTs one v3 JSON-gateway request (`kv/put`, `kv/range`, `lease/grant`, ...) and returns its JSON. */
  call(path: string, body: unknown): Promise<Record<string, unknown>>;
  /** stop kills etcd (SIGKILL by default) and removes its data directory. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export const b64 = (s: string): string => Buffer.from(s).toString('base64');
export const unb64 = (s: string): string => Buffer.from(s, 'base64').toString();

export async function startEtcd(): Promise<Etcd> {
  const dir = mkdtempSync(join(tmpdir(), 'edgelite-etcd-'));
  const [client, peer] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${client}`;
  let output = '';
  const proc: ChildProcess = spawn('etcd', [
    '--name', 'test', '--data-dir', dir,
    '--listen-client-urls', url, '--advertise-client-urls', url,
    '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
    '--initial-cluster', `test=http://127.0.0.1:${peer}`, '--log-level', 'error',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const spawned = await new Promise<Error | null>((resolve) => {
    proc.once('spawn', () => resolve(null));
    proc.once('error', (err) => resolve(err));
  });
  if (spawned) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`etcd did not start (${spawned.message}): is etcd-server installed? (node scripts/ensure-debian.mjs)`);
  }
  const call = async (path: string, body: unknown): Promise<Record<string, unknown>> => {
    const res = await fetch(`${url}/v3/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const json = (await res.json()) as Record<string, unknown>;
    if (!res.ok) throw new Error(`etcd ${path}: HTTP ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  const stop = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid!, signal);
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`etcd exited (${proc.exitCode}):\n${output}`);
      return (await fetch(`${url}/health`).then((r) => r.json()).catch(() => null)) as { health?: string } | null;
    }, 'etcd to answer /health', 20_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, pid: proc.pid!, call, stop };
}

/**
 * etcdForFile starts one etcd for the whole test file (beforeAll) and stops it after (afterAll); read
 * `.url` (and the rest) inside tests.
 */
export function etcdForFile(): Etcd {
  let etcd: Etcd | null = null;
  beforeAll(async () => {
    etcd = await startEtcd();
  }, 30_000);
  afterAll(async () => {
    await etcd?.stop();
  });
  const running = (): Etcd => {
    if (!etcd) throw new Error('etcd is not started yet (use it inside a test)');
    return etcd;
  };
  return {
    get url() {
      return running().url;
    },
    get pid() {
      return running().pid;
    },
    call: (path, body) => running().call(path, body),
    stop: (signal) => running().stop(signal),
  };
}
