/**
 * `edgelite status URL`: positions and lag of every database on a primary or replica.
 * `edgelite status --lease etcd://HOST:PORT/PREFIX [--json]`: the failover lease as etcd holds it
 * (README.md#high-availability): the holder, its epoch and TTL, the candidates and the sync set.
 */
import { parseArgs } from 'node:util';
import { EdgeliteError } from '../shared/errors.ts';
import { LeaseStore, parseLeaseUrl, type CandidateRecord, type PrimaryRecord, type SyncSetRecord } from '../shared/lease.ts';

const USAGE = 'usage: edgelite status URL | edgelite status --lease etcd://HOST:PORT/PREFIX [--json]   (auth: EDGELITE_TOKEN)';

export async function statusMain(argv: string[]): Promise<void> {
  if (argv.some((a) => a === '--lease' || a.startsWith('--lease='))) return leaseStatusMain(argv);
  const url = argv[0];
  if (!url) throw new Error(USAGE);
  const headers: Record<string, string> = {};
  if (process.env.EDGELITE_TOKEN) headers.authorization = `Bearer ${process.env.EDGELITE_TOKEN}`;
  const base = url.replace(/\/+$/, '');
  const health = await fetch(`${base}/v1/health`, { headers });
  const h = (await health.json()) as Record<string, unknown>;
  const list = await fetch(`${base}/v1/db`, { headers });
  const body = (await list.json()) as { databases?: Array<Record<string, unknown>>; error?: { code: string; message: string } };
  if (!list.ok) throw new Error(`${list.status} ${body.error?.code}: ${body.error?.message}`);
  process.stdout.write(`${base}  role=${String(h.role)}  health=${String(h.status)} (HTTP ${health.status})\n`);
  const rows = (body.databases ?? []).map((d) => [d.name, d.generation, d.txid, d.checksum, d.lagMs, d.lagTxids].map((v) => String(v ?? '-')));
  process.stdout.write(formatTable(['database', 'generation', 'txid', 'checksum', 'lag ms', 'lag txids'], rows));
}

/** LeaseStatus is what `edgelite status --lease URL --json` prints. */
export interface LeaseStatus {
  lease: string;
  /** The holder's record, or null while the lease is vacant. */
  holder: PrimaryRecord | null;
  candidates: Array<CandidateRecord & { ageMs: number }>;
  sync: SyncSetRecord | null;
  /** When this was read (ms since the epoch, this machine's clock; record ages are measured from it). */
  time: number;
}

/** readLeaseStatus reads the holder, candidates and sync set under one prefix. */
export async function readLeaseStatus(store: LeaseStore, now = Date.now()): Promise<LeaseStatus> {
  const [holder, candidates, sync] = await Promise.all([store.primary(), store.candidates(), store.syncSet()]);
  candidates.sort((a, b) => a.node.localeCompare(b.node));
  return { lease: store.description, holder, candidates: candidates.map((c) => ({ ...c, ageMs: Math.max(0, now - c.time) })), sync, time: now };
}

async function leaseStatusMain(argv: string[]): Promise<void> {
  let values: { lease?: string; json?: boolean };
  try {
    ({ values } = parseArgs({ args: argv, options: { lease: { type: 'string' }, json: { type: 'boolean' } }, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new EdgeliteError('MISCONFIGURED', `${(err as Error).message}\n${USAGE}`);
  }
  if (!values.lease) throw new EdgeliteError('MISCONFIGURED', `--lease needs a value\n${USAGE}`);
  const status = await readLeaseStatus(new LeaseStore(parseLeaseUrl(values.lease)));
  process.stdout.write(values.json ? `${JSON.stringify(status, null, 2)}\n` : formatLeaseStatus(status));
}

/** formatLeaseStatus is the human form of a LeaseStatus. */
export function formatLeaseStatus(s: LeaseStatus): string {
  const iso = (t: number) => (Number.isFinite(t) && t > 0 ? new Date(t).toISOString() : '-');
  const h = s.holder;
  let out = `lease ${s.lease}\n`;
  out += h ? `holder ${h.node}  url=${h.url}  epoch=${h.epoch}  since=${iso(h.since)}  ttl=${h.ttlMs} ms\n` : 'holder none (the lease is vacant)\n';
  out += s.sync ? `sync set (epoch ${s.sync.epoch}): ${s.sync.nodes.length ? s.sync.nodes.join(', ') : '(none)'}  since=${iso(s.sync.since)}\n` : 'sync set none\n';
  out += `candidates ${s.candidates.length}\n`;
  const rows = s.candidates.flatMap((c) => {
    const dbs = Object.entries(c.positions);
    const base = [c.node, c.url, c.role, String(c.epoch), String(c.ageMs)];
    if (dbs.length === 0) return [[...base, '-', '-', '-', '-']];
    return dbs.map(([db, p]) => [...base, db, String(p.generation), String(p.txid), p.checksum]);
  });
  if (rows.length) out += formatTable(['node', 'url', 'role', 'epoch seen', 'age ms', 'database', 'generation', 'txid', 'checksum'], rows);
  return out;
}

export function formatTable(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return `${[line(head), ...rows.map(line)].join('\n')}\n`;
}
