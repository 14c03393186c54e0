/**
 * `edgelite doctor` end to end (README.md#integrity): a real primary and a Node replica over loopback,
 * serving a crafted database (one of each finding the API can show: a corrupt index, a foreign-key
 * violation written with foreign keys off, an unindexed foreign key, a non-STRICT table without a
 * primary key, page size 8192) and one built to the defaults. The CLI runs as a child process against
 * the primary and the replica; `--fix` files clear what they answer: the plain ones applied through
 * the exec API, and all of them through `edgelite migrate` where this tree has it (README.md#integrity, "--fix DIR").
 */
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/log.ts';
import { splitStatements } from '../../shared/doctor-sql.ts';
import { CliApi } from '../../shared/node/cli-api.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { examine, type DatabaseReport } from '../../bin/doctor.ts';
import { stopsAfterEach, tempDir } from '../helpers.ts';
import { http } from '../kit/api.ts';
import { REPO_ROOT, runEdgelite } from '../kit/spawn.ts';
import { waitFor } from '../kit/wait.ts';

const READER = 'doctor-read-token-0123456789abcdef';
const ADMIN = 'doctor-admin-token-0123456789abcdef';
const TOKENS = `read=${READER}; admin+read+write+replicate=${ADMIN}`;

/** craft writes bad.db (every finding the API can show) and good.db (the defaults) into `dir`. */
function craft(dir: string): void {
  const bad = new Database(join(dir, 'bad.db'));
  bad.pragma('page_size = 8192');
  bad.pragma('journal_mode = WAL');
  // Another process's write: SQLite's default (the sqlite3 CLI's) is foreign_keys OFF.
  bad.pragma('foreign_keys = OFF');
  bad.exec(`
    CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT) STRICT;
    CREATE TABLE loose (a INT, b VARCHAR(10) NOT NULL DEFAULT 'x');
    CREATE INDEX loose_a ON loose(a);
    CREATE VIEW loose_v AS SELECT a, b FROM loose;
    CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id)) STRICT;
    CREATE TABLE idx (id INTEGER PRIMARY KEY, b TEXT, c TEXT) STRICT;
    CREATE INDEX idx_b ON idx(b);
    INSERT INTO parent VALUES (1, 'p');
    INSERT INTO loose VALUES (1, 'a'), (2, 'b');
    INSERT INTO child VALUES (1, 1), (2, 99);
    INSERT INTO idx VALUES (1, 'x', 'y'), (2, 'z', 'w');`);
  // An index whose entries no longer match its definition: what integrity_check reports.
  bad.unsafeMode(true);
  bad.pragma('writable_schema = ON');
  bad.prepare(`UPDATE sqlite_schema SET sql = 'CREATE INDEX idx_b ON idx(c)' WHERE name = 'idx_b'`).run();
  bad.close();
  const good = new Database(join(dir, 'good.db'));
  good.pragma('journal_mode = WAL');
  good.exec(`
    CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT) STRICT;
    CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent(id)) STRICT;
    CREATE INDEX child_parent ON child(parent_id);
    CREATE TABLE pairs (a TEXT, b INTEGER, PRIMARY KEY (a, b)) WITHOUT ROWID, STRICT;
    INSERT INTO parent VALUES (1, 'p');
    INSERT INTO child VALUES (1, 1);`);
  good.close();
}

const codes = (r: DatabaseReport | undefined) => (r?.findings ?? []).map((f) => f.code).sort();
const CRAFTED = ['FOREIGN_KEYS_OFF_ELSEWHERE', 'FOREIGN_KEY_NOT_INDEXED', 'FOREIGN_KEY_VIOLATION', 'INTEGRITY_CHECK_FAILED', 'NOT_STRICT', 'NO_PRIMARY_KEY', 'PAGE_SIZE'];

/** MIGRATE_BUILT: `edgelite migrate` (README.md#integrity, "--fix DIR") is in this tree: the rebuild fixes can run. */
const MIGRATE_BUILT = existsSync(join(REPO_ROOT, 'bin', 'migrate.ts'));

