/**
 * The streamed snapshot path of a restore (primary/restore-stream.ts) on a real file:// backup: the
 * result equals the primary's state and the whole-object path's result; a snapshot damaged anywhere
 * (its magic, image, trailer, a byte more or fewer than listed) is BACKUP_CORRUPT with nothing left
 * behind, a flipped magic included (that object is read whole and fails there).
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBackupKey } from '../../shared/backup-layout.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { FileObjectStore } from '../../shared/node/file-object-store.ts';
import type { ObjectStore } from '../../shared/object-store.ts';
import { restoreDatabase } from '../../primary/restore.ts';
import { fileChecksum, randomWorkload, startBackedUpPrimary, waitUploaded, type Written } from './backup-kit.ts';

const DB = 'app';
let dir: string;
let store: FileObjectStore;
let written: Written[];
let snapshotKey: string;
let original: Uint8Array;

/** WholeOnly is the same store without getStream: restore reads every object whole. */
function wholeOnly(s: ObjectStore): ObjectStore {
  return { description: s.description, put: (k, b) => s.put(k, b), get: (k) => s.get(k), list: (p) => s.list(p), delete: (k) => s.delete(k) };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'edgelite-restore-stream-'));
  const bucket = join(dir, 'bucket');
  // One snapshot only (the first), so every restore starts from the object the cases damage.
  const primary = await startBackedUpPrimary(join(dir, 'data'), `file://${bucket}`, {}, 1_000_000);
  try {
    written = await randomWorkload(primary.url, DB, 40);
    await waitUploaded(primary.url, DB);
  } finally {
    await primary.close();
  }
  store = new FileObjectStore(bucket);
  const snaps = (await store.list(`${DB}/`)).filter((o) => parseBackupKey(o)?.kind === 'snapshot');
  expect(snaps).toHaveLength(1);
  snapshotKey = snaps[0]!.key;
  original = (await store.get(snapshotKey))!;
}, 120_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('streamed restore', () => {
  it('equals the primary at the last txid, and the whole-object path', async () => {
    const last = written.at(-1)!;
    const streamed = await restoreDatabase(store, { db: DB, target: { latest: true }, out: join(dir, 'streamed.db') });
    const whole = await restoreDatabase(wholeOnly(store), { db: DB, target: { latest: true }, out: join(dir, 'whole.db') });
    expect([streamed.txid, streamed.checksum]).toEqual([last.txid, last.checksum]);
    expect(fileChecksum(join(dir, 'streamed.db'))).toBe(last.checksum);
    expect(whole).toEqual(streamed);
    const progress: number[] = [];
    await restoreDatabase(store, { db: DB, target: { latest: true }, out: join(dir, 'progress.db'), onBytes: (n) => progress.push(n) });
    const listed = (await store.list(`${DB}/`)).reduce((n, o) => n + o.size, 0);
    expect(progress.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(listed);
    expect(progress.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(original.length);
  });

  const damage: Array<[string, (b: Uint8Array) => Uint8Array, RegExp]> = [
    ['a flipped magic byte', (b) => flip(b, 0), /bad magic/],
    ['a flipped image byte', (b) => flip(b, 64 + Math.floor((b.length - 72) / 2)), /file checksum mismatch/],
    ['a flipped trailer byte', (b) => flip(b, b.length - 1), /file checksum mismatch/],
    ['a truncated object', (b) => b.subarray(0, b.length - 100), /truncated|header says/],
    ['an extended object', (b) => concat(b, new Uint8Array(4096)), /truncated or extended|longer/],
  ];
  it.each(damage)('reports %s as BACKUP_CORRUPT and leaves no file', async (_what, change, message) => {
    await store.put(snapshotKey, change(original));
    try {
      const out = join(dir, `damaged.db`);
      const err = await restoreDatabase(store, { db: DB, target: { latest: true }, out }).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(EdgeliteError);
      expect((err as EdgeliteError).code).toBe('BACKUP_CORRUPT');
      expect((err as EdgeliteError).message).toMatch(message);
      expect((err as EdgeliteError).message).toContain(snapshotKey);
      expect(existsSync(out)).toBe(false);
      expect(readdirSync(dir).filter((f) => f.includes('restore-tmp'))).toEqual([]);
    } finally {
      await store.put(snapshotKey, original);
    }
  });
});

function flip(b: Uint8Array, at: number): Uint8Array {
  const c = b.slice();
  c[at]! ^= 0x40;
  return c;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
