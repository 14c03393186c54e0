/**
 * A replica's file is a plain SQLite database that another process, with another SQLite version, may
 * read at any moment (docs/ARCHITECTURE.md#the-data-path, docs/ARCHITECTURE.md#apply-rules): Python's sqlite3 opens it read-only (`file:...?mode=ro`) and
 * sums the balances of `accounts` in a tight loop while a bank-transfer workload runs on the primary.
 * Every transfer keeps the total constant, so any read that sees part of an apply (a torn change set, a
 * truncation without its page 1, a stale schema after CREATE INDEX or VACUUM) shows a different sum.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { prng, seedFromEnv, tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';
import { processesAfterEach, runProcess } from '../kit/spawn.ts';
import { converge, exec, http, integrityCheck, Load } from '../kit/api.ts';

const LONG = process.env.EDGELITE_LONG === '1';
/** Child processes start slowly on a loaded 2-core machine: more room than the default test timeout. */
const TIMEOUT_MS = LONG ? 600_000 : 180_000;
const ACCOUNTS = 2000;
const START_BALANCE = 1000;
const TOTAL = ACCOUNTS * START_BALANCE;
/** How long the workload runs while Python reads. */
const WORKLOAD_MS = LONG ? 60_000 : 8000;

/**
 * READER is the Python reader: one read-only connection, autocommit, one statement per read (one read
 * transaction). It stops when the stop file appears and prints a JSON summary. Any error other than
 * SQLITE_BUSY is recorded; the test fails on any.
 */
const READER = String.raw`
import json, os, sqlite3, sys, time
path, total, accounts, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
conn = sqlite3.connect('file:' + path + '?mode=ro', uri=True, timeout=5, isolation_level=None)
reads = busy = 0
wrong, errors = [], []
started = time.time()
while not os.path.exists(stop):
    try:
        s, n = conn.execute('SELECT sum(balance), count(*) FROM accounts').fetchone()
    except sqlite3.OperationalError as e:
        if 'locked' in str(e) or 'busy' in str(e):
            busy += 1
            continue
        errors.append(str(e))
        if len(errors) > 20:
            break
        continue
    except sqlite3.DatabaseError as e:
        errors.append(type(e).__name__ + ': ' + str(e))
        if len(errors) > 20:
            break
        continue
    reads += 1
    if s != total or n != accounts:
        wrong.append([reads, s, n])
print(json.dumps({'version': sqlite3.sqlite_version, 'reads': reads, 'busy': busy, 'wrong': wrong[:20], 'wrongCount': len(wrong), 'errors': errors, 'seconds': time.time() - started}))
`;

const { procs, cleanups } = processesAfterEach();

interface ReaderSummary {
  version: string;
  reads: number;
  busy: number;
  wrong: Array<[number, number, number]>;
  wrongCount: number;
  errors: string[];
  seconds: number;
}

