/**
 * A replica killed with SIGKILL at any moment resumes from its persisted position, without a new
 * snapshot, and converges (docs/ARCHITECTURE.md#apply-rules: "a crash at any point recovers without a new snapshot").
 * The primary takes a steady write load, so the replica is applying nearly all the time and most kills
 * land mid-apply; some rounds kill it while it applies one change set of thousands of pages.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { prng, seedFromEnv, tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';
import type { EdgeliteProcess } from '../kit/spawn.ts';
import { converge, exec, http, info, integrityCheck, Load, logged, query } from '../kit/api.ts';
import { processesAfterEach } from '../kit/spawn.ts';

const LONG = process.env.EDGELITE_LONG === '1';
/** Child processes start slowly on a loaded 2-core machine: more room than the default test timeout. */
const TIMEOUT_MS = LONG ? 900_000 : 300_000;
/**
 * The issue asks for at least 20 kills: the normal run does 20 (about 40-110 s on the 2-core machine,
 * a restart being 1-4 s of tsx start-up under load) and EDGELITE_LONG=1 does 40.
 */
const ROUNDS = LONG ? 40 : 20;
/** Every BIG_EVERY-th round kills the replica while it applies one change set of BIG_ROWS pages. */
const BIG_EVERY = 3;
const BIG_ROWS = 3000;

const { procs, cleanups } = processesAfterEach();

/**
 * readSidecar reads the replica's position file (replica/position-file.ts): `pending` is set mid-apply.
 * The replica rewrites it in place, so a read racing a write may see a mix; such a read is retried.
 */
function readSidecar(dir: string): { pending: unknown } {
  for (let attempt = 1; ; attempt++) {
    const text = readFileSync(join(dir, 'kv.db-edgelite.json'), 'utf8');
    try {
      return JSON.parse(text) as { pending: unknown };
    } catch (err) {
      if (attempt >= 5) throw new Error(`position file unreadable: ${JSON.stringify(text)}`, { cause: err });
    }
  }
}

