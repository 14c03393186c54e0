/**
 * Query time limits (docs/ARCHITECTURE.md#security): a runaway read through the replica's HTTP API is answered 408
 * QUERY_TIMEOUT at the limit and its query process is really gone, while other reads keep answering and
 * the follower keeps applying; the query pool gives exactly runRead's results and errors; its queue is
 * bounded and its failures are typed. A primary and a replica in one process over loopback; the query
 * processes are real child processes.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { silentLogger } from '../../shared/log.ts';
import type { QueryResult, SqlValue, Statement } from '../../shared/protocol.ts';
import { runRead } from '../../shared/sql.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { openReplica } from '../../replica/embedded.ts';
import { QueryPool } from '../../shared/node/query-pool.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { prng, seedFromEnv, tempDir, postJson, RUNAWAY_SQL, stopsAfterEach } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

const RUNAWAY = RUNAWAY_SQL;
const LIMIT_MS = 1500;

const stops = stopsAfterEach();

const post = postJson;

/** failure resolves with the error `p` rejects with (handled at once), and fails if it resolves. */
function failure(p: Promise<unknown>): Promise<EdgeliteError> {
  return p.then(
    (v) => { throw new Error(`expected a failure, got ${JSON.stringify(v)}`); },
    (err: unknown) => err as EdgeliteError,
  );
}

