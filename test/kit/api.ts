/**
 * API helpers for tests that run a primary and replicas (as child processes, spawn.ts, or in process):
 * talk to their HTTP API, wait until replicas converge on the primary's position,
 * and compare what they hold. Every wait polls against a deadline; none sleeps for a fixed time.
 */
import Database from 'better-sqlite3';
import { createServer } from 'node:net';
import { waitFor } from './wait.ts';
import type { EdgeliteProcess } from './spawn.ts';

export interface HttpResult {
  status: number;
  json: any;
  headers: Headers;
}

/** http sends one JSON request and returns status, parsed body and headers. */
export async function http(url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpResult> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null, headers: res.headers };
}

/** exec runs a write on `url` and fails loudly unless it succeeded. */
export async function exec(url: string, db: string, body: unknown): Promise<HttpResult> {
  const r = await http(url, 'POST', `/v1/db/${db}/exec`, body);
  if (r.status !== 200) throw new Error(`exec on ${db} answered ${r.status}: ${JSON.stringify(r.json)} for ${JSON.stringify(body).slice(0, 300)}`);
  return r;
}

/** query runs a read and returns the rows of its only statement. */
export async function query(url: string, db: string, sql: string, params: unknown[] = []): Promise<unknown[][]> {
  const r = await http(url, 'POST', `/v1/db/${db}/query`, { sql, params });
  if (r.status !== 200) throw new Error(`query on ${db} answered ${r.status}: ${JSON.stringify(r.json)}`);
  return r.json.results[0].rows as unknown[][];
}

export interface DbInfo {
  name: string;
  generation: number | null;
  txid: number | null;
  checksum: string | null;
  needsSnapshot?: string | null;
}

/** info is `GET /v1/db/{name}`, or null when that database is not there (404). */
export async function info(url: string, db: string): Promise<DbInfo | null> {
  const r = await http(url, 'GET', `/v1/db/${db}`);
  if (r.status === 404) return null;
  if (r.status !== 200) throw new Error(`GET /v1/db/${db} answered ${r.status}: ${JSON.stringify(r.json)}`);
  return r.json as DbInfo;
}

/**
 * converge waits until every replica reports the primary's generation, txid and checksum for `db`
 * (the primary must be idle for `db` meanwhile) and returns the position and how long it took.
 */
export async function converge(primaryUrl: string, replicaUrls: string[], db: string, timeoutMs = 30_000): Promise<{ txid: number; checksum: string; generation: number; ms: number }> {
  const started = Date.now();
  const want = (await info(primaryUrl, db))!;
  let last: Array<DbInfo | null> = [];
  try {
    await waitFor(async () => {
      // A replica that is restarting refuses connections (fetch's TypeError): not there yet.
      last = await Promise.all(replicaUrls.map((u) => info(u, db).catch((err: unknown) => {
        if (err instanceof TypeError) return null;
        throw err;
      })));
      return last.every((r) => r && r.generation === want.generation && r.txid === want.txid && r.checksum === want.checksum);
    }, `replicas of ${db} to converge`, timeoutMs);
  } catch (err) {
    throw new Error(`${(err as Error).message}: primary ${JSON.stringify(want)}, replicas ${JSON.stringify(last)}`);
  }
  return { txid: want.txid!, checksum: want.checksum!, generation: want.generation!, ms: Date.now() - started };
}

/** dump reads every table of `db` through the API: schema rows, then each table's rows by rowid. */
export async function dump(url: string, db: string): Promise<Record<string, unknown[][]>> {
  const out: Record<string, unknown[][]> = {};
  out.sqlite_schema = await query(url, db, 'SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name');
  for (const [type, name] of out.sqlite_schema as Array<[string, string]>) {
    if (type !== 'table' || name.startsWith('sqlite_')) continue;
    out[name] = await query(url, db, `SELECT * FROM "${name}" ORDER BY rowid`);
  }
  return out;
}

/** integrityCheck runs PRAGMA integrity_check on a live database file through a read-only connection. */
export function integrityCheck(file: string): string {
  const conn = new Database(file, { readonly: true, fileMustExist: true });
  try {
    conn.pragma('busy_timeout = 5000');
    return (conn.pragma('integrity_check') as Array<{ integrity_check: string }>).map((r) => r.integrity_check).join('; ');
  } finally {
    conn.close();
  }
}

/** logged lists the JSON lines with this `msg` a process printed so far. */
export function logged(p: EdgeliteProcess, msg: string): Array<Record<string, unknown>> {
  return p.logs.filter((l) => l.msg === msg);
}

/**
 * freePort finds a free loopback port for a process that must come back on the same one after a
 * restart. It picks below Linux's ephemeral range (32768-60999 by default): a port from that range,
 * even one the kernel gave out as free, can be taken while the process is down by the source port of
 * any outgoing connection on the machine (another test's client), and the restart then fails with
 * EADDRINUSE.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await canListen(port)) return port;
  }
  throw new Error('freePort: no free loopback port in 20000-31999 after 200 tries');
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** portOf reads the port from a process URL. */
export function portOf(url: string): number {
  return Number(new URL(url).port);
}

/**
 * Load runs `clients` concurrent loops of `step` until stopped, counting successes; the first error
 * that `tolerate` does not accept ends the load and is rethrown by `stop`.
 */
export class Load {
  done = 0;
  failed = 0;
  #stopped = false;
  readonly #loops: Promise<void>[];
  #error: unknown = null;

  constructor(clients: number, step: (client: number) => Promise<void>, tolerate: (err: unknown) => boolean = () => false) {
    this.#loops = Array.from({ length: clients }, async (_, i) => {
      while (!this.#stopped) {
        try {
          await step(i);
          this.done++;
        } catch (err) {
          if (!tolerate(err)) {
            this.#error ??= err;
            this.#stopped = true;
            return;
          }
          this.failed++;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    });
  }

  get error(): unknown {
    return this.#error;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#loops);
    if (this.#error) throw this.#error;
  }
}
