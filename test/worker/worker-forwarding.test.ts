/**
 * The Worker replica in workerd (wrangler unstable_dev) against a recording HTTP server standing in
 * for its primary: it follows the one forwarding-credential rule (a client's own Authorization is
 * forwarded unchanged; EDGELITE_PRIMARY_TOKEN only when the client sent none), and a Worker with a bad
 * variable answers every request, /v1/health included, 503 MISCONFIGURED naming it. No skip: a
 * machine where workerd cannot run fails this suite.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unstable_dev, type Unstable_DevWorker } from 'wrangler';

const WORKER_DIR = fileURLToPath(new URL('../../deploy/worker/', import.meta.url));
const OWN = 'worker-own-token-0123456789';
const CLIENT = 'Bearer client-token-0123456789';

function start(vars: Record<string, string>): Promise<Unstable_DevWorker> {
  return unstable_dev(join(WORKER_DIR, 'src/index.ts'), {
    config: join(WORKER_DIR, 'wrangler.toml'),
    logLevel: 'none',
    vars: { DATABASES: 'app', ...vars },
    experimental: { disableExperimentalWarning: true },
  });
}

describe('Worker replica: forwarding credentials and configuration errors (workerd)', () => {
  let primary: Server;
  let primaryUrl: string;
  const seen: Array<{ method: string; path: string; authorization: string | undefined; body: string }> = [];
  const workers: Unstable_DevWorker[] = [];

  beforeAll(async () => {
    // Answers a forwarded write and a database creation; the follower's snapshot and stream fail, so it retries.
    primary = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ method: req.method ?? '', path: req.url ?? '', authorization: req.headers.authorization, body: Buffer.concat(chunks).toString() });
        res.writeHead(req.url === '/v1/stream' ? 503 : 200, { 'content-type': 'application/json' });
        res.end(req.url === '/v1/stream' ? JSON.stringify({ error: { code: 'UNAVAILABLE', message: 'not a primary' } }) : JSON.stringify({ results: [], created: true }));
      });
    });
    await new Promise<void>((r) => primary.listen(0, '127.0.0.1', r));
    primaryUrl = `http://127.0.0.1:${(primary.address() as AddressInfo).port}`;
  }, 60_000);

  afterAll(async () => {
    for (const w of workers) await w.stop();
    await new Promise<void>((r) => primary.close(() => r()));
  });

  it("forwards a client's Authorization unchanged, and EDGELITE_PRIMARY_TOKEN when the client sent none", async () => {
    const worker = await start({ PRIMARY_URL: primaryUrl, EDGELITE_PRIMARY_TOKEN: OWN, ALLOW_NO_AUTH: 'true' });
    workers.push(worker);
    const exec = (headers: Record<string, string>) =>
      worker.fetch('/v1/db/app/exec', { method: 'POST', body: JSON.stringify({ sql: "INSERT INTO kv VALUES ('a', 'b')" }), headers: { 'content-type': 'application/json', ...headers } });
    expect((await exec({ authorization: CLIENT })).status).toBe(200);
    expect((await exec({})).status).toBe(200);
    expect((await worker.fetch('/v1/db/app', { method: 'PUT', headers: { authorization: CLIENT } })).status).toBe(200);
    expect((await worker.fetch('/v1/db/app', { method: 'PUT' })).status).toBe(200);
    // A fork's body goes on to the primary; a drop is forwarded too.
    const fork = { from: 'app', txid: 3 };
    expect((await worker.fetch('/v1/db/branch', { method: 'PUT', body: JSON.stringify(fork), headers: { authorization: CLIENT, 'content-type': 'application/json' } })).status).toBe(200);
    expect((await worker.fetch('/v1/db/branch', { method: 'DELETE', headers: { authorization: CLIENT } })).status).toBe(200);
    const own = (s: { path: string }) => s.path === '/v1/stream' || s.path.endsWith('/snapshot');
    const forwarded = seen.filter((s) => !own(s)).map((s) => [s.method, s.path, s.authorization]);
    expect(forwarded).toEqual([
      ['POST', '/v1/db/app/exec', CLIENT],
      ['POST', '/v1/db/app/exec', `Bearer ${OWN}`],
      ['PUT', '/v1/db/app', CLIENT],
      ['PUT', '/v1/db/app', `Bearer ${OWN}`],
      ['PUT', '/v1/db/branch', CLIENT],
      ['DELETE', '/v1/db/branch', CLIENT],
    ]);
    expect(JSON.parse(seen.find((s) => s.method === 'PUT' && s.path === '/v1/db/branch')!.body)).toEqual(fork);
    // The Worker's own requests (its follower's snapshot and stream) carry its own token, whoever asked.
    const ownRequests = seen.filter(own);
    expect(ownRequests.length).toBeGreaterThan(0);
    expect(new Set(ownRequests.map((s) => s.authorization))).toEqual(new Set([`Bearer ${OWN}`]));
  }, 60_000);

  it('answers 503 MISCONFIGURED naming the bad variable, on /v1/health and every other route, never a 400', async () => {
    const worker = await start({ PRIMARY_URL: primaryUrl, ALLOW_NO_AUTH: 'true', READ_WAIT_MS: 'soon' });
    workers.push(worker);
    const requests: Array<[string, { method?: string; body?: string; headers?: Record<string, string> }]> = [
      ['/v1/health', {}],
      ['/v1/db/app', {}],
      ['/v1/db/app/query', { method: 'POST', body: JSON.stringify({ sql: 'SELECT 1' }), headers: { 'content-type': 'application/json' } }],
    ];
    for (const [path, init] of requests) {
      const r = await worker.fetch(path, init);
      const body = (await r.json()) as { error: { code: string; message: string } };
      expect([path, r.status, body.error.code]).toEqual([path, 503, 'MISCONFIGURED']);
      expect(body.error.message).toMatch(/READ_WAIT_MS/);
    }
  }, 60_000);
});
