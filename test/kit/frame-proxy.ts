/**
 * The frame layer of the kit's fault proxy (proxy.ts is the byte layer: TCP faults at offsets, which the
 * stream's frame hash catches). This one decodes the replication stream's frames and damages a change
 * set inside a valid frame, which only the change-set checks can catch; the Worker replica and the Node
 * replica are tested through it alike.
 *
 * A small HTTP proxy between a replica and the primary, for tests: it passes every request through,
 * counts snapshot downloads, and re-frames the replication stream so it can damage one change set on
 * purpose. Two kinds of damage, both with a valid frame (the frame hash is recomputed, so the stream
 * layer cannot be what catches it):
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
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isDeltaChangeSet } from '../../shared/changeset-delta.ts';
import { HEADER_SIZE, OFFSET } from '../../shared/changeset-format.ts';
import { hash64 } from '../../shared/checksum.ts';
import { encodeFrame, FrameDecoder, type Frame } from '../../shared/frames.ts';

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

const HOP_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'host', 'content-encoding']);

export async function startCorruptingProxy(target: string): Promise<CorruptingProxy> {
  let snapshots = 0;
  let streams = 0;
  let damaged = 0;
  let armed: Damage | null = null;

  const changeSets: PassedChangeSet[] = [];

  const rewrite = (f: Frame): Frame => {
    if (f.type !== 'changeset') return f;
    const frameBytes = encodeFrame(f).length;
    const view = new DataView(f.data.buffer, f.data.byteOffset, f.data.byteLength);
    changeSets.push({ frameBytes, bytes: f.data.length, delta: isDeltaChangeSet(f.data), maxTxid: Number(view.getBigUint64(OFFSET.maxTxid)) });
    if (armed === null) return f;
    const damage = armed;
    const data = damage === 'base' ? damageDeltaBase(f.data) : damageChangeSet(f.data, damage);
    if (!data) return f;
    armed = null;
    damaged++;
    return { ...f, data };
  };

  const server = http.createServer((req, res) => {
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && !HOP_HEADERS.has(k)) headers[k] = v;
      const path = req.url ?? '/';
      if (/\/snapshot$/.test(path)) snapshots++;
      const isStream = path === '/v1/stream';
      if (isStream) streams++;
      const upstream = await fetch(`${target}${path}`, {
        method: req.method,
        headers,
        body: chunks.length > 0 ? Buffer.concat(chunks) : undefined,
        signal: abort.signal,
      });
      const out: Record<string, string> = {};
      upstream.headers.forEach((v, k) => {
        if (!HOP_HEADERS.has(k) || (k === 'content-length' && !isStream)) out[k] = v;
      });
      res.writeHead(upstream.status, out);
      if (!upstream.body) return void res.end();
      const decoder = isStream && upstream.status === 200 ? new FrameDecoder() : null;
      for await (const chunk of upstream.body as unknown as AsyncIterable<Uint8Array>) {
        if (!decoder) {
          res.write(chunk);
          continue;
        }
        for (const frame of decoder.push(chunk)) res.write(encodeFrame(rewrite(frame)));
      }
      res.end();
    })().catch((err: unknown) => {
      // The replica or the primary went away mid-request: end this exchange, the replica reconnects.
      if (!res.headersSent) res.writeHead(502).end(String(err));
      else res.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get snapshots() {
      return snapshots;
    },
    get streams() {
      return streams;
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
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
