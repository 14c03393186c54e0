/**
 * A replica of many databases (README.md#many-databases): a primary with 2,000 small tenants (10,000
 * with EDGELITE_LONG=1) built as files, and a fresh replica with `--databases '*'` that bootstraps them
 * with bounded parallel snapshot downloads. It converges on every position, opens a bounded number of
 * stream sessions (edgelite_follower_connects_total: one restart per batch of installed snapshots, not
 * one per snapshot), and after idle closing its descriptors (/proc/self/fd) are back near where they
 * started. A second test writes to every tenant while a slow bootstrap runs: every write ends up on the
 * replica (none applied against an old copy, none lost).
 */
import Database from 'better-sqlite3';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { JOIN_BATCH_MS } from '../../shared/follower.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { stopsAfterEach, tempDir } from '../helpers.ts';
import { rounds, roundsTimeout } from '../kit/rounds.ts';
import { waitFor } from '../kit/wait.ts';

const N = rounds(2000, 10_000);
const stops = stopsAfterEach();
const name = (i: number) => `t${String(i).padStart(5, '0')}`;

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** tenants writes `n` one-row databases as files, the fast way (no primary involved). */
function tenants(dir: string, n: number): void {
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < n; i++) {
    const db = new Database(join(dir, `${name(i)}.db`));
    db.pragma('journal_mode = WAL');
    db.exec(`CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL); INSERT INTO kv VALUES (0, 'tenant ${i}')`);
    db.close();
  }
}

async function primaryOn(dir: string): Promise<PrimaryHandle> {
  const config = parsePrimaryConfig(['--data', dir, '--listen', '127.0.0.1:0', '--idle-close-ms', '500', '--max-open-databases', '64'], {});
  const p = await startPrimary({ ...config, auth: AUTH_DISABLED }, silentLogger);
  stops.push(() => p.close());
  return p;
}

async function replicaOf(primary: PrimaryHandle, dir: string, extra: string[]): Promise<ReplicaHandle> {
  const config = parseReplicaConfig(['--primary', primary.url, '--data', dir, '--listen', '127.0.0.1:0', '--databases', '*', ...extra], {});
  const r = await startReplica({ ...config, auth: AUTH_DISABLED }, silentLogger);
  stops.push(() => r.close());
  return r;
}

/** converged says whether the replica holds every primary database at the primary's position. */
function converged(primary: PrimaryHandle, replica: ReplicaHandle): boolean {
  for (const n of primary.store.names()) {
    const mine = replica.store.get(n)?.position;
    const theirs = primary.store.info(n)!.position;
    if (!mine || mine.generation !== theirs.generation || mine.txid !== theirs.txid || mine.checksum !== theirs.checksum) return false;
  }
  return true;
}

async function metric(url: string, line: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const hit = text.split('\n').find((l) => l.startsWith(`${line} `));
  if (!hit) throw new Error(`no ${line} in /metrics`);
  return Number(hit.slice(line.length + 1));
}

