/**
 * PrimaryHa is what a primary started under the failover lease (`--lease`, README.md#high-availability,
 * docs/ARCHITECTURE.md#high-availability) needs from whoever holds the lease for it (bin/ha.ts): its
 * epoch, whether it may acknowledge a write at this instant, and the fenced sync-set record. Without
 * a lease the primary has none and is always writable.
 */
import { EdgeliteError, type AppliedOutcome } from '../shared/errors.ts';

/** EPOCH_HEADER carries the lease epoch on every answer under the lease (README.md#high-availability); one constant for all sides. */
export { EPOCH_HEADER } from '../shared/primary-locator.ts';

export interface PrimaryHa {
  /** This node's name in the lease records. */
  readonly node: string;
  /** The epoch this primary holds (etcd's create revision of the lease record). */
  readonly epoch: number;
  /** writable: the lease is held and not within its safety margin of expiring. */
  writable(): boolean;
  /** holder is the current holder's URL as last seen (another node once this one lost the lease), or null. */
  holder(): { url: string; epoch: number } | null;
  /** publishSyncSet records which candidates `--sync-replicas` waits for; false once this epoch no longer holds the lease. */
  publishSyncSet(nodes: string[]): Promise<boolean>;
}

/** notPrimary is the 503 NOT_PRIMARY a node without the lease answers a write with, naming the holder it knows. */
export function notPrimary(ha: PrimaryHa, outcome: AppliedOutcome): EdgeliteError {
  const h = ha.holder();
  const other = h && h.epoch !== ha.epoch ? h : null;
  const where = other ? `the primary is ${other.url} (epoch ${other.epoch})` : 'no node holds the lease right now; retry shortly';
  const what = outcome === 'unknown' ? 'the lease ran out while this write committed here: it may not survive' : 'this node does not hold the failover lease';
  return new EdgeliteError('NOT_PRIMARY', `${what} (epoch ${ha.epoch}); ${where}`, { details: { primary: other?.url ?? null, epoch: other?.epoch ?? null, node: ha.node, outcome } });
}

/** assertWritable throws NOT_PRIMARY unless `ha` (if any) may acknowledge a write now. */
export function assertWritable(ha: PrimaryHa | null | undefined, outcome: AppliedOutcome): void {
  if (ha && !ha.writable()) throw notPrimary(ha, outcome);
}
