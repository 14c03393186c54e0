/**
 * SIGKILL mid-upload: a primary child process (the real CLI) backing up to a real S3-compatible server
 * (s3rver on 127.0.0.1) or to a file:// directory, under concurrent writers that record every write
 * the primary acknowledged (its txid from the token), is SIGKILLed at seeded-random moments while
 * uploads happen, and restarted on the same data directory, again and again. After every kill:
 *
 * - without `--backup-ack`: the restore to the uploaded txid the primary last reported (GET
 *   /v1/db/{name} `backup.uploadedTxid`, polled just before the kill) holds exactly the rows
 *   acknowledged with a txid at or below it (plus, at most, writes whose answer the kill cut off), with
 *   the checksum the primary answered for that txid; the restore of the latest upload holds no row
 *   that was not written, and the same prefix rule at its own txid;
 * - with `--backup-ack`: the restore of the latest upload holds every write ever acknowledged.
 *
 * Every restored file passes `integrity_check` (and the restore's own checksum check). CI mode: 20
 * rounds per case; EDGELITE_LONG=1: 60. Replay with EDGELITE_SEED=<printed seed>.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { parseBackupKey } from '../../shared/backup-layout.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { decodeToken } from '../../shared/token.ts';
import { parseBackupTarget, type ObjectStore } from '../../shared/object-store.ts';
import { openObjectStore } from '../../shared/node/open-object-store.ts';
import { restoreDatabase, type RestoreResult } from '../../primary/restore.ts';
import { prng, seedFromEnv, tempDir } from '../helpers.ts';
import { freePort, http, integrityCheck } from '../kit/api.ts';
import { rounds, roundsTimeout } from '../kit/rounds.ts';
import { spawnEdgelite, type EdgeliteProcess } from '../kit/spawn.ts';
import { sleep, waitFor } from '../kit/wait.ts';
import { PositionHistory } from './verify.ts';
import { S3_BUCKET, startS3, type S3Server } from '../integration/backup-kit.ts';

const DB = 'app';
const ROUNDS = rounds(20, 60);
const FILE_ROUNDS = rounds(3, 20);
const WRITERS = 3;
/** A round: about 2 s on a quiet machine, 3–4 s under a load of 8 on 2 cores (most of it the restart). */
const PER_ROUND_MS = 12_000;


/**
 * Writers runs `n` concurrent loops of single-row inserts (ids from one counter) and sorts every write
 * by what its answer proves: acknowledged (200, with the txid of its token), applied but not
 * acknowledged (504 BACKUP_PENDING), never sent (connection refused), or unknown (no answer: the
 * kill cut it off, so it may or may not have committed).
 */
class Writers {
  readonly acked = new Map<number, number>();
  /** When each acknowledged write's answer came (Date.now()). */
  readonly ackedAt = new Map<number, number>();
  readonly applied = new Set<number>();
  readonly unknown = new Set<number>();
  readonly history = new PositionHistory();
  refused = 0;
  #next = 1;
  #stopped = false;
  #error: unknown = null;
  readonly #loops: Promise<void>[];

  constructor(readonly url: string, n: number, readonly random: () => number) {
    this.#loops = Array.from({ length: n }, () => this.#run());
  }

  get error(): unknown {
    return this.#error;
  }

