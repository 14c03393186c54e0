/**
 * Kill loop: a primary and two replicas as child processes (the real CLI) under a write load, SIGKILLed
 * at seeded-random moments (the primary, a replica, or the primary and a replica together), restarted,
 * again and again. At the end no acknowledged write is lost (every id the primary answered 200 for is
 * there, read through the primary), and every replica equals the primary: same position, same pages,
 * same rows, integrity_check ok.
 *
 * CI mode: 10 rounds. EDGELITE_LONG=1: 100 rounds. Replay with EDGELITE_SEED=<printed seed>.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { EdgeliteProcess } from '../kit/spawn.ts';
import { converge, freePort, integrityCheck, query } from '../kit/api.ts';
import { processesAfterEach } from '../kit/spawn.ts';
import { prng, seedFromEnv, tempDir } from '../helpers.ts';
import { rounds, roundsTimeout } from '../kit/rounds.ts';
import { waitFor } from '../kit/wait.ts';
import { differingPages, tableDigests, WORKLOAD_SCHEMA, Writer } from './verify.ts';

const ROUNDS = rounds(10, 100);
const DB = 'app';
const REPLICA_FLAGS = ['--heartbeat-timeout-ms', '1500'];

const { procs, cleanups } = processesAfterEach();

/** A write may fail while the primary is down or restarting; any other failure ends the run. */
function tolerable(err: unknown): boolean {
  if (err instanceof TypeError) return true; // fetch failed: connection refused or reset
  return /exec answered (502|503|500)/.test(String((err as Error).message)) && !/INTERNAL/.test(String((err as Error).message));
}

describe('kill loop', () => {
  it(`SIGKILL primary and replicas at random moments (${ROUNDS} rounds): no acknowledged write lost, replicas equal the primary`, async () => {
    const seed = seedFromEnv();
    console.log(`kill loop: EDGELITE_SEED=${seed} rounds=${ROUNDS}`);
    const random = prng(seed);
    const t = tempDir('kill-loop');
    cleanups.push(t.cleanup);
    const primaryDir = join(t.dir, 'p');
    const replicaDirs = [join(t.dir, 'r0'), join(t.dir, 'r1')];
    for (const d of [primaryDir, ...replicaDirs]) mkdirSync(d);
    const listen = `127.0.0.1:${await freePort()}`;

    let primary = await procs.primary(primaryDir, listen);
    const url = primary.url;
    expect((await fetch(`${url}/v1/db/${DB}`, { method: 'PUT' })).status).toBe(201);
    const schema = await fetch(`${url}/v1/db/${DB}/exec`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ statements: WORKLOAD_SCHEMA }) });
    expect(schema.status).toBe(200);
    const replicas: EdgeliteProcess[] = [];
    for (const d of replicaDirs) replicas.push(await procs.replica(url, d, REPLICA_FLAGS));

    const writer = new Writer({ url, db: DB, seed, maxBody: 20_000, tolerate: tolerable });
    const started = Date.now();
    const kills = { primary: 0, replica: 0 };
    const log: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const progress = writer.writes;
      await waitFor(() => writer.writes >= progress + 3 || writer.error, `writes to go on before round ${round}`, 30_000);
      expect(writer.error ?? null).toBeNull();
      await new Promise((r) => setTimeout(r, 100 + random() * 600));
      const pick = random();
      const victims: string[] = pick < 0.35 ? ['primary'] : pick < 0.75 ? [`replica${Math.floor(random() * 2)}`] : ['primary', `replica${Math.floor(random() * 2)}`];
      log.push(`${round}:${victims.join('+')}@${writer.writes}/${((Date.now() - started) / 1000).toFixed(1)}s`);
      await Promise.all(victims.map((v) => (v === 'primary' ? procs.stop(primary) : procs.stop(replicas[Number(v.slice(-1))]!))));
      await new Promise((r) => setTimeout(r, random() * 300));
      for (const v of victims) {
        if (v === 'primary') {
          primary = await procs.primary(primaryDir, listen);
          kills.primary++;
        } else {
          const i = Number(v.slice(-1));
          replicas[i] = await procs.replica(url, replicaDirs[i]!, REPLICA_FLAGS);
          kills.replica++;
        }
      }
    }
    await writer.stop();
    console.log(`kill loop: ${log.join(' ')}\n  ${kills.primary} primary kills, ${kills.replica} replica kills, ${writer.writes} acknowledged writes, ${writer.errors} failed while down`);

    // No acknowledged write lost: every acknowledged id is on the primary.
    const ids = new Set((await query(url, DB, 'SELECT id FROM items')).map((r) => r[0] as number));
    const lost = writer.acknowledged.filter((id) => !ids.has(id));
    expect(lost, `acknowledged ids missing on the primary (seed ${seed})`).toEqual([]);

    // Every replica equals the primary.
    const replicaUrls = replicas.map((r) => r.url);
    const { ms } = await converge(url, replicaUrls, DB, 60_000);
    console.log(`kill loop: rounds took ${((Date.now() - started) / 1000).toFixed(1)} s, replicas converged ${ms} ms after the last write`);
    // Rows through each API (blob lengths and prefixes: whole blobs are tens of MB in long mode), then
    // every byte of every row and page from the files.
    const summary = 'SELECT id, tag, length(body), hex(substr(body, 1, 8)) FROM items ORDER BY id';
    const want = await query(url, DB, summary);
    const primaryFile = join(primaryDir, `${DB}.db`);
    expect(integrityCheck(primaryFile)).toBe('ok');
    const digests = tableDigests(primaryFile);
    for (const [i, r] of replicas.entries()) {
      const file = join(replicaDirs[i]!, `${DB}.db`);
      expect(integrityCheck(file), `replica ${i}`).toBe('ok');
      expect(differingPages(primaryFile, file), `replica ${i} pages`).toEqual([]);
      expect(tableDigests(file), `replica ${i} rows`).toEqual(digests);
      expect(await query(r.url, DB, summary), `replica ${i} rows through its API`).toEqual(want);
    }
  }, roundsTimeout(ROUNDS, 20_000)); // a round: 2.35 s on a quiet machine, 15 s with five suites running
});
