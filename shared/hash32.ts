/**
 * hash32 is MurmurHash3 (x86, 32-bit) over bytes, in pure JS with Math.imul so it runs unchanged in Node
 * and in workerd. It guards stream frames against bit flips and truncation, not against an adversary:
 * every step of the hash is a bijection of its state for a fixed input block, so any change confined to
 * one 4-byte block (in particular any single flipped byte) always changes the hash; wider damage
 * escapes it with probability 2^-32.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** murmur3 returns the unsigned 32-bit MurmurHash3_x86_32 of `data` with `seed`. */
export function murmur3(data: Uint8Array, seed = 0): number {
  const length = data.length;
  const blocks = length & ~3;
  let h = seed >>> 0;
  let i = 0;
  for (; i < blocks; i += 4) {
    let k = (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)) >>> 0;
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = length & 3;
  if (tail !== 0) {
    let k = 0;
    if (tail === 3) k ^= data[i + 2]! << 16;
    if (tail >= 2) k ^= data[i + 1]! << 8;
    k ^= data[i]!;
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