describe('another process reads the replica file', () => {
  it('Python sqlite3 never sees a torn transfer while the replica applies', async () => {
    const seed = seedFromEnv();
    const rand = prng(seed);
    const t = tempDir('reader');
    cleanups.push(t.cleanup);
    const primary = await procs.primary(join(t.dir, 'p'));
    await http(primary.url, 'PUT', '/v1/db/bank');
    await exec(primary.url, 'bank', { sql: 'CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, pad BLOB)' });
    // 2,000 rows with ~200-byte pads: ~100 leaf pages, so a transfer usually touches two of them.
    await exec(primary.url, 'bank', {
      sql: `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${ACCOUNTS})
            INSERT INTO accounts SELECT i, ${START_BALANCE}, randomblob(150 + abs(random()) % 100) FROM n`,
    });
    const replica = await procs.replica(primary.url, join(t.dir, 'r'));
    await converge(primary.url, [replica.url], 'bank');
    const file = join(t.dir, 'r', 'bank.db');
    const stop = join(t.dir, 'stop');
    const reader = runProcess('python3', ['-c', READER, file, String(TOTAL), String(ACCOUNTS), stop], '', WORKLOAD_MS + 60_000);

    const counts = { transfers: 0, sweeps: 0, indexes: 0, vacuums: 0 };
    let indexes = 0;
    let ops = 0;
    const started = Date.now();
    // Mostly transfers; at fixed intervals a sweep over every account, an index created or dropped, a VACUUM.
    const load = new Load(3, async () => {
      const op = ops++;
      if (op % 37 === 10) {
        // Every account: the even ones gain 1, the odd ones lose 1; one change set over every leaf page.
        counts.sweeps++;
        await exec(primary.url, 'bank', { statements: [{ sql: 'UPDATE accounts SET balance = balance + 1 WHERE id % 2 = 0' }, { sql: 'UPDATE accounts SET balance = balance - 1 WHERE id % 2 = 1' }] });
      } else if (op % 41 === 20) {
        counts.indexes++;
        const sql = indexes % 2 === 0 ? 'CREATE INDEX accounts_balance ON accounts (balance)' : 'DROP INDEX accounts_balance';
        indexes++;
        await exec(primary.url, 'bank', { sql });
      } else if (op % 97 === 50) {
        counts.vacuums++;
        await exec(primary.url, 'bank', { sql: 'VACUUM' });
      } else {
        counts.transfers++;
        const from = 1 + Math.floor(rand() * ACCOUNTS);
        const to = 1 + Math.floor(rand() * ACCOUNTS);
        const amount = 1 + Math.floor(rand() * 100);
        const statements = [
          { sql: 'UPDATE accounts SET balance = balance - ? WHERE id = ?', params: [amount, from] },
          { sql: 'UPDATE accounts SET balance = balance + ? WHERE id = ?', params: [amount, to] },
        ];
        // Now and then the row grows or shrinks, so pages split and merge within the transfer.
        if (rand() < 0.2) statements.push({ sql: 'UPDATE accounts SET pad = randomblob(?) WHERE id = ?', params: [50 + Math.floor(rand() * 400), to] });
        await exec(primary.url, 'bank', { statements });
      }
    });
    // The sqlite3 CLI (3.40.1) reads once mid-workload, read-only.
    await waitFor(() => counts.transfers > 200 || load.error, 'some transfers');
    const cli = await runProcess('sqlite3', ['-readonly', file, 'SELECT sum(balance), count(*) FROM accounts;']);
    await waitFor(() => (Date.now() - started > WORKLOAD_MS && ops > 150) || load.error, 'the workload to run its course', WORKLOAD_MS + 60_000, 100);
    await load.stop();
    const c = await converge(primary.url, [replica.url], 'bank');
    writeFileSync(stop, '');
    const out = await reader;
    expect(existsSync(stop)).toBe(true);
    expect(out.code, out.stderr).toBe(0);
    const summary = JSON.parse(out.stdout) as ReaderSummary;
    const context = `seed ${seed}: ${JSON.stringify(summary)}\n${replica.output().slice(-3000)}`;
    console.log(`[replica-reader] seed ${seed}: Python sqlite3 ${summary.version} did ${summary.reads} reads in ${summary.seconds.toFixed(1)} s (${summary.busy} busy), workload ${JSON.stringify(counts)}, txid ${c.txid}`);

    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout.trim(), 'sqlite3 CLI sum').toBe(`${TOTAL}|${ACCOUNTS}`);
    expect(summary.errors, context).toEqual([]);
    expect(summary.wrongCount, context).toBe(0);
    expect(summary.reads, context).toBeGreaterThan(1000);
    expect(Math.min(counts.vacuums, counts.indexes, counts.sweeps), `the mix ran its rare operations: ${JSON.stringify(counts)}`).toBeGreaterThan(0);
    expect(integrityCheck(file)).toBe('ok');
  }, TIMEOUT_MS);
});
