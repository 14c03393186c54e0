/**
 * A failover cluster for the fault tests (test/fault/failover.test.ts): a real etcd, three failover
 * nodes as child processes (`edgelite primary --lease …`, two `edgelite replica --candidate --lease …`),
 * each behind two test proxies: one in front of its advertised URL (what replicas and forwarded writes
 * use) and one between it and etcd, so a round can cut a node off from both while clients still reach
 * it directly. Plus writing clients that record every outcome for the history checker.
 */
import { join } from 'node:path';
import { LeaseStore, type PrimaryRecord } from '../../shared/lease.ts';
import { freePort } from '../kit/api.ts';
import { startEtcd, type Etcd } from '../kit/etcd.ts';
import { FaultProxy } from '../kit/proxy.ts';
import { spawnEdgelite, type EdgeliteProcess } from '../kit/spawn.ts';
import type { TokenRead, WriteRecord } from './failover-history.ts';

export const DB = 'app';
export const PREFIX = 'fault';

export interface ClusterNode {
  index: number;
  name: string;
  /** 'primary' or 'replica': the command it is (re)started with. */
  command: 'primary' | 'replica';
  port: number;
  /** Clients reach the node here directly. */
  direct: string;
  /** In front of its advertised URL: the stream, forwarded writes. */
  front: FaultProxy;
  /** Between it and etcd. */
  etcdLink: FaultProxy;
  proc: EdgeliteProcess | null;
}

export class FailoverCluster {
  readonly etcd: Etcd;
  readonly store: LeaseStore;
  readonly nodes: ClusterNode[];
  readonly #dir: string;
  readonly #flags: string[];

  private constructor(etcd: Etcd, nodes: ClusterNode[], dir: string, flags: string[]) {
    this.etcd = etcd;
    this.nodes = nodes;
    this.#dir = dir;
    this.#flags = flags;
    this.store = new LeaseStore({ endpoint: etcd.url, prefix: PREFIX }, { timeoutMs: 1000 });
  }

  static async start(dir: string, flags: string[]): Promise<FailoverCluster> {
    const etcd = await startEtcd();
    const nodes: ClusterNode[] = [];
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      nodes.push({ index: i, name: `n${i}`, command: i === 0 ? 'primary' : 'replica', port, direct: `http://127.0.0.1:${port}`, front: await FaultProxy.start({ target: `http://127.0.0.1:${port}` }), etcdLink: await FaultProxy.start({ target: etcd.url }), proc: null });
    }
    const c = new FailoverCluster(etcd, nodes, dir, flags);
    for (const n of nodes) await c.startNode(n);
    return c;
  }

  async startNode(n: ClusterNode): Promise<void> {
    const role = n.command === 'primary' ? ['primary'] : ['replica', '--candidate'];
    n.proc = await spawnEdgelite([
      ...role, '--data', join(this.#dir, n.name), '--listen', `127.0.0.1:${n.port}`,
      '--lease', `etcd://127.0.0.1:${n.etcdLink.port}/${PREFIX}`, '--advertise', n.front.url, '--node-id', n.name,
      '--query-timeout-ms', '0', ...this.#flags,
    ]);
  }

  async kill(n: ClusterNode): Promise<void> {
    await n.proc?.kill('SIGKILL');
    n.proc = null;
  }

  /** isolate cuts a node off from etcd and from every other node (clients still reach it directly). */
  isolate(n: ClusterNode, on: boolean): void {
    for (const p of [n.front, n.etcdLink]) {
      p.refuse(on);
      if (on) p.cut();
    }
  }

  async holder(): Promise<PrimaryRecord | null> {
    return this.store.primary().catch(() => null);
  }

  nodeByName(name: string): ClusterNode | undefined {
    return this.nodes.find((n) => n.name === name);
  }

  async close(): Promise<void> {
    for (const n of this.nodes) {
      await this.kill(n);
      await n.front.close();
      await n.etcdLink.close();
    }
    await this.etcd.stop();
  }
}

/** call POSTs once; null when the outcome is unknown (cut or timed out), status 0 when the connection was refused (not sent). */
async function call(url: string, path: string, body: unknown, headers: Record<string, string> = {}, timeoutMs = 8000): Promise<{ status: number; json: any; headers: Headers } | null> {
  try {
    const res = await fetch(`${url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers }, signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, json: await res.json().catch(() => null), headers: res.headers };
  } catch (err) {
    if ((err as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED') return { status: 0, json: null, headers: new Headers() };
    return null;
  }
}

/**
 * Writer is one client: it writes (client, seq) rows, two of three straight to the node it believes holds
 * the lease (looked up again after a refusal) and one through another node (forwarded); after each
 * acknowledged write it reads that row back with the write's token from any node.
 */
export class Writer {
  readonly writes: WriteRecord[] = [];
  readonly reads: TokenRead[] = [];
  #seq = 0;
  #stop = false;
  #target: string | null = null;
  #done: Promise<void> | null = null;

  constructor(readonly client: number, readonly cluster: FailoverCluster) {}

  start(): void {
    this.#done = this.#loop();
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#done;
  }

  async #loop(): Promise<void> {
    const nodes = this.cluster.nodes;
    while (!this.#stop) {
      const seq = ++this.#seq;
      if (this.#target === null) {
        const h = await this.cluster.holder();
        this.#target = h ? (this.cluster.nodeByName(h.node)?.direct ?? null) : null;
      }
      const via = seq % 3 === 0 ? nodes[(seq + this.client) % nodes.length]!.direct : this.#target ?? nodes[seq % nodes.length]!.direct;
      const sentAt = performance.now();
      const r = await call(via, `/v1/db/${DB}/exec`, { sql: 'INSERT INTO t (client, seq) VALUES (?, ?)', params: [this.client, seq] });
      const doneAt = performance.now();
      const code = r?.json?.error?.code as string | undefined;
      const outcome: WriteRecord['outcome'] = r === null ? 'unknown'
        : r.status === 200 ? 'ok'
        : code === 'REPLICATION_PENDING' ? 'pending'
        : r.status === 0 || r.json?.error?.details?.outcome === 'not-applied' || r.status === 400 || r.status === 404 ? 'refused'
        : 'unknown';
      const num = (h: string) => (r?.headers.get(h) ? Number(r.headers.get(h)) : null);
      this.writes.push({ client: this.client, seq, sentAt, doneAt, outcome, epoch: num('edgelite-epoch'), generation: num('edgelite-generation'), txid: num('edgelite-txid') });
      if (outcome !== 'ok') {
        this.#target = null;
        await new Promise((res) => setTimeout(res, 50));
        continue;
      }
      const token = r!.json.token as string;
      const reader = nodes[(seq * 7 + this.client) % nodes.length]!.direct;
      const q = await call(reader, `/v1/db/${DB}/query`, { sql: 'SELECT count(*) FROM t WHERE client = ? AND seq = ?', params: [this.client, seq] }, { 'edgelite-token': token }, 8000);
      if (q && (q.status === 200 || q.json?.error?.code === 'TOKEN_LOST')) {
        this.reads.push({
          client: this.client, seq, tokenGeneration: num('edgelite-generation')!, tokenTxid: num('edgelite-txid')!,
          generation: Number(q.headers.get('edgelite-generation') ?? -1), txid: Number(q.headers.get('edgelite-txid') ?? -1),
          found: q.status === 200 && q.json.results?.[0]?.rows?.[0]?.[0] === 1,
        });
      }
    }
  }
}
