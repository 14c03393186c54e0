/**
 * The follower core (shared/follower.ts) driven through a fake port and a scripted stream: real frames
 * (shared/frames.ts) carrying real change sets (shared/changeset.ts, delta ones too), a stream source
 * whose sessions yield scripted chunks, end, hang or fail. Small heartbeat and backoff values keep the
 * file to a few seconds; timing bounds are checked with slack for a busy machine, never without a bound.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { encodeChangeSet } from '../../shared/changeset.ts';
import { encodeDeltaChangeSet } from '../../shared/changeset-delta.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { FollowerCore } from '../../shared/follower.ts';
import { backoffDelayMs } from '../../shared/follower-decode.ts';
import type { FollowerPort, StreamBody, StreamSource } from '../../shared/follower-port.ts';
import { encodeFrame, type Frame, type StreamPosition } from '../../shared/frames.ts';
import type { ChangeSet, Position } from '../../shared/types.ts';
import { waitFor } from '../kit/wait.ts';

const PAGE = 512;

function page(fill: number, at = -1, value = 0): Uint8Array {
  const p = new Uint8Array(PAGE).fill(fill);
  if (at >= 0) p[at] = value;
  return p;
}

/** changeSet makes change set `txid` of database 7 writing page 2 (a page that may go as a delta). */
function changeSet(txid: number, data: Uint8Array): ChangeSet {
  return {
    databaseId: 7, pageSize: PAGE, generation: 1, minTxid: txid, maxTxid: txid, commit: 2, timestamp: 1000 + txid,
    preChecksum: BigInt(txid - 1), postChecksum: BigInt(txid), pages: [{ pgno: 2, data }],
  };
}

const csFrame = (db: string, bytes: Uint8Array) => encodeFrame({ type: 'changeset', db, data: bytes });
const heartbeat = () => encodeFrame({ type: 'heartbeat', time: Date.now(), positions: {} });
const frame = (f: Frame) => encodeFrame(f);

/** FakePort keeps each database as a position and its page 2, and records what the core asked. */
class FakePort implements FollowerPort {
  readonly dbs = new Map<string, { position: Position | null; page2: Uint8Array; needs: string | null; ready: boolean }>();
  readonly applied: Array<{ db: string; txids: number[] }> = [];
  readonly snapshots: Array<{ db: string; reason: string }> = [];
  /** applyError, if set, is thrown by the next apply (and cleared). */
  applyError: Error | null = null;
  snapshotError: Error | null = null;
  /** snapshotDelayMs: each snapshot takes this long (aborted by its signal); the most running at once. */
  snapshotDelayMs = 0;
  running = 0;
  maxRunning = 0;
  heartbeats = 0;

  add(name: string, txid: number | null, page2 = page(1)): void {
    this.dbs.set(name, { position: txid === null ? null : { generation: 1, txid, checksum: BigInt(txid) }, page2, needs: null, ready: false });
  }

  positions(databases: '*' | readonly string[]): Record<string, Position | null> {
    const names = databases === '*' ? [...this.dbs.keys()] : databases;
    return Object.fromEntries(names.map((n) => [n, this.dbs.get(n)?.position ?? null]));
  }

  needsSnapshot(db: string): string | null {
    return this.dbs.get(db)?.needs ?? null;
  }

  readPage(db: string, pgno: number): Uint8Array | null {
    return pgno === 2 ? (this.dbs.get(db)?.page2 ?? null) : null;
  }

  apply(db: string, batch: ChangeSet[]): boolean {
    const d = this.dbs.get(db);
    if (!d) return false;
    if (this.applyError) {
      const err = this.applyError;
      this.applyError = null;
      throw err;
    }
    let txid = d.position?.txid ?? 0;
    for (const cs of batch) {
      if (cs.minTxid !== txid + 1) throw new EdgeliteError('POSITION_MISMATCH', `txid gap at ${cs.minTxid}`, { divergence: 'txid' });
      txid = cs.maxTxid;
    }
    d.position = { generation: 1, txid, checksum: BigInt(txid) };
    d.page2 = batch[batch.length - 1]!.pages[0]!.data;
    this.applied.push({ db, txids: batch.map((c) => c.minTxid) });
    return true;
  }

