/**
 * Worker thread: commits single-row INSERTs at a fixed rate (open loop: commit i is due at
 * start + i/rate; a late commit goes out as soon as it may) and records, per commit, when it was sent
 * and when its acknowledgement arrived. Runs in its own thread so its pacing never delays the main
 * thread's readers.
 *
 * With `maxInFlight` 1 (the lag scenario, which needs commits in id order) each commit waits for the
 * previous one and the pacing is a sub-millisecond blocking sleep. With more, commits overlap (one
 * connection each) and are released by a 1 ms timer tick, so a primary slower than 1/rate per commit
 * still sees the offered rate.
 */
import pg from 'pg';
import { Pool } from 'undici';
import { parentPort, workerData } from 'node:worker_threads';
import { nowMs, sleepSync } from './common.ts';
import type { PgEndpoint } from '../postgres.ts';

export type WriteTarget = { kind: 'edgelite'; url: string; db: string } | { kind: 'pg'; endpoint: PgEndpoint };

export interface WriterInput {
  target: WriteTarget;
  /** Table with columns (id INTEGER PRIMARY KEY, t REAL). */
  table: string;
  firstId: number;
  count: number;
  ratePerSec: number;
  /** Most commits outstanding at once (default 1: strictly one after another, in id order). */
  maxInFlight?: number;
  /** Stop issuing commits after this long even if fewer than `count` went out (default: no limit). */
  maxDurationMs?: number;
}

export interface WriterOutput {
  /** Commits issued (and acknowledged): `count`, or fewer when `maxDurationMs` cut the run short. */
  issued: number;
  sentMs: Float64Array;
  ackMs: Float64Array;
  elapsedMs: number;
}

async function main(input: WriterInput): Promise<WriterOutput> {
  const maxInFlight = input.maxInFlight ?? 1;
  const commit = await connect(input, maxInFlight);
  const sentMs = new Float64Array(input.count);
  const ackMs = new Float64Array(input.count);
  const interval = 1000 / input.ratePerSec;
  const start = nowMs();
  const stopAt = start + (input.maxDurationMs ?? Number.POSITIVE_INFINITY);
  let next = 0;
  if (maxInFlight === 1) {
    for (let i = 0; i < input.count && nowMs() < stopAt; i++, next++) {
      sleepSync(start + i * interval - nowMs());
      sentMs[i] = nowMs();
      await commit.run(input.firstId + i);
      ackMs[i] = nowMs();
    }
  } else {
    let inFlight = 0;
    let failure: unknown = null;
    while (next < input.count && failure === null && nowMs() < stopAt) {
      const due = Math.min(input.count, Math.floor((nowMs() - start) / interval) + 1);
      while (next < due && inFlight < maxInFlight) {
        const i = next++;
        inFlight++;
        sentMs[i] = nowMs();
        commit.run(input.firstId + i).then(
          () => {
            ackMs[i] = nowMs();
            inFlight--;
          },
          (err: unknown) => {
            failure = err;
          },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    while (inFlight > 0 && failure === null) await new Promise((resolve) => setTimeout(resolve, 1));
    if (failure !== null) throw failure;
  }
  const elapsedMs = nowMs() - start;
  await commit.close();
  return { issued: next, sentMs, ackMs, elapsedMs };
}

async function connect(input: WriterInput, connections: number): Promise<{ run(id: number): Promise<void>; close(): Promise<void> }> {
  const t = input.target;
  if (t.kind === 'pg') {
    if (connections !== 1) throw new Error('the PostgreSQL writer commits one at a time');
    const client = new pg.Client(t.endpoint);
    await client.connect();
    const text = `INSERT INTO ${input.table} (id, t) VALUES ($1, $2)`;
    return {
      run: async (id) => {
        await client.query({ name: 'paced-insert', text, values: [id, Date.now()] });
      },
      close: () => client.end(),
    };
  }
  const pool = new Pool(t.url, { connections, headersTimeout: 30_000, bodyTimeout: 30_000 });
  const path = `/v1/db/${t.db}/exec`;
  const sql = `INSERT INTO ${input.table} (id, t) VALUES (?, ?)`;
  return {
    run: async (id) => {
      const res = await pool.request({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql, params: [id, Date.now()] }) });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`exec answered ${res.statusCode}: ${text.slice(0, 200)}`);
    },
    close: () => pool.close(),
  };
}

// A failure rejects, which ends the worker with an 'error' event the main thread reports.
void main(workerData as WriterInput).then((out) => parentPort!.postMessage(out));
