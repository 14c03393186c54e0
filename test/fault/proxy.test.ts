/**
 * The fault proxy's own contract, against real sockets: a raw TCP echo server for byte-level faults and
 * an HTTP server for the per-message ones (request matching, offsets from the body, truncation).
 */
import http from 'node:http';
import net from 'node:net';
import { Pool } from 'undici';
import { describe, expect, it } from 'vitest';
import { stopsAfterEach } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';
import { FaultProxy } from '../kit/proxy.ts';

const stops = stopsAfterEach();

/** echoServer sends back every byte it receives. */
async function echoServer(): Promise<{ port: number; sockets: Set<net.Socket> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  stops.push(() => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }));
  return { port: (server.address() as net.AddressInfo).port, sockets };
}

/** BODY is what the HTTP server answers: 64 KiB of a known pattern. */
const BODY = Buffer.from(Array.from({ length: 65536 }, (_, i) => (i * 7 + 3) & 0xff));

async function httpServer(): Promise<number> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY.length });
      res.end(BODY);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  stops.push(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return (server.address() as net.AddressInfo).port;
}

async function proxyTo(port: number, seed = 1): Promise<FaultProxy> {
  const p = await FaultProxy.start({ target: { host: '127.0.0.1', port }, seed });
  stops.push(() => p.close());
  return p;
}

/** Client is a raw TCP client that keeps everything it receives. */
class Client {
  received = Buffer.alloc(0);
  closed = false;
  readonly socket: net.Socket;
  readonly arrivals: number[] = [];
  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => {
      this.received = Buffer.concat([this.received, d]);
      this.arrivals.push(Date.now());
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => (this.closed = true));
    stops.push(() => void this.socket.destroy());
  }
}

/** get fetches `path` through the proxy and returns the body bytes, or the error that cut it. */
async function get(url: string, path: string): Promise<{ body: Buffer | null; error: unknown }> {
  try {
    const res = await fetch(`${url}${path}`, { headers: { connection: 'close' } });
    return { body: Buffer.from(await res.arrayBuffer()), error: null };
  } catch (err) {
    return { body: null, error: err };
  }
}

function differingOffsets(a: Buffer, b: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) out.push(i);
  return out;
}

