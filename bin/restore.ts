/**
 * `edgelite restore URL --db NAME [--txid N | --time ISO] --out FILE [--force] [--encryption-key-file PATH]` and
 * `edgelite backups URL [--db NAME] [--json]`: argv and env parsed here, once; the work is in
 * primary/restore.ts. `backups` needs no key: object names are plaintext, and a listing is all it reads.
 */
import { parseArgs } from 'node:util';
import { EdgeliteError } from '../shared/errors.ts';
import { parseBackupTarget } from '../shared/object-store.ts';
import { configError } from '../shared/config.ts';
import type { RestoreTarget } from '../shared/backup-layout.ts';
import { validateDatabaseName } from '../shared/types.ts';
import { openObjectStore } from '../primary/backup-store.ts';
import { readKeyring } from '../shared/node/open-object-store.ts';
import { listBackups, restoreDatabase, type BackupSummary } from '../primary/restore.ts';

export const RESTORE_USAGE = `usage: edgelite restore s3://BUCKET/PREFIX | file:///DIR --db NAME [--txid N | --time ISO] --out FILE [--force] [--s3-endpoint URL] [--encryption-key-file PATH]
       edgelite backups s3://BUCKET/PREFIX | file:///DIR [--db NAME] [--json] [--s3-endpoint URL]`;

export async function restoreMain(argv: string[]): Promise<void> {
  const { url, values } = parse(argv, { db: { type: 'string' }, txid: { type: 'string' }, time: { type: 'string' }, out: { type: 'string' }, force: { type: 'boolean' }, 'encryption-key-file': { type: 'string' } });
  const db = values.db;
  const out = values.out;
  if (typeof db !== 'string' || typeof out !== 'string') throw new EdgeliteError('MISCONFIGURED', `--db and --out are required\n${RESTORE_USAGE}`);
  const target = restoreTarget(values.txid, values.time);
  const keyFile = values['encryption-key-file'];
  const objects = openObjectStore(parseBackupTarget(url, process.env, values['s3-endpoint'] as string | undefined), typeof keyFile === 'string' ? readKeyring(keyFile) : null);
  const result = await restoreDatabase(objects, {
    db: validateDatabaseName(db),
    target,
    out,
    force: values.force === true,
    onProgress: (p) => process.stderr.write(`\r[${'#'.repeat(Math.round((20 * p.done) / p.total)).padEnd(20)}] ${p.done}/${p.total} objects`),
  });
  process.stderr.write('\n');
  process.stdout.write(`${JSON.stringify({ restored: out, ...result, timestamp: new Date(result.timestamp).toISOString() })}\n`);
}

export async function backupsMain(argv: string[]): Promise<void> {
  const { url, values } = parse(argv, { db: { type: 'string' }, json: { type: 'boolean' } });
  const objects = openObjectStore(parseBackupTarget(url, process.env, values['s3-endpoint'] as string | undefined));
  const list = await listBackups(objects, typeof values.db === 'string' ? validateDatabaseName(values.db) : undefined);
  process.stdout.write(values.json === true ? `${JSON.stringify({ databases: list })}\n` : table(list));
}

type Options = Record<string, { type: 'string' | 'boolean' }>;

function parse(argv: string[], options: Options): { url: string; values: Record<string, string | boolean | undefined> } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: { ...options, 's3-endpoint': { type: 'string' } }, allowPositionals: true, strict: true });
    const [url, ...extra] = positionals;
    if (url === undefined || extra.length > 0) throw new EdgeliteError('MISCONFIGURED', `want exactly one backup URL\n${RESTORE_USAGE}`);
    return { url, values: values as Record<string, string | boolean | undefined> };
  } catch (err) {
    throw configError(err);
  }
}

function restoreTarget(txid: unknown, time: unknown): RestoreTarget {
  if (txid !== undefined && time !== undefined) throw new EdgeliteError('MISCONFIGURED', 'pass --txid or --time, not both');
  if (typeof txid === 'string') {
    const n = Number(txid);
    if (!Number.isSafeInteger(n) || n < 0) throw new EdgeliteError('MISCONFIGURED', `--txid must be a txid (a non-negative integer), got "${txid}"`);
    return { txid: n };
  }
  if (typeof time === 'string') {
    const ms = Date.parse(time);
    if (Number.isNaN(ms)) throw new EdgeliteError('MISCONFIGURED', `--time must be an ISO 8601 time, got "${time}"`);
    return { time: ms };
  }
  return { latest: true };
}

function table(list: BackupSummary[]): string {
  const rows = [['DATABASE', 'GENERATION', 'TXIDS', 'FROM', 'TO', 'OBJECTS', 'BYTES']];
  for (const d of list) {
    for (const g of d.generations) {
      if (g.ranges.length === 0) rows.push([d.db, String(g.generation), '(none restorable)', '', '', String(g.snapshots + g.segments), String(g.bytes)]);
      for (const r of g.ranges) rows.push([d.db, String(g.generation), `${r.fromTxid}..${r.toTxid}`, r.fromTime, r.toTime, String(g.snapshots + g.segments), String(g.bytes)]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}
