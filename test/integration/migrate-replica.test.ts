/**
 * A migration as replicas see it (README.md#migrations, "Replicas"): each migration file reaches a replica
 * as one change set, applied in one write transaction (docs/ARCHITECTURE.md#apply-rules), so
 * - a reader PROCESS that opens the replica's file read-only (better-sqlite3, as any app would) and
 *   loops on one read transaction over the table being rebuilt (its columns, its rows, a view and a
 *   join over it, the migration record) sees each state of the chain whole, never a part of a rebuild;
 * - a statement an app prepared on an embedded replica (`openReplica`) before the migration keeps
 *   working after it and gives the new shape (SQLite re-prepares it when the schema cookie moves).
 * The chain rebuilds one table many times (SQLite's 12-step rebuild, `-- edgelite:rebuild`),
 * alternating between two shapes, so the expected shape follows from the number of records.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { openReplica } from '../../replica/embedded.ts';
import { startReplica } from '../../replica/server.ts';
import { stopsAfterEach, tempDir } from '../helpers.ts';
import { converge, http, info, integrityCheck } from '../kit/api.ts';
import { runEdgelite } from '../kit/spawn.ts';
import { sleep, waitFor } from '../kit/wait.ts';

const ROWS = 3000;
/** REBUILDS: files after the first, each a table rebuild of `items`. */
const REBUILDS = 10;
const BETTER_SQLITE3 = createRequire(import.meta.url).resolve('better-sqlite3');

const INIT = `CREATE TABLE items (id INTEGER PRIMARY KEY, name, qty TEXT, pad BLOB);
CREATE INDEX items_name ON items(name);
CREATE VIEW item_names AS SELECT id, name FROM items;
CREATE TABLE owners (id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL);
INSERT INTO items (id, name, qty, pad) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${ROWS}) SELECT i, 'n' || i, CAST(i % 7 AS TEXT), randomblob(100) FROM n;
INSERT INTO owners (item_id) SELECT id FROM items WHERE id % 3 = 0`;
/** The two shapes rebuilds alternate between: B (STRICT, no note) and C (STRICT, with note). */
const SHAPE_B = 'CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL, pad BLOB) STRICT;';
const SHAPE_C = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL CHECK (qty >= 0), pad BLOB, note TEXT NOT NULL DEFAULT '') STRICT;";

/** writeInit writes 0001 (the table in its first, loose shape) into a new migrations directory. */
function writeInit(dir: string): string {
  const m = join(dir, 'migrations');
  mkdirSync(m);
  writeFileSync(join(m, '0001_init.sql'), `${INIT};\n`);
  return m;
}

/** writeRebuilds adds the REBUILDS rebuild files, 0002 on. */
function writeRebuilds(m: string): void {
  for (let i = 0; i < REBUILDS; i++) {
    const n = String(i + 2).padStart(4, '0');
    writeFileSync(join(m, `${n}_rebuild.sql`), `-- edgelite:rebuild items\n${i % 2 === 0 ? SHAPE_B : SHAPE_C}\n`);
  }
}

/** COLUMNS: the columns (name, type, notnull) `items` has after k files, and what typeof(qty) is. */
function expectedShape(k: number): { columns: string; qty: string; strict: number } {
  if (k === 1) return { columns: 'id:INTEGER:0,name::0,qty:TEXT:0,pad:BLOB:0', qty: 'text', strict: 0 };
  if (k % 2 === 0) return { columns: 'id:INTEGER:0,name:TEXT:1,qty:INTEGER:1,pad:BLOB:0', qty: 'integer', strict: 1 };
  return { columns: 'id:INTEGER:0,name:TEXT:1,qty:INTEGER:1,pad:BLOB:0,note:TEXT:1', qty: 'integer', strict: 1 };
}

/**
 * READER is the reader process: one read-only better-sqlite3 connection to the replica's file, its
 * statements prepared once (so a schema change reaches them as SQLITE_SCHEMA, re-prepared by SQLite),
 * each read one transaction. It records every answer's signature; SQLITE_BUSY* is retried, anything else
 * is an error. It stops when the stop file appears and prints a JSON summary.
 */
