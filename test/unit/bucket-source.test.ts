/**
 * BucketStreamSource (shared/bucket-source.ts) read frame by frame from a real directory bucket with
 * real segments: what a session sends for a database with no copy, with one to continue, with a damaged
 * segment (a newer snapshot covering it, or not), and the hand-over to the primary's stream when the
 * bucket moved the replica while the primary was answering (the stream opened from the old position is
 * dropped, another opened from the new one, so no change set arrives twice). The primary here is a
 * scripted stream source: the race needs an answer held back on purpose, which a real primary cannot be
 * made to do; the real one is in test/integration/replica-bucket.test.ts.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { segmentKey, snapshotKey } from '../../shared/backup-layout.ts';
import { encodeSegment } from '../../shared/backup-objects.ts';
import { BucketFeed } from '../../shared/bucket-feed.ts';
import { BucketStreamSource } from '../../shared/bucket-source.ts';
import { decodeChangeSet, encodeChangeSet } from '../../shared/changeset.ts';
import type { StreamBody, StreamSource } from '../../shared/follower-port.ts';
import { encodeFrame, FrameDecoder, type Frame } from '../../shared/frames.ts';
import type { Position } from '../../shared/types.ts';
import { FileObjectStore } from '../../shared/node/file-object-store.ts';
import { waitFor } from '../kit/wait.ts';

const T0 = Date.parse('2026-12-01T00:00:00Z');
const PAGE = 512;
const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

function bucket(): { root: string; put(key: string, bytes: Uint8Array): void } {
  const root = mkdtempSync(join(tmpdir(), 'edgelite-bucket-source-'));
  roots.push(root);
  return {
    root,
    put(key, bytes) {
      mkdirSync(dirname(join(root, key)), { recursive: true });
      writeFileSync(join(root, key), bytes);
    },
  };
}

/** segment is change sets min..max of database 7, generation 1, one txid each, page 2 filled with the txid. */
function segment(min: number, max: number): Uint8Array {
  const out: Uint8Array[] = [];
  for (let txid = min; txid <= max; txid++) {
    out.push(encodeChangeSet({ databaseId: 7, pageSize: PAGE, generation: 1, minTxid: txid, maxTxid: txid, commit: 2, timestamp: T0 + txid, preChecksum: BigInt(txid - 1), postChecksum: BigInt(txid), pages: [{ pgno: 2, data: new Uint8Array(PAGE).fill(txid) }] }));
  }
  return encodeSegment(out);
}

/** Replica stands for the core: it applies change-set frames to its positions, in order, and records every frame. */
class Replica {
  readonly positions: Record<string, Position | null> = {};
  readonly frames: Frame[] = [];

  apply(f: Frame): void {
    this.frames.push(f);
    if (f.type !== 'changeset') return;
    const cs = decodeChangeSet(f.data);
    const p = this.positions[f.db];
    if (!p || cs.minTxid !== p.txid + 1) throw new Error(`change set ${cs.minTxid} does not follow ${p?.txid}`);
    this.positions[f.db] = { generation: cs.generation, txid: cs.maxTxid, checksum: cs.postChecksum };
  }

  /** read applies the body's frames until `until` holds (then leaves the session, as the core does on a Restart). */
  async read(body: StreamBody, until: (f: Frame) => boolean): Promise<void> {
    const decoder = new FrameDecoder();
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      for (const f of decoder.push(chunk)) {
        this.apply(f);
        if (until(f)) return;
      }
    }
  }

  types(): string[] {
    return this.frames.filter((f) => f.type !== 'heartbeat').map((f) => (f.type === 'changeset' ? `changeset ${decodeChangeSet(f.data).maxTxid}` : f.type));
  }
}

function source(root: string, replica: Replica, primary: StreamSource | null, logs: Array<Record<string, unknown>> = []) {
  const feed = new BucketFeed(new FileObjectStore(root), (e) => void logs.push(e));
  return { feed, source: new BucketStreamSource({ feed, primary, positions: () => ({ ...replica.positions }), intervalMs: 20, backoffMinMs: 10, backoffMaxMs: 50, logger: (e) => void logs.push(e) }) };
}

const at = (txid: number): Position => ({ generation: 1, txid, checksum: BigInt(txid) });

