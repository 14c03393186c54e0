/**
 * The bare baseline server: `node:http` + better-sqlite3 and nothing else, doing what an edgelite
 * server does for the same request, with the same request and response shapes, so the difference is
 * edgelite's own cost (routing, validation, consistency, position headers).
 *
 *   POST /query  {"sql", "params"} on a read-only connection to --read FILE  → {"results":[{columns, rows}]}
 *   POST /exec   {"sql", "params"} on --write FILE (WAL, the primary's pragmas) → {"results":[{changes, lastInsertRowid}]}
 *   GET  /file   --static FILE as a plain download (content-length, streamed from disk)
 *   GET  /ping   204, for measuring one loopback HTTP round trip
 *
 * Run as its own process: `node bin/run-ts.mjs test/bench/scenarios/bare-server.ts [--read F] [--write F] [--static F]`.
 * Prints `{"msg":"bare listening","url":...}` once it accepts connections.
 */
import Database from 'better-sqlite3';
import { createReadStream, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { read: { type: 'string' }, write: { type: 'string' }, static: { type: 'string' } }, strict: true });

const reader = values.read ? new Database(values.read, { readonly: true, fileMustExist: true }) : null;
const writer = values.write ? new Database(values.write) : null;
if (writer) {
  // The same pragmas as the primary's writer (primary/sqlite.ts openWriter), minus wal_autocheckpoint=0:
  // without edgelite's own checkpoints the WAL would grow without bound, so SQLite's default applies.
  writer.pragma('journal_mode = WAL');
  writer.pragma('synchronous = NORMAL');
  writer.pragma('foreign_keys = ON');
  writer.pragma('journal_size_limit = 4194304');
}
const statements = new Map<string, Database.Statement>();

function prepared(db: Database.Database, sql: string): Database.Statement {
  let s = statements.get(sql);
  if (!s) {
    s = db.prepare(sql);
    statements.set(sql, s);
  }
  return s;
}

function readBody(req: IncomingMessage): Promise<{ sql: string; params?: unknown[] }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as { sql: string; params?: unknown[] });
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method === 'GET' && req.url === '/ping') {
    res.writeHead(204).end();
    return;
  }
  if (req.method === 'GET' && req.url === '/file' && values.static) {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': statSync(values.static).size });
    createReadStream(values.static).pipe(res);
    return;
  }
  if (req.method === 'POST' && req.url === '/query' && reader) {
    const { sql, params = [] } = await readBody(req);
    const stmt = prepared(reader, sql).raw(true);
    const rows = stmt.all(...params) as unknown[][];
    send(res, 200, { results: [{ columns: stmt.columns().map((c) => c.name), rows }] });
    return;
  }
  if (req.method === 'POST' && req.url === '/exec' && writer) {
    const { sql, params = [] } = await readBody(req);
    const info = prepared(writer, sql).run(...params);
    send(res, 200, { results: [{ changes: info.changes, lastInsertRowid: Number(info.lastInsertRowid) }] });
    return;
  }
  send(res, 404, { error: { code: 'NOT_FOUND', message: `${req.method} ${req.url}` } });
}

const server = createServer((req, res) => {
  handle(req, res).catch((err: unknown) => send(res, 500, { error: { code: 'INTERNAL', message: String(err) } }));
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ msg: 'bare listening', url: `http://127.0.0.1:${port}` })}\n`);
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    reader?.close();
    writer?.close();
    process.exit(0);
  });
}