  async #run(): Promise<void> {
    while (!this.#stopped && this.#error === null) {
      const id = this.#next++;
      const body = 'b'.repeat(20 + Math.floor(this.random() * 400));
      let res: Response;
      try {
        res = await fetch(`${this.url}/v1/db/${DB}/exec`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ sql: 'INSERT INTO items (id, body) VALUES (?, ?)', params: [id, body] }),
        });
      } catch (err) {
        if ((err as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED') this.refused++;
        else this.unknown.add(id);
        await sleep(50);
        continue;
      }
      const text = await res.text().catch(() => null);
      if (text === null) {
        this.unknown.add(id); // headers came, the body did not: the kill cut the answer
        continue;
      }
      if (res.status === 200) {
        const token = decodeToken(JSON.parse(text).token as string);
        this.acked.set(id, token.txid);
        this.ackedAt.set(id, Date.now());
        this.history.recordFrom(res.headers);
      } else if (res.status === 504 && JSON.parse(text).error?.code === 'BACKUP_PENDING') {
        this.applied.add(id);
      } else {
        this.#error = new Error(`write ${id} answered ${res.status}: ${text}`);
      }
      await sleep(2);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#loops);
  }
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

interface Case {
  store: 's3' | 'file';
  ack: boolean;
  rounds: number;
}

/** restoredIds restores `target` to a fresh file and returns the result, its ids and its integrity_check. */
async function restore(objects: ObjectStore, dir: string, target: { txid: number } | { latest: true }): Promise<{ result: RestoreResult; ids: Set<number>; integrity: string }> {
  const out = join(dir, `restore-${Math.random().toString(36).slice(2)}.db`);
  try {
    const result = await restoreDatabase(objects, { db: DB, target, out });
    const conn = new Database(out, { readonly: true, fileMustExist: true });
    let ids: Set<number>;
    try {
      ids = new Set(conn.prepare('SELECT id FROM items').pluck().all() as number[]);
    } finally {
      conn.close();
    }
    return { result, ids, integrity: integrityCheck(out) };
  } finally {
    rmSync(out, { force: true });
  }
}

/**
 * restoreLatest restores the newest state the bucket holds. s3rver's PUTs are not atomic (it keeps what
 * arrived), so the upload a kill cut short can leave its object torn; `restore` reports that one
 * (BACKUP_CORRUPT naming it) and it must be the newest segment, whose writes were never acknowledged
 * as uploaded: then the state just before it is the latest the bucket holds.
 */
async function restoreLatest(objects: ObjectStore, dir: string): Promise<{ latest: Awaited<ReturnType<typeof restore>>; tornKey: string | null }> {
  try {
    return { latest: await restore(objects, dir, { latest: true }), tornKey: null };
  } catch (err) {
    if (!(err instanceof EdgeliteError && err.code === 'BACKUP_CORRUPT')) throw err;
    const all = (await objects.list(`${DB}/`)).map(parseBackupKey).filter((o) => o !== null);
    const segments = all.filter((o) => o.kind === 'segment');
    const newest = segments.reduce((a, b) => (b.maxTxid > a.maxTxid ? b : a));
    expect(err.details?.key, err.message).toBe(newest.key);
    expect(all.every((o) => o.kind === 'segment' || o.txid < newest.minTxid)).toBe(true);
    return { latest: await restore(objects, dir, { txid: newest.minTxid - 1 }), tornKey: newest.key };
  }
}

/**
 * prefixViolations checks a restore at `txid` against what the writers know: every write acknowledged
 * at or below it is there, none acknowledged above it is, and every row there was written.
 */
function prefixViolations(w: Writers, txid: number, ids: Set<number>): { missing: number[]; ahead: number[]; foreign: number[] } {
  const missing: number[] = [];
  const ahead: number[] = [];
  for (const [id, t] of w.acked) {
    if (t <= txid && !ids.has(id)) missing.push(id);
    if (t > txid && ids.has(id)) ahead.push(id);
  }
  const foreign = [...ids].filter((id) => !w.acked.has(id) && !w.applied.has(id) && !w.unknown.has(id));
  return { missing, ahead, foreign };
}

/** killLoop runs one case; it stops what it started itself, since the cases run concurrently. */
async function killLoop(c: Case): Promise<void> {
  const live: { primary: EdgeliteProcess | null } = { primary: null };
  const cleanups: Array<() => Promise<void> | void> = [];
  try {
    await runRounds(c, cleanups, (p) => (live.primary = p));
  } finally {
    await live.primary?.kill('SIGKILL');
    for (const cleanup of cleanups.reverse()) await cleanup();
  }
}

async function runRounds(c: Case, cleanups: Array<() => Promise<void> | void>, track: (p: EdgeliteProcess | null) => void): Promise<void> {
  const seed = seedFromEnv();
  const random = prng(seed);
  const name = `${c.store}${c.ack ? ' --backup-ack' : ''}`;
  console.log(`backup kill (${name}): EDGELITE_SEED=${seed} rounds=${c.rounds}`);
  const t = tempDir('backup-kill');
  cleanups.push(t.cleanup);
  const dataDir = join(t.dir, 'data');
  const restoreDir = join(t.dir, 'restores');
  mkdirSync(restoreDir);
  let url: string;
  let env: Record<string, string> = {};
  if (c.store === 's3') {
    const s3: S3Server = await startS3();
    cleanups.push(() => s3.close());
    env = s3.env;
    url = `s3://${S3_BUCKET}/kill`;
  } else {
    url = `file://${join(t.dir, 'bucket')}`;
  }
  const objects = openObjectStore(parseBackupTarget(url, env));
  const listen = `127.0.0.1:${await freePort()}`;
  // Writes on the primary's thread (`--query-timeout-ms 0`): a restarted primary takes writes at once,
  // instead of after its first query process has started, which would double a round's time.
  const args = ['primary', '--data', dataDir, '--listen', listen, '--query-timeout-ms', '0', '--backup', url, '--backup-interval', '100ms', ...(c.ack ? ['--backup-ack'] : [])];
  const start = async (): Promise<EdgeliteProcess> => {
    const p = await spawnEdgelite(args, env);
    track(p);
    return p;
  };

  let primary = await start();
  expect((await http(primary.url, 'PUT', `/v1/db/${DB}`)).status).toBe(201);
  expect((await http(primary.url, 'POST', `/v1/db/${DB}/exec`, { sql: 'CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL)' })).status).toBe(200);
  // The database's first upload (its snapshot holding the table), so every reported txid is restorable.
  await waitFor(async () => ((await http(primary.url, 'GET', `/v1/db/${DB}`)).json.backup.uploadedTxid as number) >= 1, 'the first upload');
  const writers = new Writers(primary.url, WRITERS, random);
  const started = Date.now();
  const stats = { behind: 0, checksums: 0, restores: 0, maxObjects: 0, restoreMs: 0, restartMs: 0, torn: 0 };
  /** The newest restorable txid so far: the bucket never goes back, and a restarted primary must see it. */
  let restorable = 0;
  let torn: string | null = null;
  const cutOffRestored = new Set<number>();
  /**
   * At each last poll: the acknowledged writes not in the bucket yet (what losing the disk then would
   * have lost), how many and how long ago the oldest of them was acknowledged.
   */
  const exposed: Array<{ writes: number; oldestMs: number }> = [];
  const log: string[] = [];
  try {
    for (let round = 0; round < c.rounds; round++) {
      const progress = writers.acked.size;
      await waitFor(() => writers.acked.size >= progress + 3 || writers.error, `writes to go on before round ${round}`, 30_000);
      // A restarted primary reports 0 until its first pass has read what the bucket holds.
      await waitFor(async () => ((await http(primary.url, 'GET', `/v1/db/${DB}`)).json.backup.uploadedTxid as number) >= restorable, `the backup to be picked up again before round ${round}`, 30_000);
      if (torn !== null) {
        // The object the last kill cut short is gone (or whole): the primary dropped it when it picked the backup up.
        const bytes = await objects.get(torn);
        expect(bytes === null || bytes.length > 0, `${torn} still torn`).toBe(true);
        torn = null;
      }
      expect(writers.error ?? null).toBeNull();
      await sleep(50 + random() * 400);
      const ackedBefore = [...writers.acked];
      const polledAt = Date.now();
      const before = await http(primary.url, 'GET', `/v1/db/${DB}`);
      const reported = before.json.backup.uploadedTxid as number;
      await primary.kill('SIGKILL');
      track(null);
      const t1 = Date.now();
      const unknownAtKill = writers.unknown.size;
      if (reported < (before.json.txid as number)) stats.behind++;
      const notUploaded = ackedBefore.filter(([, t]) => t > reported).map(([id]) => polledAt - writers.ackedAt.get(id)!);
      exposed.push({ writes: notUploaded.length, oldestMs: Math.max(0, ...notUploaded) });
      // With --backup-ack the primary's own report agrees: nothing acknowledged before the poll is above it.
      if (c.ack) expect(notUploaded, `acknowledged writes above the reported uploaded txid ${reported}`).toEqual([]);

      // The primary is gone: the bucket holds what it holds. Writes fail (connection refused) until the restart.
      if (!c.ack) {
        const at = await restore(objects, restoreDir, { txid: reported });
        expect(at.result.txid).toBe(reported);
        expect(at.integrity).toBe('ok');
        const v = prefixViolations(writers, reported, at.ids);
        expect(v, `restore to the reported uploaded txid ${reported}, round ${round} (seed ${seed})`).toEqual({ missing: [], ahead: [], foreign: [] });
        const want = writers.history.get(reported);
        if (want !== undefined) {
          expect(at.result.checksum).toBe(want);
          stats.checksums++;
        }
        for (const id of at.ids) if (!writers.acked.has(id)) cutOffRestored.add(id);
        stats.restores++;
      }
      const { latest, tornKey } = await restoreLatest(objects, restoreDir);
      if (tornKey !== null) stats.torn++;
      torn = tornKey;
      restorable = latest.result.txid;
      expect(latest.integrity).toBe('ok');
      expect(latest.result.txid).toBeGreaterThanOrEqual(reported);
      const v = prefixViolations(writers, latest.result.txid, latest.ids);
      expect(v, `restore of the latest upload (txid ${latest.result.txid}), round ${round} (seed ${seed})`).toEqual({ missing: [], ahead: [], foreign: [] });
      if (c.ack) {
        const lost = [...writers.acked.keys()].filter((id) => !latest.ids.has(id));
        expect(lost, `acknowledged writes missing from the bucket after kill ${round} (seed ${seed})`).toEqual([]);
      }
      stats.restores++;
      stats.maxObjects = Math.max(stats.maxObjects, latest.result.objects);
      log.push(`${round}:${reported}/${before.json.txid}→${latest.result.txid}${writers.unknown.size > unknownAtKill ? `+${writers.unknown.size - unknownAtKill}?` : ''}`);

      const t2 = Date.now();
      stats.restoreMs += t2 - t1;
      await sleep(random() * 200);
      primary = await start();
      stats.restartMs += Date.now() - t2;
    }
  } finally {
    await writers.stop();
  }
  expect(writers.error ?? null).toBeNull();
  console.log(
    `backup kill (${name}): ${log.join(' ')}\n  ${c.rounds} kills in ${((Date.now() - started) / 1000).toFixed(1)} s, ${stats.behind} with the backup behind the primary at the last poll; ` +
      `${writers.acked.size} acknowledged writes, ${writers.applied.size} answered BACKUP_PENDING, ${writers.unknown.size} cut off by a kill (${cutOffRestored.size} of them found restored), ${writers.refused} refused while down; ` +
      `${stats.restores} restores (largest: ${stats.maxObjects} objects, ${Math.round(stats.restoreMs / c.rounds)} ms a round), ${stats.checksums} checksums compared with the primary's answer; restarts ${Math.round(stats.restartMs / c.rounds)} ms each; ${stats.torn} kills left the upload they cut short torn in the bucket; ` +
      `acknowledged writes not in the bucket at the last poll: median ${median(exposed.map((e) => e.writes))}, max ${Math.max(...exposed.map((e) => e.writes))}; the oldest of them acknowledged median ${median(exposed.map((e) => e.oldestMs))} ms, max ${Math.max(...exposed.map((e) => e.oldestMs))} ms before`,
  );
}

// The cases run side by side: a round is mostly a restart (a process starting), which leaves a core idle.
describe.concurrent('backup: SIGKILL the primary mid-upload', () => {
  it(`s3, without --backup-ack (${ROUNDS} kills): a restore to the reported uploaded txid holds exactly the writes acknowledged up to it`, async () => {
    await killLoop({ store: 's3', ack: false, rounds: ROUNDS });
  }, roundsTimeout(ROUNDS, PER_ROUND_MS));

  it(`s3, --backup-ack (${ROUNDS} kills): the latest restore holds every acknowledged write`, async () => {
    await killLoop({ store: 's3', ack: true, rounds: ROUNDS });
  }, roundsTimeout(ROUNDS, PER_ROUND_MS));

  it(`file://, --backup-ack (${FILE_ROUNDS} kills): the latest restore holds every acknowledged write`, async () => {
    await killLoop({ store: 'file', ack: true, rounds: FILE_ROUNDS });
  }, roundsTimeout(FILE_ROUNDS, PER_ROUND_MS));
});
