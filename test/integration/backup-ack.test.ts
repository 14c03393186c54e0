/**
 * `--backup-ack` against a real S3-compatible server (s3rver on 127.0.0.1): a write is answered only
 * once the bucket holds its txid, without waiting for `--backup-interval` (set to an hour here);
 * concurrent writes share uploads; with the bucket unreachable a write is answered 504 BACKUP_PENDING
 * (`details.outcome: 'applied'`, its token), on the primary and through a forwarding replica alike,
 * stays committed, and is uploaded once the bucket is back; a torn last object (an upload cut short)
 * is deleted by the primary that picks the backup up again.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { catalog, parseBackupKey } from '../../shared/backup-layout.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { parseBackupTarget, type ObjectStore } from '../../shared/object-store.ts';
import { decodeToken } from '../../shared/token.ts';
import { connect } from '../../shared/client.ts';
import { openObjectStore } from '../../shared/node/open-object-store.ts';
import { DEFAULT_BACKUP_ACK_TIMEOUT_MS, parsePrimaryConfig } from '../../primary/config.ts';
import { restoreDatabase } from '../../primary/restore.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica } from '../../replica/server.ts';
import { freePort, http, integrityCheck } from '../kit/api.ts';
import { quietLogger, S3_BUCKET, startS3, type S3Server } from './backup-kit.ts';
import Database from 'better-sqlite3';

const DB = 'app';
const URL_ = `s3://${S3_BUCKET}/ack`;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function primaryWithAck(env: Record<string, string>, extra: string[] = [], dir = mkdtempSync(join(tmpdir(), 'edgelite-backup-ack-'))): Promise<PrimaryHandle> {
  const p = await startPrimary(parsePrimaryConfig(['--data', dir, '--listen', '127.0.0.1:0', '--backup', URL_, '--backup-interval', '60m', '--backup-ack', ...extra], env), quietLogger());
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }), () => p.close());
  return p;
}

function readRows(file: string): unknown[] {
  const conn = new Database(file, { readonly: true });
  try {
    return conn.prepare('SELECT v FROM t ORDER BY id').pluck().all();
  } finally {
    conn.close();
  }
}

/** uploadedTo is the highest txid the bucket's listing says is restorable (0: nothing). */
async function uploadedTo(objects: ObjectStore): Promise<number> {
  return catalog(await objects.list(`${DB}/`)).get(DB)?.at(-1)?.ranges.at(-1)?.toTxid ?? -1;
}

const insert = (v: string) => ({ sql: 'INSERT INTO t (v) VALUES (?)', params: [v] });

describe('--backup-ack configuration', () => {
  const parse = (args: string[]) => parsePrimaryConfig(['--data', '/tmp/x', ...args], {});
  const refusal = (args: string[]): EdgeliteError => {
    try {
      parse(args);
    } catch (err) {
      return err as EdgeliteError;
    }
    throw new Error(`${args.join(' ')} was accepted`);
  };

  it('is off by default, 10 s by default when on, and needs --backup', () => {
    expect(parse([]).backupAck).toBeNull();
    expect(parse(['--backup', 'file:///tmp/b', '--backup-ack']).backupAck).toEqual({ timeoutMs: DEFAULT_BACKUP_ACK_TIMEOUT_MS });
    expect(parse(['--backup', 'file:///tmp/b', '--backup-ack', '--backup-ack-timeout', '250ms']).backupAck).toEqual({ timeoutMs: 250 });
    for (const [args, says] of [
      [['--backup-ack'], '--backup-ack needs --backup'],
      [['--backup', 'file:///tmp/b', '--backup-ack-timeout', '2s'], '--backup-ack-timeout needs --backup-ack'],
      [['--backup', 'file:///tmp/b', '--backup-ack', '--backup-ack-timeout', 'soon'], '--backup-ack-timeout wants a duration'],
    ] as const) {
      const err = refusal([...args]);
      expect(err.code).toBe('MISCONFIGURED');
      expect(err.message).toContain(says);
    }
  });
});

