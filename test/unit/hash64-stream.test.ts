/** Hash64 (shared/checksum.ts): hash64 over pieces equals hash64 of the whole, whatever the split. */
import { describe, expect, it } from 'vitest';
import { Hash64, hash64 } from '../../shared/checksum.ts';
import { prng } from '../helpers.ts';

describe('Hash64', () => {
  it('equals hash64 of the concatenation for random splits, offsets and lengths', () => {
    const rand = prng(11);
    for (let round = 0; round < 200; round++) {
      const length = Math.floor(rand() * 5000);
      const backing = new Uint8Array(length + 3);
      for (let i = 0; i < backing.length; i++) backing[i] = Math.floor(rand() * 256);
      const data = backing.subarray(round % 4, (round % 4) + length); // unaligned views too
      const seed = round % 3 === 0 ? 0 : Math.floor(rand() * 2 ** 32);
      const h = new Hash64(seed);
      for (let at = 0; at < length; ) {
        const n = Math.min(length - at, Math.floor(rand() * 100));
        h.update(data.subarray(at, at + n));
        // An interleaved one-shot hash must not disturb the streamed one.
        hash64(data.subarray(0, Math.min(length, 40)));
        at += n;
      }
      expect(h.digest()).toBe(hash64(data, seed));
    }
  });

  it('hashes nothing like hash64 of an empty array', () => {
    expect(new Hash64().digest()).toBe(hash64(new Uint8Array(0)));
    expect(new Hash64(5).update(new Uint8Array(0)).digest()).toBe(hash64(new Uint8Array(0), 5));
  });
});
