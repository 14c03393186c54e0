/**
 * Read-your-writes across replicas, end to end: a real primary and two real replicas (the `edgelite`
 * CLI, each its own process), driven by `edgelite/client`. Each round writes through replica A and
 * reads the row back through replica B with the write's token: every read must see its write. Before
 * that read, an eventual read on B (no token) shows how often B had not applied the write yet; that
 * count is printed as a report, not asserted. A second loop does the same with writes sent straight to
 * the primary, which answers before any replica has applied them.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Client } from '../../shared/client.ts';
import { decodeToken } from '../../shared/token.ts';
import { tempDir } from '../helpers.ts';
import { waitFor } from '../kit/wait.ts';
import { spawnEdgelite, type EdgeliteProcess } from '../kit/spawn.ts';

const DB = 'ryw';
const ROUNDS = 1000;
const PRIMARY_ROUNDS = 500;

const procs: EdgeliteProcess[] = [];
const clients: Client[] = [];
let cleanup: () => void = () => {};
let primary: EdgeliteProcess;
let replicaA: EdgeliteProcess;
let replicaB: EdgeliteProcess;

async function json(url: string, method: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

beforeAll(async () => {
  const t = tempDir('ryw-e2e');
  cleanup = t.cleanup;
  primary = await spawnEdgelite(['primary', '--data', join(t.dir, 'primary'), '--listen', '127.0.0.1:0']);
  procs.push(primary);
  expect((await json(`${primary.url}/v1/db/${DB}`, 'PUT')).status).toBe(201);
  expect((await json(`${primary.url}/v1/db/${DB}/exec`, 'POST', { sql: 'CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)' })).status).toBe(200);
  const start = (name: string) => spawnEdgelite(['replica', '--primary', primary.url, '--data', join(t.dir, name), '--listen', '127.0.0.1:0']);
  [replicaA, replicaB] = await Promise.all([start('a'), start('b')]);
  procs.push(replicaA, replicaB);
  const want = (await json(`${primary.url}/v1/db/${DB}`, 'GET')).body.txid as number;
  for (const r of [replicaA, replicaB]) {
    await waitFor(async () => {
      const d = await json(`${r.url}/v1/db/${DB}`, 'GET');
      return d.status === 200 && (d.body.txid as number) >= want;
    }, `${r.url} bootstrapped`);
  }
});

afterAll(async () => {
  for (const c of clients) c.close();
  for (const p of procs) await p.kill('SIGKILL');
  cleanup();
});

describe('read-your-writes across real replica processes', () => {
  it(`every read through B with the token sees the write made through A (${ROUNDS} rounds)`, async () => {
    const viaA = connect({ replicas: [replicaA.url], probeIntervalMs: 0 });
    const viaB = connect({ replicas: [replicaB.url], probeIntervalMs: 0 });
    clients.push(viaA, viaB);
    const writer = viaA.session(DB);
    let eventualBehind = 0;
    let missed = 0;
    const started = Date.now();
    for (let i = 0; i < ROUNDS; i++) {
      const w = await writer.exec('INSERT INTO t (k, v) VALUES (?, ?)', [i, `v${i}`]);
      expect(w.url).toBe(replicaA.url);
      const wrote = decodeToken(w.token).txid;

      const eventual = await viaB.query(DB, 'SELECT v FROM t WHERE k = ?', [i]);
      if (eventual.txid === null || eventual.txid < wrote) {
        eventualBehind++;
        // Behind means behind: B's answer must not contain a row from a later txid than it reports.
        expect(eventual.rows).toEqual([]);
      }

      const r = await viaB.session(DB, { token: w.token }).query('SELECT v FROM t WHERE k = ?', [i]);
      if (r.url !== replicaB.url || r.txid === null || r.txid < wrote || r.rows.length !== 1 || r.rows[0]![0] !== `v${i}`) missed++;
    }
    const seconds = (Date.now() - started) / 1000;
    console.log(
      `[read-your-writes e2e] ${ROUNDS} rounds in ${seconds.toFixed(1)} s: read with token missed its write ${missed} times; ` +
        `eventual read on B was behind the write just made through A ${eventualBehind} times (${((100 * eventualBehind) / ROUNDS).toFixed(1)}%)`,
    );
    expect(missed).toBe(0);
    expect(Number.isInteger(eventualBehind)).toBe(true);
    const count = await viaB.session(DB, { token: writer.token }).query('SELECT count(*) FROM t');
    expect(count.rows).toEqual([[ROUNDS]]);
  });

  it(`the same with writes sent straight to the primary (${PRIMARY_ROUNDS} rounds)`, async () => {
    const direct = connect({ replicas: [replicaA.url], primary: primary.url, writesTo: 'primary', probeIntervalMs: 0 });
    const viaB = connect({ replicas: [replicaB.url], probeIntervalMs: 0 });
    clients.push(direct, viaB);
    const writer = direct.session(DB);
    let eventualBehind = 0;
    let missed = 0;
    for (let i = 0; i < PRIMARY_ROUNDS; i++) {
      const k = ROUNDS + i;
      const w = await writer.exec('INSERT INTO t (k, v) VALUES (?, ?)', [k, `v${k}`]);
      expect(w.url).toBe(primary.url);
      const eventual = await viaB.query(DB, 'SELECT v FROM t WHERE k = ?', [k]);
      if (eventual.rows.length === 0) eventualBehind++;
      const r = await viaB.session(DB, { token: w.token }).query('SELECT v FROM t WHERE k = ?', [k]);
      if (r.rows.length !== 1 || r.rows[0]![0] !== `v${k}`) missed++;
    }
    console.log(
      `[read-your-writes e2e] writes to the primary, ${PRIMARY_ROUNDS} rounds: read with token missed ${missed} times; ` +
        `eventual read on B was behind ${eventualBehind} times (${((100 * eventualBehind) / PRIMARY_ROUNDS).toFixed(1)}%)`,
    );
    expect(missed).toBe(0);
  });
});
