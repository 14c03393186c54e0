/**
 * Worker thread: watches a replica for rows `firstId..lastId` and records when each first became
 * visible, by polling `SELECT max(id)` (ids are committed in increasing order, one at a time, so a
 * larger max makes every id up to it visible).
 *
 * - edgelite: a read-only better-sqlite3 connection on the replica's database file, polled every
 *   `pollEveryMs` (a sleep that does not spin), which is exactly what any reader of that file sees.
 * - PostgreSQL: a connection to the hot standby, polled back to back (each poll is one loopback round
 *   trip, ~0.1 ms).
 *
 * Posts `{ type: 'ready' }` once connected, then `{ type: 'done', visibleMs }` (NaN for ids not seen
 * before the deadline).
 */
import Database from 'better-sqlite3';
import pg from 'pg';
import { parentPort, workerData } from 'node:worker_threads';
import { nowMs, sleepSync } from './common.ts';
import type { PgEndpoint } from '../postgres.ts';

export type PollSource = { kind: 'sqlite'; path: string; pollEveryMs: number } | { kind: 'pg'; endpoint: PgEndpoint };

export interface PollerInput {
  source: PollSource;
  table: string;
  firstId: number;
  lastId: number;
  timeoutMs: number;
}

export type PollerMessage = { type: 'ready' } | { type: 'done'; visibleMs: Float64Array; polls: number };

async function main(input: PollerInput): Promise<void> {
  const visibleMs = new Float64Array(input.lastId - input.firstId + 1).fill(Number.NaN);
  let seen = input.firstId - 1;
  let polls = 0;
  const mark = (max: number) => {
    if (max <= seen) return;
    const t = nowMs();
    for (let id = Math.max(seen + 1, input.firstId); id <= Math.min(max, input.lastId); id++) visibleMs[id - input.firstId] = t;
    seen = max;
  };
  const sql = `SELECT max(id) AS m FROM ${input.table}`;
  const src = input.source;
  if (src.kind === 'sqlite') {
    const db = new Database(src.path, { readonly: true, fileMustExist: true });
    const stmt = db.prepare(sql).pluck();
    parentPort!.postMessage({ type: 'ready' } satisfies PollerMessage);
    const deadline = nowMs() + input.timeoutMs;
    while (seen < input.lastId && nowMs() < deadline) {
      mark(Number(stmt.get() ?? 0));
      polls++;
      sleepSync(src.pollEveryMs);
    }
    db.close();
  } else {
    const client = new pg.Client(src.endpoint);
    await client.connect();
    parentPort!.postMessage({ type: 'ready' } satisfies PollerMessage);
    const deadline = nowMs() + input.timeoutMs;
    while (seen < input.lastId && nowMs() < deadline) {
      const r = await client.query({ name: 'poll-max', text: sql, rowMode: 'array' });
      mark(Number((r.rows[0] as unknown[])[0] ?? 0));
      polls++;
    }
    await client.end();
  }
  parentPort!.postMessage({ type: 'done', visibleMs, polls } satisfies PollerMessage);
}

void main(workerData as PollerInput);