const READER = String.raw`
const [, modulePath, file, readyFile, stopFile] = process.argv;
const Database = require(modulePath);
const fs = require('node:fs');
const db = new Database(file, { readonly: true, fileMustExist: true, timeout: 5000 });
const q = {
  k: db.prepare('SELECT count(*) FROM _edgelite_migrations').pluck(),
  cols: db.prepare("SELECT group_concat(name || ':' || type || ':' || \"notnull\", ',' ORDER BY cid) FROM pragma_table_info('items')").pluck(),
  strict: db.prepare("SELECT strict FROM pragma_table_list WHERE name = 'items' AND schema = 'main'").pluck(),
  objects: db.prepare("SELECT group_concat(type || ':' || name, ',' ORDER BY name) FROM sqlite_schema WHERE tbl_name IN ('items', 'item_names') OR name LIKE '_edgelite_rebuild%'").pluck(),
  star: db.prepare('SELECT * FROM items ORDER BY id LIMIT 1'),
  data: db.prepare("SELECT count(*) AS n, sum(CAST(qty AS INTEGER)) AS s, group_concat(DISTINCT typeof(qty)) AS t FROM items"),
  view: db.prepare('SELECT count(*) FROM item_names').pluck(),
  join: db.prepare('SELECT count(*) FROM owners o JOIN items i ON i.id = o.item_id').pluck(),
};
const read = db.transaction(() => {
  const row = q.star.get();
  const d = q.data.get();
  return { k: q.k.get(), cols: q.cols.get(), strict: q.strict.get(), objects: q.objects.get(), star: row ? Object.keys(row).join(',') : null, n: d.n, s: d.s, t: d.t, view: q.view.get(), join: q.join.get() };
});
const seen = [];
const errors = [];
let reads = 0, busy = 0, last = null;
const started = Date.now();
while (!fs.existsSync(stopFile)) {
  let r;
  try {
    r = read();
  } catch (e) {
    if (String(e.code).startsWith('SQLITE_BUSY')) { busy++; continue; }
    errors.push(String(e.code) + ': ' + e.message);
    if (errors.length > 20) break;
    continue;
  }
  reads++;
  if (reads === 1) fs.writeFileSync(readyFile, '');
  const sig = JSON.stringify(r);
  if (sig !== last) { seen.push(r); last = sig; }
}
console.log(JSON.stringify({ reads, busy, errors, seen, seconds: (Date.now() - started) / 1000 }));
`;

interface Observation {
  k: number;
  cols: string;
  strict: number;
  objects: string;
  star: string | null;
  n: number;
  s: number;
  t: string;
  view: number;
  join: number;
}

/** wrongIn lists the observations that are not entirely one state of the chain (the one its record count names). */
function wrongIn(seen: Observation[], sum: number): Array<{ observation: Observation; why: string }> {
  const wrong: Array<{ observation: Observation; why: string }> = [];
  for (const o of seen) {
    const want = expectedShape(o.k);
    const names = want.columns.split(',').map((c) => c.split(':')[0]).join(',');
    const checks: Array<[boolean, string]> = [
      [o.cols === want.columns, `columns ${o.cols}, want ${want.columns}`],
      [o.star === names, `SELECT * gives ${o.star}, want ${names}`],
      [o.strict === want.strict, `strict ${o.strict}, want ${want.strict}`],
      [o.objects === 'view:item_names,table:items,index:items_name', `objects ${o.objects}`],
      [o.n === ROWS && o.s === sum && o.t === want.qty, `rows ${o.n}, sum ${o.s}, typeof(qty) ${o.t}`],
      [o.view === ROWS && o.join === Math.floor(ROWS / 3), `view ${o.view}, join ${o.join}`],
    ];
    for (const [ok, why] of checks) if (!ok) wrong.push({ observation: o, why });
  }
  return wrong;
}

