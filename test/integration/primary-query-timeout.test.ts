/**
 * The primary's own API reads are time-limited like a replica's (docs/ARCHITECTURE.md#security): a runaway read is
 * answered 408 QUERY_TIMEOUT at the limit and its query process is killed, while writes, other reads
 * and the replication stream keep going, because reads never run on the thread that captures and
 * streams. A primary and a replica in one process over loopback; the query processes are real.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { tempDir, postJson, RUNAWAY_SQL, stopsAfterEach } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';

const RUNAWAY = RUNAWAY_SQL;
const LIMIT_MS = 1500;

const stops = stopsAfterEach();

const post = postJson;

async function setup(flags: string[], withReplica: boolean): Promise<{ primary: PrimaryHandle; replica: ReplicaHandle | null }> {
  const t = tempDir('primary-query-timeout');
  stops.push(t.cleanup);
  const config = parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0', ...flags], {});
  const primary = await startPrimary({ ...config, auth: AUTH_DISABLED }, silentLogger);
  stops.push(() => primary.close());
  await fetch(`${primary.url}/v1/db/app`, { method: 'PUT' });
  await post(`${primary.url}/v1/db/app/exec`, { sql: 'CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)' });
  await post(`${primary.url}/v1/db/app/exec`, { statements: Array.from({ length: 100 }, (_, i) => ({ sql: 'INSERT INTO kv VALUES (?, ?)', params: [i, `v${i}`] })) });
  // Every query process started, so that the runaway and the other requests each have one at once.
  primary.queryPool?.warm();
  await waitFor(() => !primary.queryPool || primary.queryPool.stats().ready === primary.queryPool.size, 'query processes started', 60_000);
  await Promise.all(Array.from({ length: 4 }, () => post(`${primary.url}/v1/db/app/query`, { sql: 'SELECT 1' })));
  if (!withReplica) return { primary, replica: null };
  const replica = await startReplica(parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0'], {}), silentLogger);
  stops.push(() => replica.close());
  const want = primary.store.get('app')!.position.txid;
  await waitFor(() => (replica.store.get('app')?.position?.txid ?? -1) >= want, 'replica catch-up');
  return { primary, replica };
}

describe('a runaway query on the primary', () => {
  it('answers 408 at the limit while writes, other reads and the stream go on', async () => {
    const { primary, replica } = await setup(['--query-timeout-ms', String(LIMIT_MS)], true);

    let runawayDone = false;
    const t0 = performance.now();
    const runaway = post(`${primary.url}/v1/db/app/query`, { sql: RUNAWAY }).then((r) => {
      runawayDone = true;
      return { ...r, ms: performance.now() - t0 };
    });
    const rdb = replica!.store.get('app')!;
    const startTxid = rdb.position!.txid;
    let writes = 0;
    let reads = 0;
    let replicatedDuring = startTxid;
    for (let i = 1000; !runawayDone; i++) {
      const w = await post(`${primary.url}/v1/db/app/exec`, { sql: 'INSERT INTO kv VALUES (?, ?)', params: [i, 'during'] });
      expect(w.status, JSON.stringify(w.json)).toBe(200);
      const r = await post(`${primary.url}/v1/db/app/query`, { sql: 'SELECT v FROM kv WHERE k = ?', params: [i] });
      // Read-your-writes on the primary holds through the query processes: a fresh read sees the commit.
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      expect(r.json.results[0].rows).toEqual([['during']]);
      if (!runawayDone) {
        writes++;
        reads++;
        replicatedDuring = Math.max(replicatedDuring, rdb.position!.txid);
      }
      await new Promise((res) => setTimeout(res, 10));
    }
    const r = await runaway;
    console.log(`primary runaway answered ${r.status} after ${r.ms.toFixed(0)} ms (limit ${LIMIT_MS}); ${writes} writes and ${reads} reads meanwhile; replica txid ${startTxid} -> ${replicatedDuring}`);
    expect(r.status).toBe(408);
    expect(r.json.error.code).toBe('QUERY_TIMEOUT');
    expect(writes).toBeGreaterThan(0);
    expect(replicatedDuring).toBeGreaterThan(startTxid);
  });

  it('gives the same results and typed errors as the in-process path', async () => {
    const pooled = (await setup([], false)).primary;
    const inProcess = (await setup(['--query-timeout-ms', '0'], false)).primary;
    const requests: unknown[] = [
      { sql: 'SELECT k, v, typeof(v), length(v) FROM kv WHERE k < ? ORDER BY k', params: [5] },
      { sql: "SELECT x'00ff', 1.5, NULL, 9007199254740991" },
      { statements: [{ sql: 'SELECT count(*) AS n FROM kv' }, { sql: 'SELECT max(k) FROM kv' }] },
      { sql: 'SELECT * FROM no_such_table' },
      { sql: 'SELECT (' },
      { sql: "INSERT INTO kv VALUES (500, 'x')" },
      { sql: 'BEGIN' },
      { sql: "ATTACH 'other.db' AS o" },
      { sql: 'PRAGMA query_only = 0' },
    ];
    for (const body of requests) {
      const a = await post(`${pooled.url}/v1/db/app/query`, body);
      const b = await post(`${inProcess.url}/v1/db/app/query`, body);
      expect({ body, status: a.status, json: a.json }).toEqual({ body, status: b.status, json: b.json });
    }
    expect(pooled.store.get('app')!.position.txid).toBe(inProcess.store.get('app')!.position.txid);
  });

  it('stops a runaway write at the limit without committing any of it; other databases and reads go on', async () => {
    const { primary, replica } = await setup(['--query-timeout-ms', String(LIMIT_MS)], true);
    await fetch(`${primary.url}/v1/db/other`, { method: 'PUT' });
    await post(`${primary.url}/v1/db/other/exec`, { sql: 'CREATE TABLE t (v INTEGER)' });
    const db = primary.store.get('app')!;
    const before = db.position;
    let runawayDone = false;
    const t0 = performance.now();
    const runaway = post(`${primary.url}/v1/db/app/exec`, {
      statements: [
        { sql: "INSERT INTO kv VALUES (-1, 'first statement of the batch')" },
        { sql: "INSERT INTO kv SELECT x + 1000000, 'runaway' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c)" },
      ],
    }).then((r) => {
      runawayDone = true;
      return { ...r, ms: performance.now() - t0 };
    });
    let others = 0;
    for (let i = 0; !runawayDone; i++) {
      const w = await post(`${primary.url}/v1/db/other/exec`, { sql: 'INSERT INTO t VALUES (?)', params: [i] });
      expect(w.status, JSON.stringify(w.json)).toBe(200);
      const r = await post(`${primary.url}/v1/db/app/query`, { sql: 'SELECT count(*) FROM kv' });
      expect(r.json.results[0].rows).toEqual([[100]]);
      if (!runawayDone) others++;
      await new Promise((res) => setTimeout(res, 10));
    }
    const r = await runaway;
    console.log(`primary runaway write answered ${r.status} after ${r.ms.toFixed(0)} ms (limit ${LIMIT_MS}); ${others} writes to another database and reads meanwhile`);
    expect(r.status).toBe(408);
    expect(r.json.error.code).toBe('QUERY_TIMEOUT');
    expect(others).toBeGreaterThan(0);
    // Nothing of the batch was committed, the position did not move, and the next writes replicate.
    expect((await post(`${primary.url}/v1/db/app/query`, { sql: 'SELECT count(*) FROM kv WHERE k < 0 OR k > 1000000' })).json.results[0].rows).toEqual([[0]]);
    expect(db.position.txid).toBe(before.txid);
    for (let i = 0; i < 5; i++) expect((await post(`${primary.url}/v1/db/app/exec`, { sql: 'INSERT INTO kv VALUES (?, ?)', params: [200 + i, 'after'] })).status).toBe(200);
    const want = db.position;
    await waitFor(() => replica!.store.get('app')?.position?.txid === want.txid, 'replica catch-up after the runaway write');
    expect(replica!.store.get('app')!.position!.checksum).toBe(want.checksum);
  });

  it('gives the same write results and errors in a query process as on the primary\'s thread', async () => {
    const pooled = (await setup([], false)).primary;
    const inProcess = (await setup(['--query-timeout-ms', '0'], false)).primary;
    const requests: unknown[] = [
      { sql: "INSERT INTO kv (v) VALUES ('auto')" },
      { sql: 'UPDATE kv SET v = v || ? WHERE k < 10', params: ['!'] },
      { sql: "INSERT INTO kv VALUES (1, 'duplicate')" },
      { statements: [{ sql: "INSERT INTO kv VALUES (300, 'a')" }, { sql: "INSERT INTO kv VALUES (300, 'b')" }] },
      { statements: [{ sql: 'DELETE FROM kv WHERE k > 50' }, { sql: "INSERT INTO kv VALUES (400, 'c') RETURNING k, v" }] },
      { sql: 'INSERT INTO nowhere VALUES (1)' },
      { sql: 'BEGIN' },
      { sql: 'CREATE INDEX kv_v ON kv (v)' },
      { sql: 'VACUUM' },
      { sql: 'SELECT k, v FROM kv ORDER BY k' },
    ];
    for (const body of requests) {
      const a = await post(`${pooled.url}/v1/db/app/exec`, body);
      const b = await post(`${inProcess.url}/v1/db/app/exec`, body);
      const strip = (j: any) => ({ ...j, token: typeof j.token });
      expect({ body, status: a.status, json: strip(a.json) }).toEqual({ body, status: b.status, json: strip(b.json) });
    }
    const digest = (url: string) => post(`${url}/v1/db/app/query`, { sql: 'SELECT group_concat(k || v) FROM (SELECT * FROM kv ORDER BY k)' });
    expect((await digest(pooled.url)).json).toEqual((await digest(inProcess.url)).json);
    expect(pooled.store.get('app')!.position.txid).toBe(inProcess.store.get('app')!.position.txid);
  });

  it('rejects a bad --query-timeout-ms, and defaults to 5000', () => {
    expect(() => parsePrimaryConfig(['--data', '/tmp/x', '--query-timeout-ms', '-5'], {})).toThrow(/query-timeout-ms/);
    expect(() => parsePrimaryConfig(['--data', '/tmp/x', '--query-timeout-ms', 'soon'], {})).toThrow(/query-timeout-ms/);
    expect(parsePrimaryConfig(['--data', '/tmp/x'], {}).queryTimeoutMs).toBe(5000);
    expect(parsePrimaryConfig(['--data', '/tmp/x', '--query-timeout-ms', '0'], {}).queryTimeoutMs).toBe(0);
  });
});
