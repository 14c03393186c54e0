/**
 * `edgelite export` end to end (README.md#analytics-export): a real primary over loopback serves a
 * database with the values that are easy to lose (2^63 − 1 and −2^63, a blob with a zero byte, an empty
 * blob, NULLs, REALs, unicode and CSV-hostile text, a column of mixed storage classes); each format is
 * read back with DuckDB and compared row for row with what SQLite holds. `--all` over three tenants
 * gives one table per name with the tenant as a column.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import Database from 'better-sqlite3';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica } from '../../replica/server.ts';
import { runExport, type ExportOptions } from '../../bin/export.ts';
import { classOf, textOf } from '../../bin/export-types.ts';
import { stopsAfterEach, tempDir } from '../helpers.ts';
import { http } from '../kit/api.ts';
import { waitFor } from '../kit/wait.ts';
import { runEdgelite } from '../kit/spawn.ts';

const TOKEN = 'export-token-0123456789abcdef0123';
const TOKENS = `read+replicate=${TOKEN}`;
/** READ_TOKEN: a replica's token with the read right only, which its snapshot route asks for. */
const READ_TOKEN = 'export-read-token-0123456789abcdef';

/** normal makes SQLite's and DuckDB's values comparable: blobs as `blob:<hex>`, DuckDB's blob values too. */
function normal(v: unknown): unknown {
  if (v instanceof Uint8Array) return `blob:${Buffer.from(v).toString('hex')}`;
  if (v && typeof v === 'object' && 'bytes' in v) return `blob:${Buffer.from((v as { bytes: Uint8Array }).bytes).toString('hex')}`;
  return v;
}