describe('a migration on replicas', () => {
  const stops = stopsAfterEach();

  /** setup: a primary with `app` migrated to 0001 (the loose shape), and the migrations directory. */
  async function setup(): Promise<{ primary: PrimaryHandle; dir: string; migrations: string }> {
    const t = tempDir('migrate-replica');
    stops.push(t.cleanup);
    const data = join(t.dir, 'p');
    mkdirSync(data);
    const primary = await startPrimary(parsePrimaryConfig(['--data', data, '--listen', '127.0.0.1:0'], {}), silentLogger);
    stops.push(() => primary.close());
    expect((await http(primary.url, 'PUT', '/v1/db/app')).status).toBe(201);
    const migrations = writeInit(t.dir);
    const init = await runEdgelite(['migrate', migrations, '--db', 'app', '--primary', primary.url]);
    expect(init.status, init.stderr).toBe(0);
    writeRebuilds(migrations);
    return { primary, dir: t.dir, migrations };
  }

  const sum = Array.from({ length: ROWS }, (_, i) => (i + 1) % 7).reduce((a, b) => a + b, 0);

  it(`a reader process on the replica's file sees each of ${REBUILDS} table rebuilds whole, never half of one`, async () => {
    const { primary, dir, migrations } = await setup();
    const replica = await startReplica(parseReplicaConfig(['--primary', primary.url, '--data', join(dir, 'r'), '--listen', '127.0.0.1:0'], {}), silentLogger);
    stops.push(() => replica.close());
    await converge(primary.url, [replica.url], 'app');
    const file = join(dir, 'r', 'app.db');
    const ready = join(dir, 'ready');
    const stop = join(dir, 'stop');
    const reader = spawn(process.execPath, ['-e', READER, BETTER_SQLITE3, file, ready, stop], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    reader.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    reader.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    const exited = new Promise<number | null>((resolve) => reader.once('exit', (code) => resolve(code)));
    stops.push(() => {
      if (reader.exitCode === null) reader.kill('SIGKILL');
    });
    await waitFor(() => existsSync(ready) || reader.exitCode !== null, 'the reader\'s first read', 30_000);

    const run = await runEdgelite(['migrate', migrations, '--db', 'app', '--primary', primary.url, '--json']);
    expect(run.status, `${run.stdout}${run.stderr}`).toBe(0);
    const applied = (JSON.parse(run.stdout) as { databases: Array<{ applied: unknown[] }> }).databases[0]!.applied;
    expect(applied).toHaveLength(REBUILDS);
    await converge(primary.url, [replica.url], 'app');
    // Some reads of the final state too, then stop.
    await sleep(300);
    writeFileSync(stop, '');
    expect(await exited, err).toBe(0);
    const summary = JSON.parse(out) as { reads: number; busy: number; errors: string[]; seen: Observation[]; seconds: number };
    const ks = summary.seen.map((o) => o.k);
    console.log(`[migrate-replica] reader: ${summary.reads} reads in ${summary.seconds.toFixed(1)} s (${summary.busy} busy), ${summary.seen.length} distinct answers, record counts seen ${ks.join(' ')}`);
    const context = JSON.stringify({ ...summary, seen: summary.seen.slice(0, 30) });
    expect(summary.errors, context).toEqual([]);
    expect(wrongIn(summary.seen, sum), context).toEqual([]);
    // It read through the migration: from the first state to the last, never back.
    expect(ks[0], context).toBe(1);
    expect(ks[ks.length - 1], context).toBe(REBUILDS + 1);
    expect(ks.every((k, i) => i === 0 || k > ks[i - 1]!), context).toBe(true);
    expect(integrityCheck(file)).toBe('ok');
    expect((await info(replica.url, 'app'))?.txid).toBe((await info(primary.url, 'app'))?.txid);
  }, 120_000);

  it('a statement an app prepared on an embedded replica before the migration runs after it and gives the new shape', async () => {
    const { primary, dir, migrations } = await setup();
    const replica = await openReplica({ primary: primary.url, dir: join(dir, 'embedded'), databases: ['app'] });
    stops.push(() => replica.close());
    await replica.ready('app');
    const star = replica.prepare('app', 'SELECT * FROM items WHERE id = ?');
    const joined = replica.prepare('app', 'SELECT i.id, i.qty, typeof(i.qty) FROM owners o JOIN items i ON i.id = o.item_id ORDER BY i.id LIMIT 2').raw();
    const { pad, ...before } = star.get(3) as Record<string, unknown>;
    expect(pad).toBeInstanceOf(Buffer);
    expect(before).toEqual({ id: 3, name: 'n3', qty: '3' });
    expect(joined.all()).toEqual([[3, '3', 'text'], [6, '6', 'text']]);

    // The app keeps using the same statement objects while the migration arrives (each use between
    // two applies, both on this thread): every answer is one of the chain's shapes.
    const shapes = new Set<string>();
    let uses = 0;
    let running = true;
    const loop = (async () => {
      while (running) {
        shapes.add(Object.keys(star.get(3) as object).join(','));
        expect(joined.all().map((r) => (r as unknown[])[0])).toEqual([3, 6]);
        uses++;
        await sleep(1);
      }
    })();
    const run = await runEdgelite(['migrate', migrations, '--db', 'app', '--primary', primary.url]);
    expect(run.status, `${run.stdout}${run.stderr}`).toBe(0);
    const target = (await info(primary.url, 'app'))!.txid!;
    await waitFor(() => (replica.position('app')?.txid ?? 0) >= target, 'the embedded replica applied the migration');
    running = false;
    await loop;
    expect([...shapes].every((s) => ['id,name,qty,pad', 'id,name,qty,pad,note'].includes(s)), [...shapes].join(' | ')).toBe(true);

    // The same objects, after: the final shape (C, with note; qty an INTEGER now).
    const { pad: padAfter, ...after } = star.get(3) as Record<string, unknown>;
    expect(padAfter).toEqual(pad);
    expect(after).toEqual({ id: 3, name: 'n3', qty: 3, note: '' });
    expect(star.columns().map((c) => c.name)).toEqual(['id', 'name', 'qty', 'pad', 'note']);
    expect(joined.all()).toEqual([[3, 3, 'integer'], [6, 6, 'integer']]);
    console.log(`[migrate-replica] embedded: ${uses} uses of the prepared statements during the migration, shapes ${[...shapes].join(' | ')}`);
  }, 60_000);
});
