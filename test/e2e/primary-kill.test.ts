/**
 * kill -9 loses nothing (docs/ARCHITECTURE.md#the-log-and-snapshots): a real primary process under a concurrent HTTP write workload is
 * SIGKILLed at a random moment and restarted on the same data directory. Every acknowledged write must
 * be there, the log must hold consecutive txids whose checksums chain from the generation start to the
 * database as it is, replaying the log onto the generation's start image must give the database page
 * for page, and the generation must not change.
 */
import Database from 'better-sqlite3';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { decodeChangeSet } from '../../shared/changeset.ts';
import { decodeToken } from '../../shared/token.ts';
import { formatChecksum, parseChecksum } from '../../shared/types.ts';
import { applyToImage, diffPages, prng, seedFromEnv, tempDir } from '../helpers.ts';
import { processesAfterEach, runProcess, type EdgeliteProcess } from '../kit/spawn.ts';
import { FrameStream } from '../kit/stream.ts';

const LONG = process.env.EDGELITE_LONG === '1';
const DB = 'kill';
const CLIENTS = 4;

interface Scenario {
  name: string;
  flags: string[];
  rounds: number;
}

const SCENARIOS: Scenario[] = [
  { name: 'synchronous=normal', flags: [], rounds: LONG ? 50 : 3 },
  { name: 'synchronous=full', flags: ['--synchronous', 'full'], rounds: LONG ? 20 : 1 },
  // A checkpoint after every capture: every write restarts the WAL, so a kill between a commit and its
  // capture leaves the uncaptured transaction in a restarted WAL.
  { name: 'WAL restarted by every write', flags: ['--checkpoint-frames', '1'], rounds: LONG ? 30 : 2 },
];

const { procs, cleanups } = processesAfterEach();

function startPrimary(dir: string, flags: string[]): Promise<EdgeliteProcess> {
  return procs.primary(dir, '127.0.0.1:0', flags);
}

/** kill SIGKILLs the primary and checks that the signal, not a clean exit, ended it. */
function kill(p: EdgeliteProcess): Promise<void> {
  return procs.stop(p, 'SIGKILL');
}

async function http(url: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function snapshot(url: string): Promise<{ image: Uint8Array; checksum: string; txid: number }> {
  const res = await fetch(`${url}/v1/db/${DB}/snapshot`);
  expect(res.status).toBe(200);
  return {
    image: new Uint8Array(await res.arrayBuffer()),
    checksum: res.headers.get('edgelite-checksum')!,
    txid: Number(res.headers.get('edgelite-txid')),
  };
}

/** runWorkload inserts rows with unique ids from CLIENTS concurrent clients until the process dies. */
function runWorkload(url: string, rand: () => number, next: { id: number }, acked: Map<number, number>): Promise<number> {
  let failures = 0;
  const client = async () => {
    for (;;) {
      const id = next.id++;
      const size = rand() < 0.1 ? 3000 + Math.floor(rand() * 9000) : Math.floor(rand() * 200);
      let status: number;
      let body: { token?: string };
      try {
        const res = await fetch(`${url}/v1/db/${DB}/exec`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ sql: 'INSERT INTO t (id, v) VALUES (?, randomblob(?))', params: [id, size] }),
        });
        status = res.status;
        body = (await res.json()) as { token?: string };
      } catch {
        // The primary died under this request: it may or may not have committed; nothing was acknowledged.
        failures++;
        return;
      }
      if (status !== 200 || !body.token) throw new Error(`write ${id} answered ${status}: ${JSON.stringify(body)}`);
      acked.set(id, decodeToken(body.token).txid);
    }
  };
  return Promise.all(Array.from({ length: CLIENTS }, client)).then(() => failures);
}

/**
 * verifyLog streams the log from the generation start and checks it: consecutive txids, each change
 * set's pre-checksum the previous one's post-checksum, the last one the database's checksum; replaying
 * it onto the start image gives the database's snapshot page for page.
 */
