/**
 * The status page's routes on a real primary over HTTP (README.md#status-page), with auth on and
 * continuous backup running: the shell and assets are public and carry no data, under a
 * Content-Security-Policy; GET /v1/ui/samples needs the read right, shows a tenant-scoped token its
 * own databases only, samples the numbers GET /v1/db/{name} answers (the backup lag included), and
 * refuses a malformed `since`. The browser side is test/e2e/status-page.test.ts.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/log.ts';
import { UI_CSP } from '../../shared/ui/page.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

const ADMIN = 'status-ui-admin-token-0123';
const READ = 'status-ui-read-token-01234';
const SCOPED = 'status-ui-scoped-token-0123';
const SPEC = `admin=${ADMIN}; read=${READ}; read@tenant-*=${SCOPED}`;

const t = tempDir('status-ui');
let primary: PrimaryHandle;

async function get(path: string, token?: string): Promise<{ status: number; headers: Headers; text: string; json: any }> {
  const res = await fetch(`${primary.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    // HTML, CSS or JavaScript
  }
  return { status: res.status, headers: res.headers, text, json };
}

async function call(method: string, path: string, body?: unknown): Promise<number> {
  const res = await fetch(`${primary.url}${path}`, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  await res.arrayBuffer();
  return res.status;
}

beforeAll(async () => {
  const backup = pathToFileURL(join(t.dir, 'bucket')).href;
  // Writes on the primary's thread: on a loaded 2-core machine a query process starting for the first
  // write took more than the default limit once, and this test is about the page, not time limits.
  primary = await startPrimary(parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0', '--query-timeout-ms', '0', '--backup', backup, '--backup-interval', '250ms'], { EDGELITE_TOKENS: SPEC }), silentLogger);
  for (const db of ['tenant-a', 'secret-db']) {
    expect(await call('PUT', `/v1/db/${db}`)).toBe(201);
    expect(await call('POST', `/v1/db/${db}/exec`, { sql: 'CREATE TABLE t (x)' })).toBe(200);
  }
  // The databases came after the sampler's first tick: wait for a tick that saw both.
  await waitFor(async () => (await get('/v1/ui/samples', READ)).json.all.databases.at(-1) === 2, 'a tick with both databases', 10_000, 100);
});

afterAll(async () => {
  await primary?.close();
  t.cleanup();
});

describe('status page routes (real primary, auth on)', () => {
  it('serves the shell without a token, under the CSP, with no data in it', async () => {
    const r = await get('/ui');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(r.headers.get('content-security-policy')).toBe(UI_CSP);
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(r.text).toContain('data-role="primary"');
    expect(r.text).not.toContain('tenant-a');
    expect(r.text).not.toContain('secret-db');
    const slash = await fetch(`${primary.url}/ui/`, { redirect: 'manual' });
    expect([slash.status, slash.headers.get('location')]).toEqual([308, '/ui']);
  });

  it('serves uPlot from the installed package, and 404s an unknown asset', async () => {
    const dist = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');
    const js = await get('/ui/assets/uPlot.iife.min.js');
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.text).toBe(readFileSync(join(dist, 'uPlot.iife.min.js'), 'utf8'));
    const css = await get('/ui/assets/uPlot.min.css');
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect((await get('/ui/assets/status.js')).status).toBe(200);
    const missing = await get('/ui/assets/..%2Fpackage.json');
    expect(missing.status).toBe(404);
    expect(missing.json.error.code).toBe('NOT_FOUND');
  });

  it('answers the samples only with the read right', async () => {
    expect((await get('/v1/ui/samples')).json.error.code).toBe('UNAUTHORIZED');
    expect((await get('/v1/ui/samples', 'not-a-known-token-0123456')).status).toBe(401);
    const r = await get('/v1/ui/samples', READ);
    expect(r.status).toBe(200);
    expect(r.json.node).toEqual({ role: 'primary', streams: 0, backup: true });
    expect(Object.keys(r.json.series).sort()).toEqual(['secret-db', 'tenant-a']);
    expect(r.json.all.databases.at(-1)).toBe(2);
  });

  it('shows a tenant-scoped token its own databases only, and no aggregate', async () => {
    const r = await get('/v1/ui/samples', SCOPED);
    expect(r.status).toBe(200);
    expect(Object.keys(r.json.series)).toEqual(['tenant-a']);
    expect(r.json.all).toBeNull();
    expect(r.text).not.toContain('secret-db');
  });

  it('samples the txid and backup lag GET /v1/db/{name} answers', async () => {
    expect(await call('POST', '/v1/db/tenant-a/exec', { sql: 'INSERT INTO t VALUES (1)' })).toBe(200);
    const api = (await get('/v1/db/tenant-a', READ)).json;
    const since = Date.now() - 1; // only ticks taken after the write
    const series = await waitFor(async () => {
      const s = (await get(`/v1/ui/samples?since=${since}`, READ)).json.series['tenant-a'];
      return s && s.txid.includes(api.txid) ? s : null;
    }, `a sample of tenant-a at txid ${api.txid}`, 10_000, 100);
    expect(series.lagMs.every((v: number | null) => v === 0)).toBe(true);
    expect(series.backupLagMs.every((v: number | null) => typeof v === 'number' && v >= 0)).toBe(true);
  });

  it('refuses a malformed since', async () => {
    const r = await get('/v1/ui/samples?since=yesterday', READ);
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('BAD_REQUEST');
  });
});
