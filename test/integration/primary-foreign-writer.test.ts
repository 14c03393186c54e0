/**
 * Other processes writing the primary's database file directly (docs/ARCHITECTURE.md#capture-rules): Python's sqlite3 module
 * (SQLite 3.40.1, a different build from better-sqlite3's) commits thousands of small random
 * transactions — DDL, blobs, deletes, VACUUM — with its own auto-checkpoint left on, while the primary
 * writes through its API at the same time. The read lock must make the foreign checkpoints harmless:
 * the log from the generation start, replayed onto the start image, must give the primary's database
 * page for page, in the same generation. Foreign commits must be captured with no primary write to
 * trigger it (directory watch / poll). The sqlite3 CLI is tried as a writer too.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { decodeChangeSet } from '../../shared/changeset.ts';
import { parseStatementsBody } from '../../shared/protocol.ts';
import { decodeCursor } from '../../primary/capture.ts';
import type { PrimaryDatabase } from '../../primary/database.ts';
import { PrimaryStore } from '../../primary/store.ts';
import { runProcess } from '../kit/spawn.ts';
import { applyToImage, diffPages, prng, seedFromEnv, tempDir } from '../helpers.ts';
import { rounds, roundsTimeout } from '../kit/rounds.ts';
import { sleep, waitFor } from '../kit/wait.ts';

/** PY_WRITES: commits of the Python writer (30 ms each allowed in the time limit). */
const PY_WRITES = rounds(1500, 6000);

/**
 * PY_WRITER commits random transactions to argv[1] and reports on stdout, one JSON line each:
 * `{"commits": n, "time": ms}` after the batch of argv[3] transactions, then one line per "go" read
 * from stdin (a single commit each, for measuring capture latency), `{"bye": n}` at EOF. Every
 * transaction bumps py_meta.n, so each commit is exactly one WAL commit (VACUUM writes one too).
 */
const PY_WRITER = String.raw`
import json, random, sqlite3, sys, time
path, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
con = sqlite3.connect(path, isolation_level=None, timeout=30)
con.execute('PRAGMA busy_timeout = 30000')
assert con.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
assert con.execute('PRAGMA wal_autocheckpoint').fetchone()[0] == 1000
con.execute('CREATE TABLE IF NOT EXISTS py_meta (id INTEGER PRIMARY KEY, n INTEGER)')
con.execute('INSERT OR IGNORE INTO py_meta VALUES (1, 0)')
commits = 2
def blob():
    n = rnd.randint(5000, 20000) if rnd.random() < 0.1 else rnd.randint(0, 300)
    return rnd.randbytes(n)
def body(step):
    t = 'p%d' % rnd.randint(0, 3)
    con.execute('CREATE TABLE IF NOT EXISTS %s (id INTEGER PRIMARY KEY, k TEXT, v BLOB)' % t)
    r = rnd.random()
    if r < 0.03:
        con.execute('DROP TABLE %s' % t)
    elif r < 0.06:
        con.execute('CREATE INDEX IF NOT EXISTS %s_k ON %s(k)' % (t, t))
    elif r < 0.07:
        cols = [c[1] for c in con.execute('PRAGMA table_info(%s)' % t)]
        if len(cols) < 8:
            con.execute('ALTER TABLE %s ADD COLUMN c%d TEXT DEFAULT %d' % (t, len(cols), step))
    else:
        for i in range(rnd.randint(1, 5)):
            q = rnd.random()
            if q < 0.6:
                con.execute('INSERT INTO %s (k, v) VALUES (?, ?)' % t, ('k%d-%d' % (step, i), blob()))
            elif q < 0.85:
                con.execute('UPDATE %s SET k = ?, v = ? WHERE id %% 7 = ?' % t, ('u%d' % step, blob(), rnd.randint(0, 6)))
            else:
                con.execute('DELETE FROM %s WHERE id %% 5 = ?' % t, (rnd.randint(0, 4),))
def spilled_rollback(step):
    # A transaction bigger than the page cache spills uncommitted frames into the WAL, then rolls
    # back: those frames stay in the file (valid salts and checksums, no commit frame) until the next
    # transaction overwrites them. They must never be shipped.
    con.execute('PRAGMA cache_size = 5')
    con.execute('BEGIN IMMEDIATE')
    con.execute('CREATE TABLE IF NOT EXISTS p0 (id INTEGER PRIMARY KEY, k TEXT, v BLOB)')
    for i in range(40):
        con.execute('INSERT INTO p0 (k, v) VALUES (?, ?)', ('spill%d' % step, rnd.randbytes(3000)))
    con.execute('ROLLBACK')
    con.execute('PRAGMA cache_size = -2000')
def transaction(step):
    global commits
    if rnd.random() < 0.01:
        spilled_rollback(step)
    if rnd.random() < 0.005:
        con.execute('VACUUM')
        commits += 1
        return
    while True:
        try:
            con.execute('BEGIN IMMEDIATE' if rnd.random() < 0.5 else 'BEGIN')
            con.execute('UPDATE py_meta SET n = n + 1 WHERE id = 1')
            body(step)
            con.execute('COMMIT')
            commits += 1
            return
        except sqlite3.OperationalError as e:
            if 'locked' not in str(e) and 'busy' not in str(e):
                raise
            if con.in_transaction:
                con.execute('ROLLBACK')
for step in range(count):
    transaction(step)
    if rnd.random() < 0.2:
        time.sleep(rnd.random() / 500)
print(json.dumps({'commits': commits, 'time': time.time() * 1000}), flush=True)
for line in sys.stdin:
    transaction(count)
    print(json.dumps({'commits': commits, 'time': time.time() * 1000}), flush=True)
con.close()
print(json.dumps({'bye': commits}), flush=True)
`;