async function verifyLog(url: string, dir: string, startImage: Uint8Array, seed: number): Promise<{ records: number }> {
  const meta = JSON.parse(readFileSync(join(dir, '.edgelite', DB, 'meta.json'), 'utf8')) as { generation: number; startTxid: number; startChecksum: string };
  const info = (await http(url, 'GET', `/v1/db/${DB}`)).json as { generation: number; txid: number; checksum: string };
  const stream = await FrameStream.open(url, {
    databases: [DB],
    positions: { [DB]: { generation: meta.generation, txid: meta.startTxid, checksum: meta.startChecksum } },
  });
  let records = 0;
  try {
    const readyAt = await stream.waitFor((f) => f.type === 'ready' && f.db === DB);
    // Fetched before the (synchronous) replay below, which may run longer than a keep-alive timeout.
    const snap = await snapshot(url);
    let txid = meta.startTxid;
    let checksum = parseChecksum(meta.startChecksum);
    let image = startImage;
    for (const f of stream.frames.slice(0, readyAt)) {
      expect(f.type, `seed ${seed}: unexpected frame ${JSON.stringify(f)}`).not.toBe('snapshot-needed');
      if (f.type !== 'changeset') continue;
      const cs = decodeChangeSet(f.data);
      expect(cs.generation, `seed ${seed}`).toBe(meta.generation);
      expect(cs.minTxid, `seed ${seed}: txid gap or repeat`).toBe(txid + 1);
      expect(formatChecksum(cs.preChecksum), `seed ${seed}: checksum chain broken at txid ${cs.minTxid}`).toBe(formatChecksum(checksum));
      image = applyToImage(image, cs);
      txid = cs.maxTxid;
      checksum = cs.postChecksum;
      records++;
    }
    expect(txid, `seed ${seed}`).toBe(info.txid);
    expect(formatChecksum(checksum), `seed ${seed}`).toBe(info.checksum);
    expect(snap.checksum).toBe(info.checksum);
    expect(diffPages(image, snap.image, 4096), `seed ${seed}`).toEqual([]);
    expect(formatChecksum(DatabaseChecksum.fromFile(image).value), `seed ${seed}`).toBe(info.checksum);
  } finally {
    stream.close();
  }
  return { records };
}

/**
 * walFullyBackfilled reads the wal-index (`-shm`, native byte order): mxFrame at offset 16 of the
 * header, nBackfill at offset 96 (first field of the checkpoint info after the two header copies).
 */
function walFullyBackfilled(shm: string): boolean {
  const b = readFileSync(shm);
  const mxFrame = b.readUInt32LE(16);
  return mxFrame > 0 && b.readUInt32LE(96) === mxFrame;
}

