/**
 * Tenant-scoped tokens on the Worker replica (README.md#tenant-scoped-tokens), in workerd (wrangler
 * unstable_dev) against a real primary on 127.0.0.1 that has the same EDGELITE_TOKENS: a token for
 * tenant-a gets 403 FORBIDDEN on tenant-b for query, exec and describe, never with the token in the
 * message, works on tenant-a (its forwarded write checked again by the primary), and lists only
 * tenant-a. No skip: a machine where workerd cannot run fails this suite.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unstable_dev, type Unstable_DevWorker } from 'wrangler';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

const WORKER_DIR = fileURLToPath(new URL('../../deploy/worker/', import.meta.url));
const A = 'worker-tenant-a-token-0123456789';
const ADMIN = 'worker-scoped-admin-token-0123456789';
const SPEC = `read+write@tenant-a=${A}; admin=${ADMIN}`;

describe('Worker replica: tenant-scoped tokens (workerd)', () => {
  const t = tempDir('worker-scoped');
  let primary: PrimaryHandle;
  let worker: Unstable_DevWorker;

  async function call(base: 'worker' | 'primary', method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: any; text: string }> {
    const init = { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) };
    const res = base === 'worker' ? await worker.fetch(path, init) : await fetch(`${primary.url}${path}`, init);
    const text = await res.text();
    return { status: res.status, json: JSON.parse(text), text };
  }

  beforeAll(async () => {
    primary = await startPrimary(parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], { EDGELITE_TOKENS: SPEC }), silentLogger);
    for (const db of ['tenant-a', 'tenant-b']) {
      expect((await call('primary', 'PUT', `/v1/db/${db}`, ADMIN)).status).toBe(201);
      expect((await call('primary', 'POST', `/v1/db/${db}/exec`, ADMIN, { sql: 'CREATE TABLE t (x)' })).status).toBe(200);
    }
    worker = await unstable_dev(join(WORKER_DIR, 'src/index.ts'), {
      config: join(WORKER_DIR, 'wrangler.toml'),
      persistTo: join(t.dir, 'worker-state'),
      logLevel: 'none',
      vars: { PRIMARY_URL: primary.url, DATABASES: 'tenant-a,tenant-b', EDGELITE_TOKENS: SPEC, EDGELITE_PRIMARY_TOKEN: ADMIN, READ_WAIT_MS: '3000', WRITE_WAIT_MS: '10000' },
      experimental: { disableExperimentalWarning: true },
    });
  }, 90_000);

  afterAll(async () => {
    await worker?.stop();
    await primary?.close();
    t.cleanup();
  });

  const expectForbidden = (r: { status: number; json: any; text: string }) => {
    expect(r.status, r.text).toBe(403);
    expect(r.json.error.code).toBe('FORBIDDEN');
    expect(r.text).not.toContain(A);
    expect(r.text).not.toContain(ADMIN);
  };

  it("refuses tenant-a's token on tenant-b and serves it on tenant-a", async () => {
    expectForbidden(await call('worker', 'POST', '/v1/db/tenant-b/query', A, { sql: 'SELECT count(*) FROM t' }));
    expectForbidden(await call('worker', 'POST', '/v1/db/tenant-b/exec', A, { sql: 'INSERT INTO t VALUES (1)' }));
    expectForbidden(await call('worker', 'GET', '/v1/db/tenant-b', A));
    expectForbidden(await call('worker', 'PUT', '/v1/db/tenant-c', A));
    const w = await call('worker', 'POST', '/v1/db/tenant-a/exec', A, { sql: 'INSERT INTO t VALUES (7)' });
    expect(w.status, w.text).toBe(200);
    const read = await waitFor(async () => {
      const r = await call('worker', 'POST', '/v1/db/tenant-a/query', A, { sql: 'SELECT x FROM t' });
      return r.status === 200 && r.json.results[0].rows.length === 1 ? r : null;
    }, 'the Worker to serve the forwarded write', 30_000);
    expect(read.json.results[0].rows).toEqual([[7]]);
    const listed = await call('worker', 'GET', '/v1/db', A);
    expect(listed.status, listed.text).toBe(200);
    expect(listed.json.databases.map((d: { name: string }) => d.name)).toEqual(['tenant-a']);
  }, 90_000);
});
