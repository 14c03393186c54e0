/// <reference path="../../deploy/worker/src/worker-env.d.ts" />
/**
 * The Worker's SQLite (wa-sqlite over the page-map VFS, deploy/worker/src/sqlite.ts) and better-sqlite3
 * answer every parameter style and every 64-bit edge the same way through shared/sql.ts (README.md#http-api):
 * one real database file, the same statements on both engines, identical rows.
 */
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EdgeliteError } from '../../shared/errors.ts';
import { parseExactJson } from '../../shared/exact-json.ts';
import { parseStatementsBody } from '../../shared/protocol.ts';
import { runRead, type SqlConnection } from '../../shared/sql.ts';
import { WaSqliteConnection } from '../../deploy/worker/src/sqlite.ts';
import { MAIN_FILE, PageMapVfs, type PageSource } from '../../deploy/worker/src/vfs.ts';
import { tempDir } from '../helpers.ts';
import { loadWaSqlite } from '../kit/wa-sqlite.ts';

const PAGE_SIZE = 4096;

/** Request bodies as a client sends them (JSON text, so integers past 2^53 are literal). */
const CASES: string[] = [
  '{"sql": "SELECT ?, ?", "params": [1, "two"]}',
  '{"sql": "SELECT ?1, ?1", "params": [5]}',
  '{"sql": "SELECT ?2, ?1, ?2", "params": ["a", "b"]}',
  '{"sql": "SELECT ?3", "params": [1, 2, 3]}',
  '{"sql": "SELECT ?2, ?", "params": [1, 2, 3]}',
  '{"sql": "SELECT :a, :b, :a", "params": {"a": 1, "b": "x"}}',
  '{"sql": "SELECT @a, @b", "params": {"@a": 2, "b": "y"}}',
  '{"sql": "SELECT $a, $b", "params": {"$a": 3, "$b": "z"}}',
  '{"sql": "SELECT :a, @b, $c", "params": [4, 5, 6]}',
  '{"sql": "SELECT v FROM t WHERE k = :k", "params": {"k": "max"}}',
  '{"sql": "SELECT k, typeof(v), v FROM t ORDER BY k"}',
  '{"sql": "SELECT ?, typeof(?1), ?1 + 0", "params": [9007199254740993]}',
  '{"sql": "SELECT ?, typeof(?1)", "params": [-9223372036854775808]}',
  '{"sql": "SELECT ?, typeof(?1)", "params": [9223372036854775807]}',
  '{"sql": "SELECT count(*) FROM t WHERE v = ?", "params": [9223372036854775807]}',
  '{"sql": "SELECT typeof(?), typeof(?), ? / 2", "params": [5, 5.5, 5]}',
];

class FileSource implements PageSource {
  readonly pageSize = PAGE_SIZE;
  readonly version = 1;
  constructor(private readonly image: Uint8Array) {}
  get pageCount(): number {
    return this.image.length / PAGE_SIZE;
  }
  page(pgno: number): Uint8Array {
    return this.image.subarray((pgno - 1) * PAGE_SIZE, pgno * PAGE_SIZE);
  }
}

describe('parameters and 64-bit integers: the Worker engine answers as better-sqlite3', () => {
  const t = tempDir('params-worker');
  let node: Database.Database;
  let worker: WaSqliteConnection;
  beforeAll(async () => {
    const file = join(t.dir, 'a.db');
    const db = new Database(file);
    db.pragma(`page_size = ${PAGE_SIZE}`);
    db.pragma('journal_mode = DELETE');
    db.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v)');
    const insert = db.prepare('INSERT INTO t VALUES (?, ?)');
    for (const [k, v] of [['min', -(2n ** 63n)], ['max', 2n ** 63n - 1n], ['above', 2n ** 53n + 1n], ['small', 7n]] as const) insert.run(k, v);
    db.close();
    node = new Database(file, { readonly: true });
    const module = await loadWaSqlite();
    const vfs = new PageMapVfs('params-worker');
    module.registerVFS(vfs, false);
    vfs.attach(new FileSource(readFileSync(file)));
    worker = new WaSqliteConnection(module, MAIN_FILE, vfs.name);
  });
  afterAll(() => {
    worker.close();
    node.close();
    t.cleanup();
  });

  const run = (conn: SqlConnection, body: string) => runRead(conn, parseStatementsBody(parseExactJson(body))[0]!).rows;

  it.each(CASES)('%s', (body) => {
    const rows = run(node, body);
    expect(run(worker, body)).toEqual(rows);
  });

  it('reads the edges exactly', () => {
    expect(run(worker, CASES[10]!)).toEqual([
      ['above', 'integer', 9007199254740993n],
      ['max', 'integer', 9223372036854775807n],
      ['min', 'integer', -9223372036854775808n],
      ['small', 'integer', 7],
    ]);
    expect(run(node, CASES[1]!)).toEqual([[5, 5]]);
    expect(run(node, CASES[14]!)).toEqual([[1]]);
  });

  it('refuses the same wrong counts on both', () => {
    for (const conn of [node, worker]) {
      for (const body of ['{"sql": "SELECT ?1, ?2", "params": [1]}', '{"sql": "SELECT ?1", "params": [1, 2]}', '{"sql": "SELECT :a", "params": {"b": 1}}']) {
        let code = '';
        try {
          run(conn, body);
        } catch (err) {
          code = (err as EdgeliteError).code;
        }
        expect(code, body).toBe('SQL_ERROR');
      }
    }
  });
});
