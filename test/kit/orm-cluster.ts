/**
 * The ORM adapters' cluster: a real primary and two real Node replicas in this process, over loopback
 * HTTP on ephemeral ports, with one database. Replica A follows the primary directly; replica B follows
 * it through a FaultProxy, so a test can hold B's stream (`holdB()`) and know that B has not applied a
 * write yet: a read there that sees the write proves the session's token made B wait for it
 * (README.md#consistency-model), not luck.
 */
import { join } from 'node:path';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { connect, type Client } from '../../shared/client.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { tempDir } from '../helpers.ts';
import { FaultProxy } from './proxy.ts';
import { waitFor } from './wait.ts';

export const ORM_DB = 'app';

export interface OrmCluster {
  primary: PrimaryHandle;
  a: ReplicaHandle;
  b: ReplicaHandle;
  /** Between replica B and the primary. */
  proxyB: FaultProxy;
  /** A client whose reads and writes go to replica A only. */
  clientA: Client;
  /** A client whose reads and writes go to replica B only. */
  clientB: Client;
  /** Every API request the two clients sent, as `A POST /v1/db/app/query` (probes off, so only these). */
  requests: string[];
  /** holdB stops B's stream (nothing new reaches B) until the returned function lets it go. */
  holdB(): () => void;
  /** applied is the txid a replica has applied (-1 before its bootstrap). */
  applied(r: ReplicaHandle): number;
  stop(): Promise<void>;
}

/** startOrmCluster starts the primary, creates the database, starts both replicas and waits for them. */
export async function startOrmCluster(label: string): Promise<OrmCluster> {
  const t = tempDir(label);
  const stops: Array<() => Promise<void> | void> = [t.cleanup];
  const stop = async (): Promise<void> => {
    for (const s of stops.splice(0).reverse()) await s();
  };
  try {
    const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
    stops.push(() => primary.close());
    const put = await fetch(`${primary.url}/v1/db/${ORM_DB}`, { method: 'PUT' });
    if (put.status !== 201) throw new Error(`PUT /v1/db/${ORM_DB} answered ${put.status}`);
    const proxyB = await FaultProxy.start({ target: primary.url });
    stops.push(() => proxyB.close());
    const replica = async (name: string, upstream: string): Promise<ReplicaHandle> => {
      const r = await startReplica(parseReplicaConfig(['--primary', upstream, '--data', join(t.dir, name), '--listen', '127.0.0.1:0'], {}), silentLogger);
      stops.push(() => r.close());
      return r;
    };
    const a = await replica('a', primary.url);
    const b = await replica('b', proxyB.url);
    const applied = (r: ReplicaHandle): number => r.store.get(ORM_DB)?.position?.txid ?? -1;
    const want = primary.store.get(ORM_DB)!.position.txid;
    await waitFor(() => applied(a) >= want && applied(b) >= want, 'both replicas bootstrapped');
    const requests: string[] = [];
    const client = (url: string, label: string): Client => {
      const recording = (input: string, init: RequestInit): Promise<Response> => {
        requests.push(`${label} ${init.method ?? 'GET'} ${new URL(input).pathname}`);
        return fetch(input, init);
      };
      const c = connect({ replicas: [url], probeIntervalMs: 0, fetch: recording });
      stops.push(() => c.close());
      return c;
    };
    return {
      primary,
      a,
      b,
      proxyB,
      clientA: client(a.url, 'A'),
      clientB: client(b.url, 'B'),
      requests,
      holdB: () => {
        proxyB.pause('down');
        return () => proxyB.resume('down');
      },
      applied,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
