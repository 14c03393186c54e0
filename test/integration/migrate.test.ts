/**
 * `edgelite migrate` end to end (README.md#migrations): a real primary (and a Node replica) on loopback,
 * the CLI as a child process. A chain of four files with two table rebuilds applied with `--all` to
 * 1,000 tenants, the CLI SIGKILLed halfway and run again (each tenant ends migrated exactly once); an
 * edited file refused; `--dry-run` leaves the database byte-equal; a failing file rolled back wholly and
 * reported without stopping the others; `--fail-fast`; a rebuild that adds a foreign key and drops a
 * UNIQUE column (neither of which ALTER TABLE can do), refused where the data breaks the key; a run
 * through the replica.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica } from '../../replica/server.ts';
import { stopsAfterEach, tempDir } from '../helpers.ts';
import { exec, http, info, query } from '../kit/api.ts';
import { roundsTimeout } from '../kit/rounds.ts';
import { EDGELITE_BIN, REPO_ROOT, runEdgelite } from '../kit/spawn.ts';
import { waitFor } from '../kit/wait.ts';

const CHAIN: Record<string, string> = {
  '0001_init.sql': `CREATE TABLE items (id INTEGER PRIMARY KEY, name, qty TEXT);
CREATE INDEX items_name ON items(name);
CREATE VIEW item_names AS SELECT name FROM items;
INSERT INTO items (name, qty) VALUES ('a', '1'), ('b', '2');`,
  '0002_strict_items.sql': `-- Types that hold.
-- edgelite:rebuild items
CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL) STRICT;`,
  '0003_log.sql': `CREATE TABLE log (m TEXT NOT NULL) STRICT;
INSERT INTO log VALUES ('0003');`,
  '0004_items_note.sql': `INSERT INTO log VALUES ('0004');
-- edgelite:rebuild
CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL CHECK (qty >= 0), note TEXT NOT NULL DEFAULT '') STRICT;`,
};
const NAMES = Object.keys(CHAIN);

function writeChain(dir: string): string {
  const m = join(dir, 'migrations');
  mkdirSync(m);
  for (const [f, sql] of Object.entries(CHAIN)) writeFileSync(join(m, f), `${sql}\n`);
  return m;
}

/** CHAIN_CHECKS: what a migrated tenant holds, read in one transaction. */
const CHAIN_CHECKS = [
  'SELECT name FROM _edgelite_migrations ORDER BY name',
  'SELECT m FROM log ORDER BY m',
  'SELECT id, name, qty, note FROM items ORDER BY id',
  "SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
];

/** expectChainState: CHAIN_CHECKS' rows show each file's record once, and the data the chain makes. */
function expectChainState(db: string, [records, log, items, schema]: unknown[][][]): void {
  expect(records!.map((row) => row[0]), db).toEqual(NAMES);
  expect(log, db).toEqual([['0003'], ['0004']]);
  expect(items, db).toEqual([[1, 'a', 1, ''], [2, 'b', 2, '']]);
  expect(schema!.map((row) => row[0]), db).toEqual(['_edgelite_migrations', 'item_names', 'items', 'items_name', 'log']);
}

/** expectMigrated checks a tenant through a server's query API (one request). */
async function expectMigrated(url: string, db: string): Promise<void> {
  const r = await http(url, 'POST', `/v1/db/${db}/query`, { statements: CHAIN_CHECKS.map((sql) => ({ sql })) });
  expect(r.status, `${db}: ${JSON.stringify(r.json)}`).toBe(200);
  expectChainState(db, (r.json.results as Array<{ rows: unknown[][] }>).map((x) => x.rows));
}

/**
 * onDisk reads the primary's own file of a tenant, read-only, as any other process may (WAL mode): what
 * the primary committed, without 1,000 round trips through HTTP.
 */
function onDisk<T>(data: string, db: string, read: (conn: Database.Database) => T): T {
  const conn = new Database(join(data, `${db}.db`), { readonly: true, fileMustExist: true });
  try {
    return conn.transaction(() => read(conn))();
  } finally {
    conn.close();
  }
}

const rowsOf = (conn: Database.Database, sql: string) => conn.prepare(sql).raw().all() as unknown[][];