async function duckRows(sql: string, file = ':memory:'): Promise<unknown[][]> {
  const instance = await DuckDBInstance.create(file);
  const conn = await instance.connect();
  try {
    return (await conn.runAndReadAll(sql)).getRows().map((r) => r.map(normal));
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

/** sqliteRows reads a table from the source file as the export should carry it (mixed `m` as text + class). */
function sqliteRows(file: string, sql: string, mixed: number[] = []): unknown[][] {
  const db = new Database(file, { readonly: true });
  db.defaultSafeIntegers(true);
  try {
    return (db.prepare(sql).raw().all() as unknown[][]).map((row) =>
      row.flatMap((v, i) => (mixed.includes(i) ? (v === null ? [null, null] : [textOf(v), classOf(v)]) : [v instanceof Uint8Array ? normal(v) : v])),
    );
  } finally {
    db.close();
  }
}

/** makeShop writes the source database: the values that are easy to lose, in a STRICT table and a NUMERIC one. */
function makeShop(source: string): void {
  const db = new Database(source);
  db.pragma('journal_mode = WAL');
  db.defaultSafeIntegers(true);
  db.exec(`CREATE TABLE v (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, m ANY) STRICT;
           CREATE TABLE nums (id INTEGER PRIMARY KEY, n NUMERIC);`);
  const ins = db.prepare('INSERT INTO v VALUES (?, ?, ?, ?, ?, ?)');
  ins.run(1n, 2n ** 63n - 1n, 1.5, 'héllo 😀 世界', Buffer.from([0, 1, 255]), 1n);
  ins.run(2n, -(2n ** 63n), -0.1, '', Buffer.alloc(0), 'text');
  ins.run(3n, null, null, null, null, Buffer.from('ab'));
  ins.run(4n, 0n, 1e300, 'a,"b"\nc\\x00', null, 2.5);
  ins.run(5n, 9007199254740993n, 5e-324, 'NULL', Buffer.from('\\x41'), null);
  db.prepare('INSERT INTO nums VALUES (?, ?)').run(1n, 3n);
  db.prepare('INSERT INTO nums VALUES (?, ?)').run(2n, 0.25);
  db.close();
}

describe('edgelite export', () => {
  const stops = stopsAfterEach();

  async function serve(dir: string, make: (dir: string) => void): Promise<PrimaryHandle> {
    mkdirSync(dir, { recursive: true });
    make(dir);
    const primary = await startPrimary(parsePrimaryConfig(['--data', dir, '--listen', '127.0.0.1:0'], { EDGELITE_TOKENS: TOKENS }), silentLogger);
    stops.push(() => primary.close());
    return primary;
  }

  it('parquet, csv and duckdb read back with DuckDB equal row for row', async () => {
    const t = tempDir('export');
    stops.push(t.cleanup);
    const data = join(t.dir, 'p');
    const source = join(data, 'shop.db');
    const primary = await serve(data, () => makeShop(source));
    const expected = sqliteRows(source, 'SELECT * FROM v ORDER BY id', [5]);
    const expectedNums = [[1n, 3], [2n, 0.25]];
    const options = (format: ExportOptions['format']): ExportOptions => ({ databases: ['shop'], format, out: join(t.dir, `out-${format}`), primary: primary.url, token: TOKEN });

    // Parquet, in process.
    const parquet = await runExport(options('parquet'));
    expect(parquet.tables).toEqual([{ name: 'nums', rows: 2, file: 'nums.parquet' }, { name: 'v', rows: 5, file: 'v.parquet' }]);
    const pq = join(t.dir, 'out-parquet');
    expect(await duckRows(`SELECT * FROM read_parquet('${pq}/v.parquet') ORDER BY id`)).toEqual(expected);
    expect(await duckRows(`SELECT * FROM read_parquet('${pq}/nums.parquet') ORDER BY id`)).toEqual(expectedNums);
    const types = await duckRows(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('${pq}/v.parquet'))`);
    expect(types).toEqual([['id', 'BIGINT'], ['i', 'BIGINT'], ['r', 'DOUBLE'], ['t', 'VARCHAR'], ['b', 'BLOB'], ['m', 'VARCHAR'], ['m__sqlite_type', 'VARCHAR']]);

    // CSV, through the CLI (a child process, token from the environment, log lines on a non-TTY stderr);
    // read back with the column types the manifest states.
    const run = await runEdgelite(['export', 'shop', '--format', 'csv', '--out', join(t.dir, 'out-csv'), '--primary', primary.url], { EDGELITE_TOKEN: TOKEN });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ format: 'csv', databases: [{ db: 'shop', position: { generation: 1 } }] });
    const logLines = run.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logLines).toContainEqual(expect.objectContaining({ level: 'info', role: 'export', msg: 'export: shop.v (7/7)', done: 7, total: 7 }));
    const manifest = JSON.parse(readFileSync(join(t.dir, 'out-csv', 'manifest.json'), 'utf8')) as { tables: Array<{ name: string; columns: Array<{ name: string; type: string; classColumn: string | null }> }> };
    const csvColumns = (name: string) => {
      const cols = manifest.tables.find((x) => x.name === name)!.columns.flatMap((c) => [[c.name, c.type], ...(c.classColumn ? [[c.classColumn, 'VARCHAR']] : [])]);
      return `{${cols.map(([n, ty]) => `'${n}': '${ty}'`).join(', ')}}`;
    };
    const csv = join(t.dir, 'out-csv');
    expect(await duckRows(`SELECT * FROM read_csv('${csv}/v.csv', header = true, allow_quoted_nulls = false, columns = ${csvColumns('v')}) ORDER BY id`)).toEqual(expected);
    expect(await duckRows(`SELECT * FROM read_csv('${csv}/nums.csv', header = true, allow_quoted_nulls = false, columns = ${csvColumns('nums')}) ORDER BY id`)).toEqual(expectedNums);

    // A .duckdb file, in process.
    await runExport(options('duckdb'));
    expect(await duckRows('SELECT * FROM v ORDER BY id', join(t.dir, 'out-duckdb'))).toEqual(expected);

    // An output that would mix with other files is refused before anything is downloaded.
    await expect(runExport(options('duckdb'))).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await expect(runExport(options('parquet'))).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    const badFormat = await runEdgelite(['export', 'shop', '--format', 'xlsx', '--out', join(t.dir, 'x'), '--primary', primary.url]);
    expect(badFormat.status).toBe(1);
    expect(badFormat.stderr).toMatch(/^edgelite export: MISCONFIGURED: --format must be one of parquet, csv, duckdb, not "xlsx"/);
  });

  it('--all puts three tenants into one dataset, the tenant as a column', async () => {
    const t = tempDir('export-all');
    stops.push(t.cleanup);
    const primary = await serve(join(t.dir, 'p'), (dir) => {
      for (const [name, extra] of [['acme', ''], ['globex', ', note TEXT'], ['initech', '']] as const) {
        const db = new Database(join(dir, `${name}.db`));
        db.pragma('journal_mode = WAL');
        db.exec(`CREATE TABLE events (id INTEGER PRIMARY KEY, n INTEGER${extra}) STRICT`);
        for (let i = 1; i <= 3; i++) db.prepare(`INSERT INTO events (id, n${extra ? ', note' : ''}) VALUES (?, ?${extra ? ", 'x'" : ''})`).run(i, i * 10 + name.length);
        if (name === 'initech') db.exec(`CREATE TABLE only_here (k TEXT PRIMARY KEY) STRICT; INSERT INTO only_here VALUES ('z');`);
        db.close();
      }
    });
    const out = join(t.dir, 'out');
    const summary = await runExport({ databases: 'all', format: 'parquet', out, primary: primary.url, token: TOKEN });
    expect(summary.databases.map((d) => d.db)).toEqual(['acme', 'globex', 'initech']);
    const rows = await duckRows(`SELECT tenant, id, n, note FROM read_parquet('${out}/events.parquet') ORDER BY tenant, id`);
    const want = ['acme', 'globex', 'initech'].flatMap((tenant) => [1, 2, 3].map((i) => [tenant, BigInt(i), BigInt(i * 10 + tenant.length), tenant === 'globex' ? 'x' : null]));
    expect(rows).toEqual(want);
    expect(await duckRows(`SELECT * FROM read_parquet('${out}/only_here.parquet')`)).toEqual([['initech', 'z']]);
  });

  it('through a Node replica: its snapshot route (the read right) gives the same dataset, at the replica\'s position', async () => {
    const t = tempDir('export-replica');
    stops.push(t.cleanup);
    const data = join(t.dir, 'p');
    const source = join(data, 'shop.db');
    const primary = await serve(data, () => makeShop(source));
    const replica = await startReplica(
      parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0'], { EDGELITE_PRIMARY_TOKEN: TOKEN, EDGELITE_TOKENS: `read=${READ_TOKEN}` }),
      silentLogger,
    );
    stops.push(() => replica.close());
    // Rows written after the replica bootstrapped (by another process's connection, which the primary
    // captures) reach it as change sets, not in its bootstrap snapshot.
    await waitForTxid(replica.url, 'shop', 0);
    const before = (await describeDb(primary.url, TOKEN)).txid;
    const writer = new Database(source);
    writer.prepare('INSERT INTO nums VALUES (?, ?), (?, ?)').run(3, 'x', 4, 1e-3);
    writer.close();
    await waitFor(async () => (await describeDb(primary.url, TOKEN)).txid > before || null, 'the primary captured the write');
    await waitForTxid(replica.url, 'shop', (await describeDb(primary.url, TOKEN)).txid);
    const expected = sqliteRows(source, 'SELECT * FROM v ORDER BY id', [5]);
    const expectedNums = sqliteRows(source, 'SELECT * FROM nums ORDER BY id', [1]);

    const out = join(t.dir, 'out');
    const summary = await runExport({ databases: ['shop'], format: 'parquet', out, primary: replica.url, token: READ_TOKEN });
    const at = await describeDb(replica.url, READ_TOKEN);
    expect(summary.databases).toEqual([{ db: 'shop', position: { generation: at.generation, txid: at.txid, checksum: at.checksum } }]);
    expect(summary.tables).toEqual([{ name: 'nums', rows: 4, file: 'nums.parquet' }, { name: 'v', rows: 5, file: 'v.parquet' }]);
    expect(await duckRows(`SELECT * FROM read_parquet('${out}/v.parquet') ORDER BY id`)).toEqual(expected);
    expect(await duckRows(`SELECT * FROM read_parquet('${out}/nums.parquet') ORDER BY id`)).toEqual(expectedNums);

    // The route's answers: the primary's wire format (headers a replica verifies), read right, errors typed.
    const res = await fetch(`${replica.url}/v1/db/shop/snapshot`, { headers: { authorization: `Bearer ${READ_TOKEN}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/vnd.sqlite3');
    expect(res.headers.get('edgelite-txid')).toBe(String(at.txid));
    expect(Number(res.headers.get('content-length'))).toBe((await res.arrayBuffer()).byteLength);
    expect((await http(replica.url, 'GET', '/v1/db/shop/snapshot')).status).toBe(401);
    const missing = await http(replica.url, 'GET', '/v1/db/nope/snapshot', undefined, { authorization: `Bearer ${READ_TOKEN}` });
    expect({ status: missing.status, code: missing.json.error.code }).toEqual({ status: 404, code: 'DATABASE_NOT_FOUND' });
  });
});

/** describeDb is GET /v1/db/shop with `token`. */
async function describeDb(url: string, token: string): Promise<{ generation: number; txid: number; checksum: string }> {
  const r = await http(url, 'GET', '/v1/db/shop', undefined, { authorization: `Bearer ${token}` });
  if (r.status !== 200) throw new Error(`GET /v1/db/shop on ${url}: ${r.status} ${JSON.stringify(r.json)}`);
  return r.json as { generation: number; txid: number; checksum: string };
}

/** waitForTxid waits until the replica has shop at `txid` or later. */
async function waitForTxid(url: string, db: string, txid: number): Promise<void> {
  await waitFor(async () => {
    const r = await http(url, 'GET', `/v1/db/${db}`, undefined, { authorization: `Bearer ${READ_TOKEN}` });
    return (r.status === 200 && r.json.txid !== null && r.json.txid >= txid) || null;
  }, `the replica at txid ${txid}`);
}
