/**
 * Client-side encryption of backups (`--encryption-key-file`), against a real S3-compatible server
 * (s3rver on 127.0.0.1) and `file://`: the bucket holds no plaintext page (and, as a control, an
 * unencrypted backup of the same rows does); restores with the key equal the primary; without the key,
 * with a wrong one or with a ring that lost an old key they fail typed and write nothing; a key rotation
 * (write key A, then a ring whose write key is B) restores across both; a flipped byte, a truncation
 * and an object copied under another name are detected; the CLI takes the flag, `backups` needs no key;
 * a replica fed from the encrypted bucket (`--source`) follows it with the key and applies nothing without.
 */
import { rejectedEdgelite } from '../helpers.ts';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBackupKey, type BackupObject } from '../../shared/backup-layout.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { FileObjectStore } from '../../shared/node/file-object-store.ts';
import { openObjectStore, readKeyring } from '../../shared/node/open-object-store.ts';
import { ENVELOPE_MAGIC, envelopeKeyId } from '../../shared/object-crypt.ts';
import { parseBackupTarget, type BackupTarget, type ObjectStore } from '../../shared/object-store.ts';
import { S3ObjectStore } from '../../shared/object-store-s3.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { restoreDatabase } from '../../primary/restore.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica } from '../../replica/server.ts';
import { formatChecksum } from '../../shared/types.ts';
import { silentLogger } from '../../shared/log.ts';
import { waitFor } from '../kit/wait.ts';
import { exec, http, integrityCheck } from '../kit/api.ts';
import { runEdgelite } from '../kit/spawn.ts';
import { sleep } from '../kit/wait.ts';
import { fileChecksum, quietLogger, S3_BUCKET, startS3, waitUploaded, type S3Server } from './backup-kit.ts';

const DB = 'app';
/** NEEDLE is in every row written: found in an unencrypted backup, never in an encrypted one. */
const NEEDLE = 'edgelite-needle-4b1d9e';
const KEY_A = randomBytes(32).toString('base64');
const KEY_B = randomBytes(32).toString('base64');
const KEY_C = randomBytes(32).toString('base64');
const KEYS = [KEY_A, KEY_B, KEY_C];

interface Point {
  txid: number;
  checksum: string;
}

const cli = runEdgelite;

/** rows inserts and updates `n` rows holding NEEDLE (some long enough to overflow a page), pausing now and then so several segments upload. */
async function rows(url: string, from: number, n: number): Promise<Point[]> {
  const out: Point[] = [];
  for (let i = from; i < from + n; i++) {
    const v = `${NEEDLE}-${i}-${'z'.repeat((i * 733) % 5000)}`;
    const sql = i % 4 === 3 ? 'UPDATE t SET v = ? WHERE id = ?' : 'INSERT INTO t (v) VALUES (?)';
    const r = await exec(url, DB, { sql, params: i % 4 === 3 ? [v, 1 + (i % 3)] : [v] });
    out.push({ txid: Number(r.headers.get('edgelite-txid')), checksum: r.headers.get('edgelite-checksum')! });
    await sleep(i % 7 === 0 ? 80 : 2);
  }
  return out;
}

/** rawStore reads the bucket as it is, ciphertext and all (no envelope check). */
function rawStore(t: BackupTarget): ObjectStore {
  return t.kind === 'file' ? new FileObjectStore(t.dir) : new S3ObjectStore(t.s3);
}

/** rejection: the typed error, whose message never holds a key. */
async function rejection(p: Promise<unknown>): Promise<EdgeliteError> {
  const err = await rejectedEdgelite(p);
  for (const k of KEYS) expect(err.message).not.toContain(k);
  return err;
}

