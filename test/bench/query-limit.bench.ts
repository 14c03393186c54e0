/**
 * Point-read cost of the query time limit (docs/ARCHITECTURE.md#query-time-limits): one
 * `SELECT id, v FROM kv WHERE id = ?` on a 100,000-row file, bare runRead (no limit), QueryPool.run
 * in-process (10 ms slice, SQLite's deadline armed and lifted around it), and QueryPool.run through a
 * query process (the path every read took before). Run: npx vitest bench --run test/bench/query-limit.bench.ts
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, bench, describe } from 'vitest';
import { QueryPool } from '../../shared/node/query-pool.ts';
import type { Statement } from '../../shared/protocol.ts';
import { runRead } from '../../shared/sql.ts';
import { tempDir } from '../helpers.ts';

const ROWS = 100_000;
const t = tempDir('query-limit-bench');
const path = join(t.dir, 'kv.db');
const w = new Database(path);
w.pragma('journal_mode = WAL');
w.exec('CREATE TABLE kv (id INTEGER PRIMARY KEY, v TEXT)');
const ins = w.prepare('INSERT INTO kv VALUES (?, ?)');
w.transaction(() => {
  for (let i = 1; i <= ROWS; i++) ins.run(i, 'x'.repeat(100));
})();
w.close();
const local = new Database(path, { readonly: true, fileMustExist: true });
local.pragma('query_only = ON');
const inProcess = new QueryPool({ timeoutMs: 5000 });
const processes = new QueryPool({ timeoutMs: 5000, inProcessReads: 'off' });
await processes.run(path, [{ sql: 'SELECT 1', params: [] }]);
const point = (): Statement[] => [{ sql: 'SELECT id, v FROM kv WHERE id = ?', params: [1 + Math.floor(Math.random() * ROWS)] }];
const conn = () => local;

afterAll(async () => {
  await inProcess.close();
  await processes.close();
  local.close();
  t.cleanup();
});

describe('point read', () => {
  bench('runRead, no limit', () => {
    runRead(local, point()[0]!);
  });
  bench('QueryPool.run in-process (after)', async () => {
    await inProcess.run(path, point(), 5000, conn);
  });
  bench('QueryPool.run in a query process (before)', async () => {
    await processes.run(path, point());
  });
});
