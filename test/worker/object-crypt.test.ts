/**
 * Backup encryption across runtimes: an object sealed in Node opens in workerd (wrangler's local
 * runtime) and one sealed in workerd opens in Node, through the same shared/object-crypt.ts; a flipped
 * byte or another name fails there as here. This is what lets a Worker replica read an encrypted bucket.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unstable_dev, type Unstable_DevWorker } from 'wrangler';
import { openObject, sealObject } from '../../shared/object-crypt.ts';
import { parseKeyring } from '../../shared/object-keyring.ts';

const ENTRY = join(fileURLToPath(new URL('.', import.meta.url)), 'object-crypt-entry.ts');
const KEY_FILE = `old ${randomBytes(32).toString('base64')}\nnew ${randomBytes(32).toString('base64')}\n`;
const OBJ = 'app/00000002/0000000000000010-0000000000000020-000000000abc.changes';

describe('encrypted objects in workerd', () => {
  let worker: Unstable_DevWorker;
  const ring = parseKeyring(KEY_FILE, 'test');
  const call = async (op: 'seal' | 'open', data: Uint8Array, key = OBJ) => {
    const res = await worker.fetch('http://worker/', { method: 'POST', body: JSON.stringify({ op, keyFile: KEY_FILE, key, data: Buffer.from(data).toString('base64') }) });
    const body = (await res.json()) as { data?: string; error?: { code: string; details?: Record<string, unknown> } };
    return { status: res.status, data: body.data === undefined ? null : new Uint8Array(Buffer.from(body.data, 'base64')), error: body.error ?? null };
  };

  beforeAll(async () => {
    worker = await unstable_dev(ENTRY, { logLevel: 'none', compatibilityDate: '2025-09-01', experimental: { disableExperimentalWarning: true } });
  }, 60_000);
  afterAll(() => worker?.stop());

  it('opens what Node sealed, and Node opens what it sealed', async () => {
    const plain = new Uint8Array(randomBytes(70_000));
    const fromNode = await sealObject(ring, OBJ, plain);
    const opened = await call('open', fromNode);
    expect(opened.status).toBe(200);
    expect(Buffer.from(opened.data!).equals(Buffer.from(plain))).toBe(true);
    const fromWorker = await call('seal', plain);
    expect(fromWorker.status).toBe(200);
    expect(fromWorker.data!.length).toBe(fromNode.length);
    expect(Buffer.from(await openObject(ring, OBJ, fromWorker.data!)).equals(Buffer.from(plain))).toBe(true);
  });

  it('refuses a flipped byte and another name, as Node does', async () => {
    const sealed = await sealObject(ring, OBJ, new Uint8Array(1000).fill(3));
    const flipped = Uint8Array.from(sealed, (b, i) => (i === 500 ? b ^ 1 : b));
    for (const r of [await call('open', flipped), await call('open', sealed, OBJ.replace('abc', 'abd'))]) {
      expect(r.status).toBe(500);
      expect(r.error).toMatchObject({ code: 'BACKUP_CORRUPT', details: { key: expect.any(String), keyId: 'new' } });
    }
  });
});
