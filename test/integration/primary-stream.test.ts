/**
 * The replication stream (docs/ARCHITECTURE.md#the-stream-protocol) on a real socket: positions decide between snapshot-needed and
 * catch-up, catch-up hands over to the live tail, heartbeats carry the txid, every subscriber gets the
 * same bytes, a subscriber that stops reading is demoted to catch-up and still gets every txid in order,
 * and a closed client is forgotten.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeChangeSet } from '../../shared/changeset.ts';
import type { Frame } from '../../shared/frames.ts';
import { silentLogger } from '../../shared/log.ts';
import { parseStatementsBody } from '../../shared/protocol.ts';
import { formatChecksum, positionToJSON, type Position } from '../../shared/types.ts';
import type { PrimaryDatabase } from '../../primary/database.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { FrameStream } from '../kit/stream.ts';
import { tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

type ChangesetFrame = Extract<Frame, { type: 'changeset' }>;

const isChangeset = (db: string) => (f: Frame): f is ChangesetFrame => f.type === 'changeset' && f.db === db;

function write(db: PrimaryDatabase, sql: string, params: unknown[] = []): void {
  db.exec(parseStatementsBody({ sql, params }));
}

/** checkChain decodes change-set frames and checks they continue `from` txid by txid, checksum by checksum. */
function checkChain(frames: Frame[], db: string, from: Position): Position {
  let pos = from;
  for (const f of frames.filter(isChangeset(db))) {
    const cs = decodeChangeSet(f.data);
    expect(cs.generation).toBe(pos.generation);
    expect(cs.minTxid, 'txid gap or repeat').toBe(pos.txid + 1);
    expect(formatChecksum(cs.preChecksum)).toBe(formatChecksum(pos.checksum));
    pos = { generation: cs.generation, txid: cs.maxTxid, checksum: cs.postChecksum };
  }
  return pos;
}

