/**
 * deploy/ is exercised, not just shipped: the container file's references resolve and its command
 * parses; the systemd units pass `systemd-analyze verify` (where present); and the multi-region env
 * files run a primary and two replicas that replicate and forward writes with the tokens as written.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica } from '../../replica/server.ts';
import { tempDir, stopsAfterEach } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');

function readEnv(file: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

function whichOrNull(cmd: string): string | null {
  try {
    return execFileSync('which', [cmd], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null; // not installed
  }
}

describe('deploy/', () => {
  const stops = stopsAfterEach();

  it('container file: base image matches engines, COPY sources exist, the default command parses', () => {
    const text = readFileSync(join(DEPLOY, 'container', 'Dockerfile'), 'utf8');
    expect(text).toMatch(/^FROM node:20-/m);
    const copies = [...text.matchAll(/^COPY\s+(.+)\s+\S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    expect(copies.length).toBeGreaterThan(4);
    for (const src of copies) expect(existsSync(join(ROOT, src)), src).toBe(true);
    const entry = JSON.parse(/^ENTRYPOINT\s+(\[.*\])$/m.exec(text)![1]!) as string[];
    const bin = entry.find((a) => a.endsWith('edgelite.mjs'));
    expect(bin && existsSync(join(ROOT, bin)), entry.join(' ')).toBe(true);
    expect(entry[0]).toBe('/usr/bin/tini');
    const cmd = JSON.parse(/^CMD\s+(\[.*\])$/m.exec(text)![1]!) as string[];
    expect(cmd[0]).toBe('primary');
    const cfg = parsePrimaryConfig(cmd.slice(1), { EDGELITE_TOKEN: 'a-long-enough-secret' });
    expect(cfg.host).toBe('0.0.0.0');
  });

  it('systemd units pass systemd-analyze verify', () => {
    const tool = whichOrNull('systemd-analyze');
    if (!tool) {
      console.warn('systemd-analyze not installed: skipping unit verification');
      return;
    }
    const units = ['edgelite-primary.service', 'edgelite-replica.service'].map((u) => join(DEPLOY, 'systemd', u));
    execFileSync(tool, ['verify', ...units], { stdio: 'pipe' });
  });

  it('the multi-region env files run a primary and two replicas with their tokens', async () => {
    const t = tempDir('deploy');
    stops.push(t.cleanup);
    const dir = join(DEPLOY, 'examples', 'multi-region');
    const pEnv = { ...readEnv(join(dir, 'primary.env')), EDGELITE_DATA: join(t.dir, 'p'), EDGELITE_LISTEN: '127.0.0.1:0' };
    const primary = await startPrimary(parsePrimaryConfig([], pEnv), silentLogger);
    stops.push(() => primary.close());
    const replicas = [];
    for (const region of ['iad', 'syd']) {
      const env = { ...readEnv(join(dir, `replica-${region}.env`)), EDGELITE_PRIMARY: primary.url, EDGELITE_DATA: join(t.dir, region), EDGELITE_LISTEN: '127.0.0.1:0' };
      const r = await startReplica(parseReplicaConfig([], env), silentLogger);
      stops.push(() => r.close());
      replicas.push(r);
    }
    const appToken = /read\+write=(\S+?);/.exec(readEnv(join(dir, 'replica-iad.env')).EDGELITE_TOKENS!)![1]!;
    const auth = { authorization: `Bearer ${appToken}`, 'content-type': 'application/json' };
    const [iad, syd] = replicas as [typeof replicas[0], typeof replicas[0]];
    expect((await fetch(`${iad.url}/v1/db/shop`, { method: 'PUT', headers: auth })).status).toBe(201);
    const w = await fetch(`${iad.url}/v1/db/shop/exec`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ statements: [{ sql: 'CREATE TABLE o (id INTEGER PRIMARY KEY, item TEXT)' }, { sql: "INSERT INTO o (item) VALUES ('tea')" }] }),
    });
    expect(w.status).toBe(200);
    const token = w.headers.get('edgelite-token')!;
    await waitFor(() => syd.store.get('shop')?.position, 'syd bootstraps shop');
    const r = await fetch(`${syd.url}/v1/db/shop/query`, { method: 'POST', headers: { ...auth, 'Edgelite-Token': token }, body: JSON.stringify({ sql: 'SELECT item FROM o' }) });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { results: Array<{ rows: unknown[][] }> }).results[0]!.rows).toEqual([['tea']]);
    const anon = await fetch(`${syd.url}/v1/db/shop/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: 'SELECT 1' }) });
    expect(anon.status).toBe(401);
  });
});
