/**
 * New generations are announced by the database itself (docs/ARCHITECTURE.md#capture-rules,
 * docs/ARCHITECTURE.md#the-stream-protocol): whichever capture path finds a WAL it cannot verify (a
 * write, the watch/poll, a snapshot, a checkpoint, recovery at open) starts exactly one new generation,
 * and a live replica stream gets exactly one new-generation frame for it.
 *
 * At run time the primary's read lock keeps every checkpoint from restarting the WAL past what it
 * captured, so an unverifiable WAL is made here by hand: the commit frame the cursor points at gets a
 * wrong checksum in its frame header (SQLite, which reads pages through its WAL index, never looks).
 */
import Database from 'better-sqlite3';
import { closeSync, cpSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import type { Frame } from '../../shared/frames.ts';
import { parseStatementsBody } from '../../shared/protocol.ts';
import { positionToJSON } from '../../shared/types.ts';
import { decodeCursor } from '../../primary/capture.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { PrimaryDatabase, type DatabaseOptions, type GenerationChange } from '../../primary/database.ts';
import { readMeta } from '../../primary/meta.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { walFrameOffset } from '../../primary/wal-format.ts';
import { FrameStream } from '../kit/stream.ts';
import { tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

function write(db: PrimaryDatabase, sql: string): void {
  db.exec(parseStatementsBody({ sql }));
}

/** flipBits xors one byte of a file in place. */
function flipBits(path: string, at: number, mask: number): void {
  const fd = openSync(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] = b[0]! ^ mask;
    writeSync(fd, b, 0, 1, at);
  } finally {
    closeSync(fd);
  }
}

/** breakCursorFrame flips a bit of the checksum in the header of the frame the capture cursor points at. */
function breakCursorFrame(db: PrimaryDatabase): void {
  const cursor = decodeCursor(db.log.last()!.meta);
  expect(cursor && cursor.frame > 0, 'precondition: the cursor points into the WAL').toBe(true);
  flipBits(`${db.path}-wal`, walFrameOffset(cursor!.frame, cursor!.pageSize) + 16, 0x01);
}

const isNewGeneration = (f: Frame): boolean => f.type === 'new-generation';

describe('new generations announced by the database', () => {
  let t: { dir: string; cleanup: () => void };
  let handle: PrimaryHandle;
  let db: PrimaryDatabase;
  let events: Array<Record<string, unknown>>;
  let stream: FrameStream;

  beforeEach(async () => {
    t = tempDir('generation');
    events = [];
    // No query pool: every capture runs on this thread, in the order the test calls it.
    const config = parsePrimaryConfig(['--data', t.dir, '--listen', '127.0.0.1:0', '--query-timeout-ms', '0'], {});
    handle = await startPrimary(config, (e) => events.push(e));
    db = handle.store.create('g').db;
    write(db, 'CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)');
    for (let i = 0; i < 5; i++) write(db, `INSERT INTO t (v) VALUES (randomblob(${i * 300}))`);
    stream = await FrameStream.open(handle.url, { databases: ['g'], positions: { g: positionToJSON(db.position) } });
    await stream.waitFor((f) => f.type === 'ready');
  });
  afterEach(async () => {
    stream.close();
    await handle.close();
    t.cleanup();
  });

  /** expectOneAnnounced: one 'new generation' logged, one new-generation frame naming it, none after. */
  async function expectOneAnnounced(before: { generation: number; txid: number }): Promise<void> {
    expect(db.position.generation).toBe(before.generation + 1);
    expect(db.position.txid).toBe(before.txid + 1);
    const i = await stream.waitFor(isNewGeneration);
    expect(stream.frames[i]).toEqual({ type: 'new-generation', db: 'g', generation: before.generation + 1, txid: before.txid + 1 });
    // Two heartbeats later (the poll has run many times meanwhile) there is still only the one.
    const h = await stream.waitFor((f) => f.type === 'heartbeat', i + 1, 5000);
    await stream.waitFor((f) => f.type === 'heartbeat', h + 1, 5000);
    expect(stream.frames.filter(isNewGeneration)).toHaveLength(1);
    expect(events.filter((e) => e.msg === 'new generation' && e.db === 'g' && e.reason !== 'created').map((e) => e.generation)).toEqual([before.generation + 1]);
    expect(events.filter((e) => e.msg === 'capture failed')).toEqual([]);
    expect(readMeta(join(t.dir, '.edgelite', 'g', 'meta.json'))!.generation).toBe(before.generation + 1);
  }

  it('beginSnapshot starts it under its own barrier and snapshots the new generation', async () => {
    const before = db.position;
    breakCursorFrame(db);
    // In the same tick as the damage, before the directory watch can run a capture.
    const view = db.beginSnapshot();
    try {
      expect(view.position).toEqual(db.position);
    } finally {
      view.end();
    }
    await expectOneAnnounced(before);
  });

  it('checkpoint starts it under its own barrier', async () => {
    const before = db.position;
    breakCursorFrame(db);
    db.checkpoint();
    await expectOneAnnounced(before);
  });

  it('a write through the database starts it, with no caller comparing generations', async () => {
    const before = db.position;
    breakCursorFrame(db);
    write(db, 'INSERT INTO t (v) VALUES (1)');
    await expectOneAnnounced(before);
  });

  it('the watch/poll starts it when no write comes', async () => {
    const before = db.position;
    breakCursorFrame(db);
    await stream.waitFor(isNewGeneration);
    await expectOneAnnounced(before);
  });

  it('a WAL header SQLite would ignore, found at run time, fails every capture loudly and starts no generation', async () => {
    const before = db.position;
    const flipSalt = () => flipBits(`${db.path}-wal`, 16, 0xff); // salt-1: the header checksum fails
    flipSalt();
    // No cursor can be read from such a header: a new generation here would have to guess.
    await waitFor(() => events.some((e) => e.msg === 'capture failed' && /WAL_INVALID|checksum/.test(String(e.error))), 'the poll to report the failed capture', 10_000);
    expect(() => db.checkpoint()).toThrow(expect.objectContaining({ code: 'WAL_INVALID' }));
    expect(db.position).toEqual(before);
    expect(stream.frames.filter(isNewGeneration)).toEqual([]);
    flipSalt();
    write(db, 'INSERT INTO t (v) VALUES (2)');
    expect(db.position).toMatchObject({ generation: before.generation, txid: before.txid + 1 });
  });
});

describe('recovery at open', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());

  const options = (changes: GenerationChange[], logs: Array<Record<string, unknown>>): DatabaseOptions => ({
    synchronous: 'normal',
    busyTimeoutMs: 5000,
    compress: false,
    checkpointFrames: 4000,
    log: {},
    onCapture: () => {},
    onGeneration: (c) => changes.push(c),
    logger: (e) => logs.push(e),
  });

  it('a WAL header SQLite ignores at open (torn by a power cut) starts one generation that follows the next header SQLite writes', () => {
    const t = tempDir('generation-header');
    cleanup = t.cleanup;
    const changes: GenerationChange[] = [];
    const logs: Array<Record<string, unknown>> = [];
    const [live, crashed] = [join(t.dir, 'live'), join(t.dir, 'crashed')];
    let db = PrimaryDatabase.open('h', live, options(changes, logs));
    write(db, 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    write(db, "INSERT INTO t (v) VALUES ('a')");
    const before = db.position;
    // Another connection keeps the WAL from being checkpointed and deleted when the primary closes;
    // the copy without the -shm is what a machine finds after a power cut.
    const holder = new Database(join(live, 'h.db'));
    try {
      holder.prepare('SELECT count(*) FROM t').get();
      db.close();
      cpSync(live, crashed, { recursive: true, filter: (src) => !src.endsWith('-shm') });
    } finally {
      holder.close();
    }
    const wal = join(crashed, 'h.db-wal');
    const bytes = readFileSync(wal);
    expect(bytes.length, 'precondition: the WAL holds frames').toBeGreaterThan(32);
    bytes[16] = bytes[16]! ^ 0xff; // salt-1: the header checksum no longer matches
    writeFileSync(wal, bytes);

    db = PrimaryDatabase.open('h', crashed, options(changes, logs));
    try {
      expect(changes.slice(1)).toEqual([{ db: 'h', generation: before.generation + 1, txid: before.txid + 1, reason: expect.stringMatching(/checksum/) }]);
      // SQLite ignored the WAL: the new generation starts from the file alone, and the header SQLite
      // writes with its next frame starts what capture follows.
      write(db, 'CREATE TABLE u (id INTEGER PRIMARY KEY)');
      write(db, 'INSERT INTO u VALUES (1)');
      expect(db.position).toMatchObject({ generation: before.generation + 1, txid: before.txid + 3 });
      expect(changes).toHaveLength(2);
    } finally {
      db.close();
    }
    expect(DatabaseChecksum.fromFile(readFileSync(join(crashed, 'h.db'))).value).toBe(db.position.checksum);
  });

  it('announces the one new generation a foreign TRUNCATE checkpoint and write while closed cause, and none on a clean reopen', () => {
    const t = tempDir('generation-open');
    cleanup = t.cleanup;
    const changes: GenerationChange[] = [];
    const logs: Array<Record<string, unknown>> = [];
    const opts = options(changes, logs);
    let db = PrimaryDatabase.open('o', t.dir, opts);
    expect(changes).toEqual([{ db: 'o', generation: 1, txid: 0, reason: 'created' }]);
    write(db, 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    write(db, "INSERT INTO t (v) VALUES ('a')");
    const before = db.position;
    db.close();

    db = PrimaryDatabase.open('o', t.dir, opts);
    expect(db.position, 'a clean reopen continues the generation').toEqual(before);
    expect(changes).toHaveLength(1);
    db.close();

    const foreign = new Database(join(t.dir, 'o.db'));
    try {
      foreign.exec("INSERT INTO t (v) VALUES ('b')");
      foreign.pragma('wal_checkpoint(TRUNCATE)');
      foreign.exec("INSERT INTO t (v) VALUES ('c')");
    } finally {
      foreign.close();
    }
    db = PrimaryDatabase.open('o', t.dir, opts);
    try {
      expect(db.position.generation).toBe(before.generation + 1);
      expect(db.position.txid).toBe(before.txid + 1);
      expect(changes.slice(1)).toEqual([{ db: 'o', generation: before.generation + 1, txid: before.txid + 1, reason: expect.stringMatching(/database differs from the log/) }]);
      expect(logs.filter((e) => e.msg === 'new generation')).toHaveLength(2);
      expect(db.generationStart).toEqual(db.position);
      // The new generation follows the WAL from where it stands: the next write is captured in it.
      write(db, "INSERT INTO t (v) VALUES ('d')");
      expect(db.position).toMatchObject({ generation: before.generation + 1, txid: before.txid + 2 });
      expect(changes).toHaveLength(2);
    } finally {
      db.close();
    }
  });
});
