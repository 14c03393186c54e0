/** Test helpers: temp dirs, a seeded PRNG, page-image replay, and comparing database images. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { decodeChangeSet } from '../shared/changeset.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { ChangeSet, PageImage } from '../shared/types.ts';

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `edgelite-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** mulberry32: a tiny seeded PRNG so a failing run can be replayed from its printed seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function seedFromEnv(): number {
  const s = process.env.EDGELITE_SEED;
  return s ? Number(s) : Math.floor(Math.random() * 2 ** 31);
}

/** applyToImage applies a change set to a database file image held in memory. */
export function applyToImage(image: Uint8Array, cs: ChangeSet): Uint8Array {
  const size = cs.commit * cs.pageSize;
  const out = new Uint8Array(size);
  out.set(image.subarray(0, Math.min(image.length, size)));
  for (const p of cs.pages) out.set(p.data, (p.pgno - 1) * cs.pageSize);
  return out;
}

export function applyEncoded(image: Uint8Array, bytes: Uint8Array): Uint8Array {
  return applyToImage(image, decodeChangeSet(bytes));
}

/** NORMALISED_PAGE1_RANGES: header bytes each SQLite connection rewrites on its own (docs/FORMAT.md). */
const NORMALISED = [
  [24, 28],
  [92, 100],
] as const;

/** diffPages lists pages that differ between two images, ignoring the normalised page-1 bytes. */
export function diffPages(a: Uint8Array, b: Uint8Array, pageSize: number): number[] {
  const diffs: number[] = [];
  const n = Math.max(a.length, b.length) / pageSize;
  for (let i = 0; i < n; i++) {
    const pa = a.subarray(i * pageSize, (i + 1) * pageSize).slice();
    const pb = b.subarray(i * pageSize, (i + 1) * pageSize).slice();
    if (i === 0) {
      for (const [s, e] of NORMALISED) {
        pa.fill(0, s, e);
        pb.fill(0, s, e);
      }
    }
    if (pa.length !== pb.length || !pa.every((v, j) => v === pb[j])) diffs.push(i + 1);
  }
  return diffs;
}

/** RUNAWAY_SQL never ends on its own: a query time limit must stop it. */
export const RUNAWAY_SQL = 'SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c)';

/** postJson POSTs a JSON body and returns the status with the parsed JSON reply. */
export async function postJson(url: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: res.status, json: await res.json() };
}

/**
 * stopsAfterEach registers an afterEach that runs the returned list's cleanups, last added first, and
 * empties it: push a stop (server close, temp dir removal) as soon as the thing exists.
 */
export function stopsAfterEach(): Array<() => Promise<void> | void> {
  const stops: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const s of stops.splice(0).reverse()) await s();
  });
  return stops;
}

/** thrownEdgelite runs `fn` and returns the EdgeliteError it throws; anything else, or nothing, fails. */
export function thrownEdgelite(fn: () => unknown): EdgeliteError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(EdgeliteError);
    return err as EdgeliteError;
  }
  throw new Error('expected an EdgeliteError, nothing was thrown');
}

/** rejectedEdgelite awaits `p` and returns the EdgeliteError it rejects with; anything else, or a resolve, fails. */
export async function rejectedEdgelite(p: Promise<unknown>): Promise<EdgeliteError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EdgeliteError);
  return err as EdgeliteError;
}

/**
 * kvFile registers (beforeAll/afterAll) a real database file written by better-sqlite3 in rollback
 * mode, so the file is the whole database: table `kv (k INTEGER PRIMARY KEY, v TEXT)` with `rows` rows
 * of about 110 bytes. `image()` reads the file as it is now.
 */
export function kvFile(label: string, pageSize: number, rows: number): { readonly db: Database.Database; image(): Uint8Array } {
  let t: ReturnType<typeof tempDir>;
  let db: Database.Database;
  let file: string;
  beforeAll(() => {
    t = tempDir(label);
    file = join(t.dir, 'a.db');
    db = new Database(file);
    db.pragma(`page_size = ${pageSize}`);
    db.pragma('journal_mode = DELETE');
    db.exec('CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)');
    const insert = db.prepare('INSERT INTO kv VALUES (?, ?)');
    for (let i = 0; i < rows; i++) insert.run(i, `v${i}-${'x'.repeat(100)}`);
  });
  afterAll(() => {
    db.close();
    t.cleanup();
  });
  return {
    get db() {
      return db;
    },
    image: () => new Uint8Array(readFileSync(file)),
  };
}

/** pagesOf cuts a database image into its pages (views into `image`). */
export function pagesOf(image: Uint8Array, pageSize: number): PageImage[] {
  const out: PageImage[] = [];
  for (let p = 1; p * pageSize <= image.length; p++) out.push({ pgno: p, data: image.subarray((p - 1) * pageSize, p * pageSize) });
  return out;
}
