/**
 * Group commit of the primary's API writes (primary/write-queue.ts): writes that arrive together share
 * one SQLite transaction and one change set, yet each keeps its own outcome, as if it had run alone:
 * a failing write rolls back only itself, VACUUM and a deferred-constraint failure at COMMIT are sent
 * again on their own, and a runaway write in a batch fails alone while its batch mates commit. A real
 * store and real query processes.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EdgeliteError } from '../../shared/errors.ts';
import { silentLogger } from '../../shared/log.ts';
import { QueryPool } from '../../shared/node/query-pool.ts';
import type { Statement } from '../../shared/protocol.ts';
import { PrimaryStore } from '../../primary/store.ts';
import type { PrimaryDatabase } from '../../primary/database.ts';
import { RUNAWAY_SQL, tempDir, stopsAfterEach } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

const LIMIT_MS = 1500;
const stops = stopsAfterEach();

async function open(): Promise<{ db: PrimaryDatabase; pool: QueryPool; captured: number[] }> {
  const t = tempDir('group-commit');
  stops.push(t.cleanup);
  const pool = new QueryPool({ timeoutMs: LIMIT_MS, size: 2 });
  const store = new PrimaryStore(join(t.dir, 'p'), {
    synchronous: 'normal', busyTimeoutMs: 5000, compress: false, checkpointFrames: 4000, pollIntervalMs: 100, log: {}, logger: silentLogger, queryPool: pool,
  }).open();
  stops.push(async () => {
    await pool.close();
    store.close();
  });
  pool.warm();
  await waitFor(() => pool.stats().ready === pool.size, 'query processes ready', 60_000);
  const { db } = store.create('app');
  const captured: number[] = [];
  store.hub.publish = (c) => void captured.push(c.maxTxid);
  await db.write(s("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL, p INTEGER REFERENCES kv (k) DEFERRABLE INITIALLY DEFERRED)"));
  return { db, pool, captured };
}

function s(sql: string, ...params: unknown[]): Statement[] {
  return [{ sql, params: params as Statement['params'] }];
}

/** settle runs writes concurrently and says, per write, its changes or its error code. */
async function settle(db: PrimaryDatabase, writes: Statement[][]): Promise<Array<number | string>> {
  return Promise.all(writes.map((w) => db.write(w).then((o) => o.results.reduce((n, r) => n + (r.changes ?? 0), 0), (e: EdgeliteError) => e.code)));
}

async function rows(db: PrimaryDatabase): Promise<unknown[]> {
  return (await db.query(s('SELECT k, v FROM kv ORDER BY k')))[0]!.rows;
}

