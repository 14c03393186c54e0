/**
 * GET /metrics on a real primary and a real replica (both with query pools, over loopback): the text is
 * well-formed Prometheus 0.0.4 (HELP and TYPE once per metric, before its samples; counters end in
 * _total), the positions equal what GET /v1/db/{name} says on each side, and the counters move with
 * what they count: N concurrent writes add exactly N to edgelite_writes_total and at most N batches,
 * a runaway read adds a query timeout, forwarded writes count by result.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/log.ts';
import { decodeToken } from '../../shared/token.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { RUNAWAY_SQL, postJson, tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

const DB = 'app';
const LIMIT_MS = 2000;

interface Scrape {
  /** value of one sample; undefined when absent. */
  get(name: string, labels?: Record<string, string>): number | undefined;
  types: Map<string, string>;
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>;
}

/**
 * parse reads the text format strictly enough to catch what a scraper would reject or misread: a
 * sample without a TYPE before it, HELP or TYPE twice, a counter not ending in _total, a bad line.
 */
function parse(text: string): Scrape {
  expect(text.endsWith('\n')).toBe(true);
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Scrape['samples'] = [];
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string];
      if (kind === 'HELP') {
        expect(helps.has(name), `HELP ${name} twice`).toBe(false);
        expect(types.has(name), `HELP ${name} after its TYPE`).toBe(false);
        helps.add(name);
      } else {
        expect(types.has(name), `TYPE ${name} twice`).toBe(false);
        expect(['counter', 'gauge']).toContain(rest);
        if (rest === 'counter') expect(name).toMatch(/_total$/);
        types.set(name, rest);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    expect(m, `not a sample line: ${JSON.stringify(line)}`).not.toBeNull();
    const [, name, labelText, valueText] = m! as unknown as [string, string, string | undefined, string];
    expect(types.has(name), `sample ${name} before its TYPE`).toBe(true);
    const labels: Record<string, string> = {};
    if (labelText) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
      let l: RegExpExecArray | null;
      while (re.lastIndex < labelText.length && (l = re.exec(labelText))) {
        labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      }
      expect(re.lastIndex, `bad labels: ${labelText}`).toBe(labelText.length);
    }
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    expect(Number.isNaN(value) && valueText !== 'NaN', `bad value in ${line}`).toBe(false);
    samples.push({ name, labels, value });
  }
  const key = (name: string, labels: Record<string, string>) => `${name}${JSON.stringify(Object.entries(labels).sort())}`;
  const byKey = new Map<string, number>();
  for (const s of samples) {
    const k = key(s.name, s.labels);
    expect(byKey.has(k), `duplicate sample ${k}`).toBe(false);
    byKey.set(k, s.value);
  }
  return { types, samples, get: (name, labels = {}) => byKey.get(key(name, labels)) };
}

async function scrape(url: string): Promise<Scrape> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parse(await res.text());
}

async function info(url: string): Promise<{ txid: number; generation: number; pageCount: number; lagMs: number | null; lagTxids: number; primaryTxid?: number | null }> {
  const res = await fetch(`${url}/v1/db/${DB}`);
  expect(res.status).toBe(200);
  return (await res.json()) as never;
}

let primary: PrimaryHandle;
let replica: ReplicaHandle;
const t = tempDir('metrics');

