/**
 * Replication end to end with real processes (docs/FORMAT.md, docs/ARCHITECTURE.md#apply-rules, docs/ARCHITECTURE.md#the-stream-protocol): a primary and replicas started
 * through the `edgelite` CLI, a random write workload through the primary's HTTP API, and then each
 * replica must report the primary's generation, txid and checksum, pass PRAGMA integrity_check on its
 * file (opened read-only while it runs) and hold the same rows. Also database-per-tenant: many
 * databases on one stream, one created after the replica started, and a replica following a list.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { prng, seedFromEnv, tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';
import { converge, dump, exec, http, info, integrityCheck, logged } from '../kit/api.ts';
import { processesAfterEach, type Processes } from '../kit/spawn.ts';
import { LONG } from '../kit/rounds.ts';

/** Child processes start slowly on a loaded 2-core machine: more room than the default test timeout. */
const TIMEOUT_MS = LONG ? 600_000 : 180_000;
const { procs, cleanups } = processesAfterEach();

function dirs(prefix: string): string {
  const t = tempDir(prefix);
  cleanups.push(t.cleanup);
  return t.dir;
}

/**
 * Workload is the random write mix: inserts, updates and deletes on several tables, blobs larger than a
 * page (as `randomblob` and as base64 parameters), multi-statement batches, and at fixed random points a
 * DDL change (new column + index, a table created and later dropped) and VACUUMs.
 */
class Workload {
  readonly #rand: () => number;
  readonly #url: string;
  readonly #db: string;
  #nextUser = 1;
  #nextFile = 1;
  #op = 0;
  readonly #events: Map<number, string>;
  readonly counts: Record<string, number> = {};

  constructor(url: string, db: string, rand: () => number, total: number) {
    this.#url = url;
    this.#db = db;
    this.#rand = rand;
    // Events at distinct random ops, at least 6 apart, so none replaces another (the table is dropped
    // 5 ops after it is created).
    const taken: number[] = [total - 10];
    const at = () => {
      for (;;) {
        const op = 20 + Math.floor(rand() * (total - 40));
        if (taken.every((t) => Math.abs(t - op) > 6)) {
          taken.push(op, op + 5);
          return op;
        }
      }
    };
    const extra = at();
    this.#events = new Map([[at(), 'ddl'], [at(), 'vacuum'], [extra, 'create-extra'], [extra + 5, 'drop-extra'], [total - 10, 'vacuum']]);
  }

  static readonly schema = [
    'CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER)',
    'CREATE TABLE files (id INTEGER PRIMARY KEY, owner INTEGER, data BLOB)',
    'CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, user INTEGER, kind TEXT, at INTEGER)',
  ];

  #int(n: number): number {
    return Math.floor(this.#rand() * n);
  }

