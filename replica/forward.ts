/**
 * forwardExec sends a write to the primary and, when it succeeded, waits (bounded) until this replica
 * has applied the txid in its token, so the caller's next local read sees its own write. The write is
 * committed on the primary either way; `applied` says whether this replica caught up in time. A write
 * that got no answer from the primary fails with PRIMARY_UNAVAILABLE and `details.outcome` (an
 * AppliedOutcome, shared/errors.ts, set by the PrimaryClient), passed on to the client unchanged.
 */
import { EdgeliteError, errorFromBody } from '../shared/errors.ts';
import { decodeToken } from '../shared/token.ts';
import type { PrimaryClient } from '../shared/primary-client.ts';
import type { ReplicaStore } from './store.ts';

export interface ForwardedWrite {
  body: unknown;
  token: string | null;
  applied: boolean;
}

/** ForwardCounts: what forwardExec has done for one server, for /metrics. */
export interface ForwardCounts {
  /** Writes the primary committed (answered 200). */
  committed: number;
  /** Writes the primary refused, or that could not reach it. */
  failed: number;
  /** Committed writes answered before this replica had applied them (`applied: false`). */
  unapplied: number;
}

export function newForwardCounts(): ForwardCounts {
  return { committed: 0, failed: 0, unapplied: 0 };
}

export async function forwardExec(
  primary: PrimaryClient,
  store: ReplicaStore,
  db: string,
  body: string,
  waitMs: number,
  headers: Record<string, string> = {},
  counts: ForwardCounts = newForwardCounts(),
): Promise<ForwardedWrite> {
  const r = await primary.forward('POST', `/v1/db/${encodeURIComponent(db)}/exec`, body, headers).catch((err: unknown) => {
    counts.failed++;
    throw err;
  });
  if (r.status !== 200) {
    counts.failed++;
    throw errorFromBody(r.body, r.status);
  }
  counts.committed++;
  const w = await waitApplied(store, db, r.body, waitMs);
  if (!w.applied) counts.unapplied++;
  return w;
}

/** waitApplied waits (bounded) until this replica has applied the txid in a committed write's token. */
async function waitApplied(store: ReplicaStore, db: string, body: unknown, waitMs: number): Promise<ForwardedWrite> {
  const token = (body as { token?: unknown }).token;
  if (typeof token !== 'string') return { body, token: null, applied: false };
  const t = decodeToken(token);
  const local = store.get(db);
  if (!local) return { body, token, applied: false };
  try {
    await local.waitFor(t.generation, t.txid, waitMs);
    return { body, token, applied: true };
  } catch (err) {
    if (err instanceof EdgeliteError && err.code === 'REPLICA_BEHIND') return { body, token, applied: false };
    throw err;
  }
}
