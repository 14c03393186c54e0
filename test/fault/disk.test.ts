/**
 * Disk faults on a replica: its data directory fills up (a small tmpfs), turns read-only (a tmpfs
 * remounted ro), or loses its write permission (chmod, with the replica running as an unprivileged user
 * because root ignores permission bits). Each must give a typed error, turn health red, corrupt
 * nothing (the file passes integrity_check and holds a state the primary had), and heal once the disk
 * is usable again.
 *
 * Needs root (mount, chown, setuid for the child). Where mounting is refused the tmpfs cases are
 * skipped and say so.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeChangeSet } from '../../shared/changeset.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { parseChecksum, type ChangeSet, type Position } from '../../shared/types.ts';
import { PageApplier } from '../../replica/apply.ts';
import { EDGELITE_BIN, REPO_ROOT } from '../kit/spawn.ts';
import { FrameStream } from '../kit/stream.ts';
import { info, integrityCheck } from '../kit/api.ts';
import { seedFromEnv } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';
import { Cluster, DB } from '../kit/cluster.ts';
import { differingPages, tableDigests, PositionHistory, PositionSampler } from './verify.ts';

const NOBODY = 65534;
const MB = 1024 * 1024;

/** mountProbe says whether this process may mount a tmpfs (root in a container may not). */
function mountProbe(): string | null {
  const dir = mkdtempSync(join(tmpdir(), 'edgelite-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'pipe' });
    execFileSync('umount', [dir], { stdio: 'pipe' });
    return null;
  } catch (err) {
    return String((err as { stderr?: unknown }).stderr ?? err).trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const MOUNT_REFUSED = mountProbe();
if (MOUNT_REFUSED) console.log(`disk faults: tmpfs cases skipped, mount refused: ${MOUNT_REFUSED}`);
const IS_ROOT = process.getuid?.() === 0;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** tmpfs mounts a tmpfs of `bytes` on a fresh directory, unmounted and removed after the test. */
function tmpfs(bytes: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'edgelite-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir]);
  cleanups.push(() => {
    execFileSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

function remount(dir: string, options: string): void {
  execFileSync('mount', ['-o', `remount,${options}`, dir]);
}

async function start(seed: number, replicaDir?: string): Promise<Cluster> {
  const c = await Cluster.start({ seed, replicaFlags: ['--max-lag-ms', '1000', '--heartbeat-timeout-ms', '1500'], ...(replicaDir ? { replicaDir } : {}) });
  cleanups.push(() => c.stop());
  return c;
}

/** bigRows writes `n` rows of `bytes` random bytes each on the primary and records the positions. */
async function bigRows(url: string, n: number, bytes: number, history: PositionHistory, firstId: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${url}/v1/db/${DB}/exec`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sql: 'INSERT INTO items (id, tag, body) VALUES (?, ?, randomblob(?))', params: [firstId + i, 'big', bytes] }),
    });
    if (res.status !== 200) throw new Error(`exec answered ${res.status}: ${await res.text()}`);
    history.record(Number(res.headers.get('edgelite-txid')), res.headers.get('edgelite-checksum')!);
  }
}

async function healthStatus(url: string): Promise<number> {
  return (await fetch(`${url}/v1/health`)).status;
}

async function count(url: string): Promise<number> {
  const res = await fetch(`${url}/v1/db/${DB}/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: 'SELECT count(*) FROM items' }) });
  if (res.status !== 200) throw new Error(`query answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { results: Array<{ rows: number[][] }> }).results[0]!.rows[0]![0]!;
}

/** snapshotOf downloads the primary's snapshot of DB with its position. */
async function snapshotOf(url: string): Promise<{ image: Uint8Array; position: Position; databaseId: number }> {
  const res = await fetch(`${url}/v1/db/${DB}/snapshot`);
  const h = res.headers;
  return {
    image: new Uint8Array(await res.arrayBuffer()),
    position: { generation: Number(h.get('edgelite-generation')), txid: Number(h.get('edgelite-txid')), checksum: parseChecksum(h.get('edgelite-checksum')!) },
    databaseId: Number(h.get('edgelite-database-id')),
  };
}

/** changeSetsAfter reads the stream from `from` until it has every change set up to `txid`. */
async function changeSetsAfter(url: string, from: Position, txid: number): Promise<ChangeSet[]> {
  const stream = await FrameStream.open(url, { databases: [DB], positions: { [DB]: { generation: from.generation, txid: from.txid, checksum: from.checksum.toString(16).padStart(16, '0') } } });
  try {
    const out: ChangeSet[] = [];
    let at = 0;
    while (out.length === 0 || out[out.length - 1]!.maxTxid < txid) {
      at = (await stream.waitFor((f) => f.type === 'changeset', at)) + 1;
      const f = stream.frames[at - 1]!;
      if (f.type === 'changeset') out.push(decodeChangeSet(f.data));
    }
    return out;
  } finally {
    stream.close();
  }
}

function errorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return err instanceof EdgeliteError ? err.code : `untyped ${String(err)}`;
  }
  return 'no error';
}

describe.skipIf(MOUNT_REFUSED !== null)('disk faults (tmpfs)', () => {
  it('a full disk: typed DISK_FULL, nothing half-applied, and the applier resumes once there is space', async () => {
    const c = await start(seedFromEnv());
    const dir = tmpfs(3 * MB);
    const snap = await snapshotOf(c.primary.url);
    const applier = PageApplier.open(join(dir, `${DB}.db`), { log: () => {} });
    cleanups.unshift(() => applier.close());
    applier.restoreSnapshot(snap.image, snap.position, snap.databaseId);
    const history = new PositionHistory();
    await bigRows(c.primary.url, 8, 512 * 1024, history, 1);
    const sets = await changeSetsAfter(c.primary.url, snap.position, c.primarySample().txid);
    let failedAt = -1;
    let code = '';
    for (const [i, cs] of sets.entries()) {
      const before = applier.position;
      code = errorCode(() => applier.apply([cs]));
      if (code === 'no error') continue;
      failedAt = i;
      expect(applier.position, 'position after a failed apply').toEqual(before);
      break;
    }
    expect(failedAt, 'the tmpfs never filled up').toBeGreaterThan(0);
    expect(code).toBe('DISK_FULL');
    expect(integrityCheck(applier.path)).toBe('ok');
    expect(applier.fileChecksum()).toBe(applier.checksum);
    remount(dir, `size=${64 * MB}`);
    for (const cs of sets.slice(failedAt)) applier.apply([cs]);
    expect(applier.position!.txid).toBe(c.primarySample().txid);
    expect(applier.fileChecksum()).toBe(applier.checksum);
    expect(differingPages(c.primaryFile, applier.path)).toEqual([]);
  });

  it('a replica whose disk fills up: health red, reads still served, no corruption, heals when space returns', async () => {
    const dir = tmpfs(4 * MB);
    const c = await start(seedFromEnv(), join(dir, 'r'));
    const history = new PositionHistory();
    history.record(c.primarySample().txid, c.primarySample().checksum);
    await c.startReplica();
    const sampler = new PositionSampler(() => c.replicaSample());
    await waitFor(() => c.caughtUp(), 'bootstrap');
    expect(await healthStatus(c.replica.url)).toBe(200);
    await bigRows(c.primary.url, 10, 768 * 1024, history, 1);
    await waitFor(() => c.failures().some((l) => /full/i.test(String(l.error))), 'the replica to hit the full disk');
    await waitFor(async () => (await healthStatus(c.replica.url)) === 503, 'health to turn red');
    expect(c.caughtUp()).toBe(false);
    expect(await count(c.replica.url)).toBeGreaterThanOrEqual(0);
    expect(integrityCheck(c.replicaFile)).toBe('ok');
    expect(history.mismatches([c.replicaSample()!])).toEqual([]);
    remount(dir, `size=${64 * MB}`);
    await waitFor(() => c.caughtUp(), 'the replica to catch up once there is space', 30_000);
    await waitFor(async () => (await healthStatus(c.replica.url)) === 200, 'health back to 200');
    expect(history.mismatches(sampler.stop())).toEqual([]);
    expect(integrityCheck(c.replicaFile)).toBe('ok');
    expect(differingPages(c.primaryFile, c.replicaFile)).toEqual([]);
    expect(tableDigests(c.replicaFile)).toEqual(tableDigests(c.primaryFile));
  });

  // Was a bug: a heartbeat or ready counted as progress, so a session whose first apply always failed reset the backoff.
  it('a persistent apply failure (full disk) is retried with growing backoff, not in a tight loop', async () => {
    const dir = tmpfs(4 * MB);
    const c = await Cluster.start({ seed: seedFromEnv(), replicaDir: join(dir, 'r'), replica: { backoffMinMs: 50, backoffMaxMs: 5000 } });
    cleanups.push(() => c.stop());
    await c.startReplica();
    await waitFor(() => c.caughtUp(), 'bootstrap');
    // Small change sets, so a failing attempt is cheap and the count measures the backoff, not the load.
    const history = new PositionHistory();
    for (let i = 0; i < 12 && c.failures().length === 0; i++) await bigRows(c.primary.url, 10, 64 * 1024, history, 1 + i * 10);
    await waitFor(() => c.failures().some((l) => /full/i.test(String(l.error))), 'the first failed apply');
    const first = c.failures().length;
    await new Promise((r) => setTimeout(r, 3000));
    const retries = c.failures().length - first;
    console.log(`full disk: ${retries} failed sessions in 3 s (doubling from 50 ms allows about 7)`);
    expect(retries).toBeLessThanOrEqual(10);
  });

  it('a replica file on a read-only filesystem: a typed error, the file unchanged, usable again once writable', async () => {
    const c = await start(seedFromEnv());
    const dir = tmpfs(16 * MB);
    const file = join(dir, `${DB}.db`);
    const snap = await snapshotOf(c.primary.url);
    const first = PageApplier.open(file, { log: () => {} });
    first.restoreSnapshot(snap.image, snap.position, snap.databaseId);
    first.close();
    const history = new PositionHistory();
    await bigRows(c.primary.url, 2, 100_000, history, 1);
    const sets = await changeSetsAfter(c.primary.url, snap.position, c.primarySample().txid);
    remount(dir, 'ro');
    let applier: PageApplier | null = null;
    const openCode = errorCode(() => (applier = PageApplier.open(file, { log: () => {} })));
    const applyCode = applier ? errorCode(() => applier!.apply(sets)) : openCode;
    (applier as PageApplier | null)?.close();
    remount(dir, 'rw');
    const again = PageApplier.open(file, { log: () => {} });
    cleanups.unshift(() => again.close());
    expect(again.position).toEqual(snap.position);
    again.apply(sets);
    expect(differingPages(c.primaryFile, file)).toEqual([]);
    console.log(`read-only filesystem: open ${openCode}, apply ${applyCode}`);
    expect({ openCode, applyCode }).toEqual({ openCode: expect.stringMatching(/^(no error|IO_ERROR|READ_ONLY)$/), applyCode: expect.stringMatching(/^(IO_ERROR|READ_ONLY)$/) });
  });
});

interface Child {
  url: string;
  logs: Array<Record<string, unknown>>;
  proc: ChildProcess;
}

/** spawnAs runs the edgelite CLI as `uid` (root ignores permission bits) and waits for its listening line. */
function spawnAs(uid: number, args: string[]): Promise<Child> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('EDGELITE_')) env[k] = v;
  const proc = spawn(process.execPath, [EDGELITE_BIN, ...args], { cwd: REPO_ROOT, env: { ...env, HOME: tmpdir() }, uid, gid: uid, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Array<Record<string, unknown>> = [];
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`edgelite ${args.join(' ')} did not start\n${out}`)), 30_000);
    proc.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
    proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      for (const line of s.split('\n')) {
        if (!line.startsWith('{')) continue;
        const l = JSON.parse(line) as Record<string, unknown>;
        logs.push(l);
        if (typeof l.msg === 'string' && l.msg.endsWith('listening')) {
          clearTimeout(timer);
          resolve({ url: l.url as string, logs, proc });
        }
      }
    });
    proc.once('exit', (code) => reject(new Error(`edgelite exited (${code}) before listening\n${out}`)));
  });
}

async function kill(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await exited;
}

describe.skipIf(!IS_ROOT)('disk faults (permissions, replica as an unprivileged user)', () => {
  /**
   * readOnlyRestart: a replica (as nobody) follows the primary; its directory loses write permission
   * while it runs (replication must go on: it creates no file); then it is restarted on read-only files
   * while the primary writes on.
   */
  async function readOnlyRestart(): Promise<{ c: Cluster; child: Child; dir: string; same: () => Promise<boolean> }> {
    const c = await start(seedFromEnv());
    const dir = mkdtempSync(join(tmpdir(), 'edgelite-perm-'));
    chownSync(dir, NOBODY, NOBODY);
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const args = ['replica', '--primary', c.primary.url, '--data', dir, '--listen', '127.0.0.1:0', '--max-lag-ms', '1000', '--heartbeat-timeout-ms', '1500'];
    let child = await spawnAs(NOBODY, args);
    cleanups.unshift(() => kill(child.proc));
    const same = async () => {
      const r = await info(child.url, DB).catch(() => null);
      const p = c.primarySample();
      return r?.txid === p.txid && r.checksum === p.checksum;
    };
    await waitFor(same, 'bootstrap');
    const history = new PositionHistory();
    chmodSync(dir, 0o555);
    await bigRows(c.primary.url, 3, 50_000, history, 1);
    await waitFor(same, 'replication into a directory without write permission');
    await kill(child.proc);
    for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o444);
    child = await spawnAs(NOBODY, args);
    await bigRows(c.primary.url, 3, 50_000, history, 100);
    await waitFor(() => child.logs.some((l) => l.msg === 'stream ended' && /EACCES|permission denied|readonly/i.test(String(l.error))), 'the restarted replica to fail writing');
    return { c, child, dir, same };
  }

  it('a data directory without write permission: replication goes on while running; restarted on read-only files: health red, reads served, no corruption', async () => {
    const { child, dir, same } = await readOnlyRestart();
    await waitFor(async () => (await healthStatus(child.url)) === 503, 'health to turn red');
    expect(await same()).toBe(false);
    expect(await count(child.url)).toBe(3);
    expect(integrityCheck(join(dir, `${DB}.db`))).toBe('ok');
  });

  // Was a bug: PageApplier's writer, opened read-only by SQLite on a 0444 file, stayed read-only (SQLITE_READONLY, mapped to INTERNAL) until a restart.
  it('a replica restarted on read-only files heals once they are writable again, without another restart', async () => {
    const { c, child, dir, same } = await readOnlyRestart();
    chmodSync(dir, 0o755);
    for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o644);
    const mark = child.logs.length;
    await waitFor(same, 'the replica to catch up once writable', 10_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; replica said: ${JSON.stringify(child.logs.slice(mark).slice(-2))}`);
    });
    await waitFor(async () => (await healthStatus(child.url)) === 200, 'health back to 200');
    expect(await count(child.url)).toBe(6);
    expect(integrityCheck(join(dir, `${DB}.db`))).toBe('ok');
    expect(differingPages(c.primaryFile, join(dir, `${DB}.db`))).toEqual([]);
  });
});