describe('edgelite migrate', () => {
  const stops = stopsAfterEach();

  async function setup(tenants: number): Promise<{ primary: PrimaryHandle; dir: string; names: string[] }> {
    const t = tempDir('migrate');
    stops.push(t.cleanup);
    const data = join(t.dir, 'p');
    mkdirSync(data);
    // The tenants are built as files (WAL mode, empty), as a primary finds them at start: far quicker than a PUT each.
    const names = Array.from({ length: tenants }, (_, i) => `t${String(i).padStart(4, '0')}`);
    for (const n of names) {
      const db = new Database(join(data, `${n}.db`));
      db.pragma('journal_mode = WAL');
      db.close();
    }
    const primary = await startPrimary(parsePrimaryConfig(['--data', data, '--listen', '127.0.0.1:0'], {}), silentLogger);
    stops.push(() => primary.close());
    expect(((await http(primary.url, 'GET', '/v1/db')).json.databases as Array<{ name: string }>).map((d) => d.name).sort()).toEqual(names);
    return { primary, dir: t.dir, names };
  }

  // 1,000 tenants in every run (README.md#migrations): the tenants built as files and checked on disk, 30 s
  // for this test on two cores at a load average of 3, 60 s at 6 (benchmarks running beside it).
  const N = 1000;
  it(`applies a chain with two rebuilds to ${N} tenants with --all, killed halfway and run again: each tenant migrated exactly once`, async () => {
    const { primary, dir, names } = await setup(N);
    const migrations = writeChain(dir);
    // The first run is SIGKILLed once about half the tenants are done (its debug progress lines, JSON on a non-TTY stderr, count them).
    const child = spawn(process.execPath, [EDGELITE_BIN, 'migrate', migrations, '--all', '--primary', primary.url, '--concurrency', '4', '--log-level', 'debug'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    let done = 0;
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
      const m = [...err.matchAll(/"done":(\d+),"total":\d+/g)].pop();
      if (m) done = Number(m[1]);
      if (done >= N / 2) child.kill('SIGKILL');
    });
    const exit = await new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    expect(exit.signal, err).toBe('SIGKILL');
    const data = join(dir, 'p');
    const counts = names.map((n) => onDisk(data, n, (conn) => {
      const has = rowsOf(conn, "SELECT count(*) FROM sqlite_schema WHERE name = '_edgelite_migrations'")[0]![0];
      return has === 0 ? 0 : Number(rowsOf(conn, 'SELECT count(*) FROM _edgelite_migrations')[0]![0]);
    }));
    expect(counts.filter((c) => c === 4).length).toBeGreaterThanOrEqual(N / 2);
    expect(counts.filter((c) => c < 4).length).toBeGreaterThan(0);

    const again = await runEdgelite(['migrate', migrations, '--all', '--primary', primary.url, '--json']);
    expect(again.status, again.stderr).toBe(0);
    const report = JSON.parse(again.stdout) as { summary: { migrated: number; failed: number; 'up-to-date': number } };
    expect(report.summary.failed).toBe(0);
    expect(report.summary.migrated + report.summary['up-to-date']).toBe(N);
    expect(report.summary['up-to-date']).toBeGreaterThanOrEqual(N / 2);
    for (const n of names) expectChainState(n, onDisk(data, n, (conn) => CHAIN_CHECKS.map((sql) => rowsOf(conn, sql))));
    await expectMigrated(primary.url, names[0]!); // and the API answers the same
    // A third run is a no-op.
    const third = await runEdgelite(['migrate', migrations, '--all', '--primary', primary.url, '--json']);
    expect((JSON.parse(third.stdout) as { summary: Record<string, number> }).summary['up-to-date']).toBe(N);
  }, roundsTimeout(N, 240, 60_000));

  it('refuses an edited file; --dry-run leaves the database byte-equal; a failing file rolls back wholly, --all goes on, --fail-fast stops', async () => {
    const { primary, dir, names } = await setup(4);
    const migrations = writeChain(dir);
    const first = await runEdgelite(['migrate', migrations, '--all', '--primary', primary.url]);
    expect(first.status, first.stderr).toBe(0);
    for (const n of names) await expectMigrated(primary.url, n);

    // A rebuild that fails on the data (duplicate names) in one tenant, after an INSERT in the same file.
    writeFileSync(join(migrations, '0005_unique_names.sql'), `INSERT INTO log VALUES ('0005');
-- edgelite:rebuild items
CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, qty INTEGER NOT NULL CHECK (qty >= 0), note TEXT NOT NULL DEFAULT '') STRICT;
`);
    await exec(primary.url, names[1]!, { sql: "INSERT INTO items (name, qty) VALUES ('a', 3)" });

    // --dry-run: the fork takes the file, the original keeps its txid, its checksum and every byte of its
    // image (serialize: the pages a reader sees, WAL included, whether or not a checkpoint ran); no fork is left.
    const data = join(dir, 'p');
    const image = () => onDisk(data, names[0]!, (conn) => conn.serialize());
    const bytesBefore = image();
    const before = await info(primary.url, names[0]!);
    const dry = await runEdgelite(['migrate', migrations, '--db', names[0]!, '--primary', primary.url, '--dry-run']);
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(new RegExp(`^${names[0]}: would apply 0005_unique_names.sql @\\d+ \\(4 already applied\\) \\(dry run on fork ${names[0]}\\.dryrun-[0-9a-f]{8}, dropped\\)`));
    const after = await info(primary.url, names[0]!);
    expect({ txid: after?.txid, checksum: after?.checksum }).toEqual({ txid: before?.txid, checksum: before?.checksum });
    const bytesAfter = image();
    expect(bytesAfter.length).toBe(bytesBefore.length);
    expect(bytesAfter.equals(bytesBefore), 'the database image changed under --dry-run').toBe(true);
    expect(((await http(primary.url, 'GET', '/v1/db')).json.databases as Array<{ name: string }>).map((d) => d.name).sort()).toEqual(names);

    // --fail-fast, one at a time: names[1] fails, nothing after it starts.
    const fast = await runEdgelite(['migrate', migrations, '--all', '--primary', primary.url, '--fail-fast', '--concurrency', '1', '--json']);
    expect(fast.status).toBe(1);
    const fastReport = JSON.parse(fast.stdout) as { databases: Array<{ name: string; status: string; error?: { code: string; migration?: string } }> };
    expect(fastReport.databases.map((d) => d.status)).toEqual(['migrated', 'failed', 'skipped', 'skipped']);
    expect(fastReport.databases[1]!.error).toMatchObject({ code: 'CONSTRAINT_VIOLATION', migration: '0005_unique_names.sql' });

    // Without it, the others are migrated and the failure is reported; the failed file left nothing behind.
    const all = await runEdgelite(['migrate', migrations, '--all', '--primary', primary.url]);
    expect(all.status).toBe(1);
    expect(all.stdout).toContain(`${names[1]}: FAILED at 0005_unique_names.sql: CONSTRAINT_VIOLATION: UNIQUE constraint failed: _edgelite_rebuild_items.name`);
    expect(all.stdout).toContain('4 database(s): 2 migrated, 1 up to date, 1 failed, 0 skipped');
    expect(await query(primary.url, names[1]!, 'SELECT m FROM log ORDER BY m')).toEqual([['0003'], ['0004']]);
    expect(await query(primary.url, names[1]!, "SELECT count(*) FROM _edgelite_migrations WHERE name = '0005_unique_names.sql'")).toEqual([[0]]);
    expect(await query(primary.url, names[1]!, "SELECT sql FROM sqlite_schema WHERE name = 'items'")).toEqual([['CREATE TABLE "items" (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL CHECK (qty >= 0), note TEXT NOT NULL DEFAULT \'\') STRICT']]);
    expect(await query(primary.url, names[2]!, 'SELECT m FROM log ORDER BY m')).toEqual([['0003'], ['0004'], ['0005']]);

    // An applied file edited afterwards is refused, naming it.
    appendFileSync(join(migrations, '0003_log.sql'), "INSERT INTO log VALUES ('edited');\n");
    const edited = await runEdgelite(['migrate', migrations, '--db', names[0]!, '--primary', primary.url, '--json']);
    expect(edited.status).toBe(1);
    const e = (JSON.parse(edited.stdout) as { databases: Array<{ error: { code: string; message: string } }> }).databases[0]!.error;
    expect(e.code).toBe('CHECKSUM_MISMATCH');
    expect(e.message).toMatch(/^0003_log\.sql was applied to t0000 with checksum [0-9a-f]{64} .* has been edited since/);
  }, 120_000);

  it('a rebuild adds a foreign key and drops a UNIQUE column: applied where the data holds, rolled back wholly where a row breaks the key', async () => {
    const { primary, dir, names } = await setup(2);
    const m = join(dir, 'fk');
    mkdirSync(m);
    writeFileSync(join(m, '0001_init.sql'), `CREATE TABLE parent (id INTEGER PRIMARY KEY) STRICT;
CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER, code TEXT NOT NULL UNIQUE);
CREATE INDEX child_parent ON child(parent_id);
INSERT INTO parent VALUES (1), (2);
INSERT INTO child VALUES (1, 1, 'a'), (2, 2, 'b');
`);
    expect((await runEdgelite(['migrate', m, '--all', '--primary', primary.url])).status).toBe(0);
    // SQLite's ALTER TABLE can do neither: DROP COLUMN refuses a UNIQUE column, and no ALTER adds a REFERENCES.
    const drop = await http(primary.url, 'POST', `/v1/db/${names[0]}/exec`, { sql: 'ALTER TABLE child DROP COLUMN code' });
    expect(drop.json.error?.message).toMatch(/cannot drop UNIQUE column/);
    await exec(primary.url, names[1]!, { sql: "INSERT INTO child VALUES (3, 99, 'orphan')" });
    writeFileSync(join(m, '0002_child_fk.sql'), `-- edgelite:rebuild child
CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent(id)) STRICT;
`);
    const run = await runEdgelite(['migrate', m, '--all', '--primary', primary.url, '--json']);
    expect(run.status).toBe(1);
    const results = (JSON.parse(run.stdout) as { databases: Array<{ name: string; status: string; error?: { code: string; message: string; migration?: string } }> }).databases;
    expect(results.map((r) => [r.name, r.status])).toEqual([[names[0], 'migrated'], [names[1], 'failed']]);
    expect(results[1]!.error).toMatchObject({ code: 'CONSTRAINT_VIOLATION', migration: '0002_child_fk.sql' });
    expect(results[1]!.error!.message).toBe('FOREIGN KEY constraint failed'); // the copy's INSERT ... SELECT, checked by SQLite at its end

    const fks = "SELECT \"table\", \"from\", \"to\" FROM pragma_foreign_key_list('child')";
    const cols = "SELECT group_concat(name, ',') FROM pragma_table_info('child')";
    const indexes = "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'child' AND sql IS NOT NULL";
    expect(await query(primary.url, names[0]!, fks)).toEqual([['parent', 'parent_id', 'id']]);
    expect(await query(primary.url, names[0]!, cols)).toEqual([['id,parent_id']]);
    expect(await query(primary.url, names[0]!, indexes)).toEqual([['child_parent']]);
    expect(await query(primary.url, names[0]!, 'SELECT id, parent_id FROM child ORDER BY id')).toEqual([[1, 1], [2, 2]]);
    expect(await query(primary.url, names[0]!, 'PRAGMA foreign_key_check')).toEqual([]);
    const refused = await http(primary.url, 'POST', `/v1/db/${names[0]}/exec`, { sql: 'INSERT INTO child VALUES (5, 42)' });
    expect(refused.json.error?.code).toBe('CONSTRAINT_VIOLATION');
    // The tenant whose row breaks the key keeps the old table whole, and no record of the file.
    expect(await query(primary.url, names[1]!, fks)).toEqual([]);
    expect(await query(primary.url, names[1]!, cols)).toEqual([['id,parent_id,code']]);
    expect(await query(primary.url, names[1]!, 'SELECT count(*) FROM child')).toEqual([[3]]);
    expect(await query(primary.url, names[1]!, 'SELECT name FROM _edgelite_migrations ORDER BY name')).toEqual([['0001_init.sql']]);
  }, 60_000);

  it('runs through a replica: the files are forwarded to the primary and the replica gets the new schema', async () => {
    const { primary, dir, names } = await setup(1);
    const replica = await startReplica(parseReplicaConfig(['--primary', primary.url, '--data', join(dir, 'r'), '--listen', '127.0.0.1:0'], {}), silentLogger);
    stops.push(() => replica.close());
    await waitFor(async () => (await info(replica.url, names[0]!)) ?? null, 'the replica has the tenant');
    const migrations = writeChain(dir);
    const run = await runEdgelite(['migrate', migrations, '--db', names[0]!, '--primary', replica.url]);
    expect(run.status, `${run.stdout}${run.stderr}`).toBe(0);
    await expectMigrated(primary.url, names[0]!);
    await waitFor(async () => ((await info(replica.url, names[0]!))?.txid === (await info(primary.url, names[0]!))?.txid) || null, 'the replica caught up');
    await expectMigrated(replica.url, names[0]!);
  }, 60_000);
});
