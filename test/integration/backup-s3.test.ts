/**
 * Continuous backup to a real S3-compatible server (s3rver on 127.0.0.1) and point-in-time restore:
 * restores to 50 random past txids and to past times equal the primary's state then (by checksum, and
 * integrity_check ok); damaged objects are reported, never applied; `backups` lists the ranges.
 */
import { rejectedEdgelite } from '../helpers.ts';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runEdgelite } from '../kit/spawn.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalog, parseBackupKey, planRestore } from '../../shared/backup-layout.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { parseBackupTarget, type ObjectStore } from '../../shared/object-store.ts';
import { openObjectStore } from '../../shared/node/open-object-store.ts';
import { restoreDatabase } from '../../primary/restore.ts';
import type { PrimaryHandle } from '../../primary/server.ts';
import { http, integrityCheck } from '../kit/api.ts';
import { fileChecksum, pick, randomWorkload, S3_BUCKET, startBackedUpPrimary, startS3, waitUploaded, type S3Server, type Written } from './backup-kit.ts';

const DB = 'app';
const URL_ = `s3://${S3_BUCKET}/backups/one`;

const cli = runEdgelite;

let s3: S3Server;
let dir: string;
let primary: PrimaryHandle;
let objects: ObjectStore;
let written: Written[];
/** The txid of the first snapshot: the backup starts within an interval of the database's creation. */
let firstTxid: number;

beforeAll(async () => {
  s3 = await startS3();
  dir = mkdtempSync(join(tmpdir(), 'edgelite-backup-s3-'));
  primary = await startBackedUpPrimary(join(dir, 'data'), URL_, s3.env);
  written = await randomWorkload(primary.url, DB, 160);
  await waitUploaded(primary.url, DB);
  objects = openObjectStore(parseBackupTarget(URL_, s3.env));
  firstTxid = Math.min(...(await objects.list(`${DB}/`)).filter((o) => o.key.endsWith('.snapshot')).map((o) => Number.parseInt(o.key.split('/')[2]!.slice(0, 16), 16)));
}, 90_000);