  async snapshot(db: string, reason: string, signal: AbortSignal, onProgress: () => void): Promise<void> {
    this.snapshots.push({ db, reason });
    const d = this.dbs.get(db) ?? { position: null, page2: page(0), needs: null, ready: false };
    this.dbs.set(db, d);
    d.needs = reason;
    onProgress();
    if (this.snapshotDelayMs > 0) {
      this.maxRunning = Math.max(this.maxRunning, ++this.running);
      try {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, this.snapshotDelayMs);
          signal.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
        });
      } finally {
        this.running--;
      }
    }
    if (signal.aborted) throw signal.reason;
    if (this.snapshotError) throw this.snapshotError;
    d.position = { generation: 2, txid: 100, checksum: 100n };
    d.page2 = page(9);
    d.needs = null;
  }

  markReady(db: string): void {
    const d = this.dbs.get(db);
    if (d) d.ready = true;
  }

  noteHeartbeat(_time: number, _positions: Record<string, StreamPosition>): void {
    this.heartbeats++;
  }
}

/** A session's script: chunks to yield (a number waits that many ms), then how the session ends. */
interface Script {
  chunks?: Array<Uint8Array | number>;
  then?: 'end' | 'hang';
  /** fail: openStream itself throws this. */
  fail?: Error;
}

/** ScriptedSource serves one script per session (the last one repeats) and records every request. */
class ScriptedSource implements StreamSource {
  readonly requests: Array<{ at: number; databases: '*' | string[]; positions: Record<string, Position | null> }> = [];
  readonly #scripts: Script[];

  constructor(scripts: Script[]) {
    this.#scripts = scripts;
  }

  async openStream(databases: '*' | string[], positions: Record<string, Position | null>, _signal: AbortSignal): Promise<StreamBody> {
    this.requests.push({ at: Date.now(), databases, positions: structuredClone(positions) });
    const script = this.#scripts[Math.min(this.requests.length - 1, this.#scripts.length - 1)]!;
    if (script.fail) throw script.fail;
    return (async function* () {
      for (const c of script.chunks ?? []) {
        if (typeof c === 'number') await new Promise((r) => setTimeout(r, c));
        else yield c;
      }
      // A hung source ignores the signal on purpose: the core must end the session anyway.
      if (script.then === 'hang') await new Promise(() => {});
    })();
  }
}

const cores: FollowerCore[] = [];
afterEach(async () => {
  await Promise.all(cores.splice(0).map((c) => c.stop()));
});

function follower(port: FakePort, source: StreamSource, o: { databases?: '*' | string[]; heartbeatTimeoutMs?: number; backoffMinMs?: number; backoffMaxMs?: number; bootstrapConcurrency?: number } = {}) {
  const logs: Array<Record<string, unknown>> = [];
  const core = new FollowerCore({
    port,
    source,
    databases: o.databases ?? ['a'],
    heartbeatTimeoutMs: o.heartbeatTimeoutMs ?? 300,
    backoffMinMs: o.backoffMinMs ?? 20,
    backoffMaxMs: o.backoffMaxMs ?? 80,
    logger: (e) => logs.push(e),
    ...(o.bootstrapConcurrency ? { bootstrapConcurrency: o.bootstrapConcurrency } : {}),
  });
  cores.push(core);
  core.start();
  return { core, logs };
}

