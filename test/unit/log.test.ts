import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ChangeSetLog, NODE_FSYNC, type LogFsync, type LogOptions, type LogRecord } from '../../primary/log.ts';
import { recordSize } from '../../primary/log-segment.ts';
import { EdgeliteError } from '../../shared/errors.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const T0 = 1_700_000_000_000;

const dirs: string[] = [];
const logs: ChangeSetLog[] = [];

afterEach(() => {
  for (const log of logs.splice(0)) log.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-log-'));
  dirs.push(d);
  return d;
}

function open(dir: string, opts: Partial<LogOptions> = {}): ChangeSetLog {
  const log = ChangeSetLog.open(dir, { sync: 'full', ...opts });
  logs.push(log);
  return log;
}

/** payloadFor is deterministic, so a test (or a killed child) can regenerate what was written. */
function payloadFor(txid: number, size = 100 + ((txid * 37) % 900)): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (txid * 31 + i * 7 + (i >> 8)) & 0xff;
  return out;
}

function rec(generation: number, minTxid: number, maxTxid = minTxid, payloadSize?: number): LogRecord {
  return {
    generation,
    minTxid,
    maxTxid,
    timestamp: T0 + maxTxid * 1000,
    postChecksum: BigInt(maxTxid) * 0x9e3779b97f4a7c15n & 0xffffffffffffffffn,
    meta: new TextEncoder().encode(`frame:${maxTxid.toString(16).padStart(8, '0')}`), // 14 bytes
    payload: payloadFor(maxTxid, payloadSize),
  };
}

function expectSame(got: LogRecord | undefined, want: LogRecord): void {
  expect(got).toBeDefined();
  const { payload, meta, ...fields } = got as LogRecord;
  const { payload: wantPayload, meta: wantMeta, ...wantFields } = want;
  expect(fields).toEqual(wantFields);
  expect(Buffer.compare(meta, wantMeta)).toBe(0);
  expect(Buffer.compare(payload, wantPayload)).toBe(0);
}

function expectCode(fn: () => unknown, code: string): EdgeliteError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(EdgeliteError);
    expect((err as EdgeliteError).code).toBe(code);
    return err as EdgeliteError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

function segmentFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).sort();
}

