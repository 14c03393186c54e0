/**
 * holdLease takes the failover lease in a real etcd for an in-process primary (tests and benchmarks
 * that run startPrimary themselves instead of bin/ha.ts): a real LeaseStore.campaign and LeaseKeeper,
 * and the PrimaryHa over them (primary/ha.ts): writable() is the keeper's, publishSyncSet the store's,
 * fenced by the won epoch.
 */
import type { PrimaryHa } from '../../primary/ha.ts';
import { LeaseKeeper, LeaseStore, parseLeaseUrl } from '../../shared/lease.ts';

export interface HeldLease {
  ha: PrimaryHa;
  store: LeaseStore;
  keeper: LeaseKeeper;
  /** The `--lease` URL of this prefix. */
  leaseUrl: string;
}

export async function holdLease(etcdUrl: string, prefix: string, node: string, url: string, ttlMs = 5000): Promise<HeldLease> {
  const leaseUrl = `etcd://${new URL(etcdUrl).host}/${prefix}`;
  const store = new LeaseStore(parseLeaseUrl(leaseUrl));
  const won = await store.campaign({ node, url, ttlMs, since: Date.now() });
  if (!won.won) throw new Error(`the lease under ${prefix} is held by ${won.holder?.node ?? '?'}`);
  const keeper = new LeaseKeeper({ store, epoch: won.epoch, leaseId: won.leaseId, ttlMs, grantedAt: won.grantedAt });
  const ha: PrimaryHa = {
    node,
    epoch: won.epoch,
    writable: () => keeper.writable(),
    holder: () => ({ url, epoch: won.epoch }),
    publishSyncSet: (nodes) => store.publishSyncSet({ epoch: won.epoch, nodes, since: Date.now() }),
  };
  return { ha, store, keeper, leaseUrl };
}