describe('primary survives kill -9', () => {
  for (const scenario of SCENARIOS) {
    it(`keeps every acknowledged write and its generation (${scenario.name}, ${scenario.rounds} rounds)`, async () => {
      const seed = seedFromEnv();
      const rand = prng(seed);
      const t = tempDir('kill');
      cleanups.push(t.cleanup);
      let p = await startPrimary(t.dir, scenario.flags);
      expect((await http(p.url, 'PUT', `/v1/db/${DB}`)).status).toBe(201);
      const start = await snapshot(p.url);
      expect(start.txid).toBe(0);
      const created = await http(p.url, 'POST', `/v1/db/${DB}/exec`, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)' });
      expect(created.status).toBe(200);
      const generation = ((await http(p.url, 'GET', `/v1/db/${DB}`)).json as { generation: number }).generation;

      const acked = new Map<number, number>();
      const next = { id: 1 };
      const figures: string[] = [];
      for (let round = 0; round < scenario.rounds; round++) {
        const ackedBefore = acked.size;
        const workload = runWorkload(p.url, rand, next, acked);
        // Kill at a random moment, but only once this round has had writes acknowledged.
        const delay = 50 + Math.floor(rand() * 700);
        const t0 = Date.now();
        while (acked.size === ackedBefore || Date.now() - t0 < delay) await new Promise((r) => setTimeout(r, 5));
        await kill(p);
        const failed = await workload;
        const old = p;

        p = await startPrimary(t.dir, scenario.flags);
        const info = (await http(p.url, 'GET', `/v1/db/${DB}`)).json as { generation: number; txid: number };
        const context = `seed ${seed}, round ${round}\n${old.output()}\n${p.output()}`;
        expect(info.generation, `kill -9 started a new generation; ${context}`).toBe(generation);
        expect(p.logs.some((l) => l.msg === 'new generation'), context).toBe(false);
        const maxAcked = Math.max(...acked.values());
        expect(info.txid, context).toBeGreaterThanOrEqual(maxAcked);

        const rows = await http(p.url, 'POST', `/v1/db/${DB}/query`, { sql: 'SELECT id FROM t ORDER BY id' });
        const present = new Set(((rows.json.results as Array<{ rows: number[][] }>)[0]!.rows).map((r) => r[0]));
        const missing = [...acked.keys()].filter((id) => !present.has(id));
        expect(missing, `acknowledged writes lost; ${context}`).toEqual([]);

        const log = await verifyLog(p.url, t.dir, start.image, seed);
        const recovered = p.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('recovered transactions')).map((l) => `${l.count as number} ${l.msg as string}`);
        figures.push(`round ${round}: ${acked.size - ackedBefore} acked, ${failed} cut, txid ${info.txid}, ${log.records} records${recovered.length ? ` (${recovered.join(', ')})` : ''}`);
      }
      console.log(`[primary-kill ${scenario.name}] seed ${seed}\n  ${figures.join('\n  ')}`);
      await kill(p);
    });
  }

  it('continues the generation when the WAL was restarted by a write it had not captured', async () => {
    // Deterministic version of the race the random kills can hit: the primary checkpoints after every
    // capture, is frozen (SIGSTOP), another process commits (restarting the WAL), then it is killed.
    const t = tempDir('kill-restart');
    cleanups.push(t.cleanup);
    const flags = ['--checkpoint-frames', '1'];
    let p = await startPrimary(t.dir, flags);
    await http(p.url, 'PUT', `/v1/db/${DB}`);
    const start = await snapshot(p.url);
    await http(p.url, 'POST', `/v1/db/${DB}/exec`, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)' });
    const file = join(t.dir, `${DB}.db`);
    // Write until the primary's last checkpoint backfilled the whole WAL (the wal-index says so), so the
    // next writer restarts it.
    for (let id = 1; !walFullyBackfilled(`${file}-shm`); id++) {
      expect(id, 'the primary never checkpointed the whole WAL').toBeLessThan(20);
      expect((await http(p.url, 'POST', `/v1/db/${DB}/exec`, { sql: 'INSERT INTO t VALUES (?, randomblob(100))', params: [id] })).status).toBe(200);
    }
    const before = (await http(p.url, 'GET', `/v1/db/${DB}`)).json as { generation: number; txid: number };
    const salt = () => readFileSync(`${file}-wal`).readUInt32BE(16);
    const saltBefore = salt();

    process.kill(p.pid, 'SIGSTOP');
    const r = await runProcess('sqlite3', [file], 'PRAGMA busy_timeout=5000; INSERT INTO t VALUES (100, randomblob(5000));\n');
    expect(r.code, r.stderr).toBe(0);
    expect(salt(), 'precondition: the foreign write restarted the WAL').toBe((saltBefore + 1) >>> 0);
    // Killed while still stopped: it never gets to capture the foreign write.
    await kill(p);

    p = await startPrimary(t.dir, flags);
    const after = (await http(p.url, 'GET', `/v1/db/${DB}`)).json as { generation: number; txid: number };
    expect(after.generation, p.output()).toBe(before.generation);
    expect(after.txid).toBe(before.txid + 1);
    const rows = await http(p.url, 'POST', `/v1/db/${DB}/query`, { sql: 'SELECT count(*) FROM t WHERE id = 100' });
    expect((rows.json.results as Array<{ rows: number[][] }>)[0]!.rows).toEqual([[1]]);
    await verifyLog(p.url, t.dir, start.image, 0);
    writeFileSync(join(t.dir, 'after.db'), (await snapshot(p.url)).image);
    const check = await runProcess('sqlite3', [join(t.dir, 'after.db'), 'PRAGMA integrity_check;']);
    expect(check.stdout.trim()).toBe('ok');
    await kill(p);
  });

  it('starts a new generation when frames it never captured were checkpointed away while it was down', async () => {
    const t = tempDir('kill-lost');
    cleanups.push(t.cleanup);
    let p = await startPrimary(t.dir, []);
    await http(p.url, 'PUT', `/v1/db/${DB}`);
    await http(p.url, 'POST', `/v1/db/${DB}/exec`, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)' });
    await http(p.url, 'POST', `/v1/db/${DB}/exec`, { sql: 'INSERT INTO t VALUES (1, randomblob(100))' });
    const before = (await http(p.url, 'GET', `/v1/db/${DB}`)).json as { generation: number; txid: number; checksum: string };
    await kill(p);

    // While it is down: a write, a checkpoint that backfills it, and a write that restarts the WAL. The
    // first write's frames are gone from the WAL; nothing may pretend the new WAL follows the log.
    const file = join(t.dir, `${DB}.db`);
    const salt = () => readFileSync(`${file}-wal`).readUInt32BE(16);
    const saltBefore = salt();
    // This connection stays open until the primary runs again, so closing it does not delete the WAL.
    const foreign = new Database(file);
    try {
      foreign.pragma('wal_autocheckpoint = 0');
      foreign.exec('INSERT INTO t VALUES (200, randomblob(3000))');
      expect(foreign.pragma('wal_checkpoint(PASSIVE)')).toEqual([{ busy: 0, log: expect.any(Number), checkpointed: expect.any(Number) }]);
      foreign.exec('INSERT INTO t VALUES (201, randomblob(10))');
      expect(salt(), 'precondition: the WAL restarted').toBe((saltBefore + 1) >>> 0);

      p = await startPrimary(t.dir, []);
    } finally {
      foreign.close();
    }
    const after = (await http(p.url, 'GET', `/v1/db/${DB}`)).json as { generation: number; txid: number };
    expect(after.generation, p.output()).toBe(before.generation + 1);
    expect(after.txid).toBeGreaterThan(before.txid);
    const stream = await FrameStream.open(p.url, { databases: [DB], positions: { [DB]: { generation: before.generation, txid: before.txid, checksum: before.checksum } } });
    try {
      const i = await stream.waitFor((f) => f.type === 'snapshot-needed' || f.type === 'changeset' || f.type === 'ready');
      expect(stream.frames[i]!.type).toBe('snapshot-needed');
    } finally {
      stream.close();
    }
    const rows = await http(p.url, 'POST', `/v1/db/${DB}/query`, { sql: 'SELECT id FROM t ORDER BY id' });
    expect((rows.json.results as Array<{ rows: number[][] }>)[0]!.rows).toEqual([[1], [200], [201]]);
    await kill(p);
  });
});