beforeAll(async () => {
  const limit = ['--query-timeout-ms', String(LIMIT_MS)];
  primary = await startPrimary(parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0', ...limit], {}), silentLogger);
  expect((await fetch(`${primary.url}/v1/db/${DB}`, { method: 'PUT' })).status).toBe(201);
  expect((await postJson(`${primary.url}/v1/db/${DB}/exec`, { sql: 'CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)' })).status).toBe(200);
  replica = await startReplica(parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0', ...limit], {}), silentLogger);
  await waitFor(() => replica.store.get(DB)?.position, 'the replica to bootstrap');
});

afterAll(async () => {
  await replica?.close();
  await primary?.close();
  t.cleanup();
});

/** caughtUp waits until the replica has applied the primary's txid and heard a heartbeat saying so. */
async function caughtUp(): Promise<number> {
  const want = (await info(primary.url)).txid;
  await waitFor(async () => {
    const r = await info(replica.url);
    return r.txid === want && r.primaryTxid === want;
  }, `the replica to apply txid ${want}`);
  return want;
}

describe('GET /metrics', () => {
  it('the primary and the replica report the positions GET /v1/db reports', async () => {
    for (let i = 0; i < 5; i++) expect((await postJson(`${primary.url}/v1/db/${DB}/exec`, { sql: 'INSERT INTO t (v) VALUES (?)', params: [`v${i}`] })).status).toBe(200);
    const txid = await caughtUp();
    const p = await info(primary.url);
    const pm = await scrape(primary.url);
    expect(pm.get('edgelite_txid', { db: DB })).toBe(p.txid);
    expect(pm.get('edgelite_generation', { db: DB })).toBe(p.generation);
    expect(pm.get('edgelite_db_pages', { db: DB })).toBe(p.pageCount);
    expect(pm.get('edgelite_log_records', { db: DB })).toBeGreaterThan(0);
    expect(pm.get('edgelite_stream_subscribers')).toBeGreaterThanOrEqual(1);

    const r = await info(replica.url);
    const rm = await scrape(replica.url);
    expect(r.txid).toBe(txid);
    expect(rm.get('edgelite_txid', { db: DB })).toBe(r.txid);
    expect(rm.get('edgelite_generation', { db: DB })).toBe(r.generation);
    expect(rm.get('edgelite_generation', { db: DB })).toBe(p.generation);
    expect(rm.get('edgelite_db_pages', { db: DB })).toBe(r.pageCount);
    expect(rm.get('edgelite_db_pages', { db: DB })).toBe(p.pageCount);
    expect(rm.get('edgelite_lag_txids', { db: DB })).toBe(r.lagTxids);
    expect(rm.get('edgelite_lag_txids', { db: DB })).toBe(0);
    expect(rm.get('edgelite_primary_txid', { db: DB })).toBe(r.primaryTxid);
    // Lag moves with the clock between the two requests; both must at least be known and not negative.
    expect(r.lagMs).not.toBeNull();
    expect(rm.get('edgelite_lag_seconds', { db: DB })).toBeGreaterThanOrEqual(0);
    expect(rm.get('edgelite_lag_seconds', { db: DB })).toBeLessThan(Infinity);
    expect(rm.get('edgelite_bootstrapping', { db: DB })).toBe(0);
    expect(rm.get('edgelite_needs_snapshot', { db: DB })).toBe(0);
    expect(rm.get('edgelite_follower_state', { state: 'streaming' })).toBe(1);
    for (const s of ['connecting', 'waiting', 'stopped']) expect(rm.get('edgelite_follower_state', { state: s })).toBe(0);
    expect(rm.get('edgelite_follower_connects_total')).toBeGreaterThanOrEqual(1);
    expect(rm.get('edgelite_primary_last_contact_seconds')).toBeLessThan(Infinity);
    expect(rm.types.get('edgelite_follower_connects_total')).toBe('counter');
    expect(rm.types.get('edgelite_lag_seconds')).toBe('gauge');
    // The bootstrap was one snapshot; the five writes after it arrived as change sets (group commit may
    // have put several in one).
    expect(rm.get('edgelite_snapshots_applied_total', { db: DB })).toBe(1);
    const before = rm.get('edgelite_changesets_applied_total', { db: DB })!;
    expect(before).toBeGreaterThanOrEqual(1);
    for (let i = 0; i < 3; i++) expect((await postJson(`${primary.url}/v1/db/${DB}/exec`, { sql: 'INSERT INTO t (v) VALUES (?)', params: [`w${i}`] })).status).toBe(200);
    await caughtUp();
    const after = await scrape(replica.url);
    expect(after.get('edgelite_changesets_applied_total', { db: DB })! - before).toBe(3);
    expect(after.get('edgelite_snapshots_applied_total', { db: DB })).toBe(1);
  });

  it('a database the replica follows but has no copy of yet is reported bootstrapping, without a position', async () => {
    // Not on the primary: the replica opens its local copy and waits for it.
    const other = await startReplica(
      parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r-missing'), '--listen', '127.0.0.1:0', '--databases', 'missing', '--query-timeout-ms', '0'], {}),
      silentLogger,
    );
    try {
      const m = await scrape(other.url);
      expect(m.get('edgelite_bootstrapping', { db: 'missing' })).toBe(1);
      expect(m.get('edgelite_txid', { db: 'missing' })).toBeUndefined();
      expect(m.get('edgelite_lag_seconds', { db: 'missing' })).toBe(Infinity);
      // No query pool: no pool metrics.
      expect(m.samples.some((s) => s.name.startsWith('edgelite_query_pool_'))).toBe(false);
    } finally {
      await other.close();
    }
  });

  it('N concurrent writes add N to writes_total in at most N batches, and none is left waiting', async () => {
    const N = 24;
    const before = await scrape(primary.url);
    const writes0 = before.get('edgelite_writes_total', { db: DB })!;
    const batches0 = before.get('edgelite_write_batches_total', { db: DB })!;
    expect(writes0).toBeGreaterThan(0); // the CREATE TABLE and the inserts above
    const answers = await Promise.all(Array.from({ length: N }, (_, i) => postJson(`${primary.url}/v1/db/${DB}/exec`, { sql: 'INSERT INTO t (v) VALUES (?)', params: [`c${i}`] })));
    expect(answers.map((a) => a.status)).toEqual(Array(N).fill(200));
    const after = await scrape(primary.url);
    const writes = after.get('edgelite_writes_total', { db: DB })! - writes0;
    const batches = after.get('edgelite_write_batches_total', { db: DB })! - batches0;
    console.log(`${N} concurrent writes: ${writes} writes in ${batches} batches`);
    expect(writes).toBe(N);
    expect(batches).toBeGreaterThanOrEqual(1);
    expect(batches).toBeLessThanOrEqual(N);
    expect(after.get('edgelite_writes_waiting', { db: DB })).toBe(0);
    expect(after.types.get('edgelite_writes_total')).toBe('counter');
    expect(after.get('edgelite_txid', { db: DB })).toBe(Math.max(...answers.map((a) => decodeToken(a.json.token).txid)));
  });

  it("the query pools' figures are reported, and a runaway read adds a timeout on each side", async () => {
    for (const url of [primary.url, replica.url]) {
      const before = await scrape(url);
      expect(before.get('edgelite_query_pool_size')).toBeGreaterThanOrEqual(1);
      expect(before.get('edgelite_query_pool_live')).toBeGreaterThanOrEqual(before.get('edgelite_query_pool_ready')!);
      expect(before.types.get('edgelite_query_pool_refused_total')).toBe('counter');
      const runaway = await postJson(`${url}/v1/db/${DB}/query`, { sql: RUNAWAY_SQL });
      expect(runaway.status).toBe(408);
      expect(runaway.json.error.code).toBe('QUERY_TIMEOUT');
      const after = await scrape(url);
      expect(after.get('edgelite_query_pool_timeouts_total')).toBe(before.get('edgelite_query_pool_timeouts_total')! + 1);
      // It started in-process and outlived its slice.
      expect(after.get('edgelite_query_handoffs_total')).toBe(before.get('edgelite_query_handoffs_total')! + 1);
      expect(after.types.get('edgelite_query_inprocess_total')).toBe('counter');
      expect(after.get('edgelite_query_pool_busy')).toBe(0);
      expect(after.get('edgelite_query_pool_queued')).toBe(0);
      expect(after.types.get('edgelite_query_pool_timeouts_total')).toBe('counter');
      expect(after.types.get('edgelite_query_pool_busy')).toBe('gauge');
    }
  });

  it('the replica counts forwarded writes by result', async () => {
    const before = await scrape(replica.url);
    const committed = before.get('edgelite_forwarded_writes_total', { result: 'committed' })!;
    const failed = before.get('edgelite_forwarded_writes_total', { result: 'failed' })!;
    expect((await postJson(`${replica.url}/v1/db/${DB}/exec`, { sql: "INSERT INTO t (v) VALUES ('via replica')" })).status).toBe(200);
    expect((await postJson(`${replica.url}/v1/db/${DB}/exec`, { sql: 'INSERT INTO nowhere VALUES (1)' })).status).toBe(400);
    const after = await scrape(replica.url);
    expect(after.get('edgelite_forwarded_writes_total', { result: 'committed' })).toBe(committed + 1);
    expect(after.get('edgelite_forwarded_writes_total', { result: 'failed' })).toBe(failed + 1);
    expect(after.get('edgelite_forwarded_writes_unapplied_total')).toBeGreaterThanOrEqual(0);
  });
});
