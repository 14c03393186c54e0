/**
 * PageApplier on files it may not write: opened read-only (SQLite does so without an error), it fails
 * typed and changes nothing, and heals by reopening its writer once the files are writable, with no
 * restart. Permission bits mean nothing to root, so these tests drop the effective uid to nobody
 * (seteuid, given back in `finally`) around synchronous work, in this process.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PageApplier } from '../../replica/apply.ts';
import { sqliteError } from '../../replica/sqlite-file.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import type { ChangeSet, Position } from '../../shared/types.ts';
import { tempDir } from '../helpers.ts';
import { Source } from './source-db.ts';

const NOBODY = 65534;
const IS_ROOT = process.geteuid?.() === 0;
const PAGE_SIZE = 4096;
const DATABASE_ID = 9;
const BETTER_SQLITE3 = createRequire(import.meta.url).resolve('better-sqlite3');

/** newSource is a tiny primary: one table of 3000-byte rows; `insert(n)` commits n rows as one change set. */
function newSource(file: string): Source & { insert(rows: number): ChangeSet } {
  const src = new Source(file, PAGE_SIZE, 'WAL', DATABASE_ID);
  src.commit('CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)');
  return Object.assign(src, {
    insert: (rows: number) => src.commit((db) => {
      const insert = db.prepare('INSERT INTO t (body) VALUES (randomblob(3000))');
      for (let i = 0; i < rows; i++) insert.run();
    }),
  });
}

/** asNobody runs `fn` with the effective uid and gid of nobody: the file system checks permissions again. */
function asNobody<T>(fn: () => T): T {
  const { seteuid, setegid } = process;
  if (!seteuid || !setegid) throw new Error('seteuid is not available on this platform');
  setegid(NOBODY);
  seteuid(NOBODY);
  try {
    return fn();
  } finally {
    seteuid(0);
    setegid(0);
  }
}

/** setWritable gives or takes write permission on the directory and every file in it (as their owner). */
function setWritable(dir: string, writable: boolean): void {
  fs.chmodSync(dir, writable ? 0o755 : 0o555);
  for (const f of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, f), writable ? 0o644 : 0o444);
}

function errorOf(fn: () => unknown): EdgeliteError {
  try {
    fn();
  } catch (err) {
    if (err instanceof EdgeliteError) return err;
    throw err;
  }
  throw new Error('expected an error');
}

let t: ReturnType<typeof tempDir>;
let src: ReturnType<typeof newSource>;
let dir: string;
let file: string;
beforeEach(() => {
  t = tempDir('apply-readonly');
  src = newSource(path.join(t.dir, 'src.db'));
  fs.chmodSync(t.dir, 0o755); // mkdtemp makes it 0700: nobody could not reach the replica's directory
  dir = path.join(t.dir, 'replica');
  fs.mkdirSync(dir);
  fs.chownSync(dir, NOBODY, NOBODY);
  file = path.join(dir, 'replica.db');
});
afterEach(() => {
  src.db.close();
  fs.chmodSync(dir, 0o755);
  t.cleanup();
});

/**
 * restartedReadOnly is the replica of test/fault/disk.test.ts in one process: it bootstraps and applies,
 * loses write permission on its directory and files while running (and still applies), and is then
 * reopened on them. Returns the reopened applier and the change sets it has yet to apply.
 */
function restartedReadOnly(closeReaders: () => void, log: string[]): { replica: PageApplier; sets: ChangeSet[]; before: Position } {
  const image = src.image();
  const snapshot = src.position;
  const sets = [src.insert(3), src.insert(3), src.insert(3)];
  const replica = asNobody(() => {
    const first = PageApplier.open(file, { log: () => {} });
    first.restoreSnapshot(image, snapshot, DATABASE_ID);
    first.apply([sets[0]!]);
    setWritable(dir, false);
    first.apply([sets[1]!]); // its connection was opened writable: permission bits are checked at open
    first.close(); // leaves -wal and -shm behind: the directory refuses their deletion
    return PageApplier.open(file, { log: (m) => log.push(m), closeReaders });
  });
  const before = { generation: 1, txid: sets[1]!.maxTxid, checksum: sets[1]!.postChecksum };
  expect(replica.position).toEqual(before);
  return { replica, sets: sets.slice(2), before };
}

describe('SQLITE_READONLY is a typed disk fault', () => {
  it('maps to IO_ERROR (READ_ONLY is a client statement that writes, HTTP 400), keeping the SQLite code', () => {
    for (const code of ['SQLITE_READONLY', 'SQLITE_READONLY_RECOVERY', 'SQLITE_READONLY_DBMOVED']) {
      const e = sqliteError(Object.assign(new Error('attempt to write a readonly database'), { code }), 'op');
      expect([e.code, e.status, e.details?.sqliteCode]).toEqual(['IO_ERROR', 500, code]);
    }
  });

  it('closeReaders must be a function', () => {
    expect(errorOf(() => PageApplier.open(path.join(t.dir, 'x.db'), { closeReaders: 1 as never })).code).toBe('BAD_REQUEST');
  });
});