/** isAlive: the process exists and is not a zombie (an orphan's zombie waits for init to reap it). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
  const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, 'utf8') : '';
  return !/^\d+ \(.*\) Z/.test(stat);
}

async function setup(flags: string[]): Promise<{ primary: PrimaryHandle; replica: ReplicaHandle }> {
  const t = tempDir('query-timeout');
  stops.push(t.cleanup);
  const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
  stops.push(() => primary.close());
  await fetch(`${primary.url}/v1/db/app`, { method: 'PUT' });
  await post(`${primary.url}/v1/db/app/exec`, { sql: 'CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)' });
  await post(`${primary.url}/v1/db/app/exec`, { statements: Array.from({ length: 100 }, (_, i) => ({ sql: 'INSERT INTO kv VALUES (?, ?)', params: [i, `v${i}`] })) });
  const replica = await startReplica(parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0', ...flags], {}), silentLogger);
  stops.push(() => replica.close());
  const want = primary.store.get('app')!.position.txid;
  await waitFor(() => (replica.store.get('app')?.position?.txid ?? -1) >= want, 'replica catch-up');
  return { primary, replica };
}

describe('a runaway query on a replica', () => {
  it('answers 408 at the limit, kills its process, and never stalls other reads or the follower', async () => {
    const { primary, replica } = await setup(['--query-timeout-ms', String(LIMIT_MS)]);
    const db = replica.store.get('app')!;
    const pool = db.queryPool!;
    expect(pool.size).toBeGreaterThanOrEqual(2);
    // Warm the pool to full strength (reads end in-process, within their slice, and start none).
    pool.warm();
    await waitFor(() => pool.stats().ready === pool.size, 'query processes started', 60_000);
    const pidsBefore = pool.stats().pids;

    const startTxid = db.position!.txid;
    let runawayDone = false;
    const t0 = performance.now();
    const runaway = post(`${replica.url}/v1/db/app/query`, { sql: RUNAWAY }).then((r) => {
      runawayDone = true;
      return { ...r, ms: performance.now() - t0 };
    });

    // Writes on the primary while the runaway runs; the replica's txid is sampled on its own thread.
    let maxTxidDuringRunaway = startTxid;
    const writes = (async () => {
      for (let i = 1000; !runawayDone; i++) {
        const w = await post(`${primary.url}/v1/db/app/exec`, { sql: 'INSERT INTO kv VALUES (?, ?)', params: [i, 'during'] });
        expect(w.status).toBe(200);
        if (!runawayDone) maxTxidDuringRunaway = Math.max(maxTxidDuringRunaway, db.position!.txid);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const latencies: number[] = [];
    const reads = (async () => {
      for (let i = 0; !runawayDone; i++) {
        const t = performance.now();
        const r = await post(`${replica.url}/v1/db/app/query`, { sql: 'SELECT v FROM kv WHERE k = ?', params: [i % 100] });
        expect(r.status, JSON.stringify(r.json)).toBe(200);
        expect(r.json.results[0].rows).toEqual([[`v${i % 100}`]]);
        if (!runawayDone) latencies.push(performance.now() - t);
      }
    })();

    const r = await runaway;
    await Promise.all([writes, reads]);
    latencies.sort((a, b) => a - b);
    console.log(`runaway answered ${r.status} after ${r.ms.toFixed(0)} ms (limit ${LIMIT_MS}); ${latencies.length} other reads meanwhile, ` +
      `latency median ${latencies[latencies.length >> 1]?.toFixed(1)} ms, max ${latencies.at(-1)?.toFixed(1)} ms; txid ${startTxid} -> ${maxTxidDuringRunaway} during it`);
    expect(r.status).toBe(408);
    expect(r.json.error.code).toBe('QUERY_TIMEOUT');
    expect(latencies.length).toBeGreaterThan(0);
    expect(maxTxidDuringRunaway).toBeGreaterThan(startTxid);

    // The runaway's process is gone (not left burning CPU), and the pool is back to full strength.
    await waitFor(() => pool.stats().dying === 0 && pool.stats().live === pool.size, 'killed process reaped and replaced');
    const s = pool.stats();
    expect(s.timeouts).toBe(1);
    // The runaway outlived its in-process slice and was handed to a process; the other reads were not.
    expect(s.handedOff).toBe(1);
    expect(s.inProcess).toBeGreaterThanOrEqual(latencies.length);
    const killed = pidsBefore.filter((p) => !s.pids.includes(p));
    expect(killed).toHaveLength(1);
    expect(isAlive(killed[0]!)).toBe(false);
    const after = await post(`${replica.url}/v1/db/app/query`, { sql: 'SELECT count(*) FROM kv WHERE v = ?', params: ['during'] });
    expect(after.status).toBe(200);
  });

  it('runs reads in-process with --query-timeout-ms 0', async () => {
    const { replica } = await setup(['--query-timeout-ms', '0']);
    expect(replica.store.get('app')!.queryPool).toBeNull();
    const r = await post(`${replica.url}/v1/db/app/query`, { sql: 'SELECT count(*) FROM kv' });
    expect(r.json.results[0].rows).toEqual([[100]]);
  });

  it('limits an embedded replica\'s query() when queryTimeoutMs is given', async () => {
    const { primary } = await setup(['--query-timeout-ms', '0']);
    const t = tempDir('query-timeout-embedded');
    stops.push(t.cleanup);
    const embedded = await openReplica({ primary: primary.url, dir: t.dir, databases: ['app'], queryTimeoutMs: LIMIT_MS });
    stops.push(() => embedded.close());
    await embedded.ready('app');
    await expect(embedded.query('app', RUNAWAY)).rejects.toMatchObject({ code: 'QUERY_TIMEOUT' });
    expect((await embedded.query('app', 'SELECT v FROM kv WHERE k = ?', [7])).rows).toEqual([['v7']]);
  });

  it('rejects a bad --query-timeout-ms', () => {
    expect(() => parseReplicaConfig(['--primary', 'http://x', '--data', '/tmp/x', '--query-timeout-ms', '-5'], {})).toThrow(/query-timeout-ms/);
    expect(parseReplicaConfig(['--primary', 'http://x', '--data', '/tmp/x'], {}).queryTimeoutMs).toBe(5000);
  });
});

describe('QueryPool', () => {
  function fixture(): string {
    const t = tempDir('query-pool');
    stops.push(t.cleanup);
    const path = join(t.dir, 'data.db');
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, b BLOB, n)');
    const ins = db.prepare('INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)');
    const rand = prng(7);
    db.transaction(() => {
      for (let id = 1; id <= 300; id++) {
        const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
        ins.run(id, pick([null, 0, -1, 2 ** 53 + 2, Math.floor(rand() * 1000)]), pick([null, rand() * 1e6, -0.5, 1e300]),
          pick([null, '', `s${id}`, 'üñï €', 'x'.repeat(id)]), pick([null, Buffer.alloc(0), Buffer.from([id & 255, 0, 255])]), pick([null, id, `t${id}`, 1.5]));
      }
    })();
    db.close();
    return path;
  }

  function pool(opts: Partial<ConstructorParameters<typeof QueryPool>[0]> = {}): QueryPool {
    const p = new QueryPool({ timeoutMs: 10_000, ...opts });
    stops.push(() => p.close());
    return p;
  }

  type Outcome = { results: QueryResult[] } | { error: { code: string; message: string; details: unknown } };

  function outcomeOf(fn: () => QueryResult[]): Outcome {
    try {
      return { results: fn() };
    } catch (err) {
      const e = err as EdgeliteError;
      return { error: { code: e.code, message: e.message, details: e.details } };
    }
  }

  it('gives the same results and errors as runRead, for a few hundred random requests', async () => {
    const seed = seedFromEnv();
    const rand = prng(seed);
    const path = fixture();
    const local = new Database(path, { readonly: true, fileMustExist: true });
    stops.push(() => void local.close());
    const p = pool({ size: 2 });
    const int = (n: number): number => Math.floor(rand() * n);
    const params = (): SqlValue[] => [[null, 1, 2.5, -3, 'x', new Uint8Array([1, 2, 3]), 123n, 2n ** 62n][int(8)]!];
    const makers: Array<() => Statement> = [
      () => ({ sql: 'SELECT * FROM t WHERE id = ?', params: [int(320)] }),
      () => ({ sql: 'SELECT id, s, b FROM t WHERE id BETWEEN ? AND ? ORDER BY id', params: [int(300), int(300)] }),
      () => ({ sql: 'SELECT count(*) AS n, sum(r), group_concat(s, :sep) FROM t WHERE id > :lo', params: { sep: '|', lo: int(300) } }),
      () => ({ sql: 'SELECT ? AS v, typeof(?1) AS ty, length(?1) AS len', params: params() }),
      () => ({ sql: 'SELECT id FROM t WHERE b = ?', params: [new Uint8Array([int(300) & 255, 0, 255])] }),
      () => ({ sql: 'SELECT n, typeof(n) FROM t WHERE id % ? = 0', params: [1 + int(50)] }),
      () => ({ sql: 'SELECT * FROM nope', params: [] }),
      () => ({ sql: 'DELETE FROM t WHERE id = ?', params: [1] }),
      () => ({ sql: 'SELECT 1 +', params: [] }),
      () => ({ sql: 'SELECT ?', params: [1, 2] }),
      () => ({ sql: 'PRAGMA table_info(t)', params: [] }),
    ];
    for (let i = 0; i < 300; i++) {
      const statements = Array.from({ length: 1 + int(3) }, () => makers[int(makers.length)]!());
      const want = outcomeOf(() => statements.map((s) => runRead(local, s)));
      let got: Outcome;
      try {
        got = { results: await p.run(path, statements) };
      } catch (err) {
        const e = err as EdgeliteError;
        got = { error: { code: e.code, message: e.message, details: e.details } };
      }
      expect(got, `seed ${seed}, request ${i}: ${JSON.stringify(statements.map((s) => s.sql))}`).toEqual(want);
    }
    // Blobs come back as byte arrays, exactly as runRead gives them.
    const [blob] = await p.run(path, [{ sql: 'SELECT X\'00ff\'', params: [] }]);
    expect(blob!.rows[0]![0]).toBeInstanceOf(Uint8Array);
  });

  it('refuses with BUSY when its queue is full, and times out queued and running requests', async () => {
    const path = fixture();
    const p = pool({ size: 1, maxQueue: 1 });
    await p.run(path, [{ sql: 'SELECT 1', params: [] }]);
    const running = failure(p.run(path, [{ sql: RUNAWAY, params: [] }], 1500));
    const queued = failure(p.run(path, [{ sql: 'SELECT 2', params: [] }], 300));
    await expect(p.run(path, [{ sql: 'SELECT 3', params: [] }])).rejects.toMatchObject({ code: 'BUSY' });
    expect((await queued).code).toBe('BUSY');
    expect((await running).code).toBe('QUERY_TIMEOUT');
    expect(p.stats()).toMatchObject({ timeouts: 1, refused: 2 });
    // The replacement process serves the next request.
    expect(await p.run(path, [{ sql: 'SELECT 4', params: [] }])).toEqual([{ columns: ['4'], rows: [[4]] }]);
  });

  it('fails a request whose process dies with UNAVAILABLE, then serves with a new process', async () => {
    const path = fixture();
    const p = pool({ size: 1 });
    await p.run(path, [{ sql: 'SELECT 1', params: [] }]);
    const [pid] = p.stats().pids;
    const pending = p.run(path, [{ sql: RUNAWAY, params: [] }]);
    await waitFor(() => p.stats().busy === 1, 'request running');
    process.kill(pid!, 'SIGKILL');
    await expect(pending).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(await p.run(path, [{ sql: 'SELECT 5', params: [] }])).toEqual([{ columns: ['5'], rows: [[5]] }]);
    expect(p.stats().pids).not.toContain(pid);
  });

  it('closes: pending requests fail with UNAVAILABLE, every process exits, later runs are refused', async () => {
    const path = fixture();
    const p = pool({ size: 2 });
    await Promise.all([p.run(path, [{ sql: 'SELECT 1', params: [] }]), p.run(path, [{ sql: 'SELECT 1', params: [] }])]);
    const pids = p.stats().pids;
    const pending = failure(p.run(path, [{ sql: RUNAWAY, params: [] }]));
    await p.close();
    expect((await pending).code).toBe('UNAVAILABLE');
    expect(pids.filter(isAlive)).toEqual([]);
    await expect(p.run(path, [{ sql: 'SELECT 1', params: [] }])).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('leaves no process behind when its parent is killed during a runaway query', async () => {
    const path = fixture();
    const script = join(path, '..', 'parent.mts');
    const poolUrl = pathToFileURL(join(import.meta.dirname, '../../shared/node/query-pool.ts')).href;
    writeFileSync(script, `
      import { QueryPool } from ${JSON.stringify(poolUrl)};
      const pool = new QueryPool({ timeoutMs: 600_000, size: 1 });
      await pool.run(${JSON.stringify(path)}, [{ sql: 'SELECT 1', params: [] }]);
      void pool.run(${JSON.stringify(path)}, [{ sql: ${JSON.stringify(RUNAWAY)}, params: [] }]);
      process.stdout.write(String(pool.stats().pids[0]) + '\\n');
      setInterval(() => {}, 1000);
    `);
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const parent = spawn(process.execPath, ['--import', tsx, script], { stdio: ['ignore', 'pipe', 'inherit'] });
    stops.push(() => void parent.kill('SIGKILL'));
    const line = await new Promise<string>((resolve, reject) => {
      parent.stdout.once('data', (d: Buffer) => resolve(d.toString()));
      parent.once('exit', (code) => reject(new Error(`parent exited early (${code})`)));
    });
    const child = Number(line.trim());
    await waitFor(() => readFileSync(`/proc/${child}/stat`, 'utf8').includes(' R '), 'runaway running in the query process');
    parent.kill('SIGKILL');
    await waitFor(() => !isAlive(child), 'orphaned query process gone', 10_000);
  });

  it('forget makes its processes reopen a file that was replaced (not just read the old inode)', async () => {
    const path = fixture();
    const p = pool({ size: 1 });
    expect((await p.run(path, [{ sql: 'SELECT count(*) FROM t', params: [] }]))[0]!.rows).toEqual([[300]]);
    for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });
    const fresh = new Database(path);
    fresh.exec('CREATE TABLE u (x); INSERT INTO u VALUES (42)');
    fresh.close();
    // Without forget the open connection still sees the deleted file.
    expect((await p.run(path, [{ sql: 'SELECT count(*) FROM t', params: [] }]))[0]!.rows).toEqual([[300]]);
    p.forget(path);
    expect((await p.run(path, [{ sql: 'SELECT x FROM u', params: [] }]))[0]!.rows).toEqual([[42]]);
  });

  it('warm starts processes ahead of demand, never more than its size', async () => {
    const path = fixture();
    const p = pool({ size: 2 });
    p.warm(1);
    expect(p.stats().live).toBe(1);
    p.warm(5);
    expect(p.stats().live).toBe(2);
    const pids = p.stats().pids;
    await Promise.all([p.run(path, [{ sql: 'SELECT 1', params: [] }]), p.run(path, [{ sql: 'SELECT 2', params: [] }])]);
    expect(p.stats().pids).toEqual(pids);
  });

  it('validates its options', () => {
    expect(() => new QueryPool({ timeoutMs: 0 })).toThrow(/timeoutMs/);
    expect(() => new QueryPool({ timeoutMs: 100, size: 0 })).toThrow(/size/);
    expect(() => new QueryPool({ timeoutMs: 100, timeout: 5 } as never)).toThrow(/unknown option "timeout"/);
  });
});
