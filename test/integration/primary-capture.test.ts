/**
 * Capture is exact: thousands of random transactions (DDL, overflow blobs, growth, shrink, VACUUM)
 * replayed from the primary's log onto the starting image give the primary's database page for page.
 */
import Database from 'better-sqlite3';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { decodeChangeSet } from '../../shared/changeset.ts';
import { silentLogger } from '../../shared/log.ts';
import type { PrimaryDatabase } from '../../primary/database.ts';
import { PrimaryStore } from '../../primary/store.ts';
import { applyToImage, diffPages, prng, seedFromEnv, tempDir } from '../helpers.ts';
import { rounds, roundsTimeout } from '../kit/rounds.ts';

/** STEPS: random transactions replayed (20 ms each allowed in the time limit). */
const STEPS = rounds(2000, 10_000);

function openStore(dir: string, checkpointFrames = 4000): PrimaryStore {
  return new PrimaryStore(dir, {
    synchronous: 'normal',
    busyTimeoutMs: 5000,
    compress: false,
    checkpointFrames,
    pollIntervalMs: 50,
    log: {},
    logger: silentLogger,
  }).open();
}

export function snapshotImage(db: PrimaryDatabase): Uint8Array {
  const view = db.beginSnapshot();
  try {
    return view.readPages(1, view.pageCount);
  } finally {
    view.end();
  }
}

/** randomTransaction returns one exec batch: a mix of what real apps do to a schema and its rows. */
export function randomTransaction(rand: () => number, step: number): Array<{ sql: string; params?: unknown[] }> {
  const r = rand();
  const table = `t${Math.floor(rand() * 3)}`;
  const blob = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * 256));
  if (r < 0.03) return [{ sql: `DROP TABLE IF EXISTS ${table}` }];
  if (r < 0.08) return [{ sql: `CREATE TABLE IF NOT EXISTS ${table} (id INTEGER PRIMARY KEY, k TEXT, v BLOB)` }];
  if (r < 0.1) {
    return [
      { sql: `CREATE TABLE IF NOT EXISTS ${table} (id INTEGER PRIMARY KEY, k TEXT, v BLOB)` },
      { sql: `CREATE INDEX IF NOT EXISTS ${table}_k ON ${table}(k)` },
    ];
  }
  if (r < 0.12) return [{ sql: 'VACUUM' }];
  const stmts: Array<{ sql: string; params?: unknown[] }> = [
    { sql: `CREATE TABLE IF NOT EXISTS ${table} (id INTEGER PRIMARY KEY, k TEXT, v BLOB)` },
  ];
  const n = 1 + Math.floor(rand() * 5);
  for (let i = 0; i < n; i++) {
    const q = rand();
    if (q < 0.55) {
      const size = rand() < 0.1 ? 5000 + Math.floor(rand() * 20000) : Math.floor(rand() * 300);
      stmts.push({ sql: `INSERT INTO ${table} (k, v) VALUES (?, ?)`, params: [`k${step}-${i}`, { base64: Buffer.from(blob(size)).toString('base64') }] });
    } else if (q < 0.8) {
      stmts.push({ sql: `UPDATE ${table} SET k = ? WHERE id % 7 = ?`, params: [`u${step}`, Math.floor(rand() * 7)] });
    } else {
      stmts.push({ sql: `DELETE FROM ${table} WHERE id % 5 = ?`, params: [Math.floor(rand() * 5)] });
    }
  }
  return stmts;
}

describe('primary capture', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());

  it('replays thousands of random transactions into an identical database', async () => {
    const seed = seedFromEnv();
    const rand = prng(seed);
    const t = tempDir('capture');
    cleanup = t.cleanup;
    // A low checkpoint threshold so WAL restarts happen many times during the run.
    const store = openStore(t.dir, 200);
    const { db } = store.create('t');
    const start = db.position;
    let image = snapshotImage(db);
    const { parseStatementsBody } = await import('../../shared/protocol.ts');
    for (let i = 0; i < STEPS; i++) {
      db.exec(parseStatementsBody({ statements: randomTransaction(rand, i) }));
    }
    const records = db.log.iterateSince(start.generation, start.txid, Number.MAX_SAFE_INTEGER);
    expect(records, `seed ${seed}`).not.toBeNull();
    let txid = start.txid;
    for (const rec of records!) {
      const cs = decodeChangeSet(rec.payload);
      expect(cs.minTxid, `seed ${seed}`).toBe(txid + 1);
      txid = cs.maxTxid;
      image = applyToImage(image, cs);
    }
    expect(txid).toBe(db.position.txid);
    expect(txid - start.txid).toBeGreaterThan(STEPS * 0.8);
    const primaryImage = snapshotImage(db);
    expect(diffPages(image, primaryImage, db.pageSize), `seed ${seed}`).toEqual([]);
    expect(DatabaseChecksum.fromFile(image).value).toBe(db.position.checksum);

    const file = join(t.dir, 'replayed.db');
    writeFileSync(file, image);
    const replayed = new Database(file, { readonly: true });
    expect(replayed.pragma('integrity_check', { simple: true })).toBe('ok');
    replayed.close();
    store.close();
  }, roundsTimeout(STEPS, 20));
});