describe('replica survives kill -9', () => {
  it(`resumes without a snapshot after ${ROUNDS} kills under load and converges`, async () => {
    const seed = seedFromEnv();
    const rand = prng(seed);
    const t = tempDir('replica-kill');
    cleanups.push(t.cleanup);
    const data = join(t.dir, 'r');
    const primary = await procs.primary(join(t.dir, 'p'));
    await http(primary.url, 'PUT', '/v1/db/kv');
    await exec(primary.url, 'kv', { statements: [
      { sql: 'CREATE TABLE kv (k INTEGER PRIMARY KEY, v BLOB, n INTEGER)' },
      // One row per page (3,000-byte values on 4 KiB pages): rewriting all of it is a change set of
      // BIG_ROWS pages.
      { sql: `CREATE TABLE big (id INTEGER PRIMARY KEY, pad BLOB)` },
      { sql: `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${BIG_ROWS}) INSERT INTO big SELECT i, randomblob(3000) FROM n` },
    ] });
    let replica = await procs.replica(primary.url, data);
    await converge(primary.url, [replica.url], 'kv');
    expect(logged(replica, 'snapshot applied')).toHaveLength(1);

    let nextKey = 1;
    const load = new Load(1, async () => {
      const k = nextKey++;
      if (rand() < 0.3 && k > 10) {
        await exec(primary.url, 'kv', { sql: 'UPDATE kv SET v = randomblob(?), n = n + 1 WHERE k = ?', params: [Math.floor(rand() * 6000), 1 + Math.floor(rand() * (k - 1))] });
      } else {
        await exec(primary.url, 'kv', { sql: 'INSERT INTO kv (k, v, n) VALUES (?, randomblob(?), 0)', params: [k, Math.floor(rand() * 6000)] });
      }
    });

    const figures = { restarts: 0, bigKills: 0, midApply: 0, bigMidApply: 0, resumedFrom: [] as number[], bigApplyMs: 0, restartMs: [] as number[] };
    // How long the replica takes to receive and apply one big change set, to aim the big-round kills.
    {
      const before = Date.now();
      const w = await exec(primary.url, 'kv', { sql: 'UPDATE big SET pad = randomblob(3000)' });
      const txid = Number(w.headers.get('edgelite-txid'));
      await waitFor(async () => ((await info(replica.url, 'kv'))?.txid ?? 0) >= txid, 'the big change set to apply');
      figures.bigApplyMs = Date.now() - before;
    }

    const check = (p: EdgeliteProcess, round: number) => {
      const context = `seed ${seed}, round ${round}\n${p.output().slice(-4000)}`;
      expect(logged(p, 'snapshot applied'), `a restarted replica took a snapshot; ${context}`).toEqual([]);
      expect(p.output(), context).not.toMatch(/a snapshot is needed|ignoring position file/);
      const open = logged(p, 'database open').find((l) => l.db === 'kv');
      expect(open?.txid, `the replica reopened without a position; ${context}`).toEqual(expect.any(Number));
      figures.resumedFrom.push(open!.txid as number);
    };

    for (let round = 0; round < ROUNDS; round++) {
      if (load.error) throw load.error;
      const at = (await info(replica.url, 'kv'))!.txid!;
      const big = round % BIG_EVERY === BIG_EVERY - 1;
      if (big) {
        // Kill the moment the replica announces the apply in its sidecar (pending, written just before
        // the one sqlite_dbpage statement), or at a random moment if that is missed.
        await exec(primary.url, 'kv', { sql: 'UPDATE big SET pad = randomblob(3000)' });
        const deadline = Date.now() + figures.bigApplyMs * 2;
        while (Date.now() < deadline && readSidecar(data).pending === null) await new Promise((r) => setImmediate(r));
        figures.bigKills++;
      } else {
        // Kill at a random moment once the replica has applied something since it came back.
        const delay = 20 + Math.floor(rand() * 300);
        const since = Date.now();
        await waitFor(async () => Date.now() - since >= delay && ((await info(replica.url, 'kv'))?.txid ?? 0) > at, 'the replica to make progress', 20_000, 10);
      }
      await procs.stop(replica, 'SIGKILL');
      // A pending record in the sidecar means the kill came between "about to commit" and "committed".
      const sidecar = readSidecar(data);
      if (sidecar.pending !== null) figures.midApply++;
      if (sidecar.pending !== null && big) figures.bigMidApply++;
      if (round > 0) check(replica, round - 1);
      const t0 = Date.now();
      replica = await procs.replica(primary.url, data);
      figures.restartMs.push(Date.now() - t0);
      figures.restarts++;
    }
    await load.stop();
    const c = await converge(primary.url, [replica.url], 'kv');
    check(replica, ROUNDS);
    expect(integrityCheck(join(data, 'kv.db')), `seed ${seed}`).toBe('ok');
    // Equal checksums already mean equal pages; this reads the rows through SQL too (a digest: the
    // tables hold tens of MB, too much to ship as JSON within the query time limit).
    const digest = 'SELECT (SELECT count(*) FROM kv), (SELECT total(n) + total(length(v)) FROM kv), (SELECT count(*) FROM big), (SELECT total(length(pad)) FROM big)';
    expect(await query(replica.url, 'kv', digest), `seed ${seed}`).toEqual(await query(primary.url, 'kv', digest));
    const avg = (xs: number[]) => Math.round(xs.reduce((a, b) => a + b, 0) / xs.length);
    console.log(`[replica-kill] seed ${seed}: ${figures.restarts} kills (${figures.midApply} left a pending apply in the sidecar; ${figures.bigKills} aimed at a ${BIG_ROWS}-page change set, ${figures.bigMidApply} of them mid-apply, ~${figures.bigApplyMs} ms to ship+apply), ${load.done} writes, txid ${c.txid}, converged ${c.ms} ms after the load; restart avg ${avg(figures.restartMs)} ms; resumed from txids ${figures.resumedFrom.join(',')}`);
  }, TIMEOUT_MS);
});
