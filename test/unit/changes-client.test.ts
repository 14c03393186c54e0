/**
 * RangeCatchUp (shared/changes-client.ts) against a real HTTP server on port 0 that answers range
 * requests the way a primary, or a damaged cache in front of it, would: it follows the 308 to the
 * aligned start, skips what the replica already has, passes on only change sets that decode and chain,
 * re-asks a damaged or non-fitting range once with ?fresh=, and stops at USE_STREAM, a second failure
 * or a redirect elsewhere, never passing on a frame it did not verify.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RangeCatchUp, type RangeStats } from '../../shared/changes-client.ts';
import { changesPath } from '../../shared/changes.ts';
import { decodeChangeSet, encodeChangeSet } from '../../shared/changeset.ts';
import { FrameDecoder } from '../../shared/frames.ts';
import type { Position } from '../../shared/types.ts';

const DB = 'app';
/** Change sets 1..6 of one chain: txid n goes from checksum n-1 to n. */
const SETS = Array.from({ length: 6 }, (_, i) =>
  encodeChangeSet({
    databaseId: 7,
    pageSize: 512,
    generation: 1,
    minTxid: i + 1,
    maxTxid: i + 1,
    commit: 2,
    timestamp: 1000 + i,
    preChecksum: BigInt(i),
    postChecksum: BigInt(i + 1),
    pages: [{ pgno: 2, data: new Uint8Array(512).fill(i + 1) }],
  }),
);
const body = (from: number, to: number) => Buffer.concat(SETS.slice(from - 1, to));

/** How the server answers the second range (4..6) when asked without ?fresh= (a cache) and with it (the primary). */
let second: { cached: 'good' | 'flipped' | 'cut' | 'short'; fresh: 'good' | 'flipped' } = { cached: 'good', fresh: 'good' };
let redirectTo = changesPath(DB, 1, 1);
/** A stale redirect: txid 7 sent back to the range 4..6. */
let staleSeven = false;
const seen: string[] = [];
let server: Server;
let url: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    const path = req.url ?? '';
    seen.push(path);
    const fresh = path.includes('?fresh=');
    const plain = path.split('?')[0];
    const range = (from: number, to: number, bytes: Buffer, txids = `${from}-${to}`) => {
      res.writeHead(200, { 'content-type': 'application/vnd.edgelite.changes', 'edgelite-txids': txids });
      res.end(bytes);
    };
    if (plain === changesPath(DB, 1, 1)) return range(1, 3, body(1, 3));
    if (plain === changesPath(DB, 1, 7) && staleSeven) return res.writeHead(308, { location: changesPath(DB, 1, 4) }).end();
    const query = fresh ? path.slice(path.indexOf('?')) : '';
    if (plain === changesPath(DB, 1, 2) || plain === changesPath(DB, 1, 3)) return res.writeHead(308, { location: redirectTo }).end();
    if (plain === changesPath(DB, 1, 5) || plain === changesPath(DB, 1, 6)) return res.writeHead(308, { location: changesPath(DB, 1, 4) + query }).end();
    if (plain === changesPath(DB, 1, 4)) {
      const how = fresh ? second.fresh : second.cached;
      const good = body(4, 6);
      if (how === 'good') return range(4, 6, good);
      if (how === 'flipped') {
        const bad = Buffer.from(good);
        bad[SETS[0]!.length + 100]! ^= 1; // inside change set 5
        return range(4, 6, bad);
      }
      if (how === 'cut') return range(4, 6, good.subarray(0, good.length - 10));
      return range(4, 6, body(4, 5)); // cut at a change-set boundary, the header still saying 4-6
    }
    res.writeHead(409, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'USE_STREAM', message: 'the tail is the stream' } }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

beforeEach(() => {
  seen.length = 0;
  second = { cached: 'good', fresh: 'good' };
  redirectTo = changesPath(DB, 1, 1);
  staleSeven = false;
});

/** read runs a RangeCatchUp from `from` and returns the txids of the change sets it passed on. */
async function read(from: Position): Promise<{ txids: number[]; run: RangeCatchUp; stats: RangeStats }> {
  const stats: RangeStats = { ranges: 0, changeSets: 0, damaged: 0, fresh: 0 };
  const get = (path: string, fresh: boolean) => fetch(url + path, { redirect: 'manual', headers: fresh ? { 'cache-control': 'no-cache' } : {} });
  const run = new RangeCatchUp(DB, from, get, stats, new AbortController().signal);
  const decoder = new FrameDecoder();
  const txids: number[] = [];
  for await (const chunk of run.frames()) {
    for (const f of decoder.push(chunk)) if (f.type === 'changeset' && f.db === DB) txids.push(decodeChangeSet(f.data).minTxid);
  }
  return { txids, run, stats };
}

const at = (txid: number, checksum = BigInt(txid)): Position => ({ generation: 1, txid, checksum });

describe('RangeCatchUp', () => {
  it('follows the redirect to the aligned start, skips what the replica holds, and stops at USE_STREAM', async () => {
    const { txids, run, stats } = await read(at(1));
    expect(txids).toEqual([2, 3, 4, 5, 6]);
    expect(run.position).toEqual(at(6));
    expect(run.stoppedBy).toBe('USE_STREAM');
    expect(stats).toEqual({ ranges: 2, changeSets: 5, damaged: 0, fresh: 0 });
    expect(seen).toEqual([changesPath(DB, 1, 2), changesPath(DB, 1, 1), changesPath(DB, 1, 4), changesPath(DB, 1, 7)]);
  });

  for (const cached of ['flipped', 'cut', 'short'] as const) {
    it(`refuses a ${cached} cached range from the damage on and reads it again past the cache`, async () => {
      second = { cached, fresh: 'good' };
      const { txids, run, stats } = await read(at(3));
      expect(txids).toEqual([4, 5, 6]);
      expect(run.position).toEqual(at(6));
      expect(stats).toMatchObject({ ranges: 1, damaged: 1 });
      expect(seen.filter((p) => p.startsWith(`${changesPath(DB, 1, 4)}?fresh=`))).toHaveLength(1);
    });
  }

  it('stops, passing on nothing more, when the fresh answer is damaged too', async () => {
    second = { cached: 'flipped', fresh: 'flipped' };
    const { txids, run } = await read(at(3));
    expect(txids).toEqual([4]); // change set 4 is intact and in the chain; 5 is where the damage is
    expect([run.position, run.stoppedBy]).toEqual([at(4), 'damaged']);
  });

  it('passes on nothing that does not continue the replica\'s checksum', async () => {
    const { txids, run, stats } = await read(at(3, 999n));
    expect(txids).toEqual([]);
    expect([run.position, run.stoppedBy]).toEqual([at(3, 999n), 'damaged']);
    expect(stats).toMatchObject({ ranges: 0, damaged: 2, fresh: 1 });
  });

  it('stops at a range that takes it nowhere instead of asking for it for ever', async () => {
    staleSeven = true;
    const { txids, run } = await read(at(6));
    expect([txids, run.position, run.stoppedBy]).toEqual([[], at(6), 'no progress']);
    expect(seen).toEqual([changesPath(DB, 1, 7), changesPath(DB, 1, 4)]);
  });

  it('does not follow a redirect to another database', async () => {
    redirectTo = changesPath('other', 1, 1);
    const { txids, run } = await read(at(1));
    expect([txids, run.stoppedBy]).toEqual([[], 'bad redirect 308']);
  });
});