describe('--backup-ack against s3rver', () => {
  it('answers each write once the bucket holds its txid, without waiting for the interval', async () => {
    const s3 = await startS3();
    cleanups.push(() => s3.close());
    const p = await primaryWithAck(s3.env);
    const objects = openObjectStore(parseBackupTarget(URL_, s3.env));
    const created = await http(p.url, 'PUT', `/v1/db/${DB}`);
    expect(created.status).toBe(201);
    // The database's first snapshot is in the bucket before PUT answers.
    expect(await uploadedTo(objects)).toBe(0);
    await http(p.url, 'POST', `/v1/db/${DB}/exec`, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    for (let i = 0; i < 5; i++) {
      const r = await http(p.url, 'POST', `/v1/db/${DB}/exec`, insert(`row ${i}`));
      expect(r.status).toBe(200);
      const { txid } = decodeToken(r.json.token as string);
      expect(await uploadedTo(objects)).toBeGreaterThanOrEqual(txid);
      expect((await http(p.url, 'GET', `/v1/db/${DB}`)).json.backup.uploadedTxid).toBeGreaterThanOrEqual(txid);
    }
  });

  it('group-commits uploads: concurrent writes share segments', async () => {
    const s3 = await startS3();
    cleanups.push(() => s3.close());
    const p = await primaryWithAck(s3.env);
    const objects = openObjectStore(parseBackupTarget(URL_, s3.env));
    expect((await http(p.url, 'PUT', `/v1/db/${DB}`)).status).toBe(201);
    await http(p.url, 'POST', `/v1/db/${DB}/exec`, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    const segmentsBefore = (await objects.list(`${DB}/`)).filter((o) => o.key.endsWith('.changes')).length;
    const n = 40;
    const answers = await Promise.all(Array.from({ length: n }, (_, i) => http(p.url, 'POST', `/v1/db/${DB}/exec`, insert(`c${i}`))));
    expect(answers.map((a) => a.status)).toEqual(Array(n).fill(200));
    const maxTxid = Math.max(...answers.map((a) => decodeToken(a.json.token as string).txid));
    expect(await uploadedTo(objects)).toBeGreaterThanOrEqual(maxTxid);
    const segments = (await objects.list(`${DB}/`)).filter((o) => o.key.endsWith('.changes')).length - segmentsBefore;
    console.log(`backup-ack: ${n} concurrent writes, ${new Set(answers.map((a) => a.json.token)).size} txids, ${segments} segment PUTs`);
    expect(segments).toBeGreaterThan(0);
    expect(segments).toBeLessThan(n);
  });

  it('answers 504 BACKUP_PENDING (outcome applied, with its token) while the bucket is unreachable, and uploads the write once it is back', async () => {
    const port = await freePort();
    const env = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}` };
    const p = await primaryWithAck(env, ['--backup-ack-timeout', '1500ms']);

    const created = await http(p.url, 'PUT', `/v1/db/${DB}`);
    expect(created.status).toBe(504);
    expect(created.json.error.code).toBe('BACKUP_PENDING');
    expect(created.json.error.details).toMatchObject({ outcome: 'applied', reason: 'timeout' });
    expect(created.json.error.details.failedUploads).toBeGreaterThan(0);
    const schema = await http(p.url, 'POST', `/v1/db/${DB}/exec`, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    expect(schema.status).toBe(504);

    const r = await http(p.url, 'POST', `/v1/db/${DB}/exec`, insert('while the bucket was away'));
    expect(r.status).toBe(504);
    const e = r.json.error as { code: string; message: string; details: Record<string, unknown> };
    expect(e.code).toBe('BACKUP_PENDING');
    expect(e.details).toMatchObject({ outcome: 'applied', reason: 'timeout', uploadedTxid: 0 });
    // Answered at the bound, not before it (a timer may fire a millisecond early by the clock that measures it).
    expect(e.details.waitedMs as number).toBeGreaterThanOrEqual(1499);
    expect(r.headers.get('edgelite-token')).toBe(e.details.token);
    const token = decodeToken(e.details.token as string);
    expect(token.txid).toBe(e.details.txid);
    expect(e.message).not.toContain('S3RVER'); // no credential in the answer
    // Committed on the primary: readable there, at the token's txid.
    const read = await http(p.url, 'POST', `/v1/db/${DB}/query`, { sql: 'SELECT v FROM t' });
    expect(read.json.results[0].rows).toEqual([['while the bucket was away']]);
    expect(Number(read.headers.get('edgelite-txid'))).toBeGreaterThanOrEqual(token.txid);
    // A write forwarded by a replica is an ordinary write on the primary: the same answer, passed on.
    const rdir = mkdtempSync(join(tmpdir(), 'edgelite-backup-ack-replica-'));
    const replica = await startReplica(parseReplicaConfig(['--primary', p.url, '--data', rdir, '--listen', '127.0.0.1:0', '--query-timeout-ms', '0'], {}), quietLogger());
    cleanups.push(() => rmSync(rdir, { recursive: true, force: true }), () => replica.close());
    const forwarded = await http(replica.url, 'POST', `/v1/db/${DB}/exec`, insert('forwarded'));
    expect(forwarded.status).toBe(504);
    expect(forwarded.json.error.code).toBe('BACKUP_PENDING');
    expect(forwarded.json.error.details).toMatchObject({ outcome: 'applied', reason: 'timeout' });
    expect(decodeToken(forwarded.json.error.details.token as string).txid).toBe(token.txid + 1);
    // The client library throws it, and its session takes the token: the write is applied, so the
    // session's next read (on the replica) sees it.
    const client = connect({ replicas: [replica.url] });
    cleanups.push(async () => client.close());
    const session = client.session(DB);
    const thrown = await session.exec('INSERT INTO t (v) VALUES (?)', ['through the client']).then(() => null, (err: unknown) => err);
    expect(thrown).toBeInstanceOf(EdgeliteError);
    expect((thrown as EdgeliteError).code).toBe('BACKUP_PENDING');
    expect(session.token).toBe((thrown as EdgeliteError).details?.token);
    expect((await session.query('SELECT v FROM t ORDER BY id')).rows.map((row) => row[0])).toEqual(['while the bucket was away', 'forwarded', 'through the client']);

    // The bucket comes back: the next write (forwarded) is acknowledged, and the bucket holds all three.
    const s3 = await startS3(port);
    cleanups.push(() => s3.close());
    const ok = await http(replica.url, 'POST', `/v1/db/${DB}/exec`, insert('after'));
    expect(ok.status, JSON.stringify(ok.json)).toBe(200);
    const objects = openObjectStore(parseBackupTarget(URL_, s3.env));
    const dir = mkdtempSync(join(tmpdir(), 'edgelite-backup-ack-restore-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const out = join(dir, 'r.db');
    const restored = await restoreDatabase(objects, { db: DB, target: { latest: true }, out });
    expect(restored.txid).toBeGreaterThanOrEqual(decodeToken(ok.json.token as string).txid);
    expect(readRows(out)).toEqual(['while the bucket was away', 'forwarded', 'through the client', 'after']);
    expect(integrityCheck(out)).toBe('ok');
  });

  it('waitUploaded ends without an upload when its caller gives up or the backup closes, never with uploaded: true', async () => {
    const port = await freePort();
    const env = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}` };
    const dir = mkdtempSync(join(tmpdir(), 'edgelite-backup-ack-close-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const p = await startPrimary(parsePrimaryConfig(['--data', dir, '--listen', '127.0.0.1:0', '--backup', URL_, '--backup-ack', '--backup-ack-timeout', '200ms'], env), quietLogger());
    const db = p.store.create(DB).db;
    const backup = p.backup!;
    expect(await backup.waitUploaded(DB, db.position.generation, 0, 200)).toMatchObject({ uploaded: false, reason: 'timeout', uploadedTxid: 0 });
    const ac = new AbortController();
    const aborted = backup.waitUploaded(DB, db.position.generation, 0, 60_000, ac.signal);
    ac.abort();
    expect(await aborted).toMatchObject({ uploaded: false, reason: 'aborted' });
    const closing = backup.waitUploaded(DB, db.position.generation, 0, 60_000);
    await p.close();
    expect(await closing).toMatchObject({ uploaded: false, reason: 'closed' });
    expect(await backup.waitUploaded(DB, db.position.generation, 0, 60_000)).toMatchObject({ uploaded: false, reason: 'closed' });
  });

  it('a restarted primary deletes a torn last object (an upload cut short on a store without atomic PUTs) and uploads its change sets again', async () => {
    const s3 = await startS3();
    cleanups.push(() => s3.close());
    const dir = mkdtempSync(join(tmpdir(), 'edgelite-backup-ack-torn-'));
    const first = await primaryWithAck(s3.env, [], dir);
    expect((await http(first.url, 'PUT', `/v1/db/${DB}`)).status).toBe(201);
    await http(first.url, 'POST', `/v1/db/${DB}/exec`, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    for (const v of ['a', 'b', 'c']) expect((await http(first.url, 'POST', `/v1/db/${DB}/exec`, insert(v))).status).toBe(200);
    await first.close();
    // What s3rver keeps of a PUT whose client died mid-body: the first bytes under the full name.
    const objects = openObjectStore(parseBackupTarget(URL_, s3.env));
    const last = (await objects.list(`${DB}/`)).map(parseBackupKey).filter((o) => o?.kind === 'segment').at(-1)!;
    const whole = (await objects.get(last.key))!;
    await objects.put(last.key, whole.subarray(0, 100));
    const out = join(dir, 'torn.db');
    const err = await restoreDatabase(objects, { db: DB, target: { latest: true }, out }).catch((e: unknown) => e as EdgeliteError);
    expect((err as EdgeliteError).code).toBe('BACKUP_CORRUPT');

    const second = await primaryWithAck(s3.env, [], dir);
    expect((await http(second.url, 'POST', `/v1/db/${DB}/exec`, insert('d'))).status).toBe(200);
    const restored = await restoreDatabase(objects, { db: DB, target: { latest: true }, out });
    expect(restored.txid).toBe((await http(second.url, 'GET', `/v1/db/${DB}`)).json.txid);
    expect(readRows(out)).toEqual(['a', 'b', 'c', 'd']);
    expect(integrityCheck(out)).toBe('ok');
  });
});
