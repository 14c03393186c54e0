/**
 * The primary's API writes in-process under SQLite's own deadline (primary/write-queue.ts,
 * docs/ARCHITECTURE.md#query-time-limits): with synchronous=NORMAL a batch commits on the primary's own
 * writer with the same outcomes as in a query process; a runaway write holds the event loop for about
 * one slice, then runs in a real query process until the limit, and nothing of it is committed; a write
 * lock held by another process never makes this thread wait; with synchronous=FULL writes stay in
 * processes. A real store and real query processes.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { EdgeliteError } from '../../shared/errors.ts';
import { silentLogger } from '../../shared/log.ts';
import { QueryPool } from '../../shared/node/query-pool.ts';
import type { Statement } from '../../shared/protocol.ts';
import { PrimaryStore } from '../../primary/store.ts';
import type { PrimaryDatabase } from '../../primary/database.ts';
import { RUNAWAY_SQL, stopsAfterEach, tempDir } from '../helpers.ts';

const LIMIT_MS = 1000;
const stops = stopsAfterEach();

async function open(o: { inProcess?: 'auto' | 'off'; sync?: 'normal' | 'full' } = {}): Promise<{ db: PrimaryDatabase; pool: QueryPool }> {
  const t = tempDir('write-limit');
  stops.push(t.cleanup);
  const pool = new QueryPool({ timeoutMs: LIMIT_MS, size: 1, inProcessReads: o.inProcess ?? 'auto' });
  const store = new PrimaryStore(join(t.dir, 'p'), {
    synchronous: o.sync ?? 'normal', busyTimeoutMs: 5000, compress: false, checkpointFrames: 4000, pollIntervalMs: 100, log: {}, logger: silentLogger, queryPool: pool,
  }).open();
  stops.push(async () => {
    await pool.close();
    store.close();
  });
  const { db } = store.create('app');
  await db.write(s('CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)'));
  return { db, pool };
}

function s(sql: string, ...params: unknown[]): Statement[] {
  return [{ sql, params: params as Statement['params'] }];
}

/** loopGaps samples the event loop every millisecond; stop() returns the longest gap seen (ms). */
function loopGaps(): { stop: () => number } {
  let last = performance.now();
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 1);
  return { stop: () => (clearInterval(timer), worst) };
}

type Outcome = unknown;
async function settle(db: PrimaryDatabase, writes: Statement[][]): Promise<Outcome[]> {
  return Promise.all(writes.map((w) => db.write(w).then((o) => o.results, (e: EdgeliteError) => ({ code: e.code, message: e.message }))));
}

