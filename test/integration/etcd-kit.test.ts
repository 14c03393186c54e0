/**
 * The etcd test kit (test/kit/etcd.ts): a real etcd from Debian on 127.0.0.1 answers the v3 JSON
 * gateway (a put raises the revision, a range reads it back, a lease with a TTL exists until revoked)
 * and is gone, data directory and all, after stop. The groundwork of the failover lease (issue 14).
 */
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { b64, startEtcd, unb64, type Etcd } from '../kit/etcd.ts';

let etcd: Etcd | null = null;
afterEach(async () => {
  await etcd?.stop();
  etcd = null;
});

describe('etcd test kit', () => {
  it('starts etcd on loopback, speaks its v3 JSON gateway, and stops it by PID', async () => {
    etcd = await startEtcd();
    expect(etcd.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const put = await etcd.call('kv/put', { key: b64('edgelite/test'), value: b64('hello') });
    const revision = Number((put.header as { revision: string }).revision);
    expect(revision).toBeGreaterThan(1);
    const range = await etcd.call('kv/range', { key: b64('edgelite/test') });
    const kvs = range.kvs as Array<{ value: string; mod_revision: string }>;
    expect(kvs.map((kv) => unb64(kv.value))).toEqual(['hello']);
    expect(Number(kvs[0]!.mod_revision)).toBe(revision);
    const lease = await etcd.call('lease/grant', { TTL: 5 });
    expect(Number(lease.TTL)).toBe(5);
    const ttl = await etcd.call('lease/timetolive', { ID: lease.ID });
    expect(Number(ttl.TTL)).toBeGreaterThan(0);
    await etcd.call('lease/revoke', { ID: lease.ID });
    expect(Number((await etcd.call('lease/timetolive', { ID: lease.ID })).TTL)).toBe(-1);

    const pid = etcd.pid;
    await etcd.stop();
    etcd = null;
    expect(existsSync(`/proc/${pid}`)).toBe(false);
  });
});
