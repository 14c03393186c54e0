/**
 * The failover lease against a real etcd (Debian's etcd-server on 127.0.0.1, test/kit/etcd.ts):
 * shared/lease.ts takes a vacant lease once (epoch = the key's create revision), refuses a second
 * holder, renews it while the holder lives, lets it lapse after the TTL when renewals stop, and a later
 * acquisition has a larger epoch; candidate records vanish with their lease; the sync set is fenced by
 * the holder's epoch; a holder cut off from etcd stops being writable a safety margin before its lease
 * can expire.
 */
import { describe, expect, it } from 'vitest';
import { EdgeliteError } from '../../shared/errors.ts';
import { LeaseKeeper, LeaseStore, parseLeaseUrl, safetyMarginMs } from '../../shared/lease.ts';
import { etcdForFile } from '../kit/etcd.ts';
import { FaultProxy } from '../kit/proxy.ts';
import { sleep, waitFor } from '../kit/wait.ts';

const etcd = etcdForFile();

const rec = (node: string) => ({ node, url: `http://127.0.0.1:1/${node}`, ttlMs: 2000, since: Date.now() });

describe('lease URL', () => {
  it('parses etcd://host:port/prefix and refuses anything else', () => {
    expect(parseLeaseUrl('etcd://127.0.0.1:2379/prod/ha')).toEqual({ endpoint: 'http://127.0.0.1:2379', prefix: 'prod/ha' });
    expect(parseLeaseUrl('etcd://etcd.internal:2379')).toEqual({ endpoint: 'http://etcd.internal:2379', prefix: 'edgelite' });
    for (const bad of ['http://127.0.0.1:2379/x', 'etcd://u:p@h:1/x', 'nope', 'etcd://h:1/x?y=1']) {
      expect(() => parseLeaseUrl(bad)).toThrowError(EdgeliteError);
    }
  });
});

describe('lease in etcd', () => {
  it('one holder at a time; renewed while alive; lapses after the TTL; the next epoch is larger', async () => {
    const store = new LeaseStore({ endpoint: etcd.url, prefix: 'test-a' });
    expect(await store.primary()).toBeNull();
    const a = await store.campaign(rec('a'));
    if (!a.won) throw new Error('a should win a vacant lease');
    const b = await store.campaign(rec('b'));
    expect(b.won).toBe(false);
    if (!b.won) expect(b.holder).toMatchObject({ node: 'a', epoch: a.epoch });
    const keeper = new LeaseKeeper({ store, epoch: a.epoch, leaseId: a.leaseId, ttlMs: 2000, grantedAt: a.grantedAt });
    await sleep(3500); // past the TTL: renewals keep it
    expect(keeper.writable()).toBe(true);
    expect((await store.primary())?.node).toBe('a');
    keeper.stop();
    expect(keeper.writable()).toBe(false);
    await waitFor(async () => (await store.primary()) === null, 'the lease to lapse', 6000, 100);
    const c = await store.campaign(rec('c'));
    if (!c.won) throw new Error('c should win the lapsed lease');
    expect(c.epoch).toBeGreaterThan(a.epoch);
    // The sync set is written only under the current epoch.
    expect(await store.publishSyncSet({ epoch: a.epoch, nodes: ['x'], since: 1 })).toBe(false);
    expect(await store.publishSyncSet({ epoch: c.epoch, nodes: ['y'], since: 2 })).toBe(true);
    expect(await store.syncSet()).toEqual({ epoch: c.epoch, nodes: ['y'], since: 2 });
    await new LeaseKeeper({ store, epoch: c.epoch, leaseId: c.leaseId, ttlMs: 2000, grantedAt: c.grantedAt }).resign();
    expect(await store.primary()).toBeNull();
  }, 20_000);

  it('candidate records are listed and go away with their lease', async () => {
    const store = new LeaseStore({ endpoint: etcd.url, prefix: 'test-b' });
    const lease = await store.etcd.grant(2000);
    const other = await store.etcd.grant(60_000);
    await store.publishCandidate({ node: 'n1', url: 'u1', role: 'replica', positions: { app: { generation: 1, txid: 5, checksum: '00' } }, epoch: 3, time: 1 }, lease);
    await store.publishCandidate({ node: 'n2', url: 'u2', role: 'replica', positions: {}, epoch: 3, time: 1 }, other);
    expect((await store.candidates()).map((c) => c.node).sort()).toEqual(['n1', 'n2']);
    await waitFor(async () => (await store.candidates()).length === 1, 'n1 to go with its lease', 6000, 100);
    expect((await store.candidates())[0]!.node).toBe('n2');
    await store.etcd.revoke(other);
  }, 20_000);

  it('a holder cut off from etcd is not writable a safety margin before its lease can expire', async () => {
    const proxy = await FaultProxy.start({ target: etcd.url });
    try {
      const store = new LeaseStore({ endpoint: proxy.url, prefix: 'test-c' }, { timeoutMs: 500 });
      const won = await store.campaign(rec('a'));
      if (!won.won) throw new Error('should win');
      const keeper = new LeaseKeeper({ store, epoch: won.epoch, leaseId: won.leaseId, ttlMs: 2000, grantedAt: won.grantedAt });
      await sleep(1200);
      expect(keeper.writable()).toBe(true);
      proxy.refuse(true);
      proxy.cut();
      const cutAt = performance.now();
      await waitFor(async () => !keeper.writable(), 'writes to stop', 5000, 20);
      const stoppedAfter = performance.now() - cutAt;
      // The last renewal was sent at most TTL/4 before the cut: writes stop within TTL − margin of it.
      expect(stoppedAfter).toBeLessThanOrEqual(2000 - safetyMarginMs(2000) + 50);
      // etcd still holds the record until the TTL from its last renewal passes; nobody else can take it before.
      const direct = new LeaseStore({ endpoint: etcd.url, prefix: 'test-c' });
      expect((await direct.campaign(rec('b'))).won).toBe(false);
      await waitFor(async () => (await direct.primary()) === null, 'the lease to lapse', 6000, 50);
      await keeper.lost;
      keeper.stop();
    } finally {
      await proxy.close();
    }
  }, 20_000);
});
