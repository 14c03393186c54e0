/**
 * What the fault tests check, in one place: the primary's position history (every txid with the
 * checksum the primary had at that txid), samples of a replica's position taken while faults fly, and
 * the end-state comparisons (page images, table contents, integrity_check) between primary and replica.
 *
 * The central claim is "a replica only ever holds states the primary had": every sampled (txid,
 * checksum) of the replica must appear in the primary's history at the same txid.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { prng } from '../helpers.ts';

/** PositionHistory maps each txid the primary reached to its checksum (16 hex digits). */
export class PositionHistory {
  readonly #byTxid = new Map<number, string>();

  record(txid: number, checksum: string): void {
    const had = this.#byTxid.get(txid);
    if (had !== undefined && had !== checksum) {
      throw new Error(`primary reported two checksums for txid ${txid}: ${had} and ${checksum}`);
    }
    this.#byTxid.set(txid, checksum);
  }

  /** recordFrom reads the position headers of a primary's exec response. */
  recordFrom(headers: Headers): void {
    const txid = headers.get('edgelite-txid');
    const checksum = headers.get('edgelite-checksum');
    if (txid !== null && checksum !== null) this.record(Number(txid), checksum);
  }

  get(txid: number): string | undefined {
    return this.#byTxid.get(txid);
  }

  get size(): number {
    return this.#byTxid.size;
  }

  /** mismatches lists the samples whose checksum is not the primary's at that txid (or unknown there). */
  mismatches(samples: Iterable<Sample>): Sample[] {
    return [...samples].filter((s) => this.#byTxid.get(s.txid) !== s.checksum);
  }
}

export interface Sample {
  txid: number;
  checksum: string;
}

/**
 * PositionSampler polls a position getter (an in-process replica's applied position) every few ms and
 * keeps each distinct (txid, checksum) seen. In-process applies are synchronous, so every sample is a
 * committed state.
 */
export class PositionSampler {
  readonly #seen = new Map<string, Sample>();
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #get: () => Sample | null;

  constructor(get: () => Sample | null, everyMs = 2) {
    this.#get = get;
    this.#timer = setInterval(() => this.sample(), everyMs);
  }

  sample(): void {
    const s = this.#get();
    if (s) this.#seen.set(`${s.txid}:${s.checksum}`, s);
  }

