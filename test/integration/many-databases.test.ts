/**
 * Many databases on one primary with idle closing (README.md#many-databases): 2,000 tenants (10,000
 * with EDGELITE_LONG=1) built as files, then served by a real primary with `--idle-close-ms`:
 * descriptors stay bounded (`--max-open-databases`), foreign writes by the sqlite3 CLI and by Python to
 * closed tenants are all captured in their generation, API writes to closed tenants work, a replica
 * following a pattern converges, and a restart starts with every tenant closed at its position.
 */
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica } from '../../replica/server.ts';
import { stopsAfterEach, tempDir } from '../helpers.ts';
import { rounds, roundsTimeout } from '../kit/rounds.ts';
import { waitFor } from '../kit/wait.ts';

const N = rounds(2000, 10_000);
const FOREIGN = 10; // per writer: the sqlite3 CLI and Python
const stops = stopsAfterEach();

const name = (i: number) => `t${String(i).padStart(5, '0')}`;
const PY_INSERT = 'import sqlite3, sys\ncon = sqlite3.connect(sys.argv[1])\ncon.execute("INSERT INTO kv VALUES (?, ?)", (int(sys.argv[2]), "py"))\ncon.commit()\ncon.close()\n';

async function post(url: string, path: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

async function primaryOn(dir: string, extra: string[] = []): Promise<PrimaryHandle> {
  const config = parsePrimaryConfig(['--data', dir, '--listen', '127.0.0.1:0', '--idle-close-ms', '500', '--max-open-databases', '64', ...extra], {});
  const p = await startPrimary({ ...config, auth: AUTH_DISABLED }, silentLogger);
  stops.push(() => p.close());
  return p;
}

describe(`${N} databases on one primary with idle closing`, () => {
  it('bounded descriptors, every foreign write captured, writes to closed tenants, a pattern replica, a restart with all closed', async () => {
    const t = tempDir('many');
    stops.push(t.cleanup);
    const data = join(t.dir, 'p');
    mkdirSync(data);
    for (let i = 0; i < N; i++) {
      const db = new Database(join(data, `${name(i)}.db`));
      db.pragma('journal_mode = WAL');
      db.exec(`CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL); INSERT INTO kv VALUES (0, 'tenant ${i}')`);
      db.close();
    }
    const fdsBefore = openFds();
    const primary = await primaryOn(data);
    expect(primary.store.counts()).toEqual({ databases: N, open: 0 });
    expect(openFds() - fdsBefore).toBeLessThan(200);

    // Foreign writers on closed tenants: each exits, checkpointing its WAL into the file.
    const targets = Array.from({ length: 2 * FOREIGN }, (_, i) => name(Math.floor(((i + 0.5) * N) / (2 * FOREIGN))));
    const before = new Map(targets.map((n) => [n, primary.store.info(n)!.position]));
    for (const [i, n] of targets.entries()) {
      const file = join(data, `${n}.db`);
      if (i % 2 === 0) execFileSync('sqlite3', [file, `INSERT INTO kv VALUES (${1000 + i}, 'cli')`]);
      else execFileSync('python3', ['-c', PY_INSERT, file, String(1000 + i)]);
    }
    for (const n of targets) {
      await waitFor(() => primary.store.info(n)!.position.txid === before.get(n)!.txid + 1, `${n}'s foreign write captured`);
      expect(primary.store.info(n)!.position.generation).toBe(before.get(n)!.generation);
    }
    for (const [i, n] of targets.entries()) {
      const r = await post(primary.url, `/v1/db/${n}/query`, { sql: 'SELECT v FROM kv WHERE k = ?', params: [1000 + i] });
      expect(r.json.results[0].rows).toEqual([[i % 2 === 0 ? 'cli' : 'py']]);
    }

    // API writes to 100 closed tenants: never more than --max-open-databases open.
    let maxOpen = 0;
    for (let i = 0; i < 100; i++) {
      const n = name((i * 7919) % N);
      const r = await post(primary.url, `/v1/db/${n}/exec`, { sql: 'INSERT OR REPLACE INTO kv VALUES (1, ?)', params: [`api ${i}`] });
      expect(r.status).toBe(200);
      maxOpen = Math.max(maxOpen, primary.store.counts().open);
    }
    expect(maxOpen).toBeLessThanOrEqual(64);

    // A replica following one pattern (t0001*: 10 tenants at N = 2,000) gets them, foreign rows included.
    const replica = await startReplica({ ...parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0', '--databases', 't0001*'], {}), auth: AUTH_DISABLED }, silentLogger);
    stops.push(() => replica.close());
    const followed = primary.store.names().filter((n) => n.startsWith('t0001'));
    await waitFor(() => followed.every((n) => replica.store.get(n)?.position?.txid === primary.store.info(n)!.position.txid), 'the pattern replica to converge', 60_000);
    expect(replica.store.names()).toEqual(followed);

    // A restart: every tenant closed at once, each at its position.
    await waitFor(() => primary.store.counts().open === 0, 'all closed again', 30_000);
    const positions = new Map(primary.store.names().map((n) => [n, primary.store.info(n)!.position]));
    await replica.close();
    await primary.close();
    const again = await primaryOn(data);
    expect(again.store.counts()).toEqual({ databases: N, open: 0 });
    for (const [n, p] of positions) expect(again.store.info(n)!.position).toEqual(p);
  }, roundsTimeout(N, 30, 120_000));
});