describe('in-process writes', () => {
  it('commit on the primary thread with the outcomes a query process gives', async () => {
    const local = await open();
    const remote = await open({ inProcess: 'off' });
    const rounds: Statement[][][] = [
      [s("INSERT INTO kv VALUES (1, 'one')"), s("INSERT INTO kv (v) VALUES ('auto') RETURNING k"), s("INSERT INTO kv VALUES (1, 'dup')")],
      [[...s("INSERT INTO kv VALUES (300, 'a')"), ...s("INSERT INTO kv VALUES (300, 'b')")], s('UPDATE kv SET v = v || ? WHERE k < 10', '!'), s('INSERT INTO nowhere VALUES (1)')],
      [s('BEGIN'), s('CREATE INDEX kv_v ON kv (v)'), s('SELECT k, v FROM kv ORDER BY k')],
      [s('VACUUM')],
      [s("INSERT INTO kv VALUES (5, NULL)"), [...s('DELETE FROM kv WHERE k > 50'), ...s("INSERT INTO kv VALUES (400, 'c') RETURNING k, v")]],
    ];
    const start = local.db.position.txid;
    for (const round of rounds) {
      // Each round's writes arrive together, so they share a batch on both sides.
      expect(await settle(local.db, round)).toEqual(await settle(remote.db, round));
    }
    const digest = (db: PrimaryDatabase) => db.query(s('SELECT group_concat(k || v) FROM (SELECT * FROM kv ORDER BY k)'));
    expect(await digest(local.db)).toEqual(await digest(remote.db));
    // One transaction per round here (each round's writes share a batch). A query process's path may take
    // one txid more (its writer's first open), so txids are not compared across the two.
    expect(local.db.position.txid - start).toBe(rounds.length);
    expect(local.db.writeStats).toMatchObject({ handedOff: 0 });
    expect(local.db.writeStats!.inProcess).toBeGreaterThanOrEqual(rounds.length);
    expect(remote.db.writeStats).toMatchObject({ inProcess: 0, handedOff: 0 });
    expect(local.pool.stats().live).toBe(0); // no process was ever needed
  });

  it('stop a runaway write at its whole limit, holding the loop only for the slice, and commit none of it', async () => {
    const { db, pool } = await open();
    pool.warm();
    await expect.poll(() => pool.stats().ready, { timeout: 60_000 }).toBe(1);
    const before = db.position;
    const gaps = loopGaps();
    const t0 = performance.now();
    const err = await db.write([...s("INSERT INTO kv VALUES (-1, 'first')"), ...s(`INSERT INTO kv SELECT * FROM (SELECT 0, 'x' FROM (${RUNAWAY_SQL}))`)]).catch((e: unknown) => e as EdgeliteError);
    const ms = performance.now() - t0;
    const worst = gaps.stop();
    console.log(`runaway write: ${ms.toFixed(0)} ms to its 408 (limit ${LIMIT_MS}), longest event-loop gap ${worst.toFixed(1)} ms`);
    expect(err).toMatchObject({ code: 'QUERY_TIMEOUT', message: `write exceeded the time limit of ${LIMIT_MS} ms; nothing of it was committed` });
    expect(ms).toBeGreaterThanOrEqual(LIMIT_MS - 5);
    expect(ms).toBeLessThan(LIMIT_MS + 100);
    expect(worst).toBeLessThan(60);
    expect(db.position.txid).toBe(before.txid);
    expect((await db.query(s('SELECT count(*) FROM kv')))[0]!.rows).toEqual([[0]]);
    expect(db.writeStats).toMatchObject({ handedOff: 1 });
    expect(pool.stats().timeouts).toBe(1);
    // The writer is usable, without a deadline left on it.
    expect((await db.write(s("INSERT INTO kv VALUES (1, 'after')"))).results[0]!.changes).toBe(1);
  });

  it('never wait on this thread for a write lock another connection holds', async () => {
    const { db, pool } = await open();
    pool.warm(); // a process start is not what this measures
    await expect.poll(() => pool.stats().ready, { timeout: 60_000 }).toBe(1);
    const foreign = new Database(db.path);
    stops.push(() => void foreign.close());
    foreign.exec('BEGIN IMMEDIATE');
    const gaps = loopGaps();
    const pending = db.write(s("INSERT INTO kv VALUES (7, 'seven')"));
    await new Promise((r) => setTimeout(r, 300));
    foreign.exec('ROLLBACK');
    const out = await pending;
    const worst = gaps.stop();
    expect(out.results[0]!.changes).toBe(1);
    expect(worst).toBeLessThan(60);
    expect(db.writeStats).toMatchObject({ handedOff: 1 });
    expect(pool.stats().live).toBe(1); // it went to a process, which waited for the lock
  });

  it('stay in query processes with synchronous=FULL', async () => {
    const { db } = await open({ sync: 'full' });
    await settle(db, [s("INSERT INTO kv VALUES (1, 'one')"), s("INSERT INTO kv VALUES (2, 'two')")]);
    expect(db.writeStats).toMatchObject({ inProcess: 0, handedOff: 0 });
    expect(db.writeStats!.writes).toBeGreaterThanOrEqual(2);
  });
});
