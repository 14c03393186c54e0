/**
 * `npx tsx test/bench/backup-ack.ts [--seconds N] [--sequential N]`: what `--backup-ack` costs a
 * write. A primary process (the real CLI, default options) per mode: no backup, `--backup` (1 s
 * interval), `--backup --backup-ack`, each to s3rver on 127.0.0.1 (started here, in this process) and to
 * a file:// directory. Per mode: the latency of N sequential single-row INSERTs (one client, one write
 * at a time), then 16 concurrent connections for `--seconds` (autocannon), with the segment objects the
 * bucket got for them (group commit: fewer PUTs than writes). README "Backups and restore" quotes it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseBackupTarget } from '../../shared/object-store.ts';
import { openObjectStore } from '../../shared/node/open-object-store.ts';
import { S3_BUCKET, startS3 } from '../integration/backup-kit.ts';
import { spawnEdgelite } from '../kit/spawn.ts';
import { nowMs, summarize } from './scenarios/common.ts';
import { loadPost } from './scenarios/load.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, sequential: { type: 'string', default: '300' } } });
const seconds = Number(values.seconds);
const sequential = Number(values.sequential);
const DB = 'bench';
const INSERT = { sql: 'INSERT INTO w (v) VALUES (?)', params: ['x'.repeat(100)] };

const s3 = await startS3();
const root = mkdtempSync(join(tmpdir(), 'edgelite-bench-backup-ack-'));
const modes: Array<{ name: string; backup: string | null; ack: boolean }> = [
  { name: 'no backup', backup: null, ack: false },
  { name: '--backup s3', backup: `s3://${S3_BUCKET}/plain`, ack: false },
  { name: '--backup s3 --backup-ack', backup: `s3://${S3_BUCKET}/ack`, ack: true },
  { name: '--backup file', backup: `file://${join(root, 'bucket-plain')}`, ack: false },
  { name: '--backup file --backup-ack', backup: `file://${join(root, 'bucket-ack')}`, ack: true },
];

async function post(url: string, path: string, body: unknown, method = 'POST'): Promise<void> {
  const res = await fetch(url + path, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
}

const fmt = (n: number): string => (n < 10 ? n.toFixed(2) : n.toFixed(0));
const lines: string[] = [];
try {
  for (const m of modes) {
    const dir = join(root, m.name.replace(/\W+/g, '-'));
    const flags = m.backup ? ['--backup', m.backup, ...(m.ack ? ['--backup-ack'] : [])] : [];
    const p = await spawnEdgelite(['primary', '--data', dir, '--listen', '127.0.0.1:0', ...flags], s3.env);
    try {
      await post(p.url, `/v1/db/${DB}`, {}, 'PUT');
      await post(p.url, `/v1/db/${DB}/exec`, { sql: 'CREATE TABLE w (id INTEGER PRIMARY KEY, v TEXT NOT NULL)' });
      for (let i = 0; i < 50; i++) await post(p.url, `/v1/db/${DB}/exec`, INSERT); // warm-up
      const ms: number[] = [];
      for (let i = 0; i < sequential; i++) {
        const t = nowMs();
        await post(p.url, `/v1/db/${DB}/exec`, INSERT);
        ms.push(nowMs() - t);
      }
      const seq = summarize(ms);
      const objects = m.backup ? openObjectStore(parseBackupTarget(m.backup, s3.env)) : null;
      const segments = async () => (objects ? (await objects.list(`${DB}/`)).filter((o) => o.key.endsWith('.changes')).length : 0);
      const before = await segments();
      const load = await loadPost({ url: p.url, path: `/v1/db/${DB}/exec`, connections: 16, durationSec: seconds, body: () => JSON.stringify(INSERT) });
      await new Promise((r) => setTimeout(r, 1500)); // the last interval's upload (without ack)
      const puts = (await segments()) - before;
      const writes = Math.round(load.perSec * seconds);
      lines.push(
        `${m.name.padEnd(28)} sequential p50 ${fmt(seq.p50)} ms p99 ${fmt(seq.p99)} ms | 16 connections ${Math.round(load.perSec)} writes/s p50 ${fmt(load.p50Ms)} ms p99 ${fmt(load.p99Ms)} ms` +
          (m.backup ? ` | ${puts} segment PUTs for ~${writes} writes` : ''),
      );
      console.log(lines.at(-1));
    } finally {
      await p.stop();
    }
  }
} finally {
  await s3.close();
  rmSync(root, { recursive: true, force: true });
}
console.log(`\nbackup-ack bench (${sequential} sequential writes, then 16 connections for ${seconds} s):\n${lines.join('\n')}`);