describe('ChangeSetLog append and since', () => {
  it('round-trips records over several segments and across a reopen', () => {
    const dir = tempDir();
    const log = open(dir, { segmentBytes: 2000 });
    const written = Array.from({ length: 40 }, (_, i) => rec(1, i + 1));
    for (const r of written) log.append(r);
    expect(log.stats().segments).toBeGreaterThan(5);
    const all = log.since(1, 0);
    expect(all).toHaveLength(40);
    written.forEach((w, i) => expectSame(all?.[i], w));
    log.close();

    const again = open(dir, { segmentBytes: 2000 });
    const reread = again.since(1, 0);
    written.forEach((w, i) => expectSame(reread?.[i], w));
    expect(again.stats()).toMatchObject({ records: 40, firstTxid: 1, lastTxid: 40, recoveredBytes: 0 });
    expect(again.durableTxid).toBe(40);
    // Each file is named by the first txid it holds, in 16 hex digits.
    const firstTxids = segmentFiles(dir).map((n) => Number.parseInt(n.slice(0, 16), 16));
    expect(firstTxids[0]).toBe(1);
    for (const t of firstTxids) expect(reread?.some((r) => r.minTxid === t)).toBe(true);
    again.append(rec(1, 41));
    expectSame(again.last() ?? undefined, rec(1, 41));
  });

  it('answers since() at every boundary, null wherever a snapshot is needed', () => {
    const log = open(tempDir(), { segmentBytes: 3000 });
    expect(log.since(1, 0)).toBeNull();
    expect(log.last()).toBeNull();
    expect(log.firstTxid).toBeNull();
    for (let t = 10; t < 20; t++) log.append(rec(1, t));
    log.append(rec(1, 20, 25)); // a compacted run of six transactions
    for (let t = 26; t <= 30; t++) log.append(rec(1, t));
    expect(log.firstTxid).toBe(10);

    expect(log.since(1, 9)?.map((r) => r.minTxid)).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 26, 27, 28, 29, 30]);
    expect(log.since(1, 8)).toBeNull(); // older than the log
    expect(log.since(1, 30)).toEqual([]); // caught up
    expect(log.since(1, 31)).toBeNull(); // ahead of the log
    expect(log.since(2, 29)).toBeNull(); // another generation
    expect(log.since(0, 29)).toBeNull();
    for (const inside of [20, 22, 24]) expect(log.since(1, inside)).toBeNull();
    expect(log.since(1, 19)?.map((r) => [r.minTxid, r.maxTxid])).toEqual([[20, 25], [26, 26], [27, 27], [28, 28], [29, 29], [30, 30]]);
    expect(log.since(1, 25)?.[0]?.minTxid).toBe(26);

    // A new generation: only positions inside it can continue from the log.
    log.append(rec(2, 40));
    log.append(rec(2, 41));
    expect(log.since(1, 30)).toBeNull();
    expect(log.since(1, 39)).toBeNull();
    expect(log.since(2, 39)?.map((r) => r.minTxid)).toEqual([40, 41]);
    expect(log.since(2, 30)).toBeNull();
    expect(log.since(2, 41)).toEqual([]);
    expectCode(() => log.since(2, 1.5), 'BAD_REQUEST');
  });

  it('bounds iterateSince by bytes, always returning at least one record', () => {
    const log = open(tempDir(), { segmentBytes: 4000 });
    for (let t = 1; t <= 20; t++) log.append(rec(1, t, t, 436));
    const size = recordSize(14, 436);
    expect(log.iterateSince(1, 0, size * 3)?.map((r) => r.minTxid)).toEqual([1, 2, 3]);
    expect(log.iterateSince(1, 0, size * 3 - 1)?.map((r) => r.minTxid)).toEqual([1, 2]);
    expect(log.iterateSince(1, 5, 1)?.map((r) => r.minTxid)).toEqual([6]);
    expect(log.iterateSince(1, 20, size)).toEqual([]);
    expect(log.iterateSince(1, 21, size)).toBeNull();
    let txid = 0;
    const seen: number[] = [];
    for (let batch = log.iterateSince(1, txid, 1700); batch && batch.length > 0; batch = log.iterateSince(1, txid, 1700)) {
      expect(batch.length).toBeLessThanOrEqual(3);
      for (const r of batch) seen.push(r.minTxid);
      txid = batch.at(-1)?.maxTxid ?? txid;
    }
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expectCode(() => log.iterateSince(1, 0, 0), 'BAD_REQUEST');
  });

  it('refuses records that do not continue the log, and leaves it unchanged', () => {
    const log = open(tempDir());
    log.append(rec(3, 5));
    log.append(rec(3, 6, 8));
    expect(expectCode(() => log.append(rec(3, 10)), 'POSITION_MISMATCH').message).toMatch(/does not follow 8/); // gap
    expectCode(() => log.append(rec(3, 8)), 'POSITION_MISMATCH'); // repeat
    expectCode(() => log.append(rec(3, 7, 9)), 'POSITION_MISMATCH'); // overlap
    expectCode(() => log.append(rec(2, 9)), 'POSITION_MISMATCH'); // lower generation
    expectCode(() => log.append(rec(4, 8)), 'POSITION_MISMATCH'); // new generation, txid not higher
    expectCode(() => log.append({ ...rec(3, 9), meta: new Uint8Array(1025) }), 'BAD_REQUEST');
    expectCode(() => log.append(rec(3, 9, 8)), 'BAD_REQUEST');
    expectCode(() => log.append({ ...rec(3, 9), postChecksum: 1n << 64n }), 'BAD_REQUEST');
    expect(log.stats()).toMatchObject({ records: 2, lastTxid: 8 });
    log.append(rec(4, 12)); // a new generation may skip txids
    log.append(rec(4, 13));
    expect(log.since(4, 11)?.map((r) => r.minTxid)).toEqual([12, 13]);
  });

  it('validates options with messages that name the option', () => {
    const dir = tempDir();
    expect(() => ChangeSetLog.open(dir, { sync: 'full', segmentByte: 10 } as LogOptions)).toThrow(/unknown option "segmentByte"/);
    expect(() => ChangeSetLog.open(dir, { sync: 'always' } as unknown as LogOptions)).toThrow(/sync must be "full" or "normal"/);
    expect(() => ChangeSetLog.open(dir, { sync: 'full', retention: { maxRecords: -1 } })).toThrow(/retention.maxRecords must be a positive integer/);
    expect(() => ChangeSetLog.open(dir, { sync: 'full', durableThrough: -1 })).toThrow(/durableThrough must be a txid/);
  });

  it('reports a directory it cannot use as IO_ERROR naming the path', () => {
    const file = path.join(tempDir(), 'not-a-dir');
    fs.writeFileSync(file, 'x');
    expect(expectCode(() => ChangeSetLog.open(path.join(file, 'log'), { sync: 'full' }), 'IO_ERROR').message).toContain(file);
  });

  it('refuses use after close', async () => {
    const log = open(tempDir());
    log.append(rec(1, 1));
    log.close();
    expectCode(() => log.append(rec(1, 2)), 'UNAVAILABLE');
    expectCode(() => log.since(1, 0), 'UNAVAILABLE');
    await expect(log.sync()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});

describe('ChangeSetLog recovery', () => {
  /** pristine builds 12 records of 500-byte payloads, four to a segment, and returns the tail's layout. */
  function pristine(): { dir: string; last: string; lastStart: number; lastSize: number; sizes: number[] } {
    const dir = tempDir();
    const log = open(dir, { segmentBytes: 2500 });
    for (let t = 1; t <= 12; t++) log.append(rec(1, t, t, 500));
    log.close();
    const files = segmentFiles(dir);
    expect(files).toHaveLength(3);
    const last = path.join(dir, files.at(-1) as string);
    const sizes = Array.from({ length: 12 }, (_, i) => recordSize(rec(1, i + 1).meta.length, 500));
    const lastSize = sizes[11] as number;
    return { dir, last, lastStart: fs.statSync(last).size - lastSize, lastSize, sizes };
  }

  function copyOf(src: string): string {
    const dst = tempDir();
    fs.cpSync(src, dst, { recursive: true });
    return dst;
  }

  function flip(file: string, offset: number): void {
    const fd = fs.openSync(file, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, offset);
    b[0] = (b[0] as number) ^ 0x40;
    fs.writeSync(fd, b, 0, 1, offset);
    fs.closeSync(fd);
  }

  it('truncates a torn tail at any length back to the previous record, and appends again', () => {
    const p = pristine();
    const cuts = new Set<number>([0, 1, 3, 4, 59, 60, 61, 63, p.lastSize - 4, p.lastSize - 1]);
    for (let i = 0; i < 40; i++) cuts.add(Math.floor((i * p.lastSize) / 40));
    for (const cut of cuts) {
      const dir = copyOf(p.dir);
      const file = path.join(dir, path.basename(p.last));
      fs.truncateSync(file, p.lastStart + cut);
      const log = open(dir);
      expect(log.stats()).toMatchObject({ lastTxid: 11, recoveredBytes: cut, records: 11 });
      expect(fs.statSync(file).size).toBe(p.lastStart);
      const replacement = { ...rec(1, 12, 12, 77), timestamp: T0 + 1 };
      log.append(replacement);
      log.close();
      const again = open(dir);
      expect(again.stats().recoveredBytes).toBe(0);
      expectSame(again.since(1, 11)?.[0], replacement);
      expect(again.since(1, 0)).toHaveLength(12);
      again.close();
    }
  });

  it('deletes a last segment the torn tail left empty', () => {
    const dir = tempDir();
    const log = open(dir, { segmentBytes: 1000 });
    for (let t = 1; t <= 3; t++) log.append(rec(1, t, t, 800));
    log.close();
    const files = segmentFiles(dir);
    fs.truncateSync(path.join(dir, files.at(-1) as string), 30);
    const again = open(dir, { segmentBytes: 1000 });
    expect(again.stats()).toMatchObject({ lastTxid: 2, segments: 2, recoveredBytes: 30 });
    expect(segmentFiles(dir)).toEqual(files.slice(0, -1));
    again.append(rec(1, 3, 3, 10));
    again.close();
    expect(open(dir).since(1, 0)?.map((r) => r.payload.length)).toEqual([800, 800, 10]);
  });

  it('treats a flipped byte anywhere in the last record as a torn tail', () => {
    const p = pristine();
    for (const at of [0, 9, 14, 30, 57, 61, 64 + 100, p.lastSize - 5, p.lastSize - 1]) {
      const dir = copyOf(p.dir);
      flip(path.join(dir, path.basename(p.last)), p.lastStart + at);
      const log = open(dir);
      expect(log.stats()).toMatchObject({ lastTxid: 11, recoveredBytes: p.lastSize });
      log.close();
    }
  });

  it('throws LOG_CORRUPT with path and offset for damage before the last record', () => {
    const p = pristine();
    const recordTen = p.lastStart - 2 * (p.sizes[9] as number); // records 9..12 share the last segment
    const cases: Array<{ file: string; at: number; offset: number }> = [
      { file: path.basename(p.last), at: recordTen + 200, offset: recordTen }, // payload of record 10
      { file: path.basename(p.last), at: recordTen + 16, offset: recordTen }, // length field of record 10
      { file: path.basename(p.last), at: p.lastStart - 1, offset: recordTen + (p.sizes[9] as number) }, // trailer of record 11
      { file: segmentFiles(p.dir)[0] as string, at: 700, offset: p.sizes[0] as number }, // an older segment
    ];
    for (const c of cases) {
      const dir = copyOf(p.dir);
      flip(path.join(dir, c.file), c.at);
      const err = expectCode(() => ChangeSetLog.open(dir, { sync: 'full' }), 'LOG_CORRUPT');
      expect(err.details).toMatchObject({ path: path.join(dir, c.file), offset: c.offset });
      expect(err.message).toContain(path.join(dir, c.file));
    }
  });

  it('throws LOG_CORRUPT for a torn tail in a segment that is not the last, or a misnamed segment', () => {
    const p = pristine();
    const dir = copyOf(p.dir);
    const first = path.join(dir, segmentFiles(dir)[0] as string);
    fs.truncateSync(first, fs.statSync(first).size - 10);
    expectCode(() => ChangeSetLog.open(dir, { sync: 'full' }), 'LOG_CORRUPT');

    const renamed = copyOf(p.dir);
    const middle = segmentFiles(renamed)[1] as string;
    fs.renameSync(path.join(renamed, middle), path.join(renamed, middle.replace(/5\.seg$/, '6.seg')));
    expect(expectCode(() => ChangeSetLog.open(renamed, { sync: 'full' }), 'LOG_CORRUPT').message).toMatch(/file name/);
  });

  it('keeps every acknowledged record when the writing process is killed with SIGKILL', async () => {
    const dir = tempDir();
    const script = path.join(tempDir(), 'writer.mts');
    fs.writeFileSync(
      script,
      `import { ChangeSetLog } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'primary/log.ts')).href)};
const payloadFor = ${payloadFor.toString()};
const log = ChangeSetLog.open(process.argv[2], { sync: 'full', segmentBytes: 64 * 1024 });
let next = 1;
async function writer() {
  for (;;) {
    const txid = next++;
    log.append({ generation: 1, minTxid: txid, maxTxid: txid, timestamp: txid, postChecksum: BigInt(txid), meta: new Uint8Array([txid & 255]), payload: payloadFor(txid) });
    await log.sync();
    process.stdout.write(txid + '\\n');
  }
}
await Promise.all([writer(), writer(), writer(), writer()]);
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script, dir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const acked: number[] = [];
    let stderr = '';
    let buffered = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const l of lines) acked.push(Number(l));
      if (acked.length >= 400) child.kill('SIGKILL');
    });
    const signal = await new Promise((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    expect(stderr).toBe('');
    expect(signal).toBe('SIGKILL');
    expect(acked.length).toBeGreaterThanOrEqual(400);

    const log = open(dir);
    const all = log.since(1, 0) ?? [];
    expect(log.stats().segments).toBeGreaterThan(1);
    expect(all.length).toBeGreaterThanOrEqual(Math.max(...acked));
    for (const txid of acked) {
      const r = all[txid - 1];
      expect(r?.minTxid).toBe(txid);
      expect(Buffer.compare(r?.payload ?? new Uint8Array(), payloadFor(txid))).toBe(0);
    }
  });
});

describe('ChangeSetLog sync', () => {
  it('shares one fsync among many concurrent sync() calls', async () => {
    const log = open(tempDir());
    const before = log.stats().fsyncs;
    const calls: Promise<void>[] = [];
    for (let t = 1; t <= 200; t++) {
      log.append(rec(1, t, t, 64));
      calls.push(log.sync());
    }
    await Promise.all(calls);
    expect(log.stats().fsyncs - before).toBeLessThanOrEqual(2);
    expect(log.durableTxid).toBe(200);
    await log.sync(); // nothing new: no fsync
    expect(log.stats().fsyncs - before).toBeLessThanOrEqual(2);
  });

  it('groups writers that each wait for their own record', async () => {
    const log = open(tempDir());
    const before = log.stats().fsyncs;
    let next = 1;
    let calls = 0;
    const writer = async (): Promise<void> => {
      for (let i = 0; i < 20; i++) {
        const t = next++;
        log.append(rec(1, t, t, 64));
        calls++;
        await log.sync();
        expect(log.durableTxid).toBeGreaterThanOrEqual(t);
      }
    };
    await Promise.all(Array.from({ length: 25 }, writer));
    expect(calls).toBe(500);
    expect(log.stats().fsyncs - before).toBeLessThan(calls / 5);
  });

  it('rejects every waiter on an fsync failure and refuses appends until reopened', async () => {
    const dir = tempDir();
    let fail = false;
    const fsync: LogFsync = {
      fdatasync: (fd) => (fail ? Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })) : NODE_FSYNC.fdatasync(fd)),
      fdatasyncSync: NODE_FSYNC.fdatasyncSync,
    };
    const log = open(dir, { fsync });
    log.append(rec(1, 1));
    await log.sync();
    fail = true;
    const waits = [2, 3, 4].map((t) => {
      log.append(rec(1, t));
      return log.sync();
    });
    const results = await Promise.allSettled(waits);
    for (const r of results) expect(r).toMatchObject({ status: 'rejected', reason: { code: 'IO_ERROR' } });
    fail = false; // a retry could now "succeed" without the data on disk: the log must not offer one
    expectCode(() => log.append(rec(1, 5)), 'IO_ERROR');
    await expect(log.sync()).rejects.toMatchObject({ code: 'IO_ERROR' });
    expectCode(() => log.syncNow(), 'IO_ERROR');
    expect(log.durableTxid).toBe(1);
    log.close();
    const again = open(dir);
    expect(again.stats().lastTxid).toBe(4);
    again.append(rec(1, 5));
    await again.sync();
  });

  it('fsyncs on its own in normal mode', async () => {
    const log = open(tempDir(), { sync: 'normal', syncIntervalMs: 5 });
    log.append(rec(1, 1));
    log.append(rec(1, 2));
    expect(log.durableTxid).toBe(0);
    await vi.waitFor(() => expect(log.durableTxid).toBe(2), { timeout: 5000, interval: 5 });
    log.append(rec(1, 3));
    log.syncNow();
    expect(log.durableTxid).toBe(3);
  });
});

describe('ChangeSetLog directory fsyncs', () => {
  /** counting wraps the real fsyncs and counts each kind; failDir makes directory fsyncs fail. */
  function counting() {
    const n = { data: 0, dir: 0, failDir: false };
    const fsync: LogFsync = {
      fdatasync: (fd) => (n.data++, NODE_FSYNC.fdatasync(fd)),
      fdatasyncSync: (fd) => (n.data++, NODE_FSYNC.fdatasyncSync(fd)),
      dirSync: (dir) => {
        n.dir++;
        if (n.failDir) throw Object.assign(new Error(`EIO: i/o error, fsync '${dir}'`), { code: 'EIO' });
        fs.fsyncSync(fs.openSync(dir, 'r'));
      },
    };
    return { n, fsync };
  }

  it('a new segment costs no fsync on the append that creates it: its directory is fsynced by the flush, before its records count as durable', async () => {
    const { n, fsync } = counting();
    const log = open(tempDir(), { fsync, segmentBytes: 2000 });
    log.append(rec(1, 1, 1, 500));
    expect(n).toMatchObject({ data: 0, dir: 0 });
    await log.sync();
    expect(n).toMatchObject({ data: 1, dir: 1 });
    log.append(rec(1, 2, 2, 500)); // same segment: no directory fsync
    log.syncNow();
    expect(n).toMatchObject({ data: 2, dir: 1 });
    for (let t = 3; t <= 6; t++) log.append(rec(1, t, t, 500)); // rolls (the old segment is flushed first)
    log.syncNow();
    expect(log.stats().segments).toBeGreaterThan(1);
    expect(n.dir).toBe(2);
    expect(log.durableTxid).toBe(6);
  });

  it('a failed directory fsync fails the flush and poisons the log, as a failed fdatasync does', async () => {
    const { n, fsync } = counting();
    const log = open(tempDir(), { fsync });
    n.failDir = true;
    log.append(rec(1, 1));
    await expect(log.sync()).rejects.toMatchObject({ code: 'IO_ERROR' });
    expect(log.durableTxid).toBe(0);
    expectCode(() => log.append(rec(1, 2)), 'IO_ERROR');
  });

  it('open flushes the last segment and its directory, unless durableThrough says a clean close already did', () => {
    const dir = tempDir();
    const first = open(dir);
    for (let t = 1; t <= 3; t++) first.append(rec(1, t));
    first.syncNow();
    first.close();
    const clean = counting();
    const trusted = open(dir, { fsync: clean.fsync, durableThrough: 3 });
    expect(clean.n).toMatchObject({ data: 0, dir: 0 });
    expect(trusted.durableTxid).toBe(3);
    trusted.close();
    // A log that goes on past what the hint vouches for (or no hint: a crash) is flushed.
    for (const hint of [2, undefined]) {
      const c = counting();
      const log = open(dir, { fsync: c.fsync, ...(hint === undefined ? {} : { durableThrough: hint }) });
      expect(c.n).toMatchObject({ data: 1, dir: 1 });
      expect(log.durableTxid).toBe(3);
      log.close();
    }
  });
});

describe('ChangeSetLog retention', () => {
  /** filled makes a log of 60 records, five 500-byte records to a segment, a second apart. */
  function filled(retention: LogOptions['retention']): ChangeSetLog {
    const log = open(tempDir(), { segmentBytes: 5 * 600, retention });
    for (let t = 1; t <= 60; t++) log.append(rec(1, t, t, 500));
    expect(log.stats().segments).toBe(12);
    return log;
  }

  it('by count: drops whole old segments until at most maxRecords remain', () => {
    const log = filled({ maxRecords: 22 });
    expect(log.prune(T0 + 60_000)).toBe(40);
    expect(log.stats()).toMatchObject({ records: 20, segments: 4, firstTxid: 41, lastTxid: 60 });
    expect(log.since(1, 40)).toHaveLength(20);
    expect(log.since(1, 39)).toBeNull();
    expect(segmentFiles(log.dir)[0]).toBe('0000000000000029.seg');
    expect(log.prune(T0 + 60_000)).toBe(0);
    log.close();
    expect(open(log.dir).stats()).toMatchObject({ records: 20, firstTxid: 41 });
  });

  it('by bytes', () => {
    const log = filled({ maxBytes: 3 * 5 * 600 });
    const segmentBytes = log.stats().bytes / 12;
    log.prune(T0 + 60_000);
    expect(log.stats().bytes).toBeLessThanOrEqual(3 * 5 * 600);
    expect(log.stats().bytes).toBeGreaterThan(3 * 5 * 600 - segmentBytes);
    expect(log.firstTxid).toBe(46);
  });

  it('by age, against an injected clock, always keeping the newest segment', () => {
    const log = filled({ maxAgeMs: 10_000 });
    // Record t has timestamp T0 + t s; at T0 + 70 s, records older than T0 + 60 s are expired.
    expect(log.prune(T0 + 30_000)).toBe(15);
    expect(log.firstTxid).toBe(16);
    expect(log.prune(T0 + 70_000)).toBe(40);
    expect(log.firstTxid).toBe(56);
    expect(log.prune(T0 + 10_000_000)).toBe(0);
    expect(log.stats()).toMatchObject({ segments: 1, records: 5 });
    log.append(rec(1, 61));
    expect(log.since(1, 55)).toHaveLength(6);
  });
});
