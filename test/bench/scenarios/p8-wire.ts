/**
 * P8 bytes on the wire per single-row update: UPDATE one row (same-length value) of the 10,000-row
 * `kv` table through the primary's exec, and measure the change-set frame that carries it on a live
 * stream (frame header + msgpack body, scanned from the bytes received; HTTP chunk framing adds a few
 * bytes more). The median over UPDATES updates of random rows.
 *
 * Two reference figures go in the notes: what a page-delta encoding would ship for the same change sets
 * (byte runs that differ from the previous image of each page, 4 bytes of offset/length per run, runs
 * closer than 8 bytes merged, plus the 4-byte page number; previous images from a snapshot taken just
 * before) and PostgreSQL's WAL bytes for the same UPDATE (pg_current_wal_insert_lsn before and after).
 */
import { decodeDeltaChangeSet, isDeltaChangeSet } from '../../../shared/changeset-delta.ts';
import pg from 'pg';
import { request } from 'undici';
import { decodeChangeSet } from '../../../shared/changeset.ts';
import type { PgCluster } from '../postgres.ts';
import type { Cluster } from './cluster.ts';
import { DB, ROWS } from './cluster.ts';
import { median, waitUntil, type BenchContext, type Row } from './common.ts';
import { StreamSubscriber, type ChangeSetArrival } from './subscriber.ts';

const UPDATE = 'UPDATE kv SET v = ? WHERE id = ?';
const MERGE_GAP = 8;
const RUN_HEADER = 4;

function newValue(id: number, k: number): string {
  return `value-${String(id).padStart(6, '0')}-${k.toString(16).padStart(88, '0')}`;
}

/** deltaBytes is the size of a byte-run delta turning `before` into `after`. */
export function deltaBytes(before: Uint8Array, after: Uint8Array): number {
  let bytes = 0;
  let i = 0;
  while (i < after.length) {
    if (before[i] === after[i]) {
      i++;
      continue;
    }
    // Extend the run until MERGE_GAP equal bytes in a row; those trailing equal bytes are not shipped.
    let end = i + 1;
    let same = 0;
    for (; end < after.length && same < MERGE_GAP; end++) same = before[end] === after[end] ? same + 1 : 0;
    bytes += RUN_HEADER + (end - same - i);
    i = end;
  }
  return bytes;
}

async function pgWalBytes(pgc: PgCluster, n: number): Promise<number[]> {
  const c = new pg.Client(pgc.primary);
  await c.connect();
  try {
    const exists = (await c.query("SELECT to_regclass('public.kv') IS NOT NULL AS e")).rows[0] as { e: boolean };
    if (!exists.e) {
      await c.query('CREATE TABLE kv (id bigint PRIMARY KEY, v text NOT NULL)');
      await c.query(`INSERT INTO kv SELECT i, 'value-' || lpad(i::text, 6, '0') || '-' || md5(i::text) || md5((i + 1)::text) || repeat('0', 24) FROM generate_series(1, ${ROWS}) i`);
    }
    const out: number[] = [];
    for (let k = 0; k < n; k++) {
      const id = 1 + Math.floor(Math.random() * ROWS);
      const before = (await c.query('SELECT pg_current_wal_insert_lsn() AS l')).rows[0] as { l: string };
      await c.query('UPDATE kv SET v = $1 WHERE id = $2', [newValue(id, k), id]);
      const diff = (await c.query('SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1)::int AS d', [before.l])).rows[0] as { d: number };
      out.push(diff.d);
    }
    return out;
  } finally {
    await c.end();
  }
}

export async function runP8(ctx: BenchContext, cluster: Cluster, pgc: PgCluster | string): Promise<Row[]> {
  const updates = ctx.quick ? 20 : 200;
  const base = cluster.primary.url;
  // A snapshot gives the previous image of every page and the position to stream from.
  const snap = await request(`${base}/v1/db/${DB}/snapshot`);
  if (snap.statusCode !== 200) throw new Error(`snapshot answered ${snap.statusCode}`);
  const image = new Uint8Array(await snap.body.arrayBuffer());
  const h = (name: string) => String(snap.headers[name.toLowerCase()]);
  const pageSize = Number(h('Edgelite-Page-Size'));
  const position = { generation: Number(h('Edgelite-Generation')), txid: Number(h('Edgelite-Txid')), checksum: h('Edgelite-Checksum') };
  let pages = new Map<number, Uint8Array>();
  for (let p = 0; p * pageSize < image.length; p++) pages.set(p + 1, image.subarray(p * pageSize, (p + 1) * pageSize));

  const arrivals: ChangeSetArrival[] = [];
  const sub = await StreamSubscriber.open(base, DB, position, (a) => arrivals.push(a), true);
  const stop = ctx.cleanup.add('P8 stream subscriber', () => sub.close());
  const frameBytes: number[] = [];
  const deltas: number[] = [];
  const pagesPer: number[] = [];
  try {
    for (let k = 0; k < updates; k++) {
      arrivals.length = 0;
      const id = 1 + Math.floor(Math.random() * ROWS);
      const res = await request(`${base}/v1/db/${DB}/exec`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: UPDATE, params: [newValue(id, k), id] }) });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`UPDATE answered ${res.statusCode}`);
      const txid = Number(res.headers['edgelite-txid']);
      await waitUntil(() => sub.lastTxid >= txid || sub.failure !== null, `txid ${txid} on the stream`, 10_000, 1);
      if (sub.failure) throw sub.failure;
      const mine = arrivals.filter((a) => a.maxTxid === txid);
      if (mine.length !== 1) throw new Error(`expected one change set for txid ${txid}, got ${arrivals.length} frames`);
      const a = mine[0]!;
      frameBytes.push(a.frameBytes);
      const cs = isDeltaChangeSet(a.data) ? decodeDeltaChangeSet(a.data, (pgno) => pages.get(pgno) ?? null) : decodeChangeSet(a.data);
      pagesPer.push(cs.pages.length);
      let d = 0;
      const next = new Map(pages);
      for (const p of cs.pages) {
        d += 4 + deltaBytes(pages.get(p.pgno) ?? new Uint8Array(pageSize), p.data);
        next.set(p.pgno, new Uint8Array(p.data));
      }
      pages = next;
      deltas.push(d);
    }
  } finally {
    await stop();
  }
  const bytes = median(frameBytes);
  const pgWal = typeof pgc === 'string' ? null : median(await pgWalBytes(pgc, updates));
  const delta = median(deltas);
  const notes = [
    `${updates} single-row UPDATEs; median pages per change set ${median(pagesPer)}; frame = ${(100 * bytes / pageSize).toFixed(0)}% of a ${pageSize}-byte page`,
    `frames are delta change sets (the live tail a Node replica receives); the byte-run estimate of the same pages: ${delta} bytes (${(100 * delta / pageSize).toFixed(1)}% of a page)`,
  ];
  notes.push(pgWal === null ? String(pgc) : `PostgreSQL WAL per identical UPDATE: median ${pgWal} bytes (full_page_writes on; a full-page image after each checkpoint)`);
  return [
    {
      id: 'P8',
      scenario: 'stream bytes per single-row UPDATE (10k-row table)',
      unit: 'B',
      edgelite: bytes,
      baseline: pageSize,
      baselineLabel: 'page size',
      ratio: pageSize / bytes,
      goal: '≤ 25% of a page (ratio ≥ 4×)',
      met: bytes <= pageSize / 4,
      notes,
    },
  ];
}
