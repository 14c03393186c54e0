/**
 * Client-side encryption of backup objects (`--encryption-key-file`, docs/FORMAT.md#encrypted-objects):
 * every object is sealed with AES-256-GCM through WebCrypto before it leaves the
 * process, so the bucket and any CDN in front of it hold only ciphertext, and a Worker can open it with
 * the same code. The envelope (all integers big-endian):
 *
 * | offset | size | field |
 * |-------:|-----:|-------|
 * | 0  | 4  | magic `"ELEN"` |
 * | 4  | 2  | version = 1 |
 * | 6  | 2  | flags = 0 |
 * | 8  | 16 | key id, ASCII, zero-padded |
 * | 24 | 12 | nonce, random per object |
 * | 36 | n  | ciphertext of the object (its plaintext layout unchanged) |
 * | 36 + n | 16 | GCM tag |
 *
 * The GCM additional data is bytes[0 .. 36) followed by the UTF-8 object key (relative to the store's
 * root), so an object copied under another name, or a header edited, fails authentication like any
 * flipped byte. The overhead is the fixed ENVELOPE_OVERHEAD, so the encrypting store's listing reports
 * plaintext sizes and a reader's length check holds for both kinds of store.
 *
 * Mixing the two kinds fails clearly: an encrypted object read without a key, under a key id the ring
 * lacks, or a plaintext object read with a key is BACKUP_KEY_MISMATCH (details.reason: no-key,
 * unknown-key-id, not-encrypted); a damaged or forged object is BACKUP_CORRUPT naming the object and
 * the key id. Neither ever returns bytes.
 */
import { SNAPSHOT_MAGIC } from './backup-objects.ts';
import { CHANGESET_MAGIC } from './changeset-format.ts';
import { EdgeliteError } from './errors.ts';
import { isKeyId, KEY_ID_MAX_LENGTH, type Keyring } from './object-keyring.ts';
import type { ObjectInfo, ObjectStore } from './object-store.ts';

export const ENVELOPE_MAGIC = 'ELEN';
export const ENVELOPE_VERSION = 1;
export const NONCE_SIZE = 12;
export const GCM_TAG_SIZE = 16;
const KEY_ID_OFFSET = 8;
const NONCE_OFFSET = KEY_ID_OFFSET + KEY_ID_MAX_LENGTH;
export const ENVELOPE_HEADER_SIZE = NONCE_OFFSET + NONCE_SIZE;
/** ENVELOPE_OVERHEAD: an encrypted object is exactly this many bytes longer than its plaintext. */
export const ENVELOPE_OVERHEAD = ENVELOPE_HEADER_SIZE + GCM_TAG_SIZE;

const utf8 = new TextEncoder();
const MAGIC = utf8.encode(ENVELOPE_MAGIC);
const PLAINTEXT_MAGICS = [SNAPSHOT_MAGIC, CHANGESET_MAGIC].map((m) => utf8.encode(m));

function startsWith(bytes: Uint8Array, magic: Uint8Array): boolean {
  return bytes.length >= magic.length && magic.every((b, i) => bytes[i] === b);
}

/** envelopeKeyId is the key id of an encrypted object, or null when `bytes` is not one (by its magic). */
export function envelopeKeyId(bytes: Uint8Array): string | null {
  if (!startsWith(bytes, MAGIC) || bytes.length < ENVELOPE_HEADER_SIZE) return null;
  const field = bytes.subarray(KEY_ID_OFFSET, NONCE_OFFSET);
  const end = field.indexOf(0);
  const id = String.fromCharCode(...field.subarray(0, end < 0 ? field.length : end));
  return isKeyId(id) && field.subarray(id.length).every((b) => b === 0) ? id : null;
}

/** sealObject encrypts `plaintext`, the object to be stored under `key`, with the ring's write key. */
export async function sealObject(ring: Keyring, key: string, plaintext: Uint8Array): Promise<Uint8Array> {
  const id = ring.writeKeyId;
  const header = new Uint8Array(ENVELOPE_HEADER_SIZE);
  header.set(MAGIC, 0);
  new DataView(header.buffer).setUint16(4, ENVELOPE_VERSION);
  header.set(utf8.encode(id), KEY_ID_OFFSET);
  const nonce = crypto.getRandomValues(header.subarray(NONCE_OFFSET));
  const sealed = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: nonce, additionalData: additionalData(header, key), tagLength: GCM_TAG_SIZE * 8 },
    await ring.cryptoKey(id)!,
    plaintext as Uint8Array<ArrayBuffer>,
  );
  const out = new Uint8Array(ENVELOPE_HEADER_SIZE + sealed.byteLength);
  out.set(header, 0);
  out.set(new Uint8Array(sealed), ENVELOPE_HEADER_SIZE);
  return out;
}