describe.skipIf(!IS_ROOT)('a replica file it may not write (as nobody; needs root for seteuid)', () => {
  it('opens read-only and serves reads; applies fail IO_ERROR, changing nothing; heals once writable, without a restart', () => {
    const log: string[] = [];
    const { replica, sets, before } = restartedReadOnly(() => {}, log);
    try {
      expect(log.join('\n')).toMatch(/applies will fail until the file can be written/);
      asNobody(() => {
        for (let attempt = 0; attempt < 3; attempt++) {
          const err = errorOf(() => replica.apply(sets));
          expect([err.code, err.details?.sqliteCode, err.message]).toEqual(['IO_ERROR', 'SQLITE_READONLY', expect.stringMatching(/readonly/)]);
          expect(replica.position).toEqual(before);
        }
        expect(errorOf(() => replica.checkpoint()).code).toBe('IO_ERROR');
        expect(replica.fileChecksum()).toBe(before.checksum);
        setWritable(dir, true);
        expect(replica.apply(sets)).toEqual(src.position);
        expect(log.at(-1)).toMatch(/can be written again; writer reopened \(file matches committed position\)/);
        expect(replica.fileChecksum()).toBe(src.position.checksum);
        expect(replica.apply([src.insert(1)])).toEqual(src.position);
        replica.checkpoint();
        expect(replica.fileChecksum()).toBe(src.position.checksum);
        replica.close();
        const again = PageApplier.open(file, { log: () => {} }); // the sidecar was written again too
        expect([again.position, again.recovery.source]).toEqual([src.position, 'committed']);
        again.close();
      });
    } finally {
      replica.close();
    }
  });

  it('an empty file it may not write: the snapshot fails IO_ERROR, then succeeds once writable', () => {
    asNobody(() => {
      PageApplier.open(file, { log: () => {} }).close(); // creates the empty file
      setWritable(dir, false);
      const replica = PageApplier.open(file, { log: () => {} });
      try {
        const err = errorOf(() => replica.restoreSnapshot(src.image(), src.position, DATABASE_ID));
        expect([err.code, err.details?.sqliteCode, replica.pageSize, replica.position]).toEqual(['IO_ERROR', 'SQLITE_READONLY', null, null]);
        setWritable(dir, true);
        expect(replica.restoreSnapshot(src.image(), src.position, DATABASE_ID)).toEqual(src.position);
        expect(replica.fileChecksum()).toBe(src.position.checksum);
      } finally {
        replica.close();
      }
    });
  });

  it('fact: better-sqlite3 `readonly` says false and BEGIN IMMEDIATE succeeds on a connection SQLite opened read-only; a write that writes nothing tells', () => {
    const { replica } = restartedReadOnly(() => {}, []);
    replica.close();
    asNobody(() => {
      const db = new Database(file);
      try {
        expect(db.readonly).toBe(false);
        db.exec('BEGIN IMMEDIATE');
        db.exec('ROLLBACK');
        db.unsafeMode(true);
        const probe = db.prepare('INSERT INTO sqlite_dbpage(pgno, data) SELECT 1, NULL WHERE 0'); // page-writer.ts PROBE_SQL
        expect(() => probe.run()).toThrow(expect.objectContaining({ code: 'SQLITE_READONLY' }));
        expect(() => db.exec('INSERT INTO t (body) VALUES (1)')).toThrow(expect.objectContaining({ code: 'SQLITE_READONLY' }));
      } finally {
        db.close();
      }
    });
  });

  it('fact: while another connection of this process holds the file, a reopened writer stays read-only; closeReaders lets it heal', () => {
    let reader: Database.Database | null = null;
    let closeReader = false;
    const { replica, sets } = restartedReadOnly(() => {
      if (closeReader) reader?.close();
    }, []);
    try {
      asNobody(() => {
        // Like ReplicaDatabase's query connection, opened while the files are read-only.
        reader = new Database(file, { readonly: true });
        const rows = reader.prepare('SELECT count(*) FROM t').pluck();
        expect(rows.get()).toBe(6);
        setWritable(dir, true);
        expect(errorOf(() => replica.apply(sets)).code).toBe('IO_ERROR');
        expect(rows.get()).toBe(6);
        closeReader = true;
        expect(replica.apply(sets)).toEqual(src.position);
        expect(reader.open).toBe(false);
      });
    } finally {
      replica.close();
    }
  });

  it('a reopened writer checks the file against the position first: a file changed meanwhile gets no change set', () => {
    const { replica, sets } = restartedReadOnly(() => {}, []);
    try {
      asNobody(() => {
        expect(errorOf(() => replica.apply(sets)).code).toBe('IO_ERROR');
        setWritable(dir, true);
      });
      // Someone else writes the file meanwhile, from another process (this one's connections would
      // share the replica's read-only shared memory).
      const script = `const D = require(${JSON.stringify(BETTER_SQLITE3)}); new D(${JSON.stringify(file)}).exec('INSERT INTO t (body) VALUES (zeroblob(10))')`;
      const other = spawnSync(process.execPath, ['-e', script], { uid: NOBODY, gid: NOBODY, encoding: 'utf8' });
      expect([other.status, other.stderr]).toEqual([0, '']);
      asNobody(() => {
        const err = errorOf(() => replica.apply(sets));
        expect([err.code, err.details?.reason]).toEqual(['POSITION_MISMATCH', 'no-position']);
        expect(replica.position).toBeNull();
        expect(replica.recovery.reason).toMatch(/file matches no recorded position/);
      });
    } finally {
      replica.close();
    }
  });
});
