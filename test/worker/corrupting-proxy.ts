/**
 * A small HTTP proxy between a replica and the primary, for tests: it passes every request through,
 * counts snapshot downloads, and re-frames the replication stream so it can damage one change set on
 * purpose. Two kinds of damage, both with a valid frame (the frame hash is recomputed, so the stream
 * layer cannot be what catches it):
 * - 'byte': one page byte flipped; the change set's own file checksum no longer matches (the decoder
 *   must refuse it: CORRUPT_CHANGESET).
 * - 'consistent': one page byte flipped AND the change set's file checksum recomputed, so it decodes;
 *   only the replica's post-apply database checksum can refuse it (CHECKSUM_MISMATCH).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { hash64 } from '../../shared/checksum.ts';
import { encodeFrame, FrameDecoder, type Frame } from '../../shared/frames.ts';

export type Damage = 'byte' | 'consistent';

export interface CorruptingProxy {
  url: string;
  /** Snapshot downloads passed through so far. */
  readonly snapshots: number;
  /** Stream connections opened so far. */
  readonly streams: number;
  /** Change sets damaged so far. */
  readonly damaged: number;
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

const HOP_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'host', 'content-encoding']);

export async function startCorruptingProxy(target: string): Promise<CorruptingProxy> {
  let snapshots = 0;
  let streams = 0;
  let damaged = 0;
  let armed: Damage | null = null;

  const rewrite = (f: Frame): Frame => {
    if (f.type !== 'changeset' || armed === null) return f;
    const damage = armed;
    armed = null;
    damaged++;
    return { ...f, data: damageChangeSet(f.data, damage) };
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
