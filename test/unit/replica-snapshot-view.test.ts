/**
 * ReplicaDatabase.beginSnapshot, what a Node replica's GET /v1/db/{name}/snapshot streams
 * (README.md#http-api): the local copy at the replica's position, byte for byte the primary's image
 * (page 1 as the primary has it, though the replica's file carries another header), pinned while
 * applies go on, on real SQLite files.
 */
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReplicaDatabase } from '../../replica/database.ts';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { thrownEdgelite, tempDir } from '../helpers.ts';
import { Source } from './source-db.ts';

let t: ReturnType<typeof tempDir>;
let open: Array<{ close(): unknown }>;
beforeEach(() => {
  t = tempDir('replica-snapshot-view');
  open = [];
});
afterEach(() => {
  for (const c of open.reverse()) c.close();
  t.cleanup();
});
const track = <T extends { close(): unknown }>(c: T): T => (open.push(c), c);
const file = (name: string) => path.join(t.dir, name);

/**
 * same compares two images but for the page-1 bytes the pager rewrites on its own (24–27 change
 * counter, 92–99 version-valid-for and SQLite version), which the checksum leaves out too
 * (shared/checksum.ts): every other byte of page 1 (format, schema cookie) must be the primary's.
 */
function same(a: Uint8Array, b: Uint8Array): boolean {
  const mask = (x: Uint8Array) => {
    const c = Buffer.from(x);
    c.fill(0, 24, 28);
    c.fill(0, 92, 100);
    return c;
  };
  return mask(a).equals(mask(b));
}

describe('ReplicaDatabase.beginSnapshot', () => {
  it("serves the primary's image exactly, with the replica's own page 1 header mapped back, pinned while applies go on", () => {
    const replica = track(new ReplicaDatabase('app', file('replica.db'), 5000));
    expect(thrownEdgelite(() => replica.beginSnapshot()).code).toBe('REPLICA_BEHIND');

    // A first database with many schema changes, then an unrelated one (rollback journal, a low schema
    // cookie): the replica's file gets another header (WAL format, a raised cookie: replica/page1-header.ts).
    const a = track(new Source(file('a.db'), 1024, 'WAL', 7));
    for (let i = 0; i < 6; i++) a.commit(`CREATE TABLE a${i} (x)`);
    replica.restore(a.image(), a.position, 7, Date.now());
    const b = track(new Source(file('b.db'), 1024, 'DELETE', 9));
    b.commit("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO kv SELECT value, 'v' || value FROM (WITH RECURSIVE n(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM n WHERE value < 300) SELECT value FROM n)");
    replica.restore(b.image(), b.position, 9, Date.now());
    const atB1 = b.image();
    expect(same(replica.readPage(1)!, atB1.subarray(0, 1024))).toBe(false);

    let ended = 0;
    const view = replica.beginSnapshot(() => ended++);
    expect({ position: view.position, databaseId: view.databaseId, pageSize: view.pageSize, pageCount: view.pageCount }).toEqual({ position: b.position, databaseId: 9, pageSize: 1024, pageCount: atB1.length / 1024 });

    // Applies go on (a page-1 change and a truncation among them); the view stays at its position.
    replica.apply([b.commit("UPDATE kv SET v = v || '-changed' WHERE k % 2 = 0")]);
    replica.apply([b.commit('CREATE TABLE more (x); DELETE FROM kv WHERE k > 10'), b.commit('VACUUM')]);
    expect(replica.position).toEqual(b.position);
    const image = view.readPages(1, view.pageCount);
    expect(same(image, atB1)).toBe(true);
    expect(DatabaseChecksum.fromFile(image).value).toBe(view.position.checksum);
    // Ranges read piecewise are the same bytes.
    expect(Buffer.concat([view.readPages(1, 3), view.readPages(4, view.pageCount)]).equals(Buffer.from(image))).toBe(true);
    view.end();
    view.end();
    expect(ended).toBe(1);

    // A new view is at the new position, and so is its image.
    const now = replica.beginSnapshot();
    const imageNow = now.readPages(1, now.pageCount);
    now.end();
    expect(now.position).toEqual(b.position);
    expect(same(imageNow, b.image())).toBe(true);
    expect(DatabaseChecksum.fromFile(imageNow).value).toBe(b.position.checksum);
    // The views' connections are gone: the applier can still write and checkpoint the file.
    replica.apply([b.commit("INSERT INTO kv VALUES (1000, 'after')")]);
    replica.checkpoint();
    expect(replica.position).toEqual(b.position);
  });
});