describe('primary replication stream', () => {
  let t: { dir: string; cleanup: () => void };
  let handle: PrimaryHandle;
  let db: PrimaryDatabase;
  const streams: FrameStream[] = [];

  const open = async (body: unknown): Promise<FrameStream> => {
    const s = await FrameStream.open(handle.url, body);
    streams.push(s);
    return s;
  };
  const subscribers = async (): Promise<number> => {
    const text = await (await fetch(`${handle.url}/metrics`)).text();
    return Number(/^edgelite_stream_subscribers (\d+)$/m.exec(text)![1]);
  };

  beforeEach(async () => {
    t = tempDir('stream');
    handle = await startPrimary(parsePrimaryConfig(['--data', t.dir, '--listen', '127.0.0.1:0'], {}), silentLogger);
    db = handle.store.create('s').db;
    write(db, 'CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)');
    for (let i = 0; i < 20; i++) write(db, 'INSERT INTO t (v) VALUES (randomblob(?))', [i * 100]);
  });
  afterEach(async () => {
    for (const s of streams.splice(0)) s.close();
    await handle.close();
    t.cleanup();
  });

  it('asks for a snapshot without a usable position', async () => {
    const cur = db.position;
    const start = db.generationStart;
    const cases: Array<[string, unknown]> = [
      ['no position', undefined],
      ['null position', null],
      ['wrong checksum at the current txid', { ...positionToJSON(cur), checksum: formatChecksum(cur.checksum ^ 1n) }],
      ['wrong checksum at an older txid', { ...positionToJSON(start), txid: start.txid + 3, checksum: formatChecksum(start.checksum) }],
      ['a future txid', { ...positionToJSON(cur), txid: cur.txid + 1 }],
      ['another generation', { ...positionToJSON(cur), generation: cur.generation + 1 }],
      ['an older generation', { ...positionToJSON(start), generation: cur.generation - 1 }],
    ];
    const opened = await Promise.all(cases.map(([, pos]) => open({ databases: ['s'], positions: pos === undefined ? {} : { s: pos } })));
    const firsts = await Promise.all(opened.map((s) => s.waitFor((f) => f.type === 'snapshot-needed' || f.type === 'changeset' || f.type === 'ready')));
    // No change set follows a snapshot-needed until the replica reconnects with a position.
    write(db, 'INSERT INTO t (v) VALUES (1)');
    const txid = db.position.txid;
    for (const [i, s] of opened.entries()) {
      const what = cases[i]![0];
      expect(s.frames[firsts[i]!], what).toMatchObject({ type: 'snapshot-needed', db: 's', reason: expect.any(String) });
      await s.waitFor((f) => f.type === 'heartbeat' && f.positions.s?.txid === txid, firsts[i]);
      expect(s.frames.filter(isChangeset('s')), what).toEqual([]);
    }
    // Malformed requests are refused before a stream starts.
    for (const body of [{ databases: 'x' }, { databases: ['../x'] }, { databases: ['s'], positions: { s: { txid: 1 } } }, { databases: ['s'], positions: { s: { generation: 1, txid: 1, checksum: 'zz' } } }]) {
      const res = await fetch(`${handle.url}/v1/stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect(res.status, JSON.stringify(body)).toBe(400);
      await res.arrayBuffer();
    }
  });

  it('catches up from the generation start, says ready, then streams live writes and heartbeats', async () => {
    const start = db.generationStart;
    const s = await open({ databases: ['s'], positions: { s: positionToJSON(start) } });
    const ready = await s.waitFor((f) => f.type === 'ready' && f.db === 's');
    const caught = checkChain(s.frames.slice(0, ready), 's', start);
    expect(caught).toEqual(db.position);
    expect(s.frames.slice(0, ready).filter(isChangeset('s')).length).toBe(21);

    for (let i = 0; i < 10; i++) write(db, 'INSERT INTO t (v) VALUES (randomblob(5000))');
    const target = db.position;
    await s.waitFor((f) => isChangeset('s')(f) && decodeChangeSet(f.data).maxTxid === target.txid, ready);
    expect(checkChain(s.frames, 's', start)).toEqual(target);
    expect(s.frames.filter((f) => f.type === 'ready')).toHaveLength(1);

    // Heartbeats come about every second, carrying the primary's txid and commit time.
    const h1 = await s.waitFor((f) => f.type === 'heartbeat' && f.positions.s?.txid === target.txid);
    const h2 = await s.waitFor((f) => f.type === 'heartbeat', h1 + 1, 5000);
    const [a, b] = [s.frames[h1], s.frames[h2]] as Array<Extract<Frame, { type: 'heartbeat' }>>;
    expect(b!.time).toBeGreaterThan(a!.time);
    expect(b!.positions.s).toEqual({ generation: target.generation, txid: target.txid, timestamp: db.lastCommitTime });

    // Resuming from the middle of the log also works, and from the current position gives ready at once.
    const mid = await open({ databases: ['s'], positions: { s: { generation: start.generation, txid: start.txid + 5, checksum: formatChecksum(decodeChangeSet((s.frames.filter(isChangeset('s'))[5]!).data).preChecksum) } } });
    const midReady = await mid.waitFor((f) => f.type === 'ready');
    expect(mid.frames.slice(0, midReady).filter(isChangeset('s'))).toHaveLength(target.txid - start.txid - 5);
    const now = await open({ databases: ['s'], positions: { s: positionToJSON(target) } });
    const nowReady = await now.waitFor((f) => f.type === 'ready');
    expect(now.frames.slice(0, nowReady).filter(isChangeset('s'))).toEqual([]);
  });

  it('gives every live subscriber the same bytes', async () => {
    const pos = positionToJSON(db.position);
    const a = await open({ databases: ['s'], positions: { s: pos } });
    const b = await open({ databases: '*', positions: { s: pos } });
    await a.waitFor((f) => f.type === 'ready');
    await b.waitFor((f) => f.type === 'ready');
    for (let i = 0; i < 15; i++) write(db, 'INSERT INTO t (v) VALUES (randomblob(?))', [i * 700]);
    const last = db.position.txid;
    const done = (f: Frame) => isChangeset('s')(f) && decodeChangeSet(f.data).maxTxid === last;
    await a.waitFor(done);
    await b.waitFor(done);
    const bytes = (s: FrameStream) => s.frames.filter(isChangeset('s')).map((f) => Buffer.from(f.data).toString('base64'));
    expect(bytes(a)).toHaveLength(15);
    expect(bytes(a)).toEqual(bytes(b));
    expect(await subscribers()).toBe(2);

    // A '*' subscriber hears of databases created later.
    handle.store.create('later');
    const created = await b.waitFor((f) => f.type === 'db-created' && f.db === 'later');
    await b.waitFor((f) => f.type === 'snapshot-needed' && f.db === 'later', created);
    expect(a.frames.some((f) => f.type === 'db-created')).toBe(false);
  });

  it('demotes a subscriber that stops reading to catch-up, and it still gets every txid in order', async () => {
    const from = db.position;
    const slow = await open({ databases: ['s'], positions: { s: positionToJSON(from) } });
    const fast = await open({ databases: ['s'], positions: { s: positionToJSON(from) } });
    await slow.waitFor((f) => f.type === 'ready');
    await fast.waitFor((f) => f.type === 'ready');
    slow.pause();
    // A burst far larger than the socket buffers plus the 8 MiB a live subscriber may have unread.
    let bytes = 0;
    for (let i = 0; i < 120; i++) {
      write(db, 'INSERT INTO t (v) VALUES (randomblob(200000))');
      bytes += 200_000;
      if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    }
    const target = db.position;
    const done = (f: Frame) => isChangeset('s')(f) && decodeChangeSet(f.data).maxTxid === target.txid;
    await fast.waitFor(done, 0, 30_000);
    expect(checkChain(fast.frames, 's', from)).toEqual(target);
    const pausedWith = slow.frames.length;
    slow.resume();
    await slow.waitFor(done, 0, 30_000);
    expect(checkChain(slow.frames, 's', from)).toEqual(target);
    // It was demoted (its second 'ready' says it caught up from the log again), then went live again.
    const readies = slow.frames.filter((f) => f.type === 'ready').length;
    expect(readies, `frames before resume: ${pausedWith}, burst ${bytes} bytes`).toBeGreaterThan(1);
    write(db, 'INSERT INTO t (v) VALUES (1)');
    const after = db.position;
    await slow.waitFor((f) => isChangeset('s')(f) && decodeChangeSet(f.data).maxTxid === after.txid);
    expect(checkChain(slow.frames, 's', from)).toEqual(after);
    expect(fast.frames.filter((f) => f.type === 'ready')).toHaveLength(1);
  });

  it('forgets a subscription when its client hangs up', async () => {
    expect(await subscribers()).toBe(0);
    const a = await open({ databases: ['s'], positions: { s: positionToJSON(db.position) } });
    const b = await open({ databases: ['s'] });
    await a.waitFor((f) => f.type === 'ready');
    await b.waitFor((f) => f.type === 'snapshot-needed');
    expect(await subscribers()).toBe(2);
    a.close();
    await waitFor(async () => (await subscribers()) === 1, 'subscriber count 1 after closing one stream', 10_000);
    b.close();
    await waitFor(async () => (await subscribers()) === 0, 'subscriber count 0 after closing both', 10_000);
    // Writes after the hang-up go nowhere and break nothing.
    write(db, 'INSERT INTO t (v) VALUES (2)');
    expect(handle.store.hub.size).toBe(0);
  });
});
