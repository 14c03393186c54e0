/**
 * Base64 for blobs in JSON (README.md#http-api: a blob travels as `{"base64": "..."}`), written out so
 * the Worker and Node share it without Buffer. base64ToBytes expects the padded standard alphabet:
 * BASE64_PATTERN and a length that is a multiple of 4 (isBase64, which the request schema in
 * shared/openapi/requests.ts checks first).
 */
import { EdgeliteError } from './errors.ts';

/**
 * BASE64_PATTERN is the standard alphabet with its padding at the end. A single character class, not
 * groups of four: a grouped pattern overflows V8's regexp stack on a multi-megabyte blob (measured).
 */
export const BASE64_PATTERN = /^[A-Za-z0-9+/]*={0,2}$/;

/** isBase64 says whether `text` is padded standard base64. */
export function isBase64(text: string): boolean {
  return text.length % 4 === 0 && BASE64_PATTERN.test(text);
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

export function bytesToBase64(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += `${B64[n >> 18]!}${B64[(n >> 12) & 63]!}==`;
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += `${B64[n >> 18]!}${B64[(n >> 12) & 63]!}${B64[(n >> 6) & 63]!}=`;
  }
  return out;
}

export function base64ToBytes(text: string, where = 'base64'): Uint8Array {
  if (!isBase64(text)) {
    throw new EdgeliteError('BAD_REQUEST', `${where}: invalid base64`);
  }
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    const n =
      (B64.indexOf(text[i]!) << 18) |
      (B64.indexOf(text[i + 1]!) << 12) |
      ((B64.indexOf(text[i + 2]!) & 63) << 6) |
      (B64.indexOf(text[i + 3]!) & 63);
    if (o < out.length) out[o++] = n >> 16;
    if (o < out.length) out[o++] = (n >> 8) & 255;
    if (o < out.length) out[o++] = n & 255;
  }
  return out;
}
