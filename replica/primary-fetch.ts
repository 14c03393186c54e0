/**
 * The Node replica's connections to its primary: undici's fetch over one keep-alive Agent, handed to
 * the shared PrimaryClient (shared/primary-client.ts). Forwarded writes run concurrently, one per
 * connection, never queued behind one another (pipelining 1); the body timeout is off because the
 * stream's body never ends, and the client bounds ordinary requests with its own timeout. The only
 * replica module that imports undici.
 */
import { Agent, fetch as undiciFetch } from 'undici';
import { DEFAULT_REQUEST_TIMEOUT_MS, PrimaryClient } from '../shared/primary-client.ts';

/** DEFAULT_PRIMARY_CONNECTIONS: forwarded writes run concurrently, one per connection. */
export const DEFAULT_PRIMARY_CONNECTIONS = 64;

export interface NodePrimaryClientOptions {
  url: string;
  token?: string | undefined;
  connections?: number;
  requestTimeoutMs?: number;
}

/** nodePrimaryClient is the PrimaryClient of a Node replica; closing it closes its connections. */
export function nodePrimaryClient(o: NodePrimaryClientOptions): PrimaryClient {
  const requestTimeoutMs = o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const agent = new Agent({ connections: o.connections ?? DEFAULT_PRIMARY_CONNECTIONS, pipelining: 1, bodyTimeout: 0, headersTimeout: requestTimeoutMs });
  // undici's fetch is the WHATWG fetch with its own type declarations: the same contract as the global one.
  const fetch = ((input: string, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher: agent })) as unknown as typeof globalThis.fetch;
  return new PrimaryClient({ url: o.url, ...(o.token ? { token: o.token } : {}), fetch, requestTimeoutMs, onClose: () => agent.destroy() });
}
