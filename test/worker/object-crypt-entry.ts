/**
 * A Worker that only seals and opens backup objects with the shared, Worker-safe code
 * (shared/object-crypt.ts), so object-crypt.test.ts can show that workerd's WebCrypto reads what Node
 * wrote and the other way round. POST {op: 'seal' | 'open', keyFile, key, data: base64}.
 */
import { EdgeliteError } from '../../shared/errors.ts';
import { openObject, sealObject } from '../../shared/object-crypt.ts';
import { parseKeyring } from '../../shared/object-keyring.ts';

function fromBase64(s: string): Uint8Array {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

function toBase64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

export default {
  async fetch(req: Request): Promise<Response> {
    const body = (await req.json()) as { op: 'seal' | 'open'; keyFile: string; key: string; data: string };
    try {
      const ring = parseKeyring(body.keyFile, 'KEYS');
      const bytes = fromBase64(body.data);
      const out = body.op === 'seal' ? await sealObject(ring, body.key, bytes) : await openObject(ring, body.key, bytes);
      return Response.json({ data: toBase64(out) });
    } catch (err) {
      if (!(err instanceof EdgeliteError)) throw err;
      return Response.json(err.toBody(), { status: err.status });
    }
  },
};
