/**
 * forwardExec sends a write to the primary and, when it succeeded, waits (bounded) until this replica
 * has applied the txid in its token, so the caller's next local read sees its own write. The write is
 * committed on the primary either way; `applied` says whether this replica caught up in time.
 */
import { EdgeliteError, errorFromBody } from '../shared/errors.ts';
import { decodeToken } from '../shared/token.ts';
import type { PrimaryClient } from './primary-client.ts';
import type { ReplicaStore } from './store.ts';

export interface ForwardedWrite {
  body: unknown;
  token: string | null;
  applied: boolean;
}

export async function forwardExec(
  primary: PrimaryClient,
  store: ReplicaStore,
  db: string,
  body: string,
  waitMs: number,
  headers: Record<string, string> = {},
): Promise<ForwardedWrite> {
  const r = await primary.forward('POST', `/v1/db/${encodeURIComponent(db)}/exec`, body, headers);
  if (r.status !== 200) throw errorFromBody(r.body, r.status);
  const token = (r.body as { token?: unknown }).token;
  if (typeof token !== 'string') return { body: r.body, token: null, applied: false };
  const t = decodeToken(token);
  const local = store.get(db);
  if (!local) return { body: r.body, token, applied: false };
  try {
    await local.waitFor(t.generation, t.txid, waitMs);
    return { body: r.body, token, applied: true };
  } catch (err) {
    if (err instanceof EdgeliteError && err.code === 'REPLICA_BEHIND') return { body: r.body, token, applied: false };
    throw err;
  }
}