/** openObject checks and decrypts `bytes`, read from `key`; it throws (see the module comment) rather than return anything unauthenticated. */
export async function openObject(ring: Keyring, key: string, bytes: Uint8Array): Promise<Uint8Array> {
  if (!startsWith(bytes, MAGIC)) {
    if (PLAINTEXT_MAGICS.some((m) => startsWith(bytes, m))) {
      throw keyMismatch(key, 'not-encrypted', `backup object ${key} is not encrypted, but a key was given (${ring.source}): read this backup without --encryption-key-file`);
    }
    throw corrupt(key, null, 'not an encrypted object (bad magic)');
  }
  if (bytes.length < ENVELOPE_OVERHEAD) throw corrupt(key, null, `${bytes.length} bytes is shorter than an encrypted object's header and tag (${ENVELOPE_OVERHEAD})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (view.getUint16(4) !== ENVELOPE_VERSION || view.getUint16(6) !== 0) throw corrupt(key, null, 'unknown envelope version or flags');
  const id = envelopeKeyId(bytes);
  if (id === null) throw corrupt(key, null, 'malformed key id field');
  const cryptoKey = ring.cryptoKey(id);
  if (cryptoKey === null) {
    throw keyMismatch(key, 'unknown-key-id', `backup object ${key} is encrypted with key id "${id}", which ${ring.source} lacks (it holds ${ring.ids.map((k) => `"${k}"`).join(', ')})`, id);
  }
  const header = bytes.subarray(0, ENVELOPE_HEADER_SIZE);
  let plain: ArrayBuffer;
  try {
    plain = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: bytes.subarray(NONCE_OFFSET, ENVELOPE_HEADER_SIZE) as Uint8Array<ArrayBuffer>, additionalData: additionalData(header, key), tagLength: GCM_TAG_SIZE * 8 },
      await cryptoKey,
      bytes.subarray(ENVELOPE_HEADER_SIZE) as Uint8Array<ArrayBuffer>,
    );
  } catch (err) {
    throw corrupt(key, id, `fails authentication under key id "${id}" (damaged, truncated, forged, copied from another name, or written with another key of that id)`, err);
  }
  return new Uint8Array(plain);
}

function additionalData(header: Uint8Array, key: string): Uint8Array<ArrayBuffer> {
  const name = utf8.encode(key);
  const out = new Uint8Array(header.length + name.length);
  out.set(header, 0);
  out.set(name, header.length);
  return out;
}

/**
 * EncryptedObjectStore seals every object put and opens every object got; its listing reports
 * plaintext sizes (stored size − ENVELOPE_OVERHEAD). Names stay plaintext: they are the catalog.
 */
export class EncryptedObjectStore implements ObjectStore {
  readonly description: string;
  readonly inner: ObjectStore;
  readonly keyring: Keyring;

  constructor(inner: ObjectStore, keyring: Keyring) {
    this.inner = inner;
    this.keyring = keyring;
    this.description = `${inner.description} (encrypted, writing with key id "${keyring.writeKeyId}")`;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    await this.inner.put(key, await sealObject(this.keyring, key, bytes));
  }

  async get(key: string): Promise<Uint8Array | null> {
    const bytes = await this.inner.get(key);
    return bytes === null ? null : openObject(this.keyring, key, bytes);
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    return (await this.inner.list(prefix)).map((o) => ({ key: o.key, size: Math.max(0, o.size - ENVELOPE_OVERHEAD) }));
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
}

/** PlaintextObjectStore is a store read without a key: it refuses an encrypted object (no-key) instead of handing ciphertext to a decoder. */
export class PlaintextObjectStore implements ObjectStore {
  readonly description: string;
  readonly inner: ObjectStore;
  /**
   * getStream passes the inner store's stream on as stored, where it has one (a restore streams a large
   * snapshot with it, primary/restore-stream.ts). It does not look for an envelope: a reader checks the
   * object's own magic and, on anything else, reads it whole through `get`, which refuses a sealed one.
   */
  readonly getStream?: (key: string) => Promise<ReadableStream<Uint8Array> | null>;

  constructor(inner: ObjectStore) {
    this.inner = inner;
    this.description = inner.description;
    if (inner.getStream) this.getStream = inner.getStream.bind(inner);
  }

  put(key: string, bytes: Uint8Array): Promise<void> {
    return this.inner.put(key, bytes);
  }

  async get(key: string): Promise<Uint8Array | null> {
    const bytes = await this.inner.get(key);
    const id = bytes === null ? null : envelopeKeyId(bytes);
    if (id !== null) throw keyMismatch(key, 'no-key', `backup object ${key} is encrypted (key id "${id}"): pass --encryption-key-file`, id);
    return bytes;
  }

  list(prefix: string): Promise<ObjectInfo[]> {
    return this.inner.list(prefix);
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
}

/** withKeyring is `store` as backups read and write it: encrypted with `keyring`, or plaintext (refusing encrypted objects) without. */
export function withKeyring(store: ObjectStore, keyring: Keyring | null): ObjectStore {
  return keyring === null ? new PlaintextObjectStore(store) : new EncryptedObjectStore(store, keyring);
}

function keyMismatch(key: string, reason: 'no-key' | 'unknown-key-id' | 'not-encrypted', message: string, keyId?: string): EdgeliteError {
  return new EdgeliteError('BACKUP_KEY_MISMATCH', message, { details: { key, reason, ...(keyId === undefined ? {} : { keyId }) } });
}

function corrupt(key: string, keyId: string | null, why: string, cause?: unknown): EdgeliteError {
  return new EdgeliteError('BACKUP_CORRUPT', `backup object ${key}: ${why}`, { details: { key, ...(keyId === null ? {} : { keyId }) }, ...(cause === undefined ? {} : { cause }) });
}