describe.each(['s3', 'file'] as const)('encrypted backup to %s', (kind) => {
  let s3: S3Server | null = null;
  let dir: string;
  let env: Record<string, string>;
  let encUrl: string;
  let plainUrl: string;
  let enc: BackupTarget;
  let raw: ObjectStore;
  const ringFile = (name: string) => join(dir, `${name}.keys`);
  const logs: Array<Array<Record<string, unknown>>> = [];
  /** The primary's position after every write under key A, then under the ring A+B. */
  let underA: Point[];
  let underB: Point[];
  let primary: PrimaryHandle | null = null;

  async function start(data: string, url: string, keyFile: string | null): Promise<PrimaryHandle> {
    const args = ['--data', data, '--listen', '127.0.0.1:0', '--query-timeout-ms', '0', '--backup', url, '--backup-interval', '50ms'];
    const logger = quietLogger();
    logs.push((logger as unknown as { lines: Array<Record<string, unknown>> }).lines);
    const config = parsePrimaryConfig(keyFile === null ? args : [...args, '--encryption-key-file', keyFile], env);
    // No compaction: merging re-seals objects under the current write key (by design), so after the
    // rotation a merge of segments written under a would be under b, whenever a 10 s window closes.
    config.backup!.compaction = { levelsMs: [] };
    return startPrimary(config, logger);
  }

  function restore(ring: string | null, target: { txid: number } | { latest: true }, out: string, url = encUrl) {
    const objects = openObjectStore(parseBackupTarget(url, env), ring === null ? null : readKeyring(ringFile(ring)));
    return restoreDatabase(objects, { db: DB, target, out, force: true });
  }

  async function objects(url: string): Promise<Array<{ o: BackupObject; bytes: Uint8Array }>> {
    const t = parseBackupTarget(url, env);
    const store = rawStore(t);
    const list = await store.list(`${DB}/`);
    return Promise.all(list.map(async (info) => ({ o: parseBackupKey(info)!, bytes: (await store.get(info.key))! })));
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), `edgelite-backup-enc-${kind}-`));
    if (kind === 's3') {
      s3 = await startS3();
      env = s3.env;
      encUrl = `s3://${S3_BUCKET}/enc/secret`;
      plainUrl = `s3://${S3_BUCKET}/enc/plain`;
    } else {
      env = {};
      encUrl = `file://${join(dir, 'bucket', 'secret')}`;
      plainUrl = `file://${join(dir, 'bucket', 'plain')}`;
    }
    enc = parseBackupTarget(encUrl, env);
    raw = rawStore(enc);
    writeFileSync(ringFile('a'), `# written with a\na ${KEY_A}\n`);
    writeFileSync(ringFile('ab'), `a ${KEY_A}\n# b writes from now on\nb ${KEY_B}\n`);
    writeFileSync(ringFile('b'), `b ${KEY_B}\n`);
    writeFileSync(ringFile('wrong-a'), `a ${KEY_C}\nb ${KEY_B}\n`);

    // Key A writes the first objects (the only snapshot among them: one every 1,000 segments)...
    primary = await start(join(dir, 'data'), encUrl, ringFile('a'));
    await http(primary.url, 'PUT', `/v1/db/${DB}`);
    await exec(primary.url, DB, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    underA = await rows(primary.url, 0, 24);
    await waitUploaded(primary.url, DB);
    await primary.close();
    // ...then the primary restarts with a ring whose write key is B, A still in it.
    primary = await start(join(dir, 'data'), encUrl, ringFile('ab'));
    underB = await rows(primary.url, 24, 24);
    await waitUploaded(primary.url, DB);

    // The control: the same rows, backed up without encryption.
    const plain = await start(join(dir, 'data-plain'), plainUrl, null);
    await http(plain.url, 'PUT', `/v1/db/${DB}`);
    await exec(plain.url, DB, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    await rows(plain.url, 0, 8);
    await waitUploaded(plain.url, DB);
    await plain.close();
  }, 120_000);

  afterAll(async () => {
    await primary?.close();
    await s3?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the bucket holds no plaintext page; an unencrypted backup of the same rows does (the control)', async () => {
    const sealed = await objects(encUrl);
    expect(sealed.length).toBeGreaterThan(4);
    for (const { o, bytes } of sealed) {
      expect(new TextDecoder().decode(bytes.subarray(0, 4)), o.key).toBe(ENVELOPE_MAGIC);
      expect(Buffer.from(bytes).includes(NEEDLE), o.key).toBe(false);
    }
    const plain = await objects(plainUrl);
    expect(plain.length).toBeGreaterThan(1);
    expect(plain.some(({ bytes }) => Buffer.from(bytes).includes(NEEDLE))).toBe(true);
    expect(plain.every(({ o, bytes }) => (o.kind === 'snapshot' ? 'ELSN' : 'ELCS') === new TextDecoder().decode(bytes.subarray(0, 4)))).toBe(true);
    // No log line of either primary carries a key.
    const logged = JSON.stringify(logs);
    expect(logged).toContain('encrypted, writing with key id');
    for (const k of KEYS) expect(logged).not.toContain(k);
  });

  it('rotation: the snapshot and first segments are under key a, the segments after the restart under b', async () => {
    const sealed = await objects(encUrl);
    const ids = (pred: (o: BackupObject) => boolean) => new Set(sealed.filter(({ o }) => pred(o)).map(({ bytes }) => envelopeKeyId(bytes)));
    expect(ids((o) => o.kind === 'snapshot')).toEqual(new Set(['a']));
    const lastA = underA.at(-1)!.txid;
    expect(ids((o) => o.kind === 'segment' && o.maxTxid <= lastA)).toEqual(new Set(['a']));
    expect(ids((o) => o.kind === 'segment' && o.minTxid > lastA)).toEqual(new Set(['b']));
  });

  it('restores with the key equal to the primary, across both keys, and with a ring of a alone up to the rotation', async () => {
    const end = underB.at(-1)!;
    const out = join(dir, 'latest.db');
    const result = await restore('ab', { latest: true }, out);
    expect([result.txid, result.checksum, fileChecksum(out)]).toEqual([end.txid, end.checksum, end.checksum]);
    expect(integrityCheck(out)).toBe('ok');
    for (const [i, p] of [underA[3]!, underA.at(-1)!, underB[0]!, underB[11]!].entries()) {
      const at = join(dir, `at-${i}.db`);
      expect((await restore('ab', { txid: p.txid }, at)).txid).toBe(p.txid);
      expect(fileChecksum(at)).toBe(p.checksum);
      expect(integrityCheck(at)).toBe('ok');
    }
    const before = underA.at(-1)!;
    const onlyA = join(dir, 'only-a.db');
    await restore('a', { txid: before.txid }, onlyA);
    expect(fileChecksum(onlyA)).toBe(before.checksum);
  });

  it('refuses without the key, with a wrong key, with a ring that lost a, and with a key for plaintext, writing no file', async () => {
    const out = join(dir, 'refused.db');
    const none = await rejection(restore(null, { latest: true }, out));
    expect([none.code, none.details?.reason, none.details?.keyId]).toEqual(['BACKUP_KEY_MISMATCH', 'no-key', 'a']);
    expect(none.message).toContain('pass --encryption-key-file');
    const lostA = await rejection(restore('b', { latest: true }, out));
    expect([lostA.code, lostA.details?.reason, lostA.details?.keyId]).toEqual(['BACKUP_KEY_MISMATCH', 'unknown-key-id', 'a']);
    expect(lostA.message).toContain(`${ringFile('b')} lacks`);
    const wrong = await rejection(restore('wrong-a', { latest: true }, out));
    expect([wrong.code, wrong.details?.keyId]).toEqual(['BACKUP_CORRUPT', 'a']);
    expect(wrong.message).toMatch(/\.snapshot: fails authentication under key id "a"/);
    const plaintext = await rejection(restore('ab', { latest: true }, out, plainUrl));
    expect([plaintext.code, plaintext.details?.reason]).toEqual(['BACKUP_KEY_MISMATCH', 'not-encrypted']);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.restore-tmp`)).toBe(false);
  });

  it('detects a flipped byte, a truncation and an object copied under another name, applying nothing', async () => {
    const list = (await raw.list(`${DB}/`)).map((o) => parseBackupKey(o)!);
    const segs = list.filter((o) => o.kind === 'segment').sort((x, y) => x.minTxid - y.minTxid);
    const snap = list.find((o) => o.kind === 'snapshot')!;
    expect(segs.length).toBeGreaterThan(2);
    const [first, second] = [segs.at(-2)!, segs.at(-1)!];
    const original = new Map<string, Uint8Array>();
    for (const o of [snap, first, second]) original.set(o.key, (await raw.get(o.key))!);
    const flip = (b: Uint8Array, at: number) => Uint8Array.from(b, (x, i) => (i === at ? x ^ 0x04 : x));
    const damages: Array<[string, string, Uint8Array]> = [
      ['flipped ciphertext byte in a segment', second.key, flip(original.get(second.key)!, Math.floor(original.get(second.key)!.length / 2))],
      ['flipped tag byte in a segment', first.key, flip(original.get(first.key)!, original.get(first.key)!.length - 1)],
      ['flipped byte in the snapshot', snap.key, flip(original.get(snap.key)!, 200)],
      ['truncated segment', second.key, original.get(second.key)!.subarray(0, original.get(second.key)!.length - 10)],
      ['segment copied under another name', second.key, original.get(first.key)!],
    ];
    const out = join(dir, 'damaged.db');
    for (const [what, key, bytes] of damages) {
      await raw.put(key, bytes);
      const err = await rejection(restore('ab', { latest: true }, out));
      expect(err.code, what).toBe('BACKUP_CORRUPT');
      expect(err.message, what).toContain(key);
      expect(err.details?.key, what).toBe(key);
      // The envelope catches each one, before any decoder (a copy would also hold the wrong txids).
      expect(err.message, what).toContain(`fails authentication under key id "${envelopeKeyId(bytes)}"`);
      expect(existsSync(out), what).toBe(false);
      expect(existsSync(`${out}.restore-tmp`), what).toBe(false);
      await raw.put(key, original.get(key)!);
    }
    const result = await restore('ab', { latest: true }, out);
    expect(fileChecksum(out)).toBe(underB.at(-1)!.checksum);
    expect(result.txid).toBe(underB.at(-1)!.txid);
  });

  it('the CLI: `backups` lists without a key; `restore` needs --encryption-key-file and names a bad one', async () => {
    const list = await cli(['backups', encUrl, '--json'], env);
    expect(list.status, list.stderr).toBe(0);
    const range = JSON.parse(list.stdout).databases[0].generations.at(-1).ranges.at(-1);
    expect(range.toTxid).toBe(underB.at(-1)!.txid);

    const out = join(dir, 'cli.db');
    const without = await cli(['restore', encUrl, '--db', DB, '--out', out], env);
    expect(without.status).toBe(1);
    expect(without.stderr).toContain('BACKUP_KEY_MISMATCH');
    expect(existsSync(out)).toBe(false);
    const missing = await cli(['restore', encUrl, '--db', DB, '--out', out, '--encryption-key-file', join(dir, 'nope.keys')], env);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(`MISCONFIGURED: --encryption-key-file ${join(dir, 'nope.keys')}: no such file`);
    const done = await cli(['restore', encUrl, '--db', DB, '--out', out, '--encryption-key-file', ringFile('ab')], env);
    expect(done.status, done.stderr).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ txid: underB.at(-1)!.txid, checksum: underB.at(-1)!.checksum });
    expect(fileChecksum(out)).toBe(underB.at(-1)!.checksum);
    for (const r of [list, without, missing, done]) for (const k of KEYS) expect(r.stdout + r.stderr).not.toContain(k);
  });

  it('a replica fed from the bucket (--source, no primary) follows it with the key, and applies nothing without it', async () => {
    const replica = (name: string, ...extra: string[]) =>
      startReplica(parseReplicaConfig(['--source', encUrl, '--data', join(dir, name), '--listen', '127.0.0.1:0', '--source-interval', '50ms', '--databases', DB, ...extra], env), silentLogger);
    const keyed = await replica('replica-keyed', '--encryption-key-file', ringFile('ab'));
    try {
      const last = underB.at(-1)!;
      await waitFor(() => keyed.store.get(DB)?.position?.txid === last.txid, 'the keyed replica to reach the last upload');
      expect(formatChecksum(keyed.store.get(DB)!.position!.checksum)).toBe(last.checksum);
    } finally {
      await keyed.close();
    }
    const keyless = await replica('replica-keyless');
    try {
      const res = await waitFor(async () => {
        const r = await fetch(`${keyless.url}/v1/db/${DB}`);
        const body = (await r.json()) as { bucket?: { refused: number; lastFailure: { code: string } | null } };
        return (body.bucket?.refused ?? 0) > 0 ? body.bucket : null;
      }, 'the keyless replica to refuse a sealed object');
      expect(res!.lastFailure?.code).toBe('BACKUP_KEY_MISMATCH');
      expect(keyless.store.get(DB)?.position ?? null).toBeNull();
    } finally {
      await keyless.close();
    }
  });

  it('a primary restarted without its key refuses to continue the sealed chain: logged, counted, nothing plaintext mixed in', async () => {
    const url = kind === 's3' ? `s3://${S3_BUCKET}/enc/switch` : `file://${join(dir, 'bucket', 'switch')}`;
    const data = join(dir, 'data-switch');
    const first = await start(data, url, ringFile('a'));
    await http(first.url, 'PUT', `/v1/db/${DB}`);
    await exec(first.url, DB, { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' });
    await rows(first.url, 0, 3);
    await waitUploaded(first.url, DB);
    await first.close();
    const before = (await objects(url)).map((x) => x.o.key);
    const keyless = await start(data, url, null);
    try {
      await rows(keyless.url, 3, 3);
      const lines = logs.at(-1)!;
      await waitFor(() => lines.some((l) => l.msg === 'backup upload failed' && String(l.error).includes('is encrypted (key id "a"): pass --encryption-key-file')), 'the keyless primary to refuse the sealed chain');
      const metrics = await (await fetch(`${keyless.url}/metrics`)).text();
      expect(Number(/^edgelite_backup_errors_total\{db="app"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
      const described = await http(keyless.url, 'GET', `/v1/db/${DB}`);
      expect(described.json.backup.uploadedTxid).toBe(0);
      for (const l of lines) for (const k of KEYS) expect(JSON.stringify(l)).not.toContain(k);
      // Nothing plaintext was added to the sealed chain: the listing is what the keyed primary left.
      expect((await objects(url)).map((x) => x.o.key)).toEqual(before);
      for (const { bytes } of await objects(url)) expect(envelopeKeyId(bytes)).toBe('a');
    } finally {
      await keyless.close();
    }
  });
});
