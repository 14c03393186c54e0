/**
 * Replicas across primary restarts (docs/ARCHITECTURE.md#the-log-and-snapshots, docs/ARCHITECTURE.md#the-stream-protocol): the primary is killed (SIGKILL) or stopped
 * (SIGTERM) under write load and started again on the same port; replicas reconnect on their own
 * (backoff) and converge, and the generation does not change, so no replica needs a snapshot. Then a
 * primary whose data directory is put back to an older copy: replicas that are ahead of it, or whose
 * checksum disagrees at their txid, are re-snapshotted and converge.
 */
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { prng, seedFromEnv, tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';
import { converge, dump, exec, freePort, http, info, integrityCheck, Load, logged, query } from '../kit/api.ts';
import { failureTimes, retryBounds } from '../kit/backoff.ts';
import { processesAfterEach, type EdgeliteProcess } from '../kit/spawn.ts';
import { LONG } from '../kit/rounds.ts';
import { DEFAULT_BACKOFF_MAX_MS, DEFAULT_BACKOFF_MIN_MS } from '../../replica/follower.ts';

/** Child processes start slowly on a loaded 2-core machine: more room than the default test timeout. */
const TIMEOUT_MS = LONG ? 600_000 : 180_000;
const { procs, cleanups } = processesAfterEach();

/** BACKOFF: the replicas' default reconnect backoff (replica/follower.ts), which these replicas run with. */
const BACKOFF = { minMs: DEFAULT_BACKOFF_MIN_MS, maxMs: DEFAULT_BACKOFF_MAX_MS };
/** ATTEMPT_MS: what one failed attempt may take on a loaded machine (connect refused, log, timer lag). */
const ATTEMPT_MS = 500;

/** A write cut by the primary's death fails with a network error (undici's "fetch failed"). */
const primaryDown = (err: unknown) => err instanceof TypeError;

describe('replicas across primary restarts', () => {
  it('reconnect after SIGKILL and SIGTERM restarts on the same port, keeping the generation', async () => {
    const seed = seedFromEnv();
    const rand = prng(seed);
    const t = tempDir('primary-restart');
    cleanups.push(t.cleanup);
    const pdir = join(t.dir, 'p');
    const listen = `127.0.0.1:${await freePort()}`;
    let primary = await procs.primary(pdir, listen);
    await http(primary.url, 'PUT', '/v1/db/app');
    await exec(primary.url, 'app', { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)' });
    const generation = (await info(primary.url, 'app'))!.generation;
    const replicas = [await procs.replica(primary.url, join(t.dir, 'r1')), await procs.replica(primary.url, join(t.dir, 'r2'))];
    await converge(primary.url, replicas.map((r) => r.url), 'app');

    let url = primary.url;
    const load = new Load(2, async () => {
      await exec(url, 'app', { sql: 'INSERT INTO t (v) VALUES (randomblob(?))', params: [Math.floor(rand() * 5000)] });
    }, primaryDown);

    const signals: NodeJS.Signals[] = LONG ? ['SIGKILL', 'SIGKILL', 'SIGTERM', 'SIGKILL', 'SIGTERM', 'SIGKILL', 'SIGKILL', 'SIGTERM'] : ['SIGKILL', 'SIGTERM', 'SIGKILL'];
    const reconnectMs: number[] = [];
    const retriesSeen: string[] = [];
    for (const [round, signal] of signals.entries()) {
      const before = load.done;
      await waitFor(() => load.done > before + 20 + Math.floor(rand() * 200) || load.error, 'writes before the stop');
      const downAt = Date.now();
      await procs.stop(primary, signal);
      const old = primary;
      primary = await procs.primary(pdir, listen);
      const upAt = Date.parse(String(logged(primary, 'primary listening')[0]?.time));
      expect(primary.url).toBe(url);
      const context = `seed ${seed}, round ${round} (${signal})\n${old.output().slice(-3000)}\n${primary.output()}`;
      const now = (await info(primary.url, 'app'))!;
      expect(now.generation, `the primary started a new generation; ${context}`).toBe(generation);
      expect(logged(primary, 'new generation'), context).toEqual([]);
      // Reconnected: every replica reaches what the primary had when it came back.
      const t0 = Date.now();
      await waitFor(async () => {
        const got = await Promise.all(replicas.map((r) => info(r.url, 'app')));
        return got.every((g) => g!.generation === generation && g!.txid! >= now.txid!);
      }, `replicas to resume after the ${signal} restart (${context})`);
      reconnectMs.push(Date.now() - t0);
      // While the primary was down each replica kept retrying at its backoff pace: the failed attempts
      // after the first failure fit the bounds the backoff allows over that time (a replica in a tight
      // loop has too many, one that stopped retrying too few).
      for (const [i, r] of replicas.entries()) {
        const failed = failureTimes(r.logs, downAt, upAt);
        const retries = failed.length - 1;
        const { fewest, most } = retryBounds(upAt - failed[0]!, BACKOFF, ATTEMPT_MS);
        retriesSeen.push(`${retries} (${fewest}..${most})`);
        expect(failed.length, `replica ${i + 1} noticed the primary going down; ${context}`).toBeGreaterThanOrEqual(1);
        expect(retries, `replica ${i + 1} retries in ${upAt - failed[0]!} ms down; ${context}`).toBeGreaterThanOrEqual(fewest);
        // One more than the most, for the log lines' millisecond timestamps at the window's edges.
        expect(retries, `replica ${i + 1} retries in ${upAt - failed[0]!} ms down; ${context}`).toBeLessThanOrEqual(most + 1);
      }
    }
    await load.stop();
    const c = await converge(primary.url, replicas.map((r) => r.url), 'app');
    for (const [i, r] of replicas.entries()) {
      const context = `seed ${seed}, replica ${i + 1}\n${r.output().slice(-3000)}`;
      expect(logged(r, 'snapshot applied'), `only the bootstrap snapshot; ${context}`).toHaveLength(1);
      expect(logged(r, 'stream ended').length, context).toBeGreaterThanOrEqual(signals.length);
      expect(integrityCheck(join(t.dir, `r${i + 1}`, 'app.db'))).toBe('ok');
      expect(await dump(r.url, 'app'), context).toEqual(await dump(primary.url, 'app'));
    }
    console.log(`[primary-restart] seed ${seed}: ${signals.join(',')} restarts on ${listen}; ${load.done} writes acked, ${load.failed} cut; replicas resumed ${reconnectMs.join(', ')} ms after each restart, retried ${retriesSeen.join(', ')} times while it was down; txid ${c.txid}`);
  }, TIMEOUT_MS);

  it('re-snapshots replicas that are ahead of a primary restored from an older copy', async () => {
    const t = tempDir('primary-restore');
    cleanups.push(t.cleanup);
    const pdir = join(t.dir, 'p');
    const backup = join(t.dir, 'backup');
    const listen = `127.0.0.1:${await freePort()}`;
    const write = async (url: string, tag: string, n: number) => {
      for (let i = 0; i < n; i++) await exec(url, 'app', { sql: 'INSERT INTO t (tag, v) VALUES (?, randomblob(?))', params: [tag, 100 + i * 97] });
    };
    let primary = await procs.primary(pdir, listen);
    await http(primary.url, 'PUT', '/v1/db/app');
    await exec(primary.url, 'app', { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, tag TEXT, v BLOB)' });
    await write(primary.url, 'old', 20);
    let r1 = await procs.replica(primary.url, join(t.dir, 'r1'));
    let r2 = await procs.replica(primary.url, join(t.dir, 'r2'));
    await converge(primary.url, [r1.url, r2.url], 'app');

    // The copy is taken while the primary is stopped, as a backup would be.
    await procs.stop(primary, 'SIGTERM');
    cpSync(pdir, backup, { recursive: true });
    const old = { txid: 0, generation: 0 };
    primary = await procs.primary(pdir, listen);
    Object.assign(old, await info(primary.url, 'app'));
    await write(primary.url, 'lost', 30);
    const ahead = await converge(primary.url, [r1.url, r2.url], 'app');
    // r2 is down while the primary goes back in time and then moves past where r2 stands: r2's txid is
    // then within the primary's log, with another checksum.
    await procs.stop(r2, 'SIGKILL');

    await procs.stop(primary, 'SIGTERM');
    rmSync(pdir, { recursive: true });
    cpSync(backup, pdir, { recursive: true });
    primary = await procs.primary(pdir, listen);
    const restored = (await info(primary.url, 'app'))!;
    expect(restored.txid).toBe(old.txid);
    expect(restored.generation).toBe(old.generation);

    // r1 was connected: it comes back ahead of the primary and must be re-snapshotted.
    await waitFor(() => logged(r1, 'snapshot applied').length === 2, `r1 to re-snapshot\n${r1.output()}`);
    const resnap1 = logged(r1, 'snapshot applied')[1]!;
    expect(String(resnap1.reason)).toMatch(/ahead of the primary/);
    expect(resnap1.txid).toBe(restored.txid);

    await write(primary.url, 'new', 40);
    expect((await info(primary.url, 'app'))!.txid!).toBeGreaterThan(ahead.txid);
    r2 = await procs.replica(primary.url, join(t.dir, 'r2'));
    await waitFor(() => logged(r2, 'snapshot applied').length === 1, `r2 to re-snapshot\n${r2.output()}`);
    expect(String(logged(r2, 'snapshot applied')[0]!.reason)).toMatch(/checksum differs/);

    const c = await converge(primary.url, [r1.url, r2.url], 'app');
    for (const r of [r1, r2] as EdgeliteProcess[]) {
      expect(await query(r.url, 'app', "SELECT count(*) FROM t WHERE tag = 'lost'")).toEqual([[0]]);
      expect(await dump(r.url, 'app')).toEqual(await dump(primary.url, 'app'));
    }
    for (const name of ['r1', 'r2']) expect(integrityCheck(join(t.dir, name, 'app.db'))).toBe('ok');
    console.log(`[primary-restore] replicas at txid ${ahead.txid}, primary restored to ${restored.txid}: r1 re-snapshotted (${String(resnap1.reason)}), r2 re-snapshotted (${String(logged(r2, 'snapshot applied')[0]!.reason)}); converged at ${c.txid}`);
  }, TIMEOUT_MS);
});