afterAll(async () => {
  await primary?.close();
  await s3?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function restoreTo(target: { txid: number } | { time: number }, name: string) {
  const out = join(dir, `${name}.db`);
  const result = await restoreDatabase(objects, { db: DB, target, out });
  return { out, result };
}


describe('backup to s3 and point-in-time restore', () => {
  it('restores 50 random past txids, each equal to the primary at that txid', async () => {
    const keys = (await objects.list(`${DB}/`)).map((o) => o.key);
    expect(keys.filter((k) => k.endsWith('.snapshot')).length).toBeGreaterThan(1); // periodic snapshots were taken
    expect(keys.filter((k) => k.endsWith('.changes')).length).toBeGreaterThan(5);
    const restorable = written.filter((w) => w.txid >= firstTxid);
    expect(restorable.length).toBeGreaterThan(100);
    for (const [i, w] of pick(restorable, 50).entries()) {
      const { out, result } = await restoreTo({ txid: w.txid }, `txid-${i}`);
      expect(result.txid).toBe(w.txid);
      expect(fileChecksum(out)).toBe(w.checksum);
      expect(integrityCheck(out)).toBe('ok');
      rmSync(out);
    }
  });

  it('restores to past times: the state after the last write committed by then', async () => {
    for (const [i, w] of pick(written.slice(0, -1).filter((w) => w.txid >= firstTxid), 8, 11).entries()) {
      const { out, result } = await restoreTo({ time: w.after }, `time-${i}`);
      expect(result.txid).toBe(w.txid);
      expect(fileChecksum(out)).toBe(w.checksum);
      expect(integrityCheck(out)).toBe('ok');
      rmSync(out);
    }
  });

  it('refuses targets it cannot restore, with a typed error', async () => {
    const last = written.at(-1)!;
    const after = await rejectedEdgelite(restoreTo({ txid: last.txid + 1 }, 'after'));
    expect([after.code, after.details?.reason]).toEqual(['NOT_RESTORABLE', 'after-last-upload']);
    const before = await rejectedEdgelite(restoreTo({ time: written[0]!.before - 60_000 }, 'before'));
    expect([before.code, before.details?.reason]).toEqual(['NOT_RESTORABLE', 'before-first-backup']);
    const none = await rejectedEdgelite(restoreDatabase(objects, { db: 'nothere', target: { latest: true }, out: join(dir, 'none.db') }));
    expect([none.code, none.details?.reason]).toEqual(['NOT_RESTORABLE', 'no-backup']);
    expect(existsSync(join(dir, 'after.db'))).toBe(false);
  });

  it('shows the uploaded txid and lag in GET /v1/db/{name} and /metrics', async () => {
    const r = await http(primary.url, 'GET', `/v1/db/${DB}`);
    expect(r.json.backup).toEqual({ uploadedTxid: written.at(-1)!.txid, lagMs: 0 });
    const m = await fetch(`${primary.url}/metrics`).then((res) => res.text());
    expect(m).toContain(`edgelite_backup_uploaded_txid{db="${DB}"} ${written.at(-1)!.txid}`);
    expect(m).toContain(`edgelite_backup_lag_seconds{db="${DB}"} 0`);
    expect(m).toContain(`edgelite_backup_errors_total{db="${DB}"} 0`);
  });

  it('`backups --json` lists the restorable range, `restore` writes the file and refuses to overwrite it', async () => {
    const env = { ...process.env, ...s3.env };
    const list = await cli(['backups', URL_, '--json'], env);
    expect(list.status, list.stderr).toBe(0);
    const dbs = JSON.parse(list.stdout).databases as Array<{ db: string; generations: Array<{ ranges: Array<{ fromTxid: number; toTxid: number }> }> }>;
    const ranges = dbs.find((d) => d.db === DB)!.generations.at(-1)!.ranges;
    expect(ranges).toHaveLength(1);
    expect(ranges[0]!.fromTxid).toBe(firstTxid);
    expect(ranges[0]!.toTxid).toBe(written.at(-1)!.txid);
    const table = await cli(['backups', URL_, '--db', DB], env);
    expect(table.stdout).toContain(`${ranges[0]!.fromTxid}..${ranges[0]!.toTxid}`);

    const w = written[written.length - 20]!;
    const out = join(dir, 'cli.db');
    const args = ['restore', URL_, '--db', DB, '--txid', String(w.txid), '--out', out];
    const done = await cli(args, env);
    expect(done.status, done.stderr).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ txid: w.txid, checksum: w.checksum });
    expect(fileChecksum(out)).toBe(w.checksum);
    const again = await cli(args, env);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('DATABASE_EXISTS');
    const forced = await cli(['restore', URL_, '--db', DB, '--out', out, '--force'], env);
    expect(forced.status, forced.stderr).toBe(0);
    expect(fileChecksum(out)).toBe(written.at(-1)!.checksum);
  });

  it('detects a flipped byte or a truncated object, reports it and applies nothing', async () => {
    const list = (await objects.list(`${DB}/`)).map((o) => parseBackupKey(o)!);
    const snapshots = list.filter((o) => o.kind === 'snapshot');
    const snapTxids = snapshots.map((o) => o.txid);
    // A segment a restore to its end must read: one its plan names (a merged segment replaces its
    // pieces, docs/FORMAT.md#compaction-and-retention) with no snapshot inside it.
    const cat = catalog(await objects.list(`${DB}/`)).get(DB);
    const ends = [...snapTxids.slice(1).map((t) => t - 1), written.at(-1)!.txid].filter((t) => t >= firstTxid);
    const seg = ends.flatMap((t) => planRestore(DB, cat, { txid: t }).segments).find((o) => !snapTxids.some((t) => t >= o.minTxid && t <= o.maxTxid))!;
    expect(seg.kind).toBe('segment');
    const original = (await objects.get(seg.key))!;
    const target = { txid: seg.kind === 'segment' ? seg.maxTxid : 0 };
    const damages: Array<[string, Uint8Array]> = [
      ['flipped byte', Uint8Array.from(original, (b, i) => (i === Math.floor(original.length / 2) ? b ^ 0x10 : b))],
      ['truncated mid change set', original.subarray(0, original.length - 100)],
    ];
    // A truncation exactly at a change-set boundary: the segment then holds fewer txids than its name.
    const firstLength = 64 + new DataView(original.buffer, original.byteOffset).getUint32(40) * (4 + new DataView(original.buffer, original.byteOffset).getUint32(8)) + 16;
    if (firstLength < original.length) damages.push(['truncated at a change-set boundary', original.subarray(0, firstLength)]);
    for (const [what, bytes] of damages) {
      await objects.put(seg.key, bytes);
      const out = join(dir, 'damaged.db');
      const err = await rejectedEdgelite(restoreDatabase(objects, { db: DB, target, out }));
      expect(err.code, what).toBe('BACKUP_CORRUPT');
      expect(err.message, what).toContain(seg.key);
      expect(existsSync(out), what).toBe(false);
      expect(existsSync(`${out}.restore-tmp`), what).toBe(false);
    }
    await objects.put(seg.key, original);
    // A damaged snapshot: every one is checked before use (the newest one is the one a restore to the end uses).
    const snap = snapshots.at(-1)!;
    const end = { txid: written.at(-1)!.txid };
    const snapBytes = (await objects.get(snap.key))!;
    await objects.put(snap.key, snapBytes.subarray(0, snapBytes.length - 1));
    const err = await rejectedEdgelite(restoreDatabase(objects, { db: DB, target: end, out: join(dir, 'damaged.db') }));
    expect([err.code, err.message.includes(snap.key)]).toEqual(['BACKUP_CORRUPT', true]);
    await objects.put(snap.key, snapBytes);
    const { out } = await restoreTo(end, 'repaired');
    expect(fileChecksum(out)).toBe(written.at(-1)!.checksum);
  });
});
