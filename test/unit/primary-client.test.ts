/**
 * The one PrimaryClient (shared/primary-client.ts) over both transports it runs on: the Node replica's
 * undici pools (replica/primary-fetch.ts) and the global fetch (what the Worker passes). Against a real
 * HTTP server on port 0: the forwarding-credential rule and the AppliedOutcome of a failed forward.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EdgeliteError } from '../../shared/errors.ts';
import { PrimaryClient } from '../../shared/primary-client.ts';
import { SNAPSHOT_DIGEST_HEADER, snapshotHeaders } from '../../shared/protocol.ts';
import { nodePrimaryClient } from '../../replica/primary-fetch.ts';

const OWN = 'replica-own-token-0123456789';
const BIG = 8 * 1024 * 1024;
const CLIENT = 'Bearer client-token-0123456789';

let server: Server;
let url: string;
const seen: Array<{ path: string; authorization: string | undefined; body: string }> = [];

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      seen.push({ path: req.url ?? '', authorization: req.headers.authorization, body });
      if (req.url === '/cut') return req.socket.destroy();
      if (req.url === '/v1/db/bad/snapshot' || req.url === '/v1/db/big/snapshot') {
        // A large body, so the client still has most of it buffered when it gives up on it.
        const head = snapshotHeaders({ position: { generation: 1, txid: 2, checksum: 3n }, databaseId: 4, pageSize: 512, length: BIG });
        if (req.url.includes('/bad/')) head[SNAPSHOT_DIGEST_HEADER] = '0000000000000000';
        res.writeHead(200, head);
        return res.end(Buffer.alloc(BIG, 1));
      }
      if (req.url?.endsWith('/snapshot')) {
        res.writeHead(200, snapshotHeaders({ position: { generation: 1, txid: 2, checksum: 3n }, databaseId: 4, pageSize: 512, length: 512 }));
        return res.end(Buffer.alloc(512, 1));
      }
      if (req.url === '/v1/stream') {
        res.writeHead(200);
        return res.end('frames');
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ name: 'app', generation: 1, txid: 2, checksum: '0000000000000003' }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** closedPort is a port nothing listens on (port 1 and the like are refused by fetch itself as "bad port"). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const transports: Array<[string, (url: string, token?: string) => PrimaryClient]> = [
  ['undici pools (Node replica)', (u, token) => nodePrimaryClient({ url: u, token })],
  ['global fetch (Worker replica)', (u, token) => new PrimaryClient({ url: u, ...(token ? { token } : {}) })],
];

describe.each(transports)('PrimaryClient over %s', (_name, make) => {
  it("forwards a client's Authorization unchanged, and its own token when the client sent none", async () => {
    const client = make(url, OWN);
    try {
      seen.length = 0;
      await client.forward('POST', '/v1/db/app/exec', '{}', { Authorization: CLIENT });
      await client.forward('POST', '/v1/db/app/exec', '{}');
      await client.forward('PUT', '/v1/db/app', undefined, { authorization: CLIENT });
      await client.position('app');
      const sink = { open: async () => undefined, write: async () => undefined };
      expect((await client.snapshot('app', sink)).databaseId).toBe(4);
      const chunks: string[] = [];
      for await (const c of await client.openStream(['app'], { app: null }, new AbortController().signal)) chunks.push(Buffer.from(c).toString());
      expect(chunks.join('')).toBe('frames');
      expect(seen.map((s) => [s.path, s.authorization])).toEqual([
        ['/v1/db/app/exec', CLIENT],
        ['/v1/db/app/exec', `Bearer ${OWN}`],
        ['/v1/db/app', CLIENT],
        ['/v1/db/app', `Bearer ${OWN}`],
        ['/v1/db/app/snapshot', `Bearer ${OWN}`],
        ['/v1/stream', `Bearer ${OWN}`],
      ]);
      expect(JSON.parse(seen[5]!.body)).toEqual({ databases: ['app'], deltas: true, positions: { app: null } });
    } finally {
      await client.close();
    }
  });

  it('sends no Authorization at all when neither the client nor the replica has one', async () => {
    const client = make(url);
    try {
      seen.length = 0;
      await client.forward('GET', '/v1/db/app');
      expect(seen[0]!.authorization).toBeUndefined();
    } finally {
      await client.close();
    }
  });

  it('says not-applied when the primary refused the connection, unknown when it cut one it had taken', async () => {
    const refused = make(`http://127.0.0.1:${await closedPort()}`);
    const client = make(url);
    try {
      const a = await refused.forward('POST', '/v1/db/app/exec', '{}').then(() => null, (e: unknown) => e as EdgeliteError);
      expect([a?.code, a?.details?.outcome]).toEqual(['PRIMARY_UNAVAILABLE', 'not-applied']);
      const b = await client.forward('POST', '/cut', '{}').then(() => null, (e: unknown) => e as EdgeliteError);
      expect([b?.code, b?.details?.outcome]).toEqual(['PRIMARY_UNAVAILABLE', 'unknown']);
    } finally {
      await refused.close();
      await client.close();
    }
  });
});

describe.each(transports)('a snapshot given up on, over %s', (_name, make) => {
  it('is refused and its body dropped, headers not matching their digest or a sink failing, with nothing thrown later', async () => {
    const client = make(url);
    try {
      const sink = { open: async () => undefined, write: async () => undefined };
      const bad = await client.snapshot('bad', sink).then(() => null, (e: unknown) => e as EdgeliteError);
      expect(bad?.code).toBe('CORRUPT_CHANGESET');
      const failing = { open: async () => undefined, write: async () => Promise.reject(new EdgeliteError('DISK_FULL', 'no room')) };
      const full = await client.snapshot('big', failing).then(() => null, (e: unknown) => e as EdgeliteError);
      expect(full?.code).toBe('DISK_FULL');
      // Let the dropped bodies' remaining bytes arrive: an enqueue into a cancelled stream would throw here.
      await new Promise((r) => setTimeout(r, 300));
      expect((await client.snapshot('app', sink)).databaseId).toBe(4);
    } finally {
      await client.close();
    }
  });
});

describe('primary URL', () => {
  it('is checked once, on the way in: MISCONFIGURED unless http(s), on both transports', () => {
    for (const [, make] of transports) {
      for (const bad of ['ftp://x', 'not a url']) {
        const err = (() => {
          try {
            make(bad);
          } catch (e) {
            return e as EdgeliteError;
          }
          return null;
        })();
        expect([bad, err?.code, err?.message]).toEqual([bad, 'MISCONFIGURED', expect.stringContaining(bad)]);
      }
    }
  });
});