describe('FollowerCore', () => {
  it('applies consecutive change sets of one database as one batch, and reconnects from the new position after the stream ends', async () => {
    const port = new FakePort();
    port.add('a', 10);
    const source = new ScriptedSource([
      { chunks: [concat(csFrame('a', encodeChangeSet(changeSet(11, page(2)))), csFrame('a', encodeChangeSet(changeSet(12, page(3)))), frame({ type: 'ready', db: 'a' }))], then: 'end' },
      { chunks: [heartbeat()], then: 'hang' },
    ]);
    const { core } = follower(port, source);
    await waitFor(() => source.requests.length >= 2, 'a reconnect');
    expect(port.applied).toEqual([{ db: 'a', txids: [11, 12] }]);
    expect(port.dbs.get('a')!.ready).toBe(true);
    expect(source.requests[0]!.positions).toEqual({ a: { generation: 1, txid: 10, checksum: 10n } });
    expect(source.requests[1]!.positions).toEqual({ a: { generation: 1, txid: 12, checksum: 12n } });
    expect(core.applied('a')).toEqual({ changeSets: 2, snapshots: 0 });
    expect(core.lastFailure?.message).toBe('the primary closed the stream');
    await waitFor(() => core.state === 'streaming', 'streaming again');
    expect(core.connects).toBe(2);
    expect(core.lastContactMs).toBeLessThan(1000);
  });

  it('waits between failed connects within [base/2, base], base doubling from min to max: never a tight loop, never giving up', async () => {
    const port = new FakePort();
    port.add('a', 1);
    const source = new ScriptedSource([{ fail: new EdgeliteError('PRIMARY_UNAVAILABLE', 'connection refused') }]);
    const { core } = follower(port, source, { backoffMinMs: 40, backoffMaxMs: 160 });
    await waitFor(() => source.requests.length >= 7, 'seven connects', 5000, 5);
    const gaps = source.requests.slice(1).map((r, i) => r.at - source.requests[i]!.at);
    const bases = [40, 80, 160, 160, 160, 160];
    gaps.forEach((gap, i) => {
      expect(gap, `gap ${i} of ${JSON.stringify(gaps)}`).toBeGreaterThanOrEqual(bases[i]! / 2 - 2);
      expect(gap, `gap ${i} of ${JSON.stringify(gaps)}`).toBeLessThanOrEqual(bases[i]! + 100);
    });
    expect(core.state).toBe('waiting');
    expect(core.lastFailure).toMatchObject({ code: 'PRIMARY_UNAVAILABLE', message: 'connection refused' });
    expect(core.connects).toBe(0);
  });

  it('backoffDelayMs: exactly base/2 and base at the ends of the jitter, capped at max', () => {
    expect([0, 1, 2, 3, 10, 1000].map((a) => backoffDelayMs(a, 50, 5000, () => 0))).toEqual([25, 50, 100, 200, 2500, 2500]);
    expect([0, 1, 2, 3, 10, 1000].map((a) => backoffDelayMs(a, 50, 5000, () => 1))).toEqual([50, 100, 200, 400, 5000, 5000]);
  });

  it('ends a session that goes silent (no bytes for heartbeatTimeoutMs) and reconnects', async () => {
    const port = new FakePort();
    port.add('a', 1);
    const source = new ScriptedSource([{ chunks: [heartbeat()], then: 'hang' }]);
    const { core } = follower(port, source, { heartbeatTimeoutMs: 200 });
    await waitFor(() => source.requests.length >= 2, 'a reconnect after the stall', 3000, 5);
    const gap = source.requests[1]!.at - source.requests[0]!.at;
    expect(gap).toBeGreaterThanOrEqual(200);
    expect(gap).toBeLessThan(1500);
    expect(core.lastFailure?.message).toBe('no heartbeat from the primary');
    expect(port.heartbeats).toBeGreaterThanOrEqual(1);
  });

  it('ends a session that sends bytes but never a whole frame (a length corrupted upwards) although bytes keep coming', async () => {
    const port = new FakePort();
    port.add('a', 1);
    const header = new Uint8Array(8);
    new DataView(header.buffer).setUint32(0, 1_000_000); // a frame that never completes
    const trickle: Array<Uint8Array | number> = [header];
    for (let i = 0; i < 100; i++) trickle.push(20, new Uint8Array([i]));
    const source = new ScriptedSource([{ chunks: [heartbeat(), ...trickle], then: 'hang' }, { then: 'hang' }]);
    const { core } = follower(port, source, { heartbeatTimeoutMs: 200 });
    await waitFor(() => source.requests.length >= 2, 'a reconnect after the frame stall', 3000, 5);
    expect(core.lastFailure?.message).toMatch(/^no whole frame from the primary for \d+ ms$/);
    expect(source.requests[1]!.at - source.requests[0]!.at).toBeLessThan(1500);
  });

  it('snapshot-needed: takes the snapshot and resumes at once from its position', async () => {
    const port = new FakePort();
    port.add('a', null);
    const source = new ScriptedSource([
      { chunks: [frame({ type: 'snapshot-needed', db: 'a', reason: 'replica has no position' })], then: 'hang' },
      { chunks: [heartbeat()], then: 'hang' },
    ]);
    const { core } = follower(port, source, { backoffMinMs: 1000, backoffMaxMs: 1000 });
    await waitFor(() => source.requests.length >= 2, 'the session after the snapshot');
    expect(port.snapshots).toEqual([{ db: 'a', reason: 'replica has no position' }]);
    expect(source.requests[0]!.positions).toEqual({ a: null });
    expect(source.requests[1]!.positions).toEqual({ a: { generation: 2, txid: 100, checksum: 100n } });
    expect(source.requests[1]!.at - source.requests[0]!.at).toBeLessThan(500); // a Restart, not a backoff
    expect(core.applied('a')).toEqual({ changeSets: 0, snapshots: 1 });
    expect(core.lastFailure).toBeNull();
  });

  it('many snapshot-needed in one session: downloads run in parallel up to the bound, and the session restarts once, not once per snapshot', async () => {
    const port = new FakePort();
    port.snapshotDelayMs = 60;
    const names = Array.from({ length: 12 }, (_, i) => `t${i}`);
    const needed = concat(...names.map((db) => frame({ type: 'snapshot-needed', db, reason: 'replica has no position' })));
    const source = new ScriptedSource([{ chunks: [needed, heartbeat()], then: 'hang' }, { chunks: [heartbeat()], then: 'hang' }]);
    const { core } = follower(port, source, { databases: '*', bootstrapConcurrency: 4, heartbeatTimeoutMs: 2000 });
    await waitFor(() => source.requests.length >= 2, 'the session after the snapshots', 5000);
    expect(port.snapshots.map((s) => s.db)).toEqual(names);
    expect(port.maxRunning).toBe(4);
    expect(Object.keys(source.requests[1]!.positions).sort()).toEqual([...names].sort());
    expect(Object.values(source.requests[1]!.positions).every((p) => p?.txid === 100)).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    expect(source.requests.length).toBe(2); // 12 snapshots, one restart
    expect(core.snapshots).toEqual({ running: 0, queued: 0 });
  });

  it('change sets for a database whose snapshot downloads are dropped, and the next session resumes it from the snapshot', async () => {
    const port = new FakePort();
    port.add('a', 10);
    port.add('b', 20);
    port.snapshotDelayMs = 150;
    const source = new ScriptedSource([
      {
        chunks: [
          frame({ type: 'new-generation', db: 'a', generation: 2, txid: 100 }),
          20,
          csFrame('a', encodeChangeSet(changeSet(11, page(2)))), // old generation, mid-download: never applied
          csFrame('b', encodeChangeSet(changeSet(21, page(3)))), // another database goes on meanwhile
          heartbeat(),
        ],
        then: 'hang',
      },
      { chunks: [csFrame('a', encodeChangeSet({ ...changeSet(101, page(4)), generation: 2 }))], then: 'hang' },
    ]);
    follower(port, source, { databases: ['a', 'b'], bootstrapConcurrency: 2, heartbeatTimeoutMs: 2000 });
    await waitFor(() => port.applied.some((x) => x.db === 'b'), 'b applied while a downloads');
    expect(port.applied).toEqual([{ db: 'b', txids: [21] }]);
    expect(source.requests.length).toBe(1); // the session goes on during the download
    await waitFor(() => source.requests.length >= 2, 'the session after the snapshot');
    expect(source.requests[1]!.positions).toEqual({ a: { generation: 2, txid: 100, checksum: 100n }, b: { generation: 1, txid: 21, checksum: 21n } });
    await waitFor(() => port.applied.length === 2, 'a applied in the new session');
    expect(port.applied[1]).toEqual({ db: 'a', txids: [101] });
  });

  it('new-generation: re-snapshots; a database no longer followed is not downloaded', async () => {
    const port = new FakePort();
    port.add('a', 5);
    const source = new ScriptedSource([
      { chunks: [frame({ type: 'new-generation', db: 'other', generation: 2, txid: 5 }), frame({ type: 'new-generation', db: 'a', generation: 2, txid: 5 })], then: 'hang' },
      { chunks: [heartbeat()], then: 'hang' },
    ]);
    follower(port, source);
    await waitFor(() => source.requests.length >= 2, 'the session after the snapshot');
    expect(port.snapshots).toEqual([{ db: 'a', reason: 'new generation 2' }]);
  });

  it('a delta whose base is not the local page: nothing applied, re-snapshot', async () => {
    const port = new FakePort();
    port.add('a', 10, page(1));
    const wrongBase = encodeDeltaChangeSet(changeSet(11, page(2, 5, 42)), () => page(2));
    // The fake's snapshot leaves page 2 as page(9) at txid 100: the next delta is built on that.
    const afterSnapshot = encodeDeltaChangeSet(changeSet(101, page(9, 5, 42)), () => page(9));
    expect(afterSnapshot.length).toBeLessThan(PAGE);
    const source = new ScriptedSource([
      { chunks: [csFrame('a', wrongBase)], then: 'hang' },
      { chunks: [csFrame('a', afterSnapshot)], then: 'hang' },
    ]);
    const { core } = follower(port, source);
    await waitFor(() => port.applied.length === 1, 'the delta after the snapshot');
    expect(port.applied).toEqual([{ db: 'a', txids: [101] }]); // never 11
    expect(port.snapshots).toEqual([{ db: 'a', reason: "page 2: the delta's base is not this replica's page" }]);
    expect(core.rejected).toBe(1);
    expect(core.lastFailure?.code).toBe('CHECKSUM_MISMATCH');
    expect(core.applied('a')).toEqual({ changeSets: 1, snapshots: 1 });
  });

  it('rebuilds consecutive deltas from the pending batch first, then the port\'s page', async () => {
    const port = new FakePort();
    port.add('a', 10, page(1));
    const first = changeSet(11, page(1, 5, 42));
    const second = changeSet(12, page(1, 6, 43).map((v, i) => (i === 5 ? 42 : v)));
    const frames = concat(csFrame('a', encodeDeltaChangeSet(first, () => page(1))), csFrame('a', encodeDeltaChangeSet(second, () => first.pages[0]!.data)));
    const source = new ScriptedSource([{ chunks: [frames], then: 'hang' }]);
    follower(port, source);
    await waitFor(() => port.applied.length === 1, 'the batch');
    expect(port.applied).toEqual([{ db: 'a', txids: [11, 12] }]);
    expect(port.dbs.get('a')!.page2).toEqual(second.pages[0]!.data);
    expect(port.snapshots).toEqual([]);
  });

  it('an apply that diverges (typed divergence) re-snapshots at once', async () => {
    const port = new FakePort();
    port.add('a', 10);
    port.applyError = new EdgeliteError('CHECKSUM_MISMATCH', 'post-apply checksum differs', { divergence: 'post-checksum' });
    const source = new ScriptedSource([{ chunks: [csFrame('a', encodeChangeSet(changeSet(11, page(2))))], then: 'hang' }, { then: 'hang' }]);
    const { core } = follower(port, source, { backoffMinMs: 1000, backoffMaxMs: 1000 });
    await waitFor(() => source.requests.length >= 2, 'the session after the snapshot');
    expect(port.snapshots).toEqual([{ db: 'a', reason: 'post-apply checksum differs' }]);
    expect(core.rejected).toBe(1);
    expect(source.requests[1]!.at - source.requests[0]!.at).toBeLessThan(500);
  });

  it('a storage failure (IO_ERROR) is not a divergence: no snapshot, a backoff, then the same change set again', async () => {
    const port = new FakePort();
    port.add('a', 10);
    port.applyError = new EdgeliteError('IO_ERROR', 'disk I/O error');
    const cs = csFrame('a', encodeChangeSet(changeSet(11, page(2))));
    const source = new ScriptedSource([{ chunks: [cs], then: 'hang' }]);
    const { core } = follower(port, source, { backoffMinMs: 200, backoffMaxMs: 200 });
    await waitFor(() => port.applied.length === 1, 'the retried apply', 3000, 5);
    expect(port.snapshots).toEqual([]);
    expect(source.requests).toHaveLength(2);
    expect(source.requests[1]!.positions).toEqual({ a: { generation: 1, txid: 10, checksum: 10n } });
    expect(source.requests[1]!.at - source.requests[0]!.at).toBeGreaterThanOrEqual(98);
    expect(core.lastFailure).toMatchObject({ code: 'IO_ERROR' });
    expect(core.applied('a').changeSets).toBe(1);
  });

  it('decides on the typed divergence, not the wire code: a CHECKSUM_MISMATCH without one backs off like any failure', async () => {
    const port = new FakePort();
    port.add('a', 10);
    port.applyError = new EdgeliteError('CHECKSUM_MISMATCH', 'a code alone');
    const source = new ScriptedSource([{ chunks: [csFrame('a', encodeChangeSet(changeSet(11, page(2))))], then: 'hang' }]);
    const { core } = follower(port, source, { backoffMinMs: 200, backoffMaxMs: 200 });
    await waitFor(() => port.applied.length === 1, 'the retried apply', 3000, 5);
    expect(port.snapshots).toEqual([]);
    expect(source.requests[1]!.at - source.requests[0]!.at).toBeGreaterThanOrEqual(98);
    expect(core.lastFailure).toMatchObject({ code: 'CHECKSUM_MISMATCH', message: 'a code alone' });
  });

  it('resets the backoff after progress: a session that applied something reconnects at the shortest wait', async () => {
    const port = new FakePort();
    port.add('a', 10);
    const fail = { fail: new EdgeliteError('PRIMARY_UNAVAILABLE', 'refused') };
    const applies = (txid: number) => ({ chunks: [csFrame('a', encodeChangeSet(changeSet(txid, page(2))))], then: 'end' as const });
    const source = new ScriptedSource([fail, fail, fail, applies(11), { then: 'hang' as const }]);
    follower(port, source, { backoffMinMs: 60, backoffMaxMs: 1000 });
    await waitFor(() => source.requests.length >= 5, 'the connect after the applying session', 5000, 5);
    const gaps = source.requests.slice(1).map((r, i) => r.at - source.requests[i]!.at);
    expect(gaps[2]).toBeGreaterThanOrEqual(120 - 2); // third failure in a row: base 240
    expect(gaps[3]).toBeLessThanOrEqual(60 + 100); // after the apply: base 60 again
    expect(port.applied).toEqual([{ db: 'a', txids: [11] }]);
  });

  it('a corrupt frame ends the session and resumes from the stored position, without a snapshot', async () => {
    const port = new FakePort();
    port.add('a', 10);
    const damaged = csFrame('a', encodeChangeSet(changeSet(11, page(2))));
    damaged[damaged.length - 3]! ^= 0x40;
    const source = new ScriptedSource([{ chunks: [damaged], then: 'hang' }, { chunks: [csFrame('a', encodeChangeSet(changeSet(11, page(2))))], then: 'hang' }]);
    const { core } = follower(port, source);
    await waitFor(() => port.applied.length === 1, 'the change set from the next session');
    expect(core.lastFailure?.code).toBe('CORRUPT_FRAME');
    expect(port.snapshots).toEqual([]);
    expect(source.requests[1]!.positions).toEqual({ a: { generation: 1, txid: 10, checksum: 10n } });
  });

  it('asks for a database that needs a snapshot with no position, and applies nothing to it meanwhile', async () => {
    const port = new FakePort();
    port.add('a', 10);
    port.dbs.get('a')!.needs = 'a snapshot was cut';
    const source = new ScriptedSource([{ chunks: [csFrame('a', encodeChangeSet(changeSet(11, page(2)))), heartbeat()], then: 'hang' }]);
    follower(port, source);
    await waitFor(() => port.heartbeats > 0, 'the heartbeat after the change set');
    expect(source.requests[0]!.positions).toEqual({ a: null });
    expect(port.applied).toEqual([]);
  });

  it('follow() restarts the session with the new list and resolves once it ended', async () => {
    const port = new FakePort();
    port.add('a', 10);
    port.add('b', 20);
    const source = new ScriptedSource([{ chunks: [heartbeat()], then: 'hang' }]);
    const { core } = follower(port, source, { backoffMinMs: 1000, backoffMaxMs: 1000 });
    await waitFor(() => core.state === 'streaming', 'the first session');
    await core.follow(['a', 'b']);
    await waitFor(() => source.requests.length >= 2, 'the session with the new list');
    expect(source.requests.map((r) => r.databases)).toEqual([['a'], ['a', 'b']]);
    expect(source.requests[1]!.positions).toEqual({ a: { generation: 1, txid: 10, checksum: 10n }, b: { generation: 1, txid: 20, checksum: 20n } });
    expect(source.requests[1]!.at - source.requests[0]!.at).toBeLessThan(250);
    expect(core.databases).toEqual(['a', 'b']);
    expect(core.lastFailure).toBeNull();
    const all = follower(new FakePort(), source, { databases: '*' }).core;
    expect(() => all.follow(['a'])).toThrow(/cannot change its list/);
  });

  it('follow(): a newly followed database with no local copy downloads its snapshot at once, without waiting for the primary to ask', async () => {
    const port = new FakePort();
    port.add('a', 10);
    port.add('b', 20);
    port.add('c', null);
    // The primary never says snapshot-needed here: only the follower itself can start c's download.
    const source = new ScriptedSource([{ chunks: [heartbeat()], then: 'hang' }]);
    const { core } = follower(port, source, { backoffMinMs: 1000, backoffMaxMs: 1000 });
    await waitFor(() => core.state === 'streaming', 'the first session');
    const followed = core.follow(['a', 'b', 'c']);
    await waitFor(() => port.snapshots.length === 1, 'the snapshot of c');
    expect(port.snapshots).toEqual([{ db: 'c', reason: 'first use' }]); // b resumes from its position
    await followed;
    // No session restart for an addition that is downloading: c joins once installed, with its position.
    await waitFor(() => source.requests.length >= 2, 'c joined the stream');
    expect(source.requests.map((r) => r.databases)).toEqual([['a'], ['a', 'b', 'c']]);
    expect(source.requests[1]!.positions).toEqual({ a: { generation: 1, txid: 10, checksum: 10n }, b: { generation: 1, txid: 20, checksum: 20n }, c: { generation: 2, txid: 100, checksum: 100n } });
    expect(port.snapshots.length).toBe(1);
  });

  it('records an error frame from the primary (a followed database that does not exist) and clears its code after a snapshot', async () => {
    const port = new FakePort();
    const source = new ScriptedSource([
      { chunks: [frame({ type: 'error', code: 'DATABASE_NOT_FOUND', message: 'database a does not exist yet' }), 100, frame({ type: 'snapshot-needed', db: 'a', reason: 'created' })], then: 'hang' },
      { then: 'hang' },
    ]);
    const { core } = follower(port, source);
    await waitFor(() => core.lastFailureCode === 'DATABASE_NOT_FOUND', 'the error frame');
    await waitFor(() => port.snapshots.length === 1 && core.lastFailureCode === null, 'the snapshot');
    expect(core.lastFailure?.message).toBe('database a does not exist yet');
  });

  it('stop() ends a running session and a backoff wait; start() again runs a new loop', async () => {
    const port = new FakePort();
    port.add('a', 1);
    const source = new ScriptedSource([{ chunks: [heartbeat()], then: 'hang' }]);
    const { core } = follower(port, source);
    await waitFor(() => core.state === 'streaming', 'streaming');
    const started = Date.now();
    await core.stop();
    expect(Date.now() - started).toBeLessThan(200);
    expect([core.state, core.running]).toEqual(['stopped', false]);
    core.start();
    await waitFor(() => source.requests.length === 2, 'the new loop');
    expect(core.running).toBe(true);
  });
});


function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
