/**
 * An in-process primary and replica with a FaultProxy between them (replica → proxy → primary), for the
 * fault tests that need to see inside the replica (its applied position, its follower's log lines).
 * Writes go straight to the primary; everything the replica fetches passes through the proxy.
 */
import { join } from 'node:path';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { silentLogger } from '../../shared/log.ts';
import { formatChecksum } from '../../shared/types.ts';
import { parsePrimaryConfig, type PrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig, type ReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { tempDir } from '../helpers.ts';
import type { BackoffSettings } from './backoff.ts';
import { FaultProxy } from './proxy.ts';
import { type Sample, WORKLOAD_SCHEMA } from '../fault/verify.ts';

export const DB = 'app';

export interface ClusterOptions {
  seed: number;
  replica?: Partial<ReplicaConfig>;
  primary?: Partial<PrimaryConfig>;
  /** Extra replica CLI flags. */
  replicaFlags?: string[];
  /** Where the replica keeps its data (default a fresh temp dir). */
  replicaDir?: string;
}

export class Cluster {
  readonly logs: Array<Record<string, unknown>> = [];
  replica!: ReplicaHandle;
  replicaDir!: string;
  /** The replica's reconnect backoff, as started (for retryBounds in backoff.ts). */
  backoff!: BackoffSettings;
  private constructor(
    readonly primary: PrimaryHandle,
    readonly proxy: FaultProxy,
    readonly dir: string,
    readonly cleanupDir: () => void,
    private readonly opts: ClusterOptions,
  ) {}

  /** start runs a primary with one database (the workload schema) and a proxy; not yet a replica. */
  static async start(opts: ClusterOptions): Promise<Cluster> {
    const t = tempDir('fault');
    const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED, ...opts.primary }, silentLogger);
    const proxy = await FaultProxy.start({ target: primary.url, seed: opts.seed });
    const c = new Cluster(primary, proxy, t.dir, t.cleanup, opts);
    const put = await fetch(`${primary.url}/v1/db/${DB}`, { method: 'PUT' });
    if (put.status !== 201) throw new Error(`PUT /v1/db/${DB} answered ${put.status}`);
    const r = await fetch(`${primary.url}/v1/db/${DB}/exec`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ statements: WORKLOAD_SCHEMA }) });
    if (r.status !== 200) throw new Error(`schema answered ${r.status}: ${await r.text()}`);
    return c;
  }

  /** startReplica starts (or restarts, on the same data) the replica behind the proxy. */
  async startReplica(): Promise<ReplicaHandle> {
    this.replicaDir = this.opts.replicaDir ?? join(this.dir, 'r');
    const config = parseReplicaConfig(['--primary', this.proxy.url, '--data', this.replicaDir, '--listen', '127.0.0.1:0', ...(this.opts.replicaFlags ?? [])], {});
    const settings: ReplicaConfig = { ...config, backoffMaxMs: 400, ...this.opts.replica };
    this.backoff = { minMs: settings.backoffMinMs, maxMs: settings.backoffMaxMs };
    this.replica = await startReplica(settings, (e) => this.logs.push(e));
    return this.replica;
  }

  get primaryFile(): string {
    return this.primary.store.get(DB)!.path;
  }

  get replicaFile(): string {
    return join(this.replicaDir, `${DB}.db`);
  }

  /** replicaSample is the replica's applied position now, as a Sample (null before bootstrap). */
  replicaSample(): Sample | null {
    const p = this.replica?.store.get(DB)?.position;
    return p ? { txid: p.txid, checksum: formatChecksum(p.checksum) } : null;
  }

  primarySample(): Sample {
    const p = this.primary.store.get(DB)!.position;
    return { txid: p.txid, checksum: formatChecksum(p.checksum) };
  }

  /** caughtUp: the replica holds exactly the primary's position. */
  caughtUp(): boolean {
    const r = this.replica?.store.get(DB)?.position;
    const p = this.primary.store.get(DB)!.position;
    return !!r && r.generation === p.generation && r.txid === p.txid && r.checksum === p.checksum;
  }

  /** failures counts the follower's failed sessions and rejected applies so far (each is a detection). */
  failures(): Array<Record<string, unknown>> {
    return this.logs.filter((l) => l.msg === 'stream ended' || l.msg === 'apply rejected; re-snapshotting');
  }

  logged(msg: string): Array<Record<string, unknown>> {
    return this.logs.filter((l) => l.msg === msg);
  }

  async stop(): Promise<void> {
    await this.replica?.close();
    await this.proxy.close();
    await this.primary.close();
    this.cleanupDir();
  }
}
