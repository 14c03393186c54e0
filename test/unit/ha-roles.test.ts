/**
 * A failover node's command line (bin/ha-roles.ts): each role gets its own flags and the shared ones,
 * so a candidate promoted to primary keeps `--backup`, and a primary demoted to a replica keeps
 * `--read-wait-ms`; bucket flags follow `--backup` or `--source`; what neither role knows is refused.
 */
import { describe, expect, it } from 'vitest';
import { nodeConfigs, splitNodeArgs } from '../../bin/ha-roles.ts';
import { EdgeliteError } from '../../shared/errors.ts';

const lease = ['--lease', 'etcd://127.0.0.1:2379/x', '--lease-ttl', '2s', '--listen', '127.0.0.1:7501', '--data', '/tmp/n1'];

describe('failover node flags', () => {
  it('splits the command line into both roles', () => {
    const s = splitNodeArgs([...lease, '--backup', 'file:///b', '--backup-ack', '--encryption-key-file', '/k', '--read-wait-ms=900', '--candidate', '--sync-replicas', '1']);
    expect(s.primary).toEqual([...lease, '--backup', 'file:///b', '--backup-ack', '--sync-replicas', '1', '--encryption-key-file', '/k']);
    expect(s.replica).toEqual([...lease, '--read-wait-ms=900', '--candidate', '--sync-replicas', '1']);
    expect(splitNodeArgs([...lease, '--source', 'file:///b', '--s3-endpoint', 'http://s3']).replica).toEqual([...lease, '--source', 'file:///b', '--s3-endpoint', 'http://s3']);
    expect(() => splitNodeArgs(['--backup', 'file:///a', '--source', 'file:///b', '--encryption-key-file', '/k'])).toThrowError(EdgeliteError);
  });

  it('a candidate keeps its primary flags for after a promotion; a primary its replica flags for after a demotion', () => {
    const c = nodeConfigs('replica', ['--candidate', ...lease, '--backup', 'file:///tmp/bucket', '--synchronous', 'full', '--sync-replicas', '1'], {});
    expect(c.prefer).toBe('replica');
    expect(c.primary.backup?.target).toMatchObject({ kind: 'file', dir: '/tmp/bucket' });
    expect(c.primary.synchronous).toBe('full');
    expect([c.primary.sync.replicas, c.replica.sync.replicas, c.replica.candidate]).toEqual([1, 1, true]);
    const p = nodeConfigs('primary', [...lease, '--read-wait-ms', '900', '--on-behind', 'primary'], {});
    expect([p.replica.readWaitMs, p.replica.onBehind, p.replica.candidate, p.prefer]).toEqual([900, 'primary', true, 'primary']);
    expect(p.primary.lease).toEqual(p.replica.lease);
  });

  it('refuses a flag neither role knows, and a node without --lease', () => {
    expect(() => nodeConfigs('primary', [...lease, '--no-such-flag', '1'], {})).toThrowError(/no-such-flag/);
    expect(() => nodeConfigs('replica', ['--candidate', '--data', '/tmp/x'], {})).toThrowError(EdgeliteError);
  });
});