describe(`a fresh replica of ${N} databases`, () => {
  it('converges on every position with bounded stream sessions, and closes idle databases down to a bounded descriptor count', async () => {
    const t = tempDir('replica-many');
    stops.push(t.cleanup);
    tenants(join(t.dir, 'p'), N);
    const primary = await primaryOn(join(t.dir, 'p'));
    const fdsBefore = openFds();
    const started = Date.now();
    const replica = await replicaOf(primary, join(t.dir, 'r'), ['--bootstrap-concurrency', '8', '--idle-close-ms', '1000', '--max-open-databases', '100']);
    let maxOpen = 0;
    let maxRunning = 0;
    await waitFor(() => {
      maxOpen = Math.max(maxOpen, replica.store.counts().open);
      maxRunning = Math.max(maxRunning, replica.follower!.snapshots.running);
      return converged(primary, replica);
    }, `the replica to converge on ${N} databases`, roundsTimeout(N, 30, 60_000), 50);
    const elapsedMs = Date.now() - started;
    // Converged; then each joins a session (the last batch's restart) and hears `ready`: following live.
    await waitFor(() => primary.store.names().every((n) => replica.store.get(n)!.ready), 'every database ready on the stream', 30_000, 50);
    expect(replica.store.names()).toEqual(primary.store.names());
    expect(maxRunning).toBeGreaterThan(1);
    expect(maxRunning).toBeLessThanOrEqual(8);
    expect(maxOpen).toBeLessThanOrEqual(100);
    // One session, plus one per JOIN_BATCH_MS of bootstrap, plus the last batch: never one per database.
    const sessions = replica.follower!.connects;
    expect(sessions).toBeLessThanOrEqual(5 + Math.ceil(elapsedMs / JOIN_BATCH_MS)); // slack: a session a busy machine ends (heartbeat timeout)
    expect(sessions).toBeLessThan(N / 20);
    expect(await metric(replica.url, 'edgelite_follower_connects_total')).toBe(sessions);
    console.log(`replica of ${N} databases converged in ${elapsedMs} ms with ${sessions} stream sessions`);

    // Idle: every local database closes its connections; descriptors back near the start.
    await waitFor(() => replica.store.counts().open === 0 && primary.store.counts().open === 0, 'every database closed when idle', 30_000);
    expect(await metric(replica.url, 'edgelite_databases{state="closed"}')).toBe(N);
    expect(openFds() - fdsBefore).toBeLessThan(150);

    // A read reopens one, and a write on the primary is applied to a closed one.
    const one = name(N - 1);
    const read = await fetch(`${replica.url}/v1/db/${one}/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: 'SELECT v FROM kv' }) });
    expect((await read.json()).results[0].rows).toEqual([[`tenant ${N - 1}`]]);
    expect(replica.store.get(one)!.isOpen).toBe(true);
    const other = name(1);
    await waitFor(() => replica.store.get(other)!.isOpen === false, `${other} closed`);
    const w = await fetch(`${primary.url}/v1/db/${other}/exec`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: "INSERT INTO kv VALUES (1, 'later')" }) });
    expect(w.status).toBe(200);
    await waitFor(() => replica.store.get(other)!.position!.txid === primary.store.info(other)!.position.txid, 'the write applied to a closed database');
    expect(replica.store.get(other)!.prepare('SELECT v FROM kv WHERE k = 1').pluck().get()).toBe('later');
  }, roundsTimeout(N, 60, 120_000));

  it('writes arriving during a bootstrap all end up on the replica', async () => {
    const M = 200;
    const t = tempDir('replica-many-writes');
    stops.push(t.cleanup);
    tenants(join(t.dir, 'p'), M);
    const primary = await primaryOn(join(t.dir, 'p'));
    const replica = await replicaOf(primary, join(t.dir, 'r'), ['--bootstrap-concurrency', '2', '--idle-close-ms', '0']);
    // Three writes to every tenant while snapshots download: some land before a tenant's snapshot,
    // some while it downloads, some after it is installed and before it joins the stream.
    let during = 0;
    for (let round = 1; round <= 3; round++) {
      for (let i = 0; i < M; i++) {
        const r = await fetch(`${primary.url}/v1/db/${name(i)}/exec`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: 'INSERT INTO kv VALUES (?, ?)', params: [round, `w${round}`] }) });
        expect(r.status).toBe(200);
        if (replica.follower!.snapshots.running + replica.follower!.snapshots.queued > 0) during++;
      }
    }
    expect(during).toBeGreaterThan(0); // the bootstrap was still running while writes went in
    await waitFor(() => converged(primary, replica), 'the replica to converge', 120_000, 50);
    for (let i = 0; i < M; i++) {
      expect(replica.store.get(name(i))!.prepare('SELECT k, v FROM kv ORDER BY k').raw().all()).toEqual([[0, `tenant ${i}`], [1, 'w1'], [2, 'w2'], [3, 'w3']]);
    }
    expect(replica.follower!.connects).toBeLessThan(M / 4);
  }, 240_000);
});