describe('FaultProxy', () => {
  it('forwards bytes both ways unchanged and counts them', async () => {
    const { port } = await echoServer();
    const proxy = await proxyTo(port);
    const c = new Client(proxy.port);
    const sent = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i & 0xff));
    c.socket.write(sent);
    await waitFor(() => c.received.length === sent.length, 'echo');
    expect(c.received.equals(sent)).toBe(true);
    expect(proxy.bytes).toEqual({ up: sent.length, down: sent.length });
    expect(proxy.faults).toEqual([]);
  });

  it('delays each direction by at least the configured time and keeps the order', async () => {
    const { port } = await echoServer();
    const proxy = await proxyTo(port);
    proxy.setDelay('down', 150);
    const c = new Client(proxy.port);
    await waitFor(() => proxy.active === 1, 'connection');
    const sentAt = Date.now();
    for (let i = 0; i < 5; i++) c.socket.write(Buffer.from([i]));
    await waitFor(() => c.received.length === 5, 'delayed echo');
    expect([...c.received]).toEqual([0, 1, 2, 3, 4]);
    expect(c.arrivals[0]! - sentAt).toBeGreaterThanOrEqual(150);
  });

  it('pause holds the bytes (new connections too) until resume', async () => {
    const { port } = await echoServer();
    const proxy = await proxyTo(port);
    proxy.pause();
    const c = new Client(proxy.port);
    c.socket.write('hello');
    await waitFor(() => proxy.active === 1, 'connection');
    await new Promise((r) => setTimeout(r, 200));
    expect(c.received.length).toBe(0);
    expect(proxy.bytes.up).toBe(0);
    proxy.resume();
    await waitFor(() => c.received.toString() === 'hello', 'resumed echo');
    proxy.pause('down');
    c.socket.write(' world');
    await waitFor(() => proxy.bytes.up === 11, 'upstream still flows');
    expect(c.received.toString()).toBe('hello');
    proxy.resume('down');
    await waitFor(() => c.received.toString() === 'hello world', 'downstream resumed');
  });

  it('limits bandwidth per direction', async () => {
    const { port } = await echoServer();
    const proxy = await proxyTo(port);
    proxy.setRate('down', 200_000);
    const c = new Client(proxy.port);
    const started = Date.now();
    c.socket.write(Buffer.alloc(100_000, 1));
    await waitFor(() => c.received.length === 100_000, 'throttled echo');
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
  });

  it('cut destroys both sockets of every connection', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    const a = new Client(proxy.port);
    const b = new Client(proxy.port);
    await waitFor(() => echo.sockets.size === 2, 'two upstream connections');
    expect(proxy.cut()).toBe(2);
    await waitFor(() => a.closed && b.closed && echo.sockets.size === 0, 'both sides closed');
    expect(proxy.active).toBe(0);
    const c = new Client(proxy.port);
    c.socket.write('again');
    await waitFor(() => c.received.toString() === 'again', 'new connections still work');
  });

  it('refuse closes new connections without reaching the server', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    proxy.refuse();
    const c = new Client(proxy.port);
    await waitFor(() => c.closed, 'refused');
    expect(echo.sockets.size).toBe(0);
    proxy.refuse(false);
    const d = new Client(proxy.port);
    d.socket.write('x');
    await waitFor(() => d.received.toString() === 'x', 'accepted again');
  });

  it('flips exactly one bit at each chosen body offset of matching responses only', async () => {
    const proxy = await proxyTo(await httpServer());
    proxy.addRule({ direction: 'down', request: /^GET \/snapshot/, body: true, flipAt: [0, 1000, 65535] });
    const other = await get(proxy.url, '/other');
    expect(other.body!.equals(BODY)).toBe(true);
    const hit = await get(proxy.url, '/snapshot');
    expect(differingOffsets(hit.body!, BODY)).toEqual([0, 1000, 65535]);
    for (const at of [0, 1000, 65535]) {
      const x = hit.body![at]! ^ BODY[at]!;
      expect(x & (x - 1)).toBe(0); // one bit
    }
    expect(proxy.faults.map((f) => [f.kind, f.offset, f.request])).toEqual([
      ['flip', 0, 'GET /snapshot'],
      ['flip', 1000, 'GET /snapshot'],
      ['flip', 65535, 'GET /snapshot'],
    ]);
  });

  it('flips at seeded random offsets: the same seed flips the same bytes', async () => {
    const port = await httpServer();
    const runs: number[][] = [];
    for (const seed of [42, 42, 7]) {
      const proxy = await proxyTo(port, seed);
      proxy.addRule({ direction: 'down', body: true, flipRate: 1 / 4096 });
      const r = await get(proxy.url, '/x');
      runs.push(differingOffsets(r.body!, BODY));
      expect(proxy.faults.map((f) => f.offset)).toEqual(runs[runs.length - 1]);
    }
    expect(runs[0]).toEqual(runs[1]);
    expect(runs[0]).not.toEqual(runs[2]);
    // 64 KiB at 1/4096: 16 expected; a geometric process stays well inside this.
    expect(runs[0]!.length).toBeGreaterThan(3);
    expect(runs[0]!.length).toBeLessThan(50);
  });

  it('flips a chosen bit of the first pattern match (e.g. a header digit)', async () => {
    const proxy = await proxyTo(await httpServer());
    proxy.addRule({ direction: 'down', flipPattern: /content-length: \d*(\d)\r\n/i, bit: 0, limit: 1 });
    const r = await get(proxy.url, '/x');
    // 65536 announced as 65537: the client sees one byte fewer than promised.
    expect(r.body).toBeNull();
    expect(String((r.error as Error).cause ?? r.error)).toMatch(/content-length|closed|terminated/i);
    expect(proxy.faults).toMatchObject([{ kind: 'flip', bit: 0, request: 'GET /x' }]);
    expect(() => proxy.addRule({ direction: 'down', flipAt: [1], bit: 8 })).toThrow(RangeError);
  });

  it('live() shows each connection with its current request, message number and body bytes', async () => {
    const proxy = await proxyTo(await httpServer());
    const pool = new Pool(proxy.url, { connections: 1 });
    stops.push(() => pool.close());
    const read = async (p: string) => Buffer.from(await (await pool.request({ method: 'GET', path: p })).body.arrayBuffer());
    expect((await read('/a')).length).toBe(BODY.length);
    const [first] = proxy.live();
    expect(first).toMatchObject({ request: 'GET /a', message: 1, bodyBytes: { up: 0, down: BODY.length } });
    await read('/b'); // the same keep-alive connection carries the next request
    expect(proxy.live()).toEqual([{ ...first, request: 'GET /b', message: 2 }]);
  });

  it('a rule with a limit retires after that many faults', async () => {
    const proxy = await proxyTo(await httpServer());
    proxy.addRule({ direction: 'down', body: true, flipRate: 1 / 1000, limit: 2 });
    const first = await get(proxy.url, '/a');
    const second = await get(proxy.url, '/b');
    expect(differingOffsets(first.body!, BODY)).toHaveLength(2);
    expect(second.body!.equals(BODY)).toBe(true);
    expect(proxy.faults).toHaveLength(2);
  });

  it('truncates a message after N body bytes and ends the connection', async () => {
    const proxy = await proxyTo(await httpServer());
    const remove = proxy.addRule({ direction: 'down', body: true, truncateAt: 5000, limit: 1 });
    const r = await get(proxy.url, '/cut');
    expect(r.body).toBeNull();
    expect(String((r.error as Error).cause ?? r.error)).toMatch(/closed|terminated|content-length/i);
    expect(proxy.faults).toEqual([{ kind: 'truncate', connection: 1, direction: 'down', request: 'GET /cut', offset: 5000 }]);
    remove();
    const again = await get(proxy.url, '/ok');
    expect(again.body!.equals(BODY)).toBe(true);
  });

  it('a raw truncation forwards exactly N bytes of the message', async () => {
    const { port } = await echoServer();
    const proxy = await proxyTo(port);
    proxy.addRule({ direction: 'down', truncateAt: 1234 });
    const c = new Client(proxy.port);
    c.socket.write(Buffer.alloc(10_000, 9));
    await waitFor(() => c.closed, 'connection ended');
    expect(c.received.length).toBe(1234);
  });

  it('rejects invalid options and closes for good', async () => {
    const { port } = await echoServer();
    const proxy = await proxyTo(port);
    expect(() => proxy.addRule({ direction: 'down', flipRate: 2 })).toThrow(RangeError);
    expect(() => proxy.addRule({ direction: 'down', truncateAt: -1 })).toThrow(RangeError);
    expect(() => proxy.addRule({ direction: 'down', flipAt: [1.5] })).toThrow(RangeError);
    expect(() => proxy.setDelay('up', -1)).toThrow(RangeError);
    expect(() => proxy.setRate('up', 0)).toThrow(RangeError);
    const c = new Client(proxy.port);
    await waitFor(() => proxy.active === 1, 'connected');
    await proxy.close();
    await waitFor(() => c.closed, 'closed by close()');
    const refused = await new Promise<string>((resolve) => {
      const s = net.connect(proxy.port, '127.0.0.1');
      s.on('connect', () => resolve('connected'));
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
  });
});