  get samples(): Sample[] {
    return [...this.#seen.values()];
  }

  stop(): Sample[] {
    clearInterval(this.#timer);
    this.sample();
    return this.samples;
  }
}

/**
 * Header bytes of page 1 a replica may legitimately hold differently: the change counter (24–27) and
 * version-valid-for / SQLite version (92–99) that every connection rewrites, and the schema cookie
 * (40–43) that a re-snapshot raises on purpose (replica/page1-header.ts HeaderOverride).
 */
const PAGE1_LOCAL_BYTES: ReadonlyArray<readonly [number, number]> = [
  [24, 28],
  [40, 44],
  [92, 100],
];

/** readPages reads every page of a live database (WAL included) through sqlite_dbpage, read-only. */
export function readPages(file: string): Uint8Array[] {
  const conn = new Database(file, { readonly: true, fileMustExist: true });
  try {
    conn.pragma('busy_timeout = 5000');
    const rows = conn.prepare('SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno').raw(true).all() as Array<[number, Uint8Array]>;
    return rows.map(([, data]) => new Uint8Array(data));
  } finally {
    conn.close();
  }
}

/** differingPages lists the 1-based pages where two databases differ (page-1 local bytes ignored). */
export function differingPages(primaryFile: string, replicaFile: string): number[] {
  const a = readPages(primaryFile);
  const b = readPages(replicaFile);
  const out: number[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const pa = a[i]?.slice();
    const pb = b[i]?.slice();
    if (!pa || !pb || pa.length !== pb.length) {
      out.push(i + 1);
      continue;
    }
    if (i === 0) for (const [s, e] of PAGE1_LOCAL_BYTES) (pa.fill(0, s, e), pb.fill(0, s, e));
    if (!pa.every((v, j) => v === pb[j])) out.push(i + 1);
  }
  return out;
}

/**
 * tableDigests reads every user table's rows (by rowid) through a read-only connection and returns, per
 * table, the row count and a SHA-256 over the rows: comparing megabytes of blobs with toEqual is slow.
 */
export function tableDigests(file: string): Record<string, { rows: number; sha256: string }> {
  const conn = new Database(file, { readonly: true, fileMustExist: true });
  try {
    conn.pragma('busy_timeout = 5000');
    const out: Record<string, { rows: number; sha256: string }> = {};
    const tables = conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all() as string[];
    for (const t of tables) {
      const hash = createHash('sha256');
      let rows = 0;
      for (const row of conn.prepare(`SELECT rowid, * FROM "${t}" ORDER BY rowid`).raw(true).iterate() as Iterable<unknown[]>) {
        rows++;
        for (const v of row) hash.update(v instanceof Uint8Array ? `b${Buffer.from(v).toString('hex')}|` : `${typeof v}:${String(v)}|`);
      }
      out[t] = { rows, sha256: hash.digest('hex') };
    }
    return out;
  } finally {
    conn.close();
  }
}

/** WORKLOAD_SCHEMA: `items` rows are never deleted (so acknowledged ids can be checked); `junk` churns pages. */
export const WORKLOAD_SCHEMA = [
  { sql: 'CREATE TABLE items (id INTEGER PRIMARY KEY, tag TEXT NOT NULL, body BLOB)', params: [] },
  { sql: 'CREATE TABLE junk (body BLOB)', params: [] },
];

export interface WriterOptions {
  /** Base URL of the server that takes the writes (a primary, or a replica that forwards them). */
  url: string;
  db: string;
  seed: number;
  /** Largest row body in bytes; bodies above a page size make multi-page change sets. */
  maxBody?: number;
  /** Called with every error; return true to carry on (e.g. while the primary is being killed). */
  tolerate?: (err: unknown) => boolean;
  headers?: Record<string, string>;
  /** First id to insert (default 1); a second writer on the same database needs its own range. */
  firstId?: number;
}

/**
 * Writer runs one sequential write loop (an insert of a random-size row into `items` per transaction,
 * sometimes with an update, or with an insert and a delete in `junk`) and keeps the ids whose insert the
 * server acknowledged, and the position history from the exec responses (one writer: each response is
 * exactly one txid).
 */
export class Writer {
  readonly acknowledged: number[] = [];
  readonly history = new PositionHistory();
  writes = 0;
  errors = 0;
  #nextId = 1;
  #stopped = false;
  /** While set, the loop idles (the stream then carries only heartbeats). */
  paused = false;
  #error: unknown = null;
  readonly #loop: Promise<void>;
  readonly #o: WriterOptions;
  readonly #random: () => number;

  constructor(o: WriterOptions) {
    this.#o = o;
    this.#nextId = o.firstId ?? 1;
    this.#random = prng(o.seed);
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      if (this.paused) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      try {
        await this.step();
      } catch (err) {
        this.errors++;
        if (!this.#o.tolerate?.(err)) {
          this.#error = err;
          return;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  /** step runs one write and records it once acknowledged. */
  async step(): Promise<void> {
    const r = this.#random();
    const id = this.#nextId++;
    const size = Math.floor(this.#random() * (this.#o.maxBody ?? 12_000));
    const statements: Array<{ sql: string; params: unknown[] }> = [
      { sql: 'INSERT INTO items (id, tag, body) VALUES (?, ?, ?)', params: [id, `t${id}`, { base64: Buffer.alloc(size, id & 0xff).toString('base64') }] },
    ];
    if (r > 0.6 && r <= 0.8) statements.push({ sql: "UPDATE items SET tag = tag || '+' WHERE id % 7 = ?", params: [id % 7] });
    if (r > 0.8) {
      statements.push({ sql: 'INSERT INTO junk (body) VALUES (zeroblob(?))', params: [size * 2] });
      statements.push({ sql: 'DELETE FROM junk WHERE rowid IN (SELECT rowid FROM junk ORDER BY rowid LIMIT 1)', params: [] });
    }
    const res = await fetch(`${this.#o.url}/v1/db/${this.#o.db}/exec`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...this.#o.headers },
      body: JSON.stringify({ statements }),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`exec answered ${res.status}: ${text.slice(0, 300)}`);
    this.history.recordFrom(res.headers);
    this.writes++;
    this.acknowledged.push(id);
  }

  get error(): unknown {
    return this.#error;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
    if (this.#error) throw this.#error;
  }
}

/** StreamLocation says which layer of the stream a body offset fell in (see locateStreamOffset). */
export type StreamLocation =
  | 'http-chunk-size'
  | 'http-chunk-crlf'
  | 'frame-length'
  | 'frame-hash'
  | `frame-body:${string}`
  | 'snapshot-image'
  | 'unknown';

/**
 * locateStreamOffset maps a body offset of a recorded response (original bytes) to the layer it hit:
 * for the replication stream (HTTP chunked encoding of frames), the chunk framing or a frame's length,
 * hash or body (with the frame type); for a snapshot (Content-Length body), the image.
 */
export function locateStreamOffset(original: Buffer, bodyStart: number, bodyOffset: number, request: string | null): StreamLocation {
  if (request !== null && /snapshot$/.test(request)) return 'snapshot-image';
  const target = bodyStart + bodyOffset;
  const data: Buffer[] = [];
  let dataLength = 0;
  let dataOffset = -1;
  let pos = bodyStart;
  while (pos < original.length) {
    const eol = original.indexOf('\r\n', pos, 'latin1');
    if (eol < 0) break;
    if (target >= pos && target < eol + 2) return 'http-chunk-size';
    const size = Number.parseInt(original.subarray(pos, eol).toString('latin1').split(';')[0]!, 16);
    if (!Number.isFinite(size) || size === 0) break;
    const start = eol + 2;
    if (target >= start && target < start + size) dataOffset = dataLength + (target - start);
    if (target >= start + size && target < start + size + 2) return 'http-chunk-crlf';
    data.push(original.subarray(start, start + size));
    dataLength += size;
    pos = start + size + 2;
  }
  if (dataOffset < 0) return 'unknown';
  const frames = Buffer.concat(data);
  for (let f = 0; f + 8 <= frames.length; ) {
    const len = frames.readUInt32BE(f);
    if (dataOffset < f + 4) return 'frame-length';
    if (dataOffset < f + 8) return 'frame-hash';
    if (dataOffset < f + 8 + len) return `frame-body:${frameType(frames.subarray(f + 8, f + 8 + len))}`;
    f += 8 + len;
  }
  return 'unknown';
}

function frameType(body: Buffer): string {
  const m = /type.(changeset|heartbeat|ready|snapshot-needed|new-generation|db-created|db-dropped|error)/.exec(body.subarray(0, 64).toString('latin1'));
  return m ? m[1]! : 'unknown';
}
