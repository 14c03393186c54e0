/**
 * The fault proxy's frame layer (test/kit/proxy-frames.ts), against a real HTTP server that answers
 * `POST /v1/stream` with frames written in slices that cut across frame and chunk boundaries: the hook
 * sees every frame once, the client receives valid frames carrying what the hook returned, and anything
 * that is not a 200 stream response passes byte for byte.
 */
import http from 'node:http';
import type net from 'node:net';
import { Pool } from 'undici';
import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, type Frame } from '../../shared/frames.ts';
import { stopsAfterEach } from '../helpers.ts';
import { FaultProxy } from '../kit/proxy.ts';

const stops = stopsAfterEach();

const FRAMES: Frame[] = [
  { type: 'ready', db: 'app' },
  { type: 'changeset', db: 'app', data: new Uint8Array(3000).fill(7) },
  { type: 'heartbeat', time: 1, positions: {} },
  { type: 'changeset', db: 'app', data: new Uint8Array(10).fill(9) },
];
const WIRE = Buffer.concat(FRAMES.map((f) => encodeFrame(f)));

/** frameServer answers every request with WIRE in 5-byte-to-1-KiB slices; status 409 on `x-refuse`. */
async function frameServer(): Promise<number> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(req.headers['x-refuse'] ? 409 : 200, { 'content-type': 'application/vnd.edgelite.stream' });
      for (let o = 0, n = 5; o < WIRE.length; o += n, n = n * 3 > 1024 ? 5 : n * 3) res.write(WIRE.subarray(o, o + n));
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  stops.push(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return (server.address() as net.AddressInfo).port;
}

async function setup(): Promise<{ proxy: FaultProxy; pool: Pool }> {
  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: await frameServer() } });
  // One connection, so consecutive requests share it (the frame layer's state is per message).
  const pool = new Pool(proxy.url, { connections: 1 });
  stops.push(() => proxy.close(), () => pool.close());
  return { proxy, pool };
}

async function post(pool: Pool, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> {
  const res = await pool.request({ method: 'POST', path, body: '{}', headers });
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) };
}

/** damage flips the first byte of a change set's data and leaves the other frames alone. */
function damage(f: Frame): Frame {
  if (f.type !== 'changeset') return f;
  const data = f.data.slice();
  data[0] = data[0]! ^ 0xff;
  return { ...f, data };
}

describe('FaultProxy frame layer', () => {
  it('passes each stream frame through the hook and re-frames it validly, per message on one connection', async () => {
    const { proxy, pool } = await setup();
    const seen: Frame['type'][] = [];
    proxy.frames((f) => {
      seen.push(f.type);
      return damage(f);
    });
    for (let round = 0; round < 2; round++) {
      const { status, body } = await post(pool, '/v1/stream');
      expect(status).toBe(200);
      const got = new FrameDecoder().push(body);
      expect(got).toEqual(FRAMES.map(damage));
      expect(got).not.toEqual(FRAMES);
    }
    expect(seen).toEqual([...FRAMES, ...FRAMES].map((f) => f.type));
    expect(proxy.requests).toEqual(['POST /v1/stream', 'POST /v1/stream']);
    expect(proxy.count(/stream$/)).toBe(2);
  });

  it('passes other paths, non-200 stream answers, and everything once the hook is removed, byte for byte', async () => {
    const { proxy, pool } = await setup();
    const remove = proxy.frames(damage);
    expect((await post(pool, '/v1/other')).body.equals(WIRE)).toBe(true);
    const refused = await post(pool, '/v1/stream', { 'x-refuse': '1' });
    expect(refused.status).toBe(409);
    expect(refused.body.equals(WIRE)).toBe(true);
    expect((await post(pool, '/v1/stream')).body.equals(WIRE)).toBe(false);
    remove();
    expect((await post(pool, '/v1/stream')).body.equals(WIRE)).toBe(true);
    expect(proxy.requests).toEqual(['POST /v1/other', 'POST /v1/stream', 'POST /v1/stream', 'POST /v1/stream']);
  });
});
