/**
 * A first bootstrap takes the downloaded snapshot file as the database (docs/ARCHITECTURE.md#bootstrap-by-file):
 * PageApplier.installFile copies it into the empty local file in place, so a reader that opened the
 * empty file first sees the database, change sets apply after it, and a reopen finds the position.
 * A file that is not empty any more takes the pages path instead.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { PageApplier } from '../../replica/apply.ts';
import { NO_OVERRIDE } from '../../replica/page1-header.ts';
import { positionFilePath, writePositionFile } from '../../replica/position-file.ts';
import { downloadSnapshot, type SnapshotFile } from '../../replica/snapshot-file.ts';
import { silentLogger } from '../../shared/log.ts';
import { tempDir } from '../helpers.ts';
import { Source } from './source-db.ts';

const open: Array<{ close(): unknown }> = [];
const t = tempDir('apply-install');
afterEach(() => {
  for (const c of open.splice(0).reverse()) c.close();
});
const file = (name: string) => path.join(t.dir, name);
const track = <T extends { close(): unknown }>(c: T): T => (open.push(c), c);

/** download feeds `src`'s image through the replica's real download (verified as it arrives) to a temp file. */
async function download(src: Source, to: string): Promise<SnapshotFile> {
  const image = src.image();
  const head = { position: src.position, databaseId: src.databaseId, pageSize: src.pageSize, length: image.length };
  const source = {
    async snapshot(_db: string, sink: { open(h: typeof head): Promise<void>; write(c: Uint8Array): Promise<void> }) {
      await sink.open(head);
      for (let at = 0; at < image.length; at += 3000) await sink.write(image.subarray(at, Math.min(image.length, at + 3000)));
      return head;
    },
  };
  return downloadSnapshot(source, 'db', to, { logger: silentLogger });
}

function rows(db: Database.Database): unknown[] {
  return db.prepare('SELECT id, a FROM t ORDER BY id').raw(true).all();
}

describe('installFile', () => {
  it.each(['WAL', 'DELETE'] as const)('a %s-mode source: copied in place, seen by a reader opened first, then applies and reopens', async (mode) => {
    const src = track(new Source(file(`src-${mode}.db`), 4096, mode));
    src.commit('CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)');
    src.commit((db) => {
      for (let i = 0; i < 300; i++) db.prepare('INSERT INTO t (a) VALUES (?)').run(`row ${i} ${'x'.repeat(100)}`);
    });
    const target = file(`replica-${mode}.db`);
    const applier = track(PageApplier.open(target, { log: () => {} }));
    const early = track(new Database(target, { readonly: true })); // on the empty file, before the bootstrap
    const inode = fs.statSync(target).ino;
    const snap = await download(src, `${target}.snapshot-tmp`);
    expect(applier.installFile(snap)).toBe(true);
    snap.remove();
    expect(fs.existsSync(`${target}.snapshot-tmp`)).toBe(false);
    expect(fs.statSync(target).ino).toBe(inode);
    expect(applier.position).toEqual(src.position);
    expect(applier.checksum).toBe(src.sum.value);
    // The writer holds the file in WAL mode, its WAL and shared memory made now: a directory that
    // loses its write permission later still replicates (test/fault/disk.test.ts).
    expect(applier.isOpen).toBe(true);
    expect(fs.existsSync(`${target}-wal`) && fs.existsSync(`${target}-shm`)).toBe(true);
    expect(rows(early)).toEqual(rows(src.db));
    expect(early.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(applier.fileChecksum()).toBe(src.sum.value);

    // The next change set reopens the writer on the installed file and applies.
    const cs = src.commit("UPDATE t SET a = 'changed' WHERE id % 7 = 0");
    expect(applier.apply([cs])).toEqual(src.position);
    expect(rows(early)).toEqual(rows(src.db));

    // A reopen finds the committed position by checksum.
    applier.close();
    const again = track(PageApplier.open(target, { log: () => {} }));
    expect(again.recovery.source).toBe('committed');
    expect(again.position).toEqual(src.position);
  });

  it('refuses a file that is not empty (nothing changed), and a reopened applier over a pending install finds no position', async () => {
    const src = track(new Source(file('src2.db'), 4096, 'WAL'));
    src.commit('CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)');
    const target = file('replica2.db');
    const applier = track(PageApplier.open(target, { log: () => {} }));
    applier.restoreSnapshot(src.image(), src.position, src.databaseId);
    src.commit("INSERT INTO t (a) VALUES ('one')");
    const snap = await download(src, `${target}.snapshot-tmp`);
    const before = fs.readFileSync(target);
    expect(applier.installFile(snap)).toBe(false);
    expect(fs.readFileSync(target).equals(before)).toBe(true);
    snap.remove();

    // A kill after the pending record and before the copy: the empty file matches nothing recorded.
    const fresh = file('replica3.db');
    const a3 = PageApplier.open(fresh, { log: () => {} });
    a3.close();
    const to = { databaseId: 7, pageSize: 4096, position: src.position, header: NO_OVERRIDE };
    writePositionFile(positionFilePath(fresh), { committed: null, pending: { from: null, to } }, { durable: false });
    const reopened = track(PageApplier.open(fresh, { log: () => {} }));
    expect(reopened.position).toBeNull();
    const snap3 = await download(src, `${fresh}.snapshot-tmp`);
    expect(reopened.installFile(snap3)).toBe(true);
    snap3.remove();
    expect(reopened.position).toEqual(src.position);
  });
});
