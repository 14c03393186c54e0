/**
 * S3ObjectStore: the ObjectStore over S3's REST API with fetch, signed by aws4fetch (no hand-written
 * signing), so it runs in Node and in a Worker alike. With an endpoint set it addresses
 * `<endpoint>/<bucket>/<key>` (path style, as R2, MinIO and test servers expect); without one,
 * `https://<bucket>.s3.<region>.amazonaws.com/<key>`.
 */
import { concatBytes } from './types.ts';
import { AwsClient } from 'aws4fetch';
import { EdgeliteError } from './errors.ts';
import type { ObjectInfo, ObjectStore, S3Config } from './object-store.ts';

/** S3_LIST_PAGE is the most keys one ListObjectsV2 call asks for (S3's own maximum). */
export const S3_LIST_PAGE = 1000;
/** S3_REQUEST_TIMEOUT_MS bounds one request, so an unreachable store fails (and is retried) instead of hanging. */
export const S3_REQUEST_TIMEOUT_MS = 30_000;
/**
 * S3_MIN_UPLOAD_BYTES_PER_MS: a PUT is given S3_REQUEST_TIMEOUT_MS plus its size at this rate (1 MiB/s),
 * so a large snapshot on a slow link is not cut at 30 s and retried for ever.
 */
export const S3_MIN_UPLOAD_BYTES_PER_MS = 1024 * 1024 / 1000;

export interface S3StoreOptions {
  /** aws4fetch's retries of a 5xx or network failure, with its own backoff. */
  retries?: number;
  /** Keys per ListObjectsV2 call, at most S3_LIST_PAGE. */
  listPageSize?: number;
}

export class S3ObjectStore implements ObjectStore {
  readonly description: string;
  readonly #aws: AwsClient;
  readonly #base: string;
  readonly #prefix: string;
  readonly #listPage: number;

  constructor(config: S3Config, options: S3StoreOptions = {}) {
    const retries = options.retries ?? 3;
    this.#listPage = options.listPageSize ?? S3_LIST_PAGE;
    this.#aws = new AwsClient({
      accessKeyId: config.accessKeyId,
      secretAccessKey: config.secretAccessKey,
      ...(config.sessionToken ? { sessionToken: config.sessionToken } : {}),
      service: 's3',
      region: config.region,
      retries,
    });
    this.#base = config.endpoint ? `${config.endpoint}/${config.bucket}` : `https://${config.bucket}.s3.${config.region}.amazonaws.com`;
    this.#prefix = config.prefix === '' ? '' : `${config.prefix}/`;
    this.description = `s3://${config.bucket}/${this.#prefix}`;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    const res = await this.#send('PUT', this.#url(key), bytes, AbortSignal.timeout(S3_REQUEST_TIMEOUT_MS + Math.ceil(bytes.length / S3_MIN_UPLOAD_BYTES_PER_MS)));
    await this.#expect(res, 'PUT', key);
  }

  /**
   * get reads the object whole. Like getStream, S3_REQUEST_TIMEOUT_MS bounds the wait for the answer's
   * headers and then for each piece of the body, not the whole body: a large object on a slow link
   * takes what its size needs, a stalled one fails.
   */
  async get(key: string): Promise<Uint8Array | null> {
    const body = await this.getStream(key);
    if (body === null) return null;
    const reader = body.getReader();
    const pieces: Uint8Array[] = [];
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const idle = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new EdgeliteError('UNAVAILABLE', `GET ${this.description}${key}: nothing received for ${S3_REQUEST_TIMEOUT_MS} ms`)), S3_REQUEST_TIMEOUT_MS);
      });
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await Promise.race([reader.read(), idle]);
      } catch (err) {
        await reader.cancel().catch(() => undefined); // the error below is the one reported
        if (err instanceof EdgeliteError) throw err;
        throw new EdgeliteError('UNAVAILABLE', `GET ${this.description}${key}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      } finally {
        clearTimeout(timer);
      }
      if (r.done) break;
      pieces.push(r.value);
    }
    return concatBytes(pieces);
  }

  /**
   * getStream: S3_REQUEST_TIMEOUT_MS bounds the wait for the answer's headers, not the body, which takes
   * as long as the object's size needs (the reader bounds the wait for each piece).
   */
  async getStream(key: string): Promise<ReadableStream<Uint8Array> | null> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new Error(`no answer within ${S3_REQUEST_TIMEOUT_MS} ms`)), S3_REQUEST_TIMEOUT_MS);
    let res: Response;
    try {
      res = await this.#send('GET', this.#url(key), undefined, abort.signal);
    } finally {
      clearTimeout(timer);
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (!res.ok) await this.#expect(res, 'GET', key);
    if (res.body === null) throw new EdgeliteError('IO_ERROR', `GET ${this.description}${key}: answered without a body`);
    return res.body;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    let token: string | null = null;
    do {
      const q = new URLSearchParams({ 'list-type': '2', prefix: this.#prefix + prefix, 'max-keys': String(this.#listPage) });
      if (token !== null) q.set('continuation-token', token);
      const res = await this.#send('GET', `${this.#base}/?${q.toString()}`);
      if (!res.ok) await this.#expect(res, 'LIST', prefix);
      const xml = await res.text();
      for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
        const body = m[1] ?? '';
        const key = xmlText(/<Key>([\s\S]*?)<\/Key>/.exec(body)?.[1]);
        const size = Number(/<Size>(\d+)<\/Size>/.exec(body)?.[1]);
        if (key === null || !key.startsWith(this.#prefix) || !Number.isSafeInteger(size)) continue;
        out.push({ key: key.slice(this.#prefix.length), size });
      }
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? xmlText(/<NextContinuationToken>([\s\S]*?)<\/NextContinuationToken>/.exec(xml)?.[1]) : null;
    } while (token !== null);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    const res = await this.#send('DELETE', this.#url(key));
    if (res.status !== 404) await this.#expect(res, 'DELETE', key);
  }

  #url(key: string): string {
    return `${this.#base}/${(this.#prefix + key).split('/').map(encodeURIComponent).join('/')}`;
  }

  /** #send makes one request, aborted by `signal` (by default S3_REQUEST_TIMEOUT_MS after it starts). */
  async #send(method: string, url: string, body?: Uint8Array, signal: AbortSignal = AbortSignal.timeout(S3_REQUEST_TIMEOUT_MS)): Promise<Response> {
    try {
      return await this.#aws.fetch(url, body === undefined ? { method, signal } : { method, signal, body: body as Uint8Array<ArrayBuffer> });
    } catch (err) {
      throw new EdgeliteError('UNAVAILABLE', `${method} ${this.description}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  /** #expect throws for a non-2xx answer with S3's error code; the message names the key, never a credential. */
  async #expect(res: Response, op: string, key: string): Promise<void> {
    if (res.ok) {
      await res.body?.cancel();
      return;
    }
    const text = await res.text().catch(() => '');
    const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? '';
    throw new EdgeliteError(res.status >= 500 ? 'UNAVAILABLE' : 'IO_ERROR', `${op} ${this.description}${key}: HTTP ${res.status} ${code}`.trim(), {
      details: { status: res.status, s3Code: code },
    });
  }
}

function xmlText(s: string | undefined): string | null {
  if (s === undefined) return null;
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}
