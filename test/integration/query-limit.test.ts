/**
 * In-process reads under SQLite's own deadline (docs/ARCHITECTURE.md#query-time-limits): a QueryPool
 * given the caller's connection answers short reads on it without any process, stops a long one at the
 * end of its slice and hands the rest to a real query process with what is left of the limit, answers
 * as runRead would either way, and a client's SQL cannot lift its own deadline.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { EdgeliteError } from '../../shared/errors.ts';
import type { QueryResult, Statement } from '../../shared/protocol.ts';
import { runRead } from '../../shared/sql.ts';
import { armDeadline, disarmDeadline, hasDeadlineHook } from '../../shared/node/query-limit.ts';
import { readInSlice } from '../../shared/node/query-limit-reads.ts';
import { QueryPool, type QueryPoolOptions } from '../../shared/node/query-pool.ts';
import { prng, RUNAWAY_SQL, seedFromEnv, stopsAfterEach, tempDir } from '../helpers.ts';

const stops = stopsAfterEach();
/** SLOW_SQL: a read of about 0.1–1 s here (a few million VM steps), far past a 10 ms slice. */
const SLOW_SQL = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT count(*) FROM c';
const st = (sql: string, params: Statement['params'] = []): Statement => ({ sql, params });

function fixture(): { path: string; local: Database.Database } {
  const t = tempDir('query-limit');
  stops.push(t.cleanup);
  const path = join(t.dir, 'data.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  const ins = db.prepare('INSERT INTO t VALUES (?, ?)');
  db.transaction(() => {
    for (let id = 1; id <= 500; id++) ins.run(id, `v${id}`);
  })();
  db.close();
  const local = new Database(path, { readonly: true, fileMustExist: true });
  local.pragma('query_only = ON');
  stops.push(() => void local.close());
  return { path, local };
}

function pool(opts: Partial<QueryPoolOptions> = {}): QueryPool {
  const p = new QueryPool({ timeoutMs: 10_000, size: 1, ...opts });
  stops.push(() => p.close());
  return p;
}

type Outcome = { results: QueryResult[] } | { error: { code: string; message: string; details: unknown } };

async function outcomeOf(fn: () => QueryResult[] | Promise<QueryResult[]>): Promise<Outcome> {
  try {
    return { results: await fn() };
  } catch (err) {
    const e = err as EdgeliteError;
    return { error: { code: e.code, message: e.message, details: e.details } };
  }
}

describe('in-process reads', () => {
  it('are available in this build', () => {
    expect(hasDeadlineHook()).toBe(true);
    expect(new QueryPool({ timeoutMs: 100 }).sliceMs).toBe(10);
    expect(new QueryPool({ timeoutMs: 100, inProcessReads: 'off' }).sliceMs).toBe(0);
  });

  it('answer short reads on the caller connection, with no process, as runRead does', async () => {
    const { path, local } = fixture();
    const p = pool();
    const seed = seedFromEnv();
    const rand = prng(seed);
    const int = (n: number): number => Math.floor(rand() * n);
    const makers: Array<() => Statement> = [
      () => st('SELECT * FROM t WHERE id = ?', [int(520)]),
      () => st('SELECT count(*), group_concat(v) FROM t WHERE id > ?', [int(500)]),
      () => st('SELECT * FROM nope'),
      () => st('DELETE FROM t WHERE id = 1'),
      () => st('SELECT 1 +'),
      () => st('SELECT ?', [1, 2]),
    ];
    const other = new Database(path, { readonly: true });
    stops.push(() => void other.close());
    for (let i = 0; i < 200; i++) {
      const statements = Array.from({ length: 1 + int(3) }, () => makers[int(makers.length)]!());
      const want = await outcomeOf(() => statements.map((s) => runRead(other, s)));
      const got = await outcomeOf(() => p.run(path, statements, p.timeoutMs, () => local));
      expect(got, `seed ${seed}, request ${i}`).toEqual(want);
    }
    expect(p.stats()).toMatchObject({ live: 0, handedOff: 0, timeouts: 0 });
    expect(p.stats().inProcess).toBeGreaterThan(0);
  });

  it('hand a read that outlives its slice to a process, which answers it within the rest of the limit', async () => {
    const { path, local } = fixture();
    const p = pool();
    const want = [runRead(local, st('SELECT count(*) FROM t')), runRead(local, st(SLOW_SQL)), runRead(local, st('SELECT v FROM t WHERE id = 7'))];
    const t0 = performance.now();
    const pending = p.run(path, [st('SELECT count(*) FROM t'), st(SLOW_SQL), st('SELECT v FROM t WHERE id = 7')], p.timeoutMs, () => local);
    const held = performance.now() - t0; // run() holds this thread only for its slice
    expect(await pending).toEqual(want);
    console.log(`slow read: held the event loop ${held.toFixed(1)} ms (slice ${p.sliceMs} ms) before its hand-off`);
    expect(held).toBeLessThan(p.sliceMs + 40);
    expect(p.stats()).toMatchObject({ handedOff: 1, timeouts: 0, inProcess: 0, live: 1 });
  });

  it('stop a runaway at its whole limit: the slice here, the rest in a process (killed)', async () => {
    const { path, local } = fixture();
    const p = pool();
    p.warm();
    await expect.poll(() => p.stats().ready, { timeout: 60_000 }).toBe(1);
    const [pid] = p.stats().pids;
    const t0 = performance.now();
    const err = await p.run(path, [st(RUNAWAY_SQL)], 800, () => local).catch((e: unknown) => e as EdgeliteError);
    const ms = performance.now() - t0;
    expect(err).toMatchObject({ code: 'QUERY_TIMEOUT', message: 'query exceeded the time limit of 800 ms', details: { timeoutMs: 800 } });
    expect(ms).toBeGreaterThanOrEqual(795);
    expect(ms).toBeLessThan(900);
    expect(p.stats()).toMatchObject({ handedOff: 1, timeouts: 1 });
    expect(p.stats().pids).not.toContain(pid);
    // The caller's connection is usable, without a deadline left on it.
    expect(runRead(local, st(SLOW_SQL)).rows).toEqual([[3000000]]);
  });

  it('answer QUERY_TIMEOUT in-process when the limit is no longer than the slice', async () => {
    const { path, local } = fixture();
    const p = pool({ sliceMs: 50 });
    const t0 = performance.now();
    await expect(p.run(path, [st(RUNAWAY_SQL)], 30, () => local)).rejects.toMatchObject({
      code: 'QUERY_TIMEOUT', message: 'query exceeded the time limit of 30 ms', details: { timeoutMs: 30 },
    });
    expect(performance.now() - t0).toBeLessThan(130);
    expect(p.stats()).toMatchObject({ live: 0, handedOff: 0, timeouts: 1 });
  });

  it('cannot be lifted or moved by a client statement', async () => {
    const { path, local } = fixture();
    const p = pool({ sliceMs: 20 });
    expect((await p.run(path, [st('SELECT 1')], 20, () => local))[0]!.rows).toEqual([[1]]); // claims the connection
    await expect(p.run(path, [st("SELECT edgelite_deadline('0123456789abcdef0123', 0)")], 20, () => local)).rejects.toMatchObject({
      code: 'SQL_ERROR', message: expect.stringMatching(/not authorized/),
    });
    await expect(p.run(path, [st("SELECT edgelite_deadline('0123456789abcdef0123', 0)"), st(RUNAWAY_SQL)], 20, () => local)).rejects.toMatchObject({ code: 'SQL_ERROR' });
    await expect(p.run(path, [st(RUNAWAY_SQL)], 20, () => local)).rejects.toMatchObject({ code: 'QUERY_TIMEOUT' });
  });

  it('readInSlice returns what ran and what is left, and disarms the connection', () => {
    const { local } = fixture();
    const out = readInSlice(local, [st('SELECT 1'), st(SLOW_SQL), st('SELECT 2')], 10);
    expect(out.results).toEqual([{ columns: ['1'], rows: [[1]] }]);
    expect(out.rest.map((s) => s.sql)).toEqual([SLOW_SQL, 'SELECT 2']);
    expect(disarmDeadline(local)).toBe(false);
    expect(readInSlice(local, [st('SELECT 3')], 10)).toEqual({ results: [{ columns: ['3'], rows: [[3]] }], rest: [] });
    expect(() => armDeadline(local, 0)).toThrow(/positive/);
  });

  it('validate their options', () => {
    expect(() => new QueryPool({ timeoutMs: 100, inProcessReads: 'always' as never })).toThrow(/inProcessReads/);
    expect(() => new QueryPool({ timeoutMs: 100, sliceMs: 0 })).toThrow(/sliceMs/);
  });
});
