/**
 * The HTTP API as `edgelite doctor`, `edgelite export` and `edgelite migrate` use it (README.md#http-api):
 * list databases, run read statements, and for migrate run a transaction, fork and drop (export downloads
 * snapshots with the replica's verified download, bin/export-snapshot.ts). One server URL (a primary, or
 * a replica, which forwards writes), one optional bearer token; every failure is an EdgeliteError with
 * the server's own code.
 */
import { EdgeliteError, errorFromBody } from '../errors.ts';
import { decodeToken } from '../token.ts';
import { validateDatabaseName } from '../types.ts';

/** Rows of one statement, as the query API answers them (integers beyond 2^53 as strings). */
export type Rows = unknown[][];

export class CliApi {
  readonly url: string;
  readonly token: string | undefined;

  constructor(url: string, token: string | undefined) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new EdgeliteError('MISCONFIGURED', `--primary ${JSON.stringify(url)} is not a URL (http://HOST:PORT)`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new EdgeliteError('MISCONFIGURED', `--primary ${url}: only http:// and https:// are served`);
    this.url = url.replace(/\/+$/, '');
    this.token = token;
  }

  /** databases lists every database the server (and the token) reaches, sorted by name. */
  async databases(): Promise<string[]> {
    const body = (await this.#json('GET', '/v1/db')) as { databases?: Array<{ name?: unknown }> };
    return (body.databases ?? []).map((d) => String(d.name)).sort();
  }

  /** query runs read-only statements in one request and returns each one's rows. */
  async query(db: string, statements: readonly string[]): Promise<Rows[]> {
    const body = (await this.#json('POST', `${dbPath(db)}/query`, { statements: statements.map((sql) => ({ sql })) })) as {
      results?: Array<{ rows?: Rows }>;
    };
    if (!Array.isArray(body.results) || body.results.length !== statements.length) {
      throw new EdgeliteError('INTERNAL', `${this.url}: a query answer for ${db} without one result per statement`);
    }
    return body.results.map((r) => r.rows ?? []);
  }

  /** info is `GET /v1/db/{name}`: the database's position (`txid`, `checksum`, ...). */
  async info(db: string): Promise<Record<string, unknown>> {
    return (await this.#json('GET', dbPath(db))) as Record<string, unknown>;
  }

  /**
   * exec runs statements as one transaction (`POST /v1/db/{name}/exec`; a replica forwards it) and
   * returns each one's result and the txid the transaction committed at (from the answer's token).
   */
  async exec(db: string, statements: ReadonlyArray<{ sql: string; params?: unknown }>): Promise<{ results: unknown[]; txid: number }> {
    const body = (await this.#json('POST', `${dbPath(db)}/exec`, { statements })) as { results?: unknown[]; token?: unknown };
    if (!Array.isArray(body.results) || typeof body.token !== 'string') throw new EdgeliteError('INTERNAL', `${this.url}: an exec answer for ${db} without results and token`);
    return { results: body.results, txid: decodeToken(body.token).txid };
  }

  /** fork creates `db` from `from`'s current state (`PUT /v1/db/{db}` with `{"from"}`, README.md#many-databases). */
  async fork(db: string, from: string): Promise<Record<string, unknown>> {
    return (await this.#json('PUT', dbPath(db), { from: validateDatabaseName(from) })) as Record<string, unknown>;
  }

  /** drop deletes `db` (`DELETE /v1/db/{db}`: the admin right). */
  async drop(db: string): Promise<void> {
    await this.#json('DELETE', dbPath(db));
  }

  async #json(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<unknown> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new EdgeliteError('PRIMARY_UNAVAILABLE', `cannot reach ${this.url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, { cause: err });
    }
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch (err) {
      throw new EdgeliteError('UNAVAILABLE', `${method} ${this.url}${path}: HTTP ${res.status} with a body that is not JSON`, { cause: err });
    }
    if (!res.ok) throw errorFromBody(parsed, res.status);
    return parsed;
  }
}

/** dbPath is a database's route, its name checked first. */
function dbPath(db: string): string {
  return `/v1/db/${encodeURIComponent(validateDatabaseName(db))}`;
}
