/**
 * The encryption envelope and the key file (shared/object-crypt.ts, shared/object-keyring.ts): the
 * layout of docs/FORMAT.md, a fresh nonce per object, every flipped byte and every truncation refused,
 * an object bound to its name, each way of mixing keys and plaintext a typed error, key file mistakes
 * MISCONFIGURED naming the file and never the key, and the flag's wiring into the primary's config.
 */
import { rejectedEdgelite } from '../helpers.ts';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeSnapshot } from '../../shared/backup-objects.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { ENVELOPE_HEADER_SIZE, ENVELOPE_MAGIC, ENVELOPE_OVERHEAD, EncryptedObjectStore, envelopeKeyId, openObject, PlaintextObjectStore, sealObject } from '../../shared/object-crypt.ts';
import { KEY_BYTES, parseKeyring } from '../../shared/object-keyring.ts';
import { FileObjectStore } from '../../shared/node/file-object-store.ts';
import { openObjectStore } from '../../shared/node/open-object-store.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { parseBackupTarget } from '../../shared/object-store.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';

const dir = mkdtempSync(join(tmpdir(), 'edgelite-object-crypt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const b64 = (n = KEY_BYTES) => randomBytes(n).toString('base64');
const KEY_A = b64();
const KEY_B = b64();
const ring = parseKeyring(`# backup keys\r\nold ${KEY_A}\r\n\r\n  new   ${KEY_B}  \r\n`, '/etc/edgelite/backup.keys');
const OBJ = 'app/00000001/0000000000000001-0000000000000004-000000000001.changes';


function misconfig(text: string): EdgeliteError {
  try {
    parseKeyring(text, '/k/ring');
  } catch (err) {
    expect(err).toBeInstanceOf(EdgeliteError);
    return err as EdgeliteError;
  }
  throw new Error('parseKeyring accepted it');
}

describe('key file', () => {
  it('holds several ids; the last one writes; comments, blank lines and CRLF are fine', () => {
    expect(ring.ids).toEqual(['old', 'new']);
    expect(ring.writeKeyId).toBe('new');
    expect(ring.has('old') && !ring.has('other')).toBe(true);
  });

  it('refuses each mistake as MISCONFIGURED naming the file and line, never quoting the key', () => {
    const cases: Array<[string, string]> = [
      ['', 'holds no key'],
      ['# only a comment\n', 'holds no key'],
      [KEY_A, 'line 1: holds 1 field'],
      [`a ${KEY_A} extra`, 'line 1: holds 3 fields'],
      [`${KEY_A} a`, 'line 1: the key id must be'],
      [`bad/id ${KEY_A}`, 'line 1: the key id must be'],
      [`a ${KEY_A}\n\nb ${KEY_A.slice(0, 20)}!!`, 'line 3: the key is not base64'],
      [`a ${b64(16)}`, 'line 1: the key is 16 bytes, want 32'],
      [`a ${b64(33)}`, 'line 1: the key is 33 bytes, want 32'],
      [`a ${KEY_A}\na ${KEY_B}`, 'line 2: key id "a" is on line 1 already'],
    ];
    for (const [text, why] of cases) {
      const err = misconfig(text);
      expect(err.code, why).toBe('MISCONFIGURED');
      expect(err.message, why).toContain('encryption key file /k/ring');
      expect(err.message, why).toContain(why);
      for (const k of [KEY_A, KEY_B, KEY_A.slice(0, 20)]) expect(err.message, why).not.toContain(k);
    }
  });

  it('prints its ids and source, never key bytes', () => {
    for (const shown of [JSON.stringify(ring), inspect(ring, { showHidden: true, depth: 5 }), String(ring)]) {
      expect(shown).not.toContain(KEY_A);
      expect(shown).not.toContain(KEY_B);
    }
    expect(JSON.parse(JSON.stringify(ring))).toEqual({ source: '/etc/edgelite/backup.keys', ids: ['old', 'new'], writeKeyId: 'new' });
  });
});

describe('envelope', () => {
  const plain = encodeSnapshot({ pageSize: 512, databaseId: 7, generation: 1, txid: 4, pageCount: 2, timestamp: 1, checksum: 0n }, new Uint8Array(1024).fill(0x41));

  it('lays out magic, version, key id and nonce as documented, with a fixed overhead and a fresh nonce', async () => {
    const a = await sealObject(ring, OBJ, plain);
    const b = await sealObject(ring, OBJ, plain);
    expect(a.length).toBe(plain.length + ENVELOPE_OVERHEAD);
    expect(ENVELOPE_OVERHEAD).toBe(52);
    expect(new TextDecoder().decode(a.subarray(0, 4))).toBe(ENVELOPE_MAGIC);
    expect([...a.subarray(4, 8)]).toEqual([0, 1, 0, 0]);
    expect([...a.subarray(8, 24)]).toEqual([...new TextEncoder().encode('new'), ...new Array(13).fill(0)]);
    expect(envelopeKeyId(a)).toBe('new');
    expect(Buffer.from(a.subarray(24, ENVELOPE_HEADER_SIZE)).equals(Buffer.from(b.subarray(24, ENVELOPE_HEADER_SIZE)))).toBe(false);
    expect(Buffer.from(a).includes(Buffer.from('AAAAAAAAAAAAAAAA'))).toBe(false);
    expect(Buffer.from(await openObject(ring, OBJ, a)).equals(Buffer.from(plain))).toBe(true);
    expect(Buffer.from(await openObject(ring, OBJ, b)).equals(Buffer.from(plain))).toBe(true);
  });

  it('refuses every flipped byte and every truncation, never returning bytes', async () => {
    const sealed = await sealObject(ring, OBJ, plain);
    for (let i = 0; i < sealed.length; i++) {
      const bad = Uint8Array.from(sealed);
      bad[i]! ^= 0x01;
      const err = await rejectedEdgelite(openObject(ring, OBJ, bad));
      // A flip in the id "new" (bytes 8..10) names another id, which the ring lacks; in its zero padding, none.
      expect(err.code, `byte ${i}`).toBe(i >= 8 && i < 11 ? 'BACKUP_KEY_MISMATCH' : 'BACKUP_CORRUPT');
      expect(err.details?.key, `byte ${i}`).toBe(OBJ);
    }
    for (let n = 0; n < sealed.length; n++) {
      const err = await rejectedEdgelite(openObject(ring, OBJ, sealed.subarray(0, n)));
      expect(err.code, `${n} bytes`).toBe('BACKUP_CORRUPT');
    }
    const longer = new Uint8Array(sealed.length + 1);
    longer.set(sealed);
    expect((await rejectedEdgelite(openObject(ring, OBJ, longer))).code).toBe('BACKUP_CORRUPT');
  });

  it('binds an object to its name: the same bytes under another key fail authentication', async () => {
    const sealed = await sealObject(ring, OBJ, plain);
    const err = await rejectedEdgelite(openObject(ring, OBJ.replace('0000000000000004', '0000000000000005'), sealed));
    expect(err.code).toBe('BACKUP_CORRUPT');
    expect(err.message).toContain('fails authentication under key id "new"');
    expect(err.details).toMatchObject({ keyId: 'new' });
  });

  it('says which key is missing, and tells plaintext and ciphertext apart', async () => {
    const sealed = await sealObject(ring, OBJ, plain);
    const onlyOld = parseKeyring(`old ${KEY_A}`, '/k/old');
    const missing = await rejectedEdgelite(openObject(onlyOld, OBJ, sealed));
    expect([missing.code, missing.details?.reason, missing.details?.keyId]).toEqual(['BACKUP_KEY_MISMATCH', 'unknown-key-id', 'new']);
    expect(missing.message).toContain('/k/old lacks');
    expect(missing.status).toBe(503);
    const wrong = await rejectedEdgelite(openObject(parseKeyring(`new ${KEY_A}`, '/k/wrong'), OBJ, sealed));
    expect([wrong.code, wrong.details?.keyId]).toEqual(['BACKUP_CORRUPT', 'new']);
    const notEncrypted = await rejectedEdgelite(openObject(ring, OBJ, plain));
    expect([notEncrypted.code, notEncrypted.details?.reason]).toEqual(['BACKUP_KEY_MISMATCH', 'not-encrypted']);
  });
});

describe('stores', () => {
  it('an encrypted store lists plaintext sizes; a plain store over the same objects refuses them (no-key)', async () => {
    const files = new FileObjectStore(join(dir, 'bucket'));
    const enc = new EncryptedObjectStore(files, ring);
    const bytes = new Uint8Array(1000).fill(7);
    await enc.put(OBJ, bytes);
    expect(await files.list('app/')).toEqual([{ key: OBJ, size: 1000 + ENVELOPE_OVERHEAD }]);
    expect(await enc.list('app/')).toEqual([{ key: OBJ, size: 1000 }]);
    expect(Buffer.from((await enc.get(OBJ))!).equals(Buffer.from(bytes))).toBe(true);
    expect(await enc.get('app/none')).toBeNull();
    expect(enc.description).toContain('encrypted, writing with key id "new"');
    const err = await rejectedEdgelite(new PlaintextObjectStore(files).get(OBJ));
    expect([err.code, err.details?.reason, err.details?.keyId]).toEqual(['BACKUP_KEY_MISMATCH', 'no-key', 'new']);
    expect(err.message).toContain('--encryption-key-file');
    await enc.delete(OBJ);
    expect(await files.list('app/')).toEqual([]);
  });
});

describe('the plaintext store streams', () => {
  it('passes getStream on (a restore streams its snapshot through it), bytes as stored', async () => {
    const plain = openObjectStore(parseBackupTarget(`file://${join(dir, 'stream-bucket')}`, {}));
    expect(plain).toBeInstanceOf(PlaintextObjectStore);
    await plain.put(OBJ, new Uint8Array([4, 5, 6]));
    const body = await plain.getStream!(OBJ);
    const got = new Uint8Array(await new Response(body).arrayBuffer());
    expect([...got]).toEqual([4, 5, 6]);
    expect(await plain.getStream!('app/missing')).toBeNull();
  });
});

describe("a bucket-fed replica's --encryption-key-file", () => {
  it('opens sealed objects with the key file, refuses them without it, and names the file on a bad one', async () => {
    const url = `file://${join(dir, 'replica-bucket')}`;
    const keys = join(dir, 'replica.keys');
    writeFileSync(keys, `r1 ${KEY_A}\n`);
    const replica = (...extra: string[]) => parseReplicaConfig(['--source', url, '--data', join(dir, 'replica-data'), ...extra], {});
    const source = replica('--encryption-key-file', keys).source!;
    const withKey = openObjectStore(source.target, source.keyring);
    await withKey.put(OBJ, new Uint8Array([1, 2, 3]));
    expect([...(await withKey.get(OBJ))!]).toEqual([1, 2, 3]);
    expect((await new FileObjectStore(join(dir, 'replica-bucket')).get(OBJ))!.length).toBe(3 + ENVELOPE_OVERHEAD);
    const plain = replica().source!;
    const err = await rejectedEdgelite(openObjectStore(plain.target, plain.keyring).get(OBJ));
    expect([err.code, err.details?.reason]).toEqual(['BACKUP_KEY_MISMATCH', 'no-key']);
    writeFileSync(keys, 'r1 no!pe\n');
    expect(() => replica('--encryption-key-file', keys)).toThrow(`encryption key file ${keys}, line 1: the key is not base64`);
    expect(() => parseReplicaConfig(['--primary', 'http://127.0.0.1:1', '--data', join(dir, 'replica-data'), '--encryption-key-file', keys], {})).toThrow('need --source');
  });
});

describe('--encryption-key-file', () => {
  const keyFile = join(dir, 'primary.keys');
  writeFileSync(keyFile, `k1 ${KEY_A}\n`);
  const cfg = (...extra: string[]) => parsePrimaryConfig(['--data', join(dir, 'data'), ...extra], {});
  const failure = (...extra: string[]): EdgeliteError => {
    try {
      cfg(...extra);
    } catch (err) {
      return err as EdgeliteError;
    }
    throw new Error('accepted');
  };

  it('gives the backup a keyring, and is refused without --backup', () => {
    expect(cfg('--backup', 'file:///tmp/b', '--encryption-key-file', keyFile).backup!.keyring!.writeKeyId).toBe('k1');
    expect(cfg('--backup', 'file:///tmp/b').backup!.keyring).toBeNull();
    const err = failure('--encryption-key-file', keyFile);
    expect([err.code, err.message]).toEqual(['MISCONFIGURED', '--encryption-key-file needs --backup']);
  });

  it('names the file, not the key, when it is missing or holds a bad key', () => {
    const missing = failure('--backup', 'file:///tmp/b', '--encryption-key-file', join(dir, 'nope.keys'));
    expect([missing.code, missing.message]).toEqual(['MISCONFIGURED', `--encryption-key-file ${join(dir, 'nope.keys')}: no such file`]);
    const short = join(dir, 'short.keys');
    const shortKey = b64(31);
    writeFileSync(short, `k1 ${shortKey}\n`);
    const err = failure('--backup', 'file:///tmp/b', '--encryption-key-file', short);
    expect(err.code).toBe('MISCONFIGURED');
    expect(err.message).toContain(`encryption key file ${short}, line 1: the key is 31 bytes, want 32`);
    expect(err.message).not.toContain(shortKey);
  });
});