describe('BucketStreamSource', () => {
  it('a database with no copy: snapshot-needed; with one: the segments continuing it, then ready and heartbeats (no primary)', async () => {
    const b = bucket();
    b.put(snapshotKey('app', 1, 0, T0), new Uint8Array(8));
    b.put(segmentKey('app', 1, 1, 2, T0), segment(1, 2));
    b.put(segmentKey('app', 1, 3, 5, T0), segment(3, 5));
    const replica = new Replica();
    const { source: s, feed } = source(b.root, replica, null);
    const abort = new AbortController();
    replica.positions.app = null;
    await replica.read(await s.openStream('*', { app: null }, abort.signal), (f) => f.type === 'snapshot-needed');
    expect(replica.frames.at(-1)).toEqual({ type: 'snapshot-needed', db: 'app', reason: 'bootstrap from the bucket' });

    replica.frames.length = 0;
    replica.positions.app = at(0);
    await replica.read(await s.openStream('*', { app: at(0) }, abort.signal), (f) => f.type === 'heartbeat');
    expect(replica.types()).toEqual(['changeset 1', 'changeset 2', 'changeset 3', 'changeset 4', 'changeset 5', 'ready']);
    expect(replica.positions.app).toEqual(at(5));
    expect(feed.status('app')).toMatchObject({ changeSets: 5, refused: 0 });
    expect(s.feeding).toBe('bucket');

    // A segment uploaded later is followed on the next round.
    replica.frames.length = 0;
    const body = await s.openStream('*', { app: at(5) }, abort.signal);
    b.put(segmentKey('app', 1, 6, 6, T0), segment(6, 6));
    await replica.read(body, (f) => f.type === 'changeset');
    expect(replica.positions.app).toEqual(at(6));
    abort.abort();
  });

  it('a pattern list follows only the matching databases in the bucket (README.md#database-patterns)', async () => {
    const b = bucket();
    b.put(snapshotKey('other', 1, 0, T0), new Uint8Array(8));
    b.put(snapshotKey('tenant-1', 1, 0, T0), new Uint8Array(8));
    const replica = new Replica();
    const { source: s } = source(b.root, replica, null);
    const abort = new AbortController();
    // With '*' the first database ('other', by name) is asked for first; with the pattern only tenant-1 is.
    await replica.read(await s.openStream('*', {}, abort.signal), (f) => f.type === 'snapshot-needed');
    expect(replica.frames.at(-1)).toMatchObject({ type: 'snapshot-needed', db: 'other' });
    replica.frames.length = 0;
    await replica.read(await s.openStream(['tenant-*'], {}, abort.signal), (f) => f.type === 'snapshot-needed');
    expect(replica.frames.filter((f) => 'db' in f).map((f) => (f as { db: string }).db)).toEqual(['tenant-1']);
    abort.abort();
  });

  it('a damaged segment: refused and reported; the copy stays; a newer snapshot that covers it is asked for', async () => {
    const b = bucket();
    b.put(snapshotKey('app', 1, 0, T0), new Uint8Array(8));
    b.put(segmentKey('app', 1, 1, 2, T0), segment(1, 2));
    const bad = segment(3, 4);
    bad[bad.length - 20]! ^= 0x01;
    b.put(segmentKey('app', 1, 3, 4, T0), bad);
    const replica = new Replica();
    const logs: Array<Record<string, unknown>> = [];
    const { source: s, feed } = source(b.root, replica, null, logs);
    const abort = new AbortController();
    replica.positions.app = at(0);
    await replica.read(await s.openStream('*', { app: at(0) }, abort.signal), (f) => f.type === 'heartbeat');
    expect(replica.types()).toEqual(['changeset 1', 'changeset 2', 'ready']);
    expect(replica.positions.app).toEqual(at(2));
    expect(feed.status('app')).toMatchObject({ changeSets: 2, refused: 1, lastFailure: { key: segmentKey('app', 1, 3, 4, T0), code: 'BACKUP_CORRUPT' } });
    expect(logs.filter((l) => l.msg === 'bucket object refused, not applied')).toHaveLength(1);

    b.put(snapshotKey('app', 1, 4, T0), new Uint8Array(8));
    replica.frames.length = 0;
    await replica.read(await s.openStream('*', { app: at(2) }, abort.signal), (f) => f.type === 'snapshot-needed');
    expect(replica.frames.at(-1)).toMatchObject({ type: 'snapshot-needed', db: 'app', reason: expect.stringContaining('a newer snapshot covers it') });
    expect(replica.positions.app).toEqual(at(2));
    abort.abort();
  });

  it('drops a primary stream opened from a position the bucket moved past while it answered, and opens another', async () => {
    const b = bucket();
    b.put(snapshotKey('app', 1, 0, T0), new Uint8Array(8));
    b.put(segmentKey('app', 1, 1, 2, T0), segment(1, 2));
    const calls: Array<{ positions: Record<string, Position | null>; signal: AbortSignal }> = [];
    let release: (() => void) | null = null;
    const primary: StreamSource = {
      openStream(_databases, positions, signal) {
        calls.push({ positions, signal });
        const body = (async function* () {
          yield encodeFrame({ type: 'db-created', db: `from-primary-${calls.length}` });
          await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        })();
        // The first answer is held back until the test lets it go.
        return calls.length === 1 ? new Promise((resolve) => (release = () => resolve(body))) : Promise.resolve(body);
      },
    };
    const replica = new Replica();
    const { source: s } = source(b.root, replica, primary);
    const abort = new AbortController();
    replica.positions.app = at(0);
    const reading = replica.read(await s.openStream('*', { app: at(0) }, abort.signal), (f) => f.type === 'db-created');
    await waitFor(() => calls.length === 1 && replica.positions.app?.txid === 2, 'the first catch-up and the first primary request');
    b.put(segmentKey('app', 1, 3, 3, T0), segment(3, 3));
    await waitFor(() => replica.positions.app?.txid === 3, 'the bucket to move the replica while the primary answers');
    release!();
    await reading;
    expect(calls.map((c) => c.positions.app?.txid)).toEqual([2, 3]);
    expect(calls[0]!.signal.aborted).toBe(true);
    expect(replica.frames.at(-1)).toEqual({ type: 'db-created', db: 'from-primary-2' });
    expect(replica.types().filter((t) => t.startsWith('changeset'))).toEqual(['changeset 1', 'changeset 2', 'changeset 3']);
    expect(s.feeding).toBe('primary');
    expect(s.primaryStreams).toBe(1);
    abort.abort();
  });
});
