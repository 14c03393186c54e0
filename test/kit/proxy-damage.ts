/**
 * Change-set damage through the fault proxy's frame layer (proxy-frames.ts): a FaultProxy whose frame
 * hook damages one change set inside a valid frame, which only the change-set checks can catch; the
 * Worker replica and the Node replica are tested through it alike. It counts snapshot downloads and
 * stream connections from the proxy's request lines. Three kinds of damage, each with a valid frame
 * (the frame layer recomputes the frame hash, so the stream layer cannot be what catches it):
 * - 'byte': one page byte flipped; the change set's own file checksum no longer matches (the decoder
 *   must refuse it: CORRUPT_CHANGESET).
 * - 'consistent': one page byte flipped AND the change set's file checksum recomputed, so it decodes;
 *   only the replica's post-apply database checksum can refuse it (CHECKSUM_MISMATCH).
 * - 'base': in a delta change set, the first delta entry's base hash flipped and the file checksum
 *   recomputed: to the replica this is exactly a stored page that is not the base the primary encoded
 *   against, which only the delta decoder's base check can refuse (CHECKSUM_MISMATCH, `delta-base`).
 *   A frame without a delta entry passes untouched and the proxy stays armed.
 * It also records every change-set frame it passes (size, and whether it is a delta change set), so a
 * test can measure what a replica receives per write.
 */
import { isDeltaChangeSet } from '../../shared/changeset-delta.ts';
import { HEADER_SIZE, OFFSET } from '../../shared/changeset-format.ts';
import { hash64 } from '../../shared/checksum.ts';
import { encodeFrame, type Frame } from '../../shared/frames.ts';
import { FaultProxy } from './proxy.ts';
import { STREAM_REQUEST } from './proxy-frames.ts';

export type Damage = 'byte' | 'consistent' | 'base';

/** A change-set frame as it passed through (before any damage). */
export interface PassedChangeSet {
  /** Bytes of the whole frame on the wire (frame header included). */
  frameBytes: number;
  /** Bytes of the change set inside it. */
  bytes: number;
  delta: boolean;
  /** The change set's last txid (from its header). */
  maxTxid: number;
}

export interface CorruptingProxy {
  /** The fault proxy underneath, for byte faults on the same connections. */
  readonly proxy: FaultProxy;
  url: string;
  /** Snapshot downloads passed through so far. */
  readonly snapshots: number;
  /** Stream connections opened so far. */
  readonly streams: number;
  /** Change sets damaged so far. */
  readonly damaged: number;
  /** Every change-set frame passed on a stream so far, in order. */
  readonly changeSets: readonly PassedChangeSet[];
  /** arm damages the next change-set frame that passes through (one frame). */
  arm(damage: Damage): void;
  close(): Promise<void>;
}

/** damageChangeSet flips the last byte of the last page (never a page-1 byte the checksum ignores). */
export function damageChangeSet(data: Uint8Array, damage: Damage): Uint8Array {
  const out = data.slice();
  const lastPageByte = out.length - 16 - 1;
  out[lastPageByte] = out[lastPageByte]! ^ 0xff;
  if (damage === 'consistent') {
    new DataView(out.buffer, out.byteOffset, out.byteLength).setBigUint64(out.length - 8, hash64(out.subarray(0, out.length - 8)));
  }
  return out;
}

/**
 * damageDeltaBase flips a bit of the first delta entry's base hash and recomputes the file checksum;
 * null if the change set has no delta entry.
 */
export function damageDeltaBase(data: Uint8Array): Uint8Array | null {
  if (!isDeltaChangeSet(data)) return null;
  const out = data.slice();
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const pageSize = view.getUint32(OFFSET.pageSize);
  const entries = view.getUint32(OFFSET.pageCount);
  let o = HEADER_SIZE;
  for (let k = 0; k < entries; k++) {
    const kind = out[o + 4];
    if (kind === 1) {
      out[o + 5] = out[o + 5]! ^ 0x01;
      view.setBigUint64(out.length - 8, hash64(out.subarray(0, out.length - 8)));
      return out;
    }
    if (kind !== 0) throw new Error(`entry ${k} has kind ${kind}`);
    o += 5 + pageSize;
  }
  return null;
}

/**
 * startCorruptingProxy starts a FaultProxy to `target` whose frame hook records every change-set frame
 * and damages the next one once armed.
 */
export async function startCorruptingProxy(target: string): Promise<CorruptingProxy> {
  const proxy = await FaultProxy.start({ target });
  let damaged = 0;
  let armed: Damage | null = null;
  const changeSets: PassedChangeSet[] = [];

  proxy.frames((f: Frame): Frame => {
    if (f.type !== 'changeset') return f;
    const view = new DataView(f.data.buffer, f.data.byteOffset, f.data.byteLength);
    changeSets.push({ frameBytes: encodeFrame(f).length, bytes: f.data.length, delta: isDeltaChangeSet(f.data), maxTxid: Number(view.getBigUint64(OFFSET.maxTxid)) });
    if (armed === null) return f;
    const data = armed === 'base' ? damageDeltaBase(f.data) : damageChangeSet(f.data, armed);
    if (!data) return f;
    armed = null;
    damaged++;
    return { ...f, data };
  });

  return {
    proxy,
    url: proxy.url,
    get snapshots() {
      return proxy.count(/\/snapshot$/);
    },
    get streams() {
      return proxy.count(STREAM_REQUEST);
    },
    get damaged() {
      return damaged;
    },
    get changeSets() {
      return changeSets;
    },
    arm(damage) {
      armed = damage;
    },
    close: () => proxy.close(),
  };
}
