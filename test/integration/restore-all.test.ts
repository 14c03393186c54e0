/**
 * `edgelite restore URL --all --data DIR` against a real S3-compatible server (s3rver on 127.0.0.1):
 * several databases backed up by a primary, restored as of a past time into a fresh data directory by
 * the CLI (a child process), one of them damaged in the bucket (reported, the others restored). A
 * primary started on DIR serves them equal by checksum in a newer generation with the same database
 * id; a token for a write after the restore point is answered TOKEN_LOST (410) by the primary and by a
 * replica following it, even once the new history's txids pass it; a token before it is honoured.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runEdgelite } from '../kit/spawn.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBackupKey } from '../../shared/backup-layout.ts';
import { tokenLost } from '../../shared/consistency.ts';
import { silentLogger } from '../../shared/log.ts';
import { parseBackupTarget, type ObjectStore } from '../../shared/object-store.ts';
import { decodeToken, encodeToken, TOKEN_HEADER } from '../../shared/token.ts';
import { openObjectStore } from '../../shared/node/open-object-store.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { exec, http, integrityCheck } from '../kit/api.ts';
import { sleep, waitFor } from '../kit/wait.ts';
import { randomWorkload, S3_BUCKET, startBackedUpPrimary, startS3, waitUploaded, type S3Server, type Written } from './backup-kit.ts';

const URL_ = `s3://${S3_BUCKET}/backups/all`;
const GOOD = ['a', 'b', 'c'];
const DAMAGED = 'd';

const cli = runEdgelite;

interface Before {
  written: Written[];
  databaseId: number;
  generation: number;
}

let s3: S3Server;
let dir: string;
let objects: ObjectStore;
const before = new Map<string, Before>();
/** A token for a's last write before the restore point, and one for a write after it. */
let tokenBefore: string;
let tokenAfter: string;
let afterTxid: number;
let restoreTime: number;
let run: { status: number | null; stdout: string; stderr: string };
let lines: Array<Record<string, any>>;
let primary: PrimaryHandle | undefined;
let replica: ReplicaHandle | undefined;

beforeAll(async () => {
  s3 = await startS3();
  dir = mkdtempSync(join(tmpdir(), 'edgelite-restore-all-'));
  const old = await startBackedUpPrimary(join(dir, 'old'), URL_, s3.env);
  try {
    for (const [i, db] of [...GOOD, DAMAGED].entries()) {
      const written = await randomWorkload(old.url, db, 20, i + 1);
      const d = (await http(old.url, 'GET', `/v1/db/${db}`)).json;
      before.set(db, { written, databaseId: d.databaseId, generation: d.generation });
    }
    const w = await exec(old.url, 'a', { sql: 'INSERT INTO t (v) VALUES (?)', params: ['last before'] });
    tokenBefore = w.json.token as string;
    before.get('a')!.written.push({ txid: Number(w.headers.get('edgelite-txid')), checksum: w.headers.get('edgelite-checksum')!, before: 0, after: 0 });
    for (const db of [...GOOD, DAMAGED]) await waitUploaded(old.url, db);
    restoreTime = Date.now();
    await sleep(20); // commit times are in ms: what follows commits strictly after restoreTime
    for (let i = 0; i < 3; i++) {
      const r = await exec(old.url, 'a', { sql: 'INSERT INTO t (v) VALUES (?)', params: [`after ${i}`] });
      tokenAfter = r.json.token as string;
      afterTxid = Number(r.headers.get('edgelite-txid'));
    }
    await waitUploaded(old.url, 'a');
  } finally {
    await old.close();
  }
  objects = openObjectStore(parseBackupTarget(URL_, s3.env));
  // Every snapshot of d gets a flipped byte in its image: no restore of d can start.
  for (const o of await objects.list(`${DAMAGED}/`)) {
    if (parseBackupKey(o)?.kind !== 'snapshot') continue;
    const bytes = (await objects.get(o.key))!;
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    await objects.put(o.key, bytes);
  }
  run = await cli(['restore', URL_, '--all', '--data', join(dir, 'restored'), '--time', new Date(restoreTime).toISOString()], { ...process.env, ...s3.env });
  lines = run.stdout.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, any>);
}, 180_000);

