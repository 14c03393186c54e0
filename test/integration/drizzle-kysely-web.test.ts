/**
 * The package's ORM entry points are what README.md#drizzle-and-kysely promises: `edgelite/drizzle` and
 * `edgelite/kysely` resolve through package.json `exports`, bundle for a platform with no Node builtins
 * (esbuild, `platform: 'neutral'`, Worker conditions: nothing left external), and the bundle runs in a
 * V8 context that has Web APIs only (fetch, URL, TextEncoder, timers; no `process`, `Buffer` or
 * `require`), against a real primary over loopback HTTP.
 */
import { build } from 'esbuild';
import { join } from 'node:path';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary } from '../../primary/server.ts';
import { stopsAfterEach, tempDir } from '../helpers.ts';
import { REPO_ROOT } from '../kit/spawn.ts';

const stops = stopsAfterEach();

/** ENTRY is what an application in a Worker would write, run as a script in the Web-only context. */
const ENTRY = `
import { connect } from 'edgelite/client';
import { drizzle } from 'edgelite/drizzle';
import { EdgeliteDialect, batch } from 'edgelite/kysely';
import { eq, sql } from 'drizzle-orm';
import { integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { Kysely } from 'kysely';

const items = sqliteTable('items', { id: integer('id').primaryKey(), name: text('name').notNull() });

globalThis.runOrm = async (url) => {
  const client = connect({ replicas: [url], probeIntervalMs: 0 });
  try {
    const d = drizzle(client, { database: 'web', schema: { items } });
    await d.run(sql\`CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)\`);
    await d.batch([d.insert(items).values({ id: 1, name: 'one' }), d.insert(items).values({ id: 2, name: 'two' })]);
    const viaDrizzle = await d.select().from(items).where(eq(items.id, 2));
    const k = new Kysely({ dialect: new EdgeliteDialect({ session: d.$session }) });
    await batch(k, [k.insertInto('items').values({ id: 3, name: 'three' })]);
    const viaKysely = await k.selectFrom('items').select('name').orderBy('id').execute();
    let refused = null;
    try { await k.transaction().execute(async () => 1); } catch (err) { refused = err.code; }
    return JSON.stringify({ viaDrizzle, viaKysely, refused, token: typeof d.$session.token });
  } finally {
    client.close();
  }
};
`;

/** webContext has the Web APIs the client uses, from this process, and nothing of Node's. */
function webContext(): vm.Context {
  const g: Record<string, unknown> = {
    fetch, Headers, Request, Response, URL, URLSearchParams, AbortController, AbortSignal, TextEncoder, TextDecoder,
    setTimeout, clearTimeout, setInterval, clearInterval, queueMicrotask, structuredClone, atob, btoa, console, crypto,
  };
  return vm.createContext(g);
}

describe('edgelite/drizzle and edgelite/kysely, Web APIs only', () => {
  it('resolve through the package exports, bundle with nothing external and run without Node globals', async () => {
    const out = await build({
      stdin: { contents: ENTRY, resolveDir: REPO_ROOT, loader: 'ts', sourcefile: 'worker-app.ts' },
      bundle: true,
      write: false,
      platform: 'neutral',
      format: 'iife',
      mainFields: ['module', 'main'],
      conditions: ['workerd', 'worker', 'browser'],
      metafile: true,
      logLevel: 'silent',
    });
    const inputs = Object.keys(out.metafile.inputs);
    expect(inputs).toContain('shared/orm/drizzle.ts');
    expect(inputs).toContain('shared/orm/kysely.ts');
    const external = Object.values(out.metafile.inputs).flatMap((i) => i.imports.filter((x) => x.external).map((x) => x.path));
    expect(external).toEqual([]);

    const t = tempDir('orm-web');
    stops.push(t.cleanup);
    const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
    stops.push(() => primary.close());
    expect((await fetch(`${primary.url}/v1/db/web`, { method: 'PUT' })).status).toBe(201);

    const ctx = webContext();
    vm.runInContext(out.outputFiles[0]!.text, ctx, { filename: 'worker-app.js' });
    expect(vm.runInContext('typeof process + typeof Buffer + typeof require', ctx)).toBe('undefinedundefinedundefined');
    const result = JSON.parse(await (ctx.runOrm as (url: string) => Promise<string>)(primary.url));
    expect(result).toEqual({
      viaDrizzle: [{ id: 2, name: 'two' }],
      viaKysely: [{ name: 'one' }, { name: 'two' }, { name: 'three' }],
      refused: 'BAD_REQUEST',
      token: 'string',
    });
  });
});