  #pick(next: number): number {
    return 1 + this.#int(Math.max(1, next - 1));
  }

  /** body returns the next request, or null when this op is a no-op. */
  next(): unknown {
    const op = this.#op++;
    const event = this.#events.get(op);
    if (event) return this.#count(event, this.#event(event));
    const r = this.#rand();
    if (r < 0.25) return this.#count('insert', { sql: 'INSERT INTO users (id, name, score) VALUES (?, ?, ?)', params: [this.#nextUser++, `user-${this.#int(1e6)}`, this.#int(1000)] });
    if (r < 0.4) return this.#count('update', { sql: 'UPDATE users SET score = score + ?, name = ? WHERE id = ?', params: [this.#int(50), `renamed-${this.#int(1e6)}`, this.#pick(this.#nextUser)] });
    if (r < 0.47) return this.#count('delete', { sql: 'DELETE FROM users WHERE id = ?', params: [this.#pick(this.#nextUser)] });
    if (r < 0.57) return this.#count('blob', { sql: 'INSERT INTO files (id, owner, data) VALUES (?, ?, randomblob(?))', params: [this.#nextFile++, this.#pick(this.#nextUser), 4097 + this.#int(20_000)] });
    if (r < 0.64) {
      const bytes = randomBytes(4097 + this.#int(9000));
      return this.#count('blob-param', { sql: 'INSERT INTO files (id, owner, data) VALUES (?, ?, ?)', params: [this.#nextFile++, this.#pick(this.#nextUser), { base64: bytes.toString('base64') }] });
    }
    if (r < 0.7) return this.#count('blob-update', { sql: 'UPDATE files SET data = randomblob(?) WHERE id = ?', params: [100 + this.#int(12_000), this.#pick(this.#nextFile)] });
    if (r < 0.75) return this.#count('blob-delete', { sql: 'DELETE FROM files WHERE id = ?', params: [this.#pick(this.#nextFile)] });
    // A batch: one transaction of several statements on several tables.
    const user = this.#nextUser++;
    const statements = [{ sql: 'INSERT INTO users (id, name, score) VALUES (?, ?, 0)', params: [user, `batch-${user}`] }];
    const n = 2 + this.#int(12);
    for (let i = 0; i < n; i++) statements.push({ sql: 'INSERT INTO events (user, kind, at) VALUES (?, ?, ?)', params: [user, `kind-${this.#int(5)}`, this.#int(1e9)] });
    statements.push({ sql: 'UPDATE users SET score = (SELECT count(*) FROM events WHERE user = ?) WHERE id = ?', params: [user, user] });
    return this.#count('batch', { statements });
  }

  #event(event: string): unknown {
    switch (event) {
      case 'ddl':
        return { statements: [{ sql: 'ALTER TABLE users ADD COLUMN email TEXT' }, { sql: 'CREATE INDEX users_score ON users (score)' }, { sql: "UPDATE users SET email = name || '@example.com'" }] };
      case 'vacuum':
        return { sql: 'VACUUM' };
      case 'create-extra':
        return { statements: [{ sql: 'CREATE TABLE extra (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID' }, { sql: "INSERT INTO extra VALUES ('a', randomblob(9000)), ('b', randomblob(50))" }] };
      case 'drop-extra':
        return { sql: 'DROP TABLE extra' };
      default:
        throw new Error(`unknown event ${event}`);
    }
  }

  #count(kind: string, body: unknown): unknown {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
    return body;
  }

  /** run sends `total` ops from `clients` concurrent clients; events go alone (nothing else in flight). */
  async run(total: number, clients: number, onProgress: (op: number) => Promise<void> = async () => {}): Promise<void> {
    let op = 0;
    while (op < total) {
      const inFlight: Promise<unknown>[] = [];
      // Issue a round of concurrent ops, cut short before an event so the event runs alone (VACUUM and
      // DDL need no open statement on the primary's writer; the mix stays deterministic per seed).
      for (let c = 0; c < clients && op < total; c++) {
        if (c > 0 && this.#events.has(this.#op)) break;
        const body = this.next();
        op++;
        inFlight.push(exec(this.#url, this.#db, body));
        if (this.#events.has(this.#op - 1)) break;
      }
      await Promise.all(inFlight);
      await onProgress(op);
    }
  }
}

async function expectSameData(primaryUrl: string, replicaUrl: string, db: string, context: string): Promise<number> {
  const want = await dump(primaryUrl, db);
  const got = await dump(replicaUrl, db);
  expect(Object.keys(got).sort(), context).toEqual(Object.keys(want).sort());
  for (const table of Object.keys(want)) expect(got[table], `${context}: table ${table}`).toEqual(want[table]);
  return Object.values(want).reduce((n, rows) => n + rows.length, 0);
}

describe('replication between processes', () => {
  it('two replicas converge on a random workload (DDL, VACUUM, blobs, batches)', async () => {
    const seed = seedFromEnv();
    const rand = prng(seed);
    const total = LONG ? 2000 : 400;
    const root = dirs('e2e');
    const primary = await procs.primary(join(root, 'p'));
    expect((await http(primary.url, 'PUT', '/v1/db/app')).status).toBe(201);
    for (const sql of Workload.schema) await exec(primary.url, 'app', { sql });
    const r1 = await procs.replica(primary.url, join(root, 'r1'));
    const work = new Workload(primary.url, 'app', rand, total);
    // The second replica bootstraps halfway through, under load.
    let r2: ReturnType<Processes['replica']> | null = null;
    await work.run(total, 3, async (op) => {
      if (!r2 && op >= total / 2) r2 = procs.replica(primary.url, join(root, 'r2'), ['--databases', 'app']);
    });
    const replicas = [r1, await r2!];
    const context = `seed ${seed}`;
    expect(work.counts, context).toMatchObject({ ddl: 1, vacuum: 2, 'create-extra': 1, 'drop-extra': 1, batch: expect.any(Number), blob: expect.any(Number) });
    const c = await converge(primary.url, replicas.map((r) => r.url), 'app');
    for (const [i, r] of replicas.entries()) {
      const file = join(root, `r${i + 1}`, 'app.db');
      expect(integrityCheck(file), `${context}: replica ${i + 1}\n${r.output()}`).toBe('ok');
      const rows = await expectSameData(primary.url, r.url, 'app', `${context}: replica ${i + 1}`);
      expect(rows).toBeGreaterThan(50);
      expect(logged(r, 'snapshot applied'), `${context}: one bootstrap snapshot, no re-snapshot: ${JSON.stringify(r.logs.filter((l) => /snapshot|delta|rejected/.test(String(l.msg))).slice(0, 4))}`).toHaveLength(1);
    }
    console.log(`[replica-e2e] seed ${seed}: ${total} ops ${JSON.stringify(work.counts)}, txid ${c.txid}, converged ${c.ms} ms after the last write`);
  }, TIMEOUT_MS);

  it('follows many databases on one stream, picks up a database created later, and honours --databases', async () => {
    const seed = seedFromEnv();
    const rand = prng(seed);
    const root = dirs('e2e-tenants');
    const primary = await procs.primary(join(root, 'p'));
    const tenants = ['t1', 't2', 't3', 't4', 't5'];
    for (const t of tenants) {
      expect((await http(primary.url, 'PUT', `/v1/db/${t}`)).status).toBe(201);
      await exec(primary.url, t, { sql: 'CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, att BLOB)' });
    }
    const all = await procs.replica(primary.url, join(root, 'all'), ['--databases', '*']);
    const some = await procs.replica(primary.url, join(root, 'some'), ['--databases', 't2,t4']);
    const writeSome = async (dbs: string[], n: number) => {
      for (let i = 0; i < n; i++) {
        const db = dbs[Math.floor(rand() * dbs.length)]!;
        await exec(primary.url, db, { sql: 'INSERT INTO notes (body, att) VALUES (?, randomblob(?))', params: [`note ${i} of ${seed}`, Math.floor(rand() * 6000)] });
      }
    };
    await writeSome(tenants, 60);
    // Created after both replicas started: the '*' replica learns of it on its stream (db-created, then a
    // snapshot); the list replica must not.
    expect((await http(primary.url, 'PUT', '/v1/db/late')).status).toBe(201);
    await exec(primary.url, 'late', { sql: 'CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, att BLOB)' });
    await writeSome([...tenants, 'late'], 60);
    await writeSome(['late'], 10);

    const context = `seed ${seed}`;
    for (const db of [...tenants, 'late']) {
      await converge(primary.url, [all.url], db);
      expect(integrityCheck(join(root, 'all', `${db}.db`)), `${context}: ${db}`).toBe('ok');
      await expectSameData(primary.url, all.url, db, `${context}: ${db}`);
    }
    await waitFor(() => logged(all, 'database created on the primary').some((l) => l.db === 'late'), 'the db-created event in the replica log');
    for (const db of ['t2', 't4']) {
      await converge(primary.url, [some.url], db);
      await expectSameData(primary.url, some.url, db, `${context}: ${db} on the list replica`);
    }
    for (const db of ['t1', 't3', 't5', 'late']) expect(await info(some.url, db), `${db} is not followed by the list replica`).toBeNull();
    const listed = (await http(some.url, 'GET', '/v1/db')).json.databases.map((d: { name: string }) => d.name);
    expect(listed).toEqual(['t2', 't4']);
    expect(readdirSync(join(root, 'some')).filter((f) => f.endsWith('.db')).sort()).toEqual(['t2.db', 't4.db']);
    console.log(`[replica-e2e tenants] seed ${seed}: 6 databases on one stream; snapshots ${logged(all, 'snapshot applied').length} ('*'), ${logged(some, 'snapshot applied').length} (list)`);
  }, TIMEOUT_MS);
});
