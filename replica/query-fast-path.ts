/**
 * queryFastPath serves the replica's point reads (`POST /v1/db/{name}/query`) straight from Node's
 * request and response, without hono's web Request (a URL parse, a Headers object, the middleware
 * chain) and its Response (docs/BENCHMARKS.md#p2-after-the-read-fast-path). It runs the same route
 * (createReplicaQuery, the body read by readNodeJsonBody), the same auth (authorize) and the same body
 * rules as the hono route, so the answer is the same bytes. Middleware is skipped: the replica app's is
 * closeAfterRefusedBody (done here too) and CORS (see below); middleware added to the app later would
 * not see these reads. A request it cannot answer exactly as hono would goes to hono untouched:
 * one with an `Origin` (CORS headers are due), a cookie (the token may be there), a query string, a
 * repeated header (Node and the web Headers join repeats differently), or a Host hono would refuse.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { authorize, type AuthConfig } from '../shared/auth.ts';
import { type Answer, drainNodeBody, errorAnswer } from '../shared/http.ts';
import { CONSISTENCY_HEADER } from '../shared/consistency.ts';
import { TOKEN_HEADER } from '../shared/token.ts';
import type { QueryRequest } from './app.ts';

/** QUERY_PATH: the route's path with a name that needs no percent-decoding (validateDatabaseName's characters). */
const QUERY_PATH = /^\/v1\/db\/([A-Za-z0-9_.-]{1,64})\/query$/;
const CONSISTENCY = CONSISTENCY_HEADER.toLowerCase();
const TOKEN = TOKEN_HEADER.toLowerCase();
/** MAX_HOSTS bounds the Host values remembered as accepted (a server is reached under a few names). */
const MAX_HOSTS = 64;

export interface QueryFastPathOptions {
  auth: AuthConfig;
  maxBodyBytes: number;
  logger: (e: Record<string, unknown>) => void;
  /** The read route (createReplicaQuery). */
  query: (q: QueryRequest<IncomingMessage>) => Promise<Answer>;
}

/** A Node request listener that answers the reads it can and returns false for everything else. */
export type FastPath = (req: IncomingMessage, res: ServerResponse) => boolean;

export function queryFastPath(o: QueryFastPathOptions): FastPath {
  const hosts = new Set<string>();
  /** hostOk: what @hono/node-server accepts as a Host (it answers 400 otherwise), remembered once seen. */
  const hostOk = (host: string | undefined): boolean => {
    if (host === undefined) return false;
    if (hosts.has(host)) return true;
    try {
      const url = new URL(`http://${host}/`);
      if (url.hostname.length !== host.length && url.hostname !== host.replace(/:\d+$/, '')) return false;
    } catch {
      return false;
    }
    if (hosts.size < MAX_HOSTS) hosts.add(host);
    return true;
  };

  const serve = async (req: IncomingMessage, res: ServerResponse, name: string): Promise<void> => {
    const h = req.headers;
    let answer: Answer;
    try {
      authorize(o.auth, h.authorization, 'read', name);
      answer = await o.query({
        name,
        source: req,
        consistency: h[CONSISTENCY] as string | undefined,
        token: h[TOKEN] as string | undefined,
        accept: h.accept,
        authorization: h.authorization,
      });
    } catch (err) {
      answer = errorAnswer(err, o.logger);
    }
    // closeAfterRefusedBody's rules (shared/http.ts): a refused body ends the connection; a body the
    // route never read is read before the answer, and past the limit the connection ends too.
    let close = answer.status === 413;
    if (!close && !req.readableEnded && bodySent(h) && !(await drainNodeBody(req, o.maxBodyBytes))) close = true;
    // A flat [name, value, ...] list: copying the answer's headers into a new object costs ~2.5 µs.
    const headers: Array<string | number> = [];
    for (const k in answer.headers) headers.push(k, answer.headers[k]!);
    headers.push('Content-Length', typeof answer.body === 'string' ? Buffer.byteLength(answer.body) : answer.body.byteLength);
    if (close) headers.push('connection', 'close');
    res.writeHead(answer.status, headers as unknown as OutgoingHttpHeaders);
    res.end(answer.body);
  };

  return (req, res) => {
    if (req.method !== 'POST') return false;
    const m = QUERY_PATH.exec(req.url ?? '');
    if (!m) return false;
    const h = req.headers;
    if (h.origin !== undefined || h.cookie !== undefined || !hostOk(h.host)) return false;
    if (req.rawHeaders.length !== 2 * Object.keys(h).length) return false;
    serve(req, res, m[1]!).catch((err: unknown) => {
      o.logger({ msg: 'internal error', error: String(err), stack: (err as Error)?.stack });
      res.destroy();
    });
    return true;
  };
}

function bodySent(h: IncomingMessage['headers']): boolean {
  const length = h['content-length'];
  return (length !== undefined && length !== '0') || h['transfer-encoding'] !== undefined;
}