interface PyReport {
  commits: number;
  time: number;
}

/** PyWriter runs PY_WRITER as a child process and hands out its report lines in order. */
class PyWriter {
  readonly #proc;
  readonly #lines: PyReport[] = [];
  readonly #waiting: Array<(r: PyReport) => void> = [];
  #stderr = '';
  readonly exited: Promise<number | null>;

  constructor(file: string, seed: number, count: number) {
    this.#proc = spawn('python3', ['-c', PY_WRITER, file, String(seed), String(count)], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#proc.stderr.setEncoding('utf8').on('data', (s: string) => (this.#stderr += s));
    createInterface({ input: this.#proc.stdout }).on('line', (line) => {
      const r = JSON.parse(line) as PyReport;
      const w = this.#waiting.shift();
      if (w) w(r);
      else this.#lines.push(r);
    });
    this.exited = new Promise((resolve) => this.#proc.once('exit', (code) => resolve(code)));
  }

  get stderr(): string {
    return this.#stderr;
  }

  next(): Promise<PyReport> {
    const r = this.#lines.shift();
    if (r) return Promise.resolve(r);
    return new Promise((resolve, reject) => {
      this.#waiting.push(resolve);
      void this.exited.then((code) => reject(new Error(`python writer exited (${code}):\n${this.#stderr}`)));
    });
  }

  /** commitOne asks for one more transaction. */
  commitOne(): void {
    this.#proc.stdin.write('go\n');
  }

  async end(): Promise<void> {
    this.#proc.stdin.end();
    const code = await this.exited;
    if (code !== 0) throw new Error(`python writer exited with ${code}:\n${this.#stderr}`);
  }

  kill(): void {
    this.#proc.kill('SIGKILL');
  }
}

function openStore(dir: string, events: Array<Record<string, unknown>>): PrimaryStore {
  return new PrimaryStore(dir, {
    synchronous: 'normal',
    busyTimeoutMs: 30_000,
    compress: false,
    // Above Python's auto-checkpoint threshold (1000 frames), so Python's checkpoints run against our
    // read mark before ours restart the WAL, several times per run.
    checkpointFrames: 1500,
    pollIntervalMs: 100,
    log: {},
    logger: (e) => events.push(e),
  }).open();
}

/** snapshotImage is the primary's database image at its current position. */
function snapshotImage(db: PrimaryDatabase): Uint8Array {
  const view = db.beginSnapshot();
  try {
    return view.readPages(1, view.pageCount);
  } finally {
    view.end();
  }
}

/** currentChecksum is the checksum of the database as a fresh connection sees it right now. */
function currentChecksum(file: string): bigint {
  const conn = new Database(file, { readonly: true });
  try {
    const pages = conn.prepare('SELECT pgno, data FROM sqlite_dbpage').all() as Array<{ pgno: number; data: Uint8Array }>;
    return DatabaseChecksum.fromPages(4096, pages).value;
  } finally {
    conn.close();
  }
}

/**
 * verifyReplay replays the log from `start` onto `startImage` and checks it against the primary's
 * database: consecutive txids, chained checksums, equal pages, integrity. Returns the record count.
 */
function verifyReplay(db: PrimaryDatabase, start: { generation: number; txid: number; checksum: bigint }, startImage: Uint8Array, dir: string, seed: number): { records: number; walRestarts: number } {
  const records = db.log.iterateSince(start.generation, start.txid, Number.MAX_SAFE_INTEGER);
  expect(records, `seed ${seed}`).not.toBeNull();
  let image = startImage;
  let txid = start.txid;
  const salts = new Set<number>();
  let checksum = start.checksum;
  for (const rec of records!) {
    const cs = decodeChangeSet(rec.payload);
    salts.add(decodeCursor(rec.meta)!.salt1);
    expect(cs.minTxid, `seed ${seed}: txid gap`).toBe(txid + 1);
    expect(cs.preChecksum, `seed ${seed}: checksum chain at txid ${cs.minTxid}`).toBe(checksum);
    image = applyToImage(image, cs);
    txid = cs.maxTxid;
    checksum = cs.postChecksum;
  }
  expect(txid, `seed ${seed}`).toBe(db.position.txid);
  const primaryImage = snapshotImage(db);
  expect(diffPages(image, primaryImage, db.pageSize), `seed ${seed}`).toEqual([]);
  expect(DatabaseChecksum.fromFile(image).value, `seed ${seed}`).toBe(db.position.checksum);
  expect(DatabaseChecksum.fromFile(primaryImage).value, `seed ${seed}`).toBe(db.position.checksum);
  const file = join(dir, 'replayed.db');
  writeFileSync(file, image);
  const replayed = new Database(file, { readonly: true });
  try {
    expect(replayed.pragma('integrity_check', { simple: true })).toBe('ok');
  } finally {
    replayed.close();
  }
  return { records: records!.length, walRestarts: salts.size - 1 };
}

/** now is wall-clock time with sub-millisecond resolution, comparable with Python's time.time(). */
const now = () => performance.timeOrigin + performance.now();

describe('primary with foreign writers', () => {
  let cleanup: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanup.reverse()) c();
    cleanup = [];
  });

  it('captures a Python writer (its own SQLite, auto-checkpoint on) exactly, alongside its own writes', async () => {
    const seed = seedFromEnv();
    const rand = prng(seed);
    const t = tempDir('foreign');
    cleanup.push(t.cleanup);
    const events: Array<Record<string, unknown>> = [];
    const store = openStore(t.dir, events);
    cleanup.push(() => store.close());
    const { db } = store.create('f');
    db.exec(parseStatementsBody({ sql: 'CREATE TABLE own (id INTEGER PRIMARY KEY, v BLOB)' }));
    const start = db.position;
    const startImage = snapshotImage(db);
    const file = join(t.dir, 'f.db');


    const py = new PyWriter(file, seed, PY_WRITES);
    cleanup.push(() => py.kill());
    // The primary writes through its own connection while Python runs, yielding to the event loop
    // between writes so the watch and poll run too.
    let own = 0;
    let maxExecMs = 0;
    let pyDone = false;
    const firstReport = py.next().finally(() => (pyDone = true));
    while (!pyDone) {
      const size = rand() < 0.1 ? 6000 : Math.floor(rand() * 200);
      const t0 = performance.now();
      db.exec(parseStatementsBody({ sql: 'INSERT INTO own (v) VALUES (randomblob(?))', params: [size] }));
      maxExecMs = Math.max(maxExecMs, performance.now() - t0);
      own++;
      if (rand() < 0.2) await sleep(1);
      else await new Promise((r) => setImmediate(r));
    }
    const report = await firstReport;
    const expected = start.txid + own + report.commits;

    // No primary write from here on: the watch/poll alone must capture Python's last commits.
    await waitFor(() => db.position.txid >= expected, `txid ${expected} (at ${db.position.txid})`, 10_000, 2);
    const batchLatency = now() - report.time;
    expect(db.position.txid, `seed ${seed}`).toBe(expected);

    const latencies: number[] = [];
    for (let i = 0; i < 10; i++) {
      const before = db.position.txid;
      py.commitOne();
      const r = await py.next();
      await waitFor(() => db.position.txid === before + 1, 'capture of a single foreign commit', 10_000, 1);
      latencies.push(now() - r.time);
    }
    await py.end();
    expect(db.position.generation, `seed ${seed}: ${JSON.stringify(events.filter((e) => e.msg === 'new generation'))}`).toBe(start.generation);
    expect(events.filter((e) => e.msg === 'capture failed'), `seed ${seed}`).toEqual([]);
    expect(db.position.checksum, `seed ${seed}`).toBe(currentChecksum(file));

    const { records, walRestarts } = verifyReplay(db, start, startImage, t.dir, seed);
    latencies.sort((a, b) => a - b);
    console.log(
      `[foreign-writer] seed ${seed}: ${report.commits} python + ${own} primary commits, ${records} change sets, ${walRestarts} WAL restarts, ` +
        `capture after the batch ${batchLatency.toFixed(1)} ms, single-commit capture latency ms: ${latencies.map((l) => l.toFixed(1)).join(' ')}, ` +
        `longest primary exec ${maxExecMs.toFixed(0)} ms`,
    );
  }, roundsTimeout(PY_WRITES, 30));

  it('captures the sqlite3 CLI as a writer', async () => {
    const t = tempDir('foreign-cli');
    cleanup.push(t.cleanup);
    const events: Array<Record<string, unknown>> = [];
    const store = openStore(t.dir, events);
    cleanup.push(() => store.close());
    const { db } = store.create('c');
    const start = db.position;
    const startImage = snapshotImage(db);
    const file = join(t.dir, 'c.db');

    const script = [
      'PRAGMA busy_timeout = 10000;',
      'CREATE TABLE cli (id INTEGER PRIMARY KEY, k TEXT, v BLOB);',
      ...Array.from({ length: 40 }, (_, i) => `BEGIN; INSERT INTO cli (k, v) VALUES ('k${i}', randomblob(${i % 5 === 0 ? 9000 : 50 + i})); UPDATE cli SET k = k || '+' WHERE id % 3 = ${i % 3}; COMMIT;`),
      'CREATE INDEX cli_k ON cli(k);',
      'DELETE FROM cli WHERE id % 2 = 0;',
      'VACUUM;',
    ].join('\n');
    const r = await runProcess('sqlite3', [file], `${script}\n`);
    expect(r.code, r.stderr).toBe(0);
    const commits = 1 + 40 + 3;
    await waitFor(() => db.position.txid >= start.txid + commits, `txid ${start.txid + commits}`, 10_000, 2);
    expect(db.position.txid).toBe(start.txid + commits);
    expect(db.position.generation).toBe(start.generation);
    expect(db.position.checksum).toBe(currentChecksum(file));
    expect((await db.query(parseStatementsBody({ sql: 'SELECT count(*) FROM cli' })))[0]!.rows).toEqual([[20]]);
    verifyReplay(db, start, startImage, t.dir, 0);
  });
});