describe('edgelite doctor', () => {
  const stops = stopsAfterEach();

  async function setup(withReplica: boolean): Promise<{ primary: PrimaryHandle; replica: ReplicaHandle | null; dir: string }> {
    const t = tempDir('doctor');
    stops.push(t.cleanup);
    const data = join(t.dir, 'p');
    mkdirSync(data);
    craft(data);
    const primary = await startPrimary(parsePrimaryConfig(['--data', data, '--listen', '127.0.0.1:0'], { EDGELITE_TOKENS: TOKENS }), silentLogger);
    stops.push(() => primary.close());
    if (!withReplica) return { primary, replica: null, dir: t.dir };
    const replica = await startReplica(
      parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0'], { EDGELITE_TOKENS: TOKENS, EDGELITE_PRIMARY_TOKEN: ADMIN }),
      silentLogger,
    );
    stops.push(() => replica.close());
    return { primary, replica, dir: t.dir };
  }

  it('reports each finding once on the crafted database and none on the defaults, through the primary and a replica; --fix writes the migrations', async () => {
    const { primary, replica, dir } = await setup(true);
    const fixDir = join(dir, 'fixes');
    const run = await runEdgelite(['doctor', '--all', '--primary', primary.url, '--json', '--fix', fixDir, '--token', READER]);
    expect(run.status, run.stderr).toBe(1); // error findings
    const report = JSON.parse(run.stdout) as { databases: DatabaseReport[]; notes: string[] };
    const bad = report.databases.find((d) => d.name === 'bad');
    expect(codes(bad)).toEqual(CRAFTED);
    expect(report.databases.find((d) => d.name === 'good')).toEqual({ name: 'good', findings: [], fixes: [] });
    expect(report.notes.join(' ')).toContain('foreign_keys is a setting of each connection');
    const files = readdirSync(join(fixDir, 'bad')).sort();
    expect(files).toEqual(['0001_reindex_idx_b.sql', '0002_index_child_parent_id_idx.sql', '0003_rebuild_loose.sql']);
    expect(readFileSync(join(fixDir, 'bad', '0003_rebuild_loose.sql'), 'utf8')).toContain(`-- edgelite:rebuild\nCREATE TABLE "loose" (\n  "id" INTEGER PRIMARY KEY,\n  a INTEGER,\n  b TEXT NOT NULL DEFAULT 'x'\n) STRICT;\n`);

    // The same findings through the replica (its reads run on its own copy), token from the environment.
    const auth = { authorization: `Bearer ${READER}` };
    const txid = async (url: string) => (await http(url, 'GET', '/v1/db/bad', undefined, auth)).json?.txid as number | undefined;
    const want = await txid(primary.url);
    await waitFor(async () => (await txid(replica!.url)) === want || null, 'the replica has bad');
    const viaReplica = await runEdgelite(['doctor', '--db', 'bad', '--primary', replica!.url, '--json'], { EDGELITE_TOKEN: READER });
    expect(codes((JSON.parse(viaReplica.stdout) as { databases: DatabaseReport[] }).databases[0])).toEqual(CRAFTED);

    // The fixes that are plain statements, applied through exec (one transaction each), clear what they answer.
    for (const f of files.slice(0, 2)) {
      const statements = splitStatements(readFileSync(join(fixDir, 'bad', f), 'utf8')).map((sql) => ({ sql }));
      const r = await http(primary.url, 'POST', '/v1/db/bad/exec', { statements }, { authorization: `Bearer ${ADMIN}` });
      expect(r.status, `${f}: ${JSON.stringify(r.json)}`).toBe(200);
    }
    const after = await examine(new CliApi(primary.url, READER), 'bad');
    expect(after.map((f) => f.code).sort()).toEqual(['FOREIGN_KEYS_OFF_ELSEWHERE', 'FOREIGN_KEY_VIOLATION', 'NOT_STRICT', 'NO_PRIMARY_KEY', 'PAGE_SIZE']);

    // Operator errors: flags, and a token without the right.
    const noTarget = await runEdgelite(['doctor', '--primary', primary.url]);
    expect(noTarget.status).toBe(1);
    expect(noTarget.stderr).toMatch(/^edgelite doctor: MISCONFIGURED: give either --db NAME or --all/);
    const denied = await new CliApi(primary.url, undefined).query('good', ['SELECT 1']).catch((e: unknown) => e);
    expect(denied).toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it.runIf(MIGRATE_BUILT)('edgelite migrate applies every --fix file; only what no migration can fix is left', async () => {
    const { primary, dir } = await setup(false);
    const fixDir = join(dir, 'fixes');
    expect((await runEdgelite(['doctor', '--db', 'bad', '--primary', primary.url, '--fix', fixDir, '--token', READER])).status).toBe(1);
    const migrate = await runEdgelite(['migrate', fixDir, '--db', 'bad', '--primary', primary.url, '--token', ADMIN]);
    expect(migrate.status, `${migrate.stdout}\n${migrate.stderr}`).toBe(0);
    const after = await examine(new CliApi(primary.url, READER), 'bad');
    expect(after.map((f) => f.code).sort()).toEqual(['FOREIGN_KEYS_OFF_ELSEWHERE', 'FOREIGN_KEY_VIOLATION', 'PAGE_SIZE']);
    const rows = await http(primary.url, 'POST', '/v1/db/bad/query', { sql: 'SELECT id, a, b FROM loose ORDER BY id' }, { authorization: `Bearer ${READER}` });
    expect(rows.json.results[0].rows).toEqual([[1, 1, 'a'], [2, 2, 'b']]);
    // A second --fix finds nothing more to write, and doctor leaves migrate's own table alone.
    const again = await runEdgelite(['doctor', '--db', 'bad', '--primary', primary.url, '--fix', fixDir, '--json', '--token', READER]);
    expect((JSON.parse(again.stdout) as { databases: DatabaseReport[] }).databases[0]!.fixes).toEqual([]);
  });
});
