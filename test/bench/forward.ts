/**
 * Forwarded-write benchmark: single-row inserts sent through a replica (which forwards them to the
 * primary and answers once it has applied them itself) next to the same inserts sent straight to the
 * primary (and through a replica told not to wait for the apply, to show what that wait costs).
 * Real processes (the `edgelite` CLI) on loopback, driven by `edgelite/client` from this one.
 *
 *   npx tsx test/bench/forward.ts [--writes 2000] [--seconds 5] [--concurrency 32]
 *
 * A script rather than a vitest bench: the figures wanted are latency percentiles of one client and
 * the throughput of many concurrent ones, against servers that live for the whole run. Not part of
 * `npm test` (it matches no *.test.ts).
 */
import { rmSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect, type Client } from '../../shared/client.ts';
import { spawnEdgelite, type EdgeliteProcess } from '../kit/spawn.ts';

const DB = 'bench';

interface Row {
  target: string;
  p50: number;
  p99: number;
  mean: number;
  perSecond: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { writes: { type: 'string', default: '2000' }, seconds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '32' } },
  });
  const writes = Number(values.writes);
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  const dir = mkdtempSync(join(tmpdir(), 'edgelite-bench-forward-'));
  const procs: EdgeliteProcess[] = [];
  const clients: Client[] = [];
  try {
    const primary = await spawnEdgelite(['primary', '--data', join(dir, 'p'), '--listen', '127.0.0.1:0']);
    procs.push(primary);
    await fetch(`${primary.url}/v1/db/${DB}`, { method: 'PUT' });
    const replica = await spawnEdgelite(['replica', '--primary', primary.url, '--data', join(dir, 'r'), '--listen', '127.0.0.1:0']);
    // The same forwarding without waiting to apply (at most 1 ms): what the wait itself costs.
    const noWait = await spawnEdgelite(['replica', '--primary', primary.url, '--data', join(dir, 'r2'), '--listen', '127.0.0.1:0', '--write-wait-ms', '1']);
    procs.push(replica, noWait);
    const direct = connect({ replicas: [replica.url], primary: primary.url, writesTo: 'primary', probeIntervalMs: 0 });
    const forwarded = connect({ replicas: [replica.url], probeIntervalMs: 0 });
    const forwardedNoWait = connect({ replicas: [noWait.url], probeIntervalMs: 0 });
    clients.push(direct, forwarded, forwardedNoWait);
    await direct.exec(DB, 'CREATE TABLE t (id INTEGER PRIMARY KEY, client INTEGER, v TEXT)');
    await waitReplicated(forwarded);
    await waitReplicated(forwardedNoWait);

    const targets: Array<[string, Client]> = [
      ['primary (direct)', direct],
      ['replica (forwarded)', forwarded],
      ['replica, no apply wait', forwardedNoWait],
    ];
    const rows: Row[] = [];
    for (const [name, client] of targets) {
      await sequential(client, 200); // warm-up: connections, statement cache, JIT
      const lat = await sequential(client, writes);
      const perSecond = await concurrent(client, concurrency, seconds);
      rows.push({ target: name, ...percentiles(lat), perSecond });
    }
    print(rows, writes, concurrency, seconds);
  } finally {
    for (const c of clients) c.close();
    for (const p of procs) await p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

/** waitReplicated waits until the replica has the table (a read through it succeeds). */
async function waitReplicated(client: Client): Promise<void> {
  for (let i = 0; i < 500; i++) {
    try {
      await client.query(DB, 'SELECT count(*) FROM t');
      return;
    } catch (err) {
      if (i === 499) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

let nextId = 0;

async function sequential(client: Client, n: number): Promise<number[]> {
  const s = client.session(DB);
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await s.exec('INSERT INTO t (id, client, v) VALUES (?, 0, ?)', [++nextId, 'x'.repeat(100)]);
    lat.push(performance.now() - t0);
  }
  return lat;
}

/** concurrent runs `clients` sessions inserting back to back for `seconds`; returns writes per second. */
async function concurrent(client: Client, clients: number, seconds: number): Promise<number> {
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      const s = client.session(DB);
      while (performance.now() < deadline) {
        await s.exec('INSERT INTO t (id, client, v) VALUES (?, ?, ?)', [++nextId, c + 1, 'x'.repeat(100)]);
        done++;
      }
    }),
  );
  return done / ((performance.now() - started) / 1000);
}

function percentiles(lat: number[]): { p50: number; p99: number; mean: number } {
  const sorted = [...lat].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { p50: at(0.5), p99: at(0.99), mean: sorted.reduce((a, b) => a + b, 0) / sorted.length };
}

function print(rows: Row[], writes: number, concurrency: number, seconds: number): void {
  console.log(`\nsingle-row inserts: latency over ${writes} sequential writes (1 client); throughput with ${concurrency} concurrent clients for ${seconds} s`);
  console.log('target                 p50 ms   p99 ms   mean ms   writes/s');
  for (const r of rows) {
    console.log(`${r.target.padEnd(22)} ${r.p50.toFixed(2).padStart(6)}   ${r.p99.toFixed(2).padStart(6)}   ${r.mean.toFixed(2).padStart(7)}   ${Math.round(r.perSecond).toString().padStart(8)}`);
  }
}

await main();
