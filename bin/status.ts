/**
 * `edgelite status URL [--json]`: positions and lag of every database on a primary or replica.
 * `edgelite status --lease etcd://HOST:PORT/PREFIX [--json]`: the failover lease as etcd holds it
 * (README.md#high-availability): the holder, its epoch and TTL, the candidates and the sync set.
 * `--watch [--interval-ms N]` redraws either until Ctrl-C (README.md#cli).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { STATUS } from '../shared/cli-flags.ts';
import { positiveInt } from '../shared/config.ts';
import { EdgeliteError, toEdgeliteError } from '../shared/errors.ts';
import { LeaseStore, parseLeaseUrl, type CandidateRecord, type PrimaryRecord, type SyncSetRecord } from '../shared/lease.ts';
import { parseFlags } from './commands/flags.ts';

const USAGE = 'usage: edgelite status URL | edgelite status --lease etcd://HOST:PORT/PREFIX [--json]   [--watch [--interval-ms N]]   (auth: EDGELITE_TOKEN)';

/** DEFAULT_WATCH_INTERVAL_MS: `--watch` redraws this often unless `--interval-ms` says. */
export const DEFAULT_WATCH_INTERVAL_MS = 1000;

export async function statusMain(argv: string[]): Promise<void> {
  const f = parseFlags(STATUS, argv, USAGE);
  const lease = f.str('lease');
  const url = f.args[0];
  if ((lease === undefined) === (url === undefined)) throw new EdgeliteError('MISCONFIGURED', `give a server URL or --lease, one of them\n${USAGE}`);
  if (f.str('interval-ms') !== undefined && !f.on('watch')) throw new EdgeliteError('MISCONFIGURED', `--interval-ms goes with --watch\n${USAGE}`);
  const intervalMs = positiveInt(f.str('interval-ms'), DEFAULT_WATCH_INTERVAL_MS, '--interval-ms');
  const store = lease === undefined ? null : new LeaseStore(parseLeaseUrl(lease));
  const json = f.on('json');
  const watch = f.on('watch');
  // With --watch --json, one compact JSON object per line (a stream a program reads line by line).
  const render = async (signal?: AbortSignal): Promise<string> => {
    const s = store ? await readLeaseStatus(store) : await readServerStatus(url!, process.env.EDGELITE_TOKEN, signal);
    if (json) return `${watch ? JSON.stringify(s) : JSON.stringify(s, null, 2)}\n`;
    return 'lease' in s ? formatLeaseStatus(s) : formatServerStatus(s);
  };
  if (!watch) {
    process.stdout.write(await render());
    return;
  }
  // Ctrl-C (or SIGTERM) ends the watch: the frame in flight is abandoned and the command exits 0.
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  await watchFrames(render, { intervalMs, out: process.stdout, signal: stop.signal, title: `edgelite status ${lease ?? url}`, json });
  process.exit(0);
}

/** ServerStatus is what `edgelite status URL --json` prints: the server's health and each database's position and lag. */
export interface ServerStatus {
  url: string;
  health: { http: number; role: unknown; status: unknown };
  databases: Array<Record<string, unknown>>;
  /** When this was read (ms since the epoch). */
  time: number;
}

/** readServerStatus reads `GET /v1/health` and `GET /v1/db` of a primary or a replica. */
export async function readServerStatus(url: string, token: string | undefined, signal?: AbortSignal): Promise<ServerStatus> {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const base = url.replace(/\/+$/, '');
  const get = async (path: string): Promise<{ status: number; ok: boolean; body: Record<string, unknown> }> => {
    let res: Response;
    try {
      res = await fetch(`${base}${path}`, { headers, ...(signal ? { signal } : {}) });
    } catch (err) {
      throw new EdgeliteError('UNAVAILABLE', `${base} unreachable: ${(err as Error).message}`, { cause: err });
    }
    return { status: res.status, ok: res.ok, body: ((await res.json().catch(() => ({}))) ?? {}) as Record<string, unknown> };
  };
  const health = await get('/v1/health');
  const list = await get('/v1/db');
  const error = list.body.error as { code?: string; message?: string } | undefined;
  if (!list.ok) throw new EdgeliteError(list.status === 401 || list.status === 403 ? 'UNAUTHORIZED' : 'UNAVAILABLE', `${base}/v1/db answered ${list.status} ${error?.code}: ${error?.message}`);
  return { url: base, health: { http: health.status, role: health.body.role, status: health.body.status }, databases: (list.body.databases ?? []) as Array<Record<string, unknown>>, time: Date.now() };
}

/** formatServerStatus is the human form of a ServerStatus: one line for the server, a table of its databases. */
export function formatServerStatus(s: ServerStatus): string {
  const rows = s.databases.map((d) => [d.name, d.generation, d.txid, d.checksum, d.lagMs, d.lagTxids].map((v) => String(v ?? '-')));
  return `${s.url}  role=${String(s.health.role)}  health=${String(s.health.status)} (HTTP ${s.health.http})\n${formatTable(['database', 'generation', 'txid', 'checksum', 'lag ms', 'lag txids'], rows)}`;
}

/** CLEAR: cursor home and erase the screen, so a terminal shows one frame at a time. */
const CLEAR = '\x1b[H\x1b[2J';

export interface WatchOptions {
  intervalMs: number;
  out: NodeJS.WritableStream & { isTTY?: boolean };
  signal: AbortSignal;
  title: string;
  /** Frames are JSON lines: no title, no clearing; a failed frame is `{"time", "error": {"code", "message"}}`. */
  json?: boolean;
}

/**
 * watchFrames draws `render()` every `intervalMs` until `signal` aborts: on a terminal each frame
 * replaces the last, elsewhere frames follow each other, each headed by the time it was read. A frame
 * that fails (the server restarting) shows its error; the next one tries again.
 */
export async function watchFrames(render: (signal: AbortSignal) => Promise<string>, o: WatchOptions): Promise<number> {
  let frames = 0;
  while (!o.signal.aborted) {
    let body: string;
    try {
      body = await render(o.signal);
    } catch (err) {
      if (o.signal.aborted) break;
      const e = toEdgeliteError(err);
      body = o.json ? `${JSON.stringify({ time: Date.now(), error: { code: e.code, message: e.message } })}\n` : `${e.code}: ${e.message}\n`;
    }
    const head = `${o.title}  ${new Date().toISOString()}  (every ${o.intervalMs} ms; Ctrl-C stops)\n`;
    if (o.json) o.out.write(body);
    else o.out.write(o.out.isTTY ? `${CLEAR}${head}${body}` : `${frames === 0 ? '' : '\n'}${head}${body}`);
    frames++;
    await sleep(o.intervalMs, undefined, { signal: o.signal }).catch(() => {});
  }
  return frames;
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