describe('group commit of API writes', () => {
  it('commits concurrent writes in fewer transactions, each with its own results and token position', async () => {
    const { db, captured } = await open();
    const before = captured.length;
    const outcomes = await Promise.all(Array.from({ length: 40 }, (_, i) => db.write(s('INSERT INTO kv (k, v) VALUES (?, ?) RETURNING k', i, `v${i}`))));
    expect(outcomes.map((o) => o.results[0]!.rows)).toEqual(Array.from({ length: 40 }, (_, i) => [[i]]));
    const transactions = captured.length - before;
    console.log(`40 concurrent writes committed in ${transactions} transactions`);
    expect(transactions).toBeLessThan(40);
    expect(transactions).toBeGreaterThan(0);
    for (const o of outcomes) expect(o.position.txid).toBeGreaterThan(before);
    expect(await rows(db)).toHaveLength(40);
  });

  it('a failing write in a batch rolls back only itself', async () => {
    const { db } = await open();
    await db.write(s("INSERT INTO kv (k, v) VALUES (1, 'one')"));
    const out = await settle(db, [
      s("INSERT INTO kv (k, v) VALUES (2, 'two')"),
      [{ sql: "INSERT INTO kv (k, v) VALUES (3, 'three')", params: [] }, { sql: "INSERT INTO kv (k, v) VALUES (1, 'dup')", params: [] }],
      s('INSERT INTO kv (k, v) VALUES (4, NULL)'),
      s("UPDATE kv SET v = 'ONE' WHERE k = 1"),
      s('INSERT INTO nowhere VALUES (1)'),
    ]);
    expect(out).toEqual([1, 'CONSTRAINT_VIOLATION', 'CONSTRAINT_VIOLATION', 1, 'SQL_ERROR']);
    expect(await rows(db)).toEqual([[1, 'ONE'], [2, 'two']]);
  });

  it('sends VACUUM and a deferred constraint failure at COMMIT again on their own', async () => {
    const { db } = await open();
    const out = await settle(db, [
      s("INSERT INTO kv (k, v) VALUES (10, 'a')"),
      s('VACUUM'),
      s("INSERT INTO kv (k, v, p) VALUES (11, 'orphan', 999)"),
      s("INSERT INTO kv (k, v, p) VALUES (12, 'child', 10)"),
    ]);
    expect(out).toEqual([1, 0, 'CONSTRAINT_VIOLATION', 1]);
    expect(await rows(db)).toEqual([[10, 'a'], [12, 'child']]);
  });

  it('a runaway write in a batch fails alone at the limit; its batch mates commit', async () => {
    const { db, pool } = await open();
    const t0 = performance.now();
    const out = await settle(db, [
      s("INSERT INTO kv (k, v) VALUES (20, 'before')"),
      s(`INSERT INTO kv (k, v) SELECT x + 1000, 'runaway' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c)`),
      s("INSERT INTO kv (k, v) VALUES (21, 'after')"),
    ]);
    const ms = performance.now() - t0;
    console.log(`runaway in a batch: answered after ${ms.toFixed(0)} ms (limit ${LIMIT_MS}), outcomes ${JSON.stringify(out)}`);
    expect(out).toEqual([1, 'QUERY_TIMEOUT', 1]);
    expect(await rows(db)).toEqual([[20, 'before'], [21, 'after']]);
    expect(pool.stats().timeouts).toBeGreaterThanOrEqual(1);
    // A read that never ends is still refused the same way (RUNAWAY_SQL through the write path).
    await expect(db.write(s(RUNAWAY_SQL))).rejects.toMatchObject({ code: 'QUERY_TIMEOUT' });
  });

  it('closing the database fails what waits behind a batch (writes and a snapshot) with UNAVAILABLE', async () => {
    const { db } = await open();
    const running = db.write(s(RUNAWAY_SQL)).catch((e: EdgeliteError) => e.code);
    await new Promise((r) => setTimeout(r, 50));
    const queuedWrite = db.write(s("INSERT INTO kv (k, v) VALUES (30, 'late')")).then(() => 'committed', (e: EdgeliteError) => e.code);
    const queuedSnapshot = db.openSnapshot().then((v) => (v.end(), 'opened'), (e: EdgeliteError) => e.code);
    db.close();
    expect(await Promise.all([queuedWrite, queuedSnapshot])).toEqual(['UNAVAILABLE', 'UNAVAILABLE']);
    expect(['QUERY_TIMEOUT', 'UNAVAILABLE']).toContain(await running);
  });

  it('a snapshot waits for the batch in flight instead of blocking the thread', async () => {
    const { db } = await open();
    const slow = db.write(s("INSERT INTO kv (k, v) SELECT x, 'bulk' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000) SELECT x FROM c)"));
    await new Promise((r) => setTimeout(r, 20));
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 5);
    const view = await db.openSnapshot();
    clearInterval(ticker);
    const written = await slow;
    try {
      // The snapshot came after the write: it holds it.
      expect(view.position.txid).toBeGreaterThanOrEqual(written.position.txid);
    } finally {
      view.end();
    }
    expect(ticks).toBeGreaterThan(0);
  });
});