afterAll(async () => {
  await replica?.close();
  await primary?.close();
  await s3?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('edgelite restore --all --data DIR', () => {
  it('restores every database as of --time, reports the damaged one and exits non-zero naming it', () => {
    expect(run.status, run.stderr).toBe(1);
    expect(run.stderr).toMatch(/BACKUP_CORRUPT: restore failed for 1 of 4 databases: d\b/);
    expect(run.stderr).toMatch(/\d+\/\d+ objects {2}4\/4 databases/);
    const byDb = new Map(lines.map((l) => [(l.db as string) ?? '', l]));
    expect([...byDb.keys()].sort()).toEqual(['a', 'b', 'c', 'd']);
    expect(byDb.get(DAMAGED)!.failed.code).toBe('BACKUP_CORRUPT');
    expect(existsSync(join(dir, 'restored', `${DAMAGED}.db`))).toBe(false);
    for (const db of GOOD) {
      const line = byDb.get(db)!;
      const last = before.get(db)!.written.at(-1)!;
      expect(line.restored).toBe(join(dir, 'restored', `${db}.db`));
      expect([line.txid, line.checksum]).toEqual([last.txid, last.checksum]);
      expect(line.startTxid).toBe(last.txid + 1);
      expect(line.startGeneration).toBeGreaterThan(before.get(db)!.generation);
      expect(integrityCheck(line.restored as string)).toBe('ok');
    }
    // b and c had no change after their last upload: that upload is their state at --time.
    expect(byDb.get('b')!.note).toMatch(/after its last upload/);
    expect(byDb.get('a')!.note).toBeUndefined();
  });

  it('refuses a data directory that is not empty, unless --force', async () => {
    const again = await cli(['restore', URL_, '--all', '--data', join(dir, 'restored')], { ...process.env, ...s3.env });
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/DATABASE_EXISTS: .* is not empty: pass --force/);
    const forced = await cli(['restore', URL_, '--all', '--data', join(dir, 'restored'), '--force', '--time', new Date(restoreTime).toISOString()], { ...process.env, ...s3.env });
    expect(forced.status).toBe(1); // d is still damaged
    const restored = forced.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>).filter((l) => l.restored);
    expect(restored.map((l) => [l.db, l.checksum]).sort()).toEqual(GOOD.map((db) => [db, before.get(db)!.written.at(-1)!.checksum]));
    const bad = await cli(['restore', URL_, '--all', '--data', join(dir, 'x'), '--txid', '3'], { ...process.env, ...s3.env });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/MISCONFIGURED: --all takes --time/);
  });

  it('a primary started on DIR serves them equal by checksum, in a newer generation of the same database', async () => {
    primary = await startPrimary(parsePrimaryConfig(['--data', join(dir, 'restored'), '--listen', '127.0.0.1:0', '--query-timeout-ms', '0'], {}), silentLogger);
    for (const db of GOOD) {
      const b = before.get(db)!;
      const last = b.written.at(-1)!;
      const d = (await http(primary.url, 'GET', `/v1/db/${db}`)).json;
      expect({ databaseId: d.databaseId, txid: d.txid, checksum: d.checksum }).toEqual({ databaseId: b.databaseId, txid: last.txid + 1, checksum: last.checksum });
      expect(d.generation).toBeGreaterThan(b.generation);
      expect(d.generations.at(-1)).toEqual({ generation: d.generation, startTxid: last.txid + 1 });
      const meta = JSON.parse(readFileSync(join(dir, 'restored', '.edgelite', db, 'meta.json'), 'utf8')) as { reason: string };
      expect(meta.reason).toContain(URL_);
    }
    expect((await http(primary.url, 'GET', `/v1/db/${DAMAGED}`)).status).toBe(404);
    const rows = await http(primary.url, 'POST', '/v1/db/a/query', { sql: "SELECT count(*) FROM t WHERE v LIKE 'after%'" });
    expect(rows.json.results[0].rows).toEqual([[0]]);
  });

  it('the primary answers a token for a write after the restore point with TOKEN_LOST, one before it as usual', async () => {
    const read = (token: string) => http(primary!.url, 'POST', '/v1/db/a/query', { sql: 'SELECT count(*) FROM t' }, { [TOKEN_HEADER]: token });
    const lost = await read(tokenAfter);
    expect(lost.status).toBe(410);
    expect(lost.json.error.code).toBe('TOKEN_LOST');
    expect((await read(tokenBefore)).status).toBe(200);
    // The new history's txids pass the lost one: still lost, never satisfied by a later txid.
    let newToken = '';
    for (let txid = 0; txid <= afterTxid; ) {
      const w = await exec(primary!.url, 'a', { sql: 'INSERT INTO t (v) VALUES (?)', params: ['new history'] });
      newToken = w.json.token as string;
      txid = Number(w.headers.get('edgelite-txid'));
    }
    expect((await read(tokenAfter)).json.error.code).toBe('TOKEN_LOST');
    expect((await read(newToken)).status).toBe(200);
    // A token of another incarnation of the database is refused as on a replica.
    const other = decodeToken(tokenBefore);
    const mismatch = await read(encodeToken({ ...other, databaseId: (other.databaseId % 0xfffffffe) + 1 }));
    expect([mismatch.status, mismatch.json.error.code]).toEqual([400, 'TOKEN_DATABASE_MISMATCH']);
  });

  it('a replica of the restored primary answers the same: TOKEN_LOST after the restore point, served before it', async () => {
    replica = await startReplica(parseReplicaConfig(['--primary', primary!.url, '--data', join(dir, 'replica'), '--listen', '127.0.0.1:0', '--databases', 'a'], {}), silentLogger);
    const want = (await http(primary!.url, 'GET', '/v1/db/a')).json;
    await waitFor(() => {
      const p = replica!.store.get('a')?.position;
      return p && p.txid === want.txid ? p : null;
    }, 'the replica to catch up');
    const read = (token: string) => http(replica!.url, 'POST', '/v1/db/a/query', { sql: 'SELECT count(*) FROM t' }, { [TOKEN_HEADER]: token });
    const lost = await read(tokenAfter);
    expect(lost.status).toBe(410);
    expect(lost.json.error.code).toBe('TOKEN_LOST');
    expect(lost.json.error.details).toMatchObject({ db: 'a', tokenTxid: afterTxid });
    expect((await read(tokenBefore)).status).toBe(200);
  });
});

describe('tokenLost', () => {
  const starts = [
    { generation: 1, startTxid: 0 },
    { generation: 2, startTxid: 11 }, // generation 1 reached 10 before it
    { generation: 5, startTxid: 31 }, // a restore to txid 30 of an earlier generation
  ];
  it.each([
    [1, 10, null],
    [1, 11, 2],
    [1, 40, 2],
    [2, 30, null],
    [2, 31, 5],
    [3, 31, 5],
    [4, 30, null],
    [5, 99, null],
    [6, 99, null],
  ])('generation %i txid %i: lost at %s', (generation, txid, at) => {
    expect(tokenLost({ generation, txid }, starts)?.generation ?? null).toBe(at);
  });
  it('cannot tell without starts', () => expect(tokenLost({ generation: 1, txid: 5 }, [])).toBeNull());
});
