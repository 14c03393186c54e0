/**
 * Keyring: the keys of client-side backup encryption (`--encryption-key-file`,
 * docs/FORMAT.md#encrypted-objects), parsed from a key file's text. The format is one key per line:
 *
 *   # comments and blank lines are ignored
 *   <key id> <base64 of 32 random bytes>
 *
 * A key id is 1 to KEY_ID_MAX_LENGTH of `A-Z a-z 0-9 . _ -`; each id once. The **last** key in the file is
 * the one new objects are written with; reading accepts any key in the ring, so rotating is appending
 * a line and restarting, while objects written under the older keys stay readable.
 *
 * Key bytes never leave this module except as non-extractable WebCrypto keys: no error message quotes
 * a line of the file (a line with its fields swapped would print the key), and a Keyring prints (JSON,
 * util.inspect) as its source, ids and write key id only. Worker-safe: text in, no file access.
 */
import { EdgeliteError } from './errors.ts';

/** KEY_BYTES: AES-256. */
export const KEY_BYTES = 32;
/** KEY_ID_MAX_LENGTH is the width of the key id field of an encrypted object (docs/FORMAT.md#encrypted-objects). */
export const KEY_ID_MAX_LENGTH = 16;

const KEY_ID = new RegExp(`^[A-Za-z0-9._-]{1,${KEY_ID_MAX_LENGTH}}$`);
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** isKeyId says whether `id` is a well-formed key id. */
export function isKeyId(id: string): boolean {
  return KEY_ID.test(id);
}

export class Keyring {
  /** Where the keys came from (the key file's path), for messages. */
  readonly source: string;
  /** The key id new objects are written with: the file's last key. */
  readonly writeKeyId: string;
  readonly #raw: ReadonlyMap<string, Uint8Array>;
  readonly #imported = new Map<string, Promise<CryptoKey>>();

  /** Use parseKeyring; `keys` in file order, each id once, each KEY_BYTES long. */
  constructor(source: string, keys: ReadonlyArray<readonly [string, Uint8Array]>) {
    const last = keys.at(-1);
    if (last === undefined) throw new EdgeliteError('MISCONFIGURED', `encryption key file ${source} holds no key`);
    this.source = source;
    this.writeKeyId = last[0];
    this.#raw = new Map(keys);
  }

  /** ids lists the ring's key ids, in file order. */
  get ids(): string[] {
    return [...this.#raw.keys()];
  }

  has(id: string): boolean {
    return this.#raw.has(id);
  }

  /** cryptoKey is key `id` as a non-extractable AES-GCM key (imported once), or null when the ring lacks it. */
  cryptoKey(id: string): Promise<CryptoKey> | null {
    const raw = this.#raw.get(id);
    if (raw === undefined) return null;
    let key = this.#imported.get(id);
    if (key === undefined) {
      key = crypto.subtle.importKey('raw', raw as Uint8Array<ArrayBuffer>, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
      this.#imported.set(id, key);
    }
    return key;
  }

  toJSON(): { source: string; ids: string[]; writeKeyId: string } {
    return { source: this.source, ids: this.ids, writeKeyId: this.writeKeyId };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `Keyring ${JSON.stringify(this.toJSON())}`;
  }
}

/**
 * parseKeyring reads a key file's text; `source` names the file in messages. Throws MISCONFIGURED
 * naming the file and the line (never its content) for a malformed line, a bad id, text that is not
 * base64, a key of another length, an id given twice, or a file with no key.
 */
export function parseKeyring(text: string, source: string): Keyring {
  const keys: Array<readonly [string, Uint8Array]> = [];
  const seen = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const n = i + 1;
    const bad = (why: string): never => {
      throw new EdgeliteError('MISCONFIGURED', `encryption key file ${source}, line ${n}: ${why}`);
    };
    const fields = line.split(/\s+/);
    if (fields.length !== 2) bad(`holds ${fields.length} field${fields.length === 1 ? '' : 's'}, want "<key id> <base64 key>"`);
    const [id, b64] = fields as [string, string];
    if (!isKeyId(id)) bad(`the key id must be 1 to ${KEY_ID_MAX_LENGTH} of A-Z a-z 0-9 . _ -`);
    const before = seen.get(id);
    if (before !== undefined) bad(`key id "${id}" is on line ${before} already`);
    if (!BASE64.test(b64)) bad('the key is not base64');
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    if (bytes.length !== KEY_BYTES) bad(`the key is ${bytes.length} bytes, want ${KEY_BYTES} (make one with: openssl rand -base64 32)`);
    seen.set(id, n);
    keys.push([id, bytes]);
  }
  return new Keyring(source, keys);
}
