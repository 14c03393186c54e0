/**
 * ObjectStore is the seam between backups and where they live: a flat key space of immutable objects
 * (docs/FORMAT.md, its backup objects section). Keys are relative to the store's root (the bucket prefix or the
 * directory), `/`-separated. Two implementations: S3 over fetch (object-store-s3.ts, Worker-safe, so a
 * Worker can later read a bucket) and a directory (node/file-object-store.ts, Node only).
 *
 * This module also parses a backup URL (`s3://bucket/prefix`, `file:///dir`) once, at the edge, into a
 * BackupTarget; it reads no environment itself: the caller passes `env` in.
 */
import { EdgeliteError } from './errors.ts';

export interface ObjectInfo {
  key: string;
  size: number;
}

export interface ObjectStore {
  /** put stores `bytes` under `key`, replacing any object there; resolves once it is durable. */
  put(key: string, bytes: Uint8Array): Promise<void>;
  /** get returns the object's bytes, or null when there is no such key. */
  get(key: string): Promise<Uint8Array | null>;
  /**
   * getStream, where a store has it, returns the object's bytes as they arrive, or null when there is
   * no such key: a restore streams a large snapshot to its file instead of holding it whole.
   */
  getStream?(key: string): Promise<ReadableStream<Uint8Array> | null>;
  /** list returns every key starting with `prefix`, sorted, with sizes. */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** delete removes the object; deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
  /** description names the store for logs and errors, never with credentials. */
  readonly description: string;
}

/** S3Config is what the S3 store needs, read the way the AWS SDKs read it (s3ConfigFrom). */
export interface S3Config {
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing `/` ('' for the bucket root). */
  prefix: string;
  region: string;
  /** An S3-compatible endpoint (R2, MinIO, a test server); set: path-style addressing. */
  endpoint: string | null;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export type BackupTarget = { kind: 's3'; url: string; s3: S3Config } | { kind: 'file'; url: string; dir: string };

/** DEFAULT_S3_REGION is what an S3-compatible store that ignores regions gets when none is set. */
export const DEFAULT_S3_REGION = 'us-east-1';

/**
 * parseBackupTarget reads `s3://bucket/prefix` or `file:///dir`. For S3 the credentials come from
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), the region from AWS_REGION (or
 * AWS_DEFAULT_REGION), the endpoint from `endpointFlag`, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL.
 * Throws MISCONFIGURED naming what is wrong.
 */
export function parseBackupTarget(text: string, env: Record<string, string | undefined>, endpointFlag?: string): BackupTarget {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw misconfigured(`backup URL "${text}" is not a URL: want s3://bucket/prefix or file:///dir`);
  }
  if (url.protocol === 'file:') {
    if (url.host !== '') throw misconfigured(`backup URL "${text}" has a host: want file:///absolute/dir`);
    const dir = decodeURIComponent(url.pathname).replace(/\/+$/, '');
    if (dir === '') throw misconfigured(`backup URL "${text}" names no directory`);
    return { kind: 'file', url: text, dir };
  }
  if (url.protocol !== 's3:') throw misconfigured(`backup URL "${text}" has scheme ${url.protocol} : want s3:// or file://`);
  if (url.hostname === '') throw misconfigured(`backup URL "${text}" names no bucket`);
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) throw misconfigured('an s3:// backup needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
  const endpoint = endpointFlag ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL ?? null;
  if (endpoint !== null && !/^https?:\/\/[^/]+/.test(endpoint)) throw misconfigured(`S3 endpoint "${endpoint}" must be an http(s) URL`);
  const s3: S3Config = {
    bucket: url.hostname,
    prefix: decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, ''),
    region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? DEFAULT_S3_REGION,
    endpoint: endpoint === null ? null : endpoint.replace(/\/+$/, ''),
    accessKeyId,
    secretAccessKey,
  };
  if (env.AWS_SESSION_TOKEN) s3.sessionToken = env.AWS_SESSION_TOKEN;
  return { kind: 's3', url: text, s3 };
}

function misconfigured(message: string): EdgeliteError {
  return new EdgeliteError('MISCONFIGURED', message);
}
