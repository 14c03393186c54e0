/**
 * A failover node (README.md#high-availability, docs/ARCHITECTURE.md#high-availability):
 * `edgelite primary --lease …` and `edgelite replica --candidate --lease …` run this. One process, one
 * data directory, one listen address, and one of two roles at a time:
 *
 * - **primary** (the data directory holds primary state): the PrimaryStore serving reads, and writes
 *   only while this node holds the lease (primary/ha.ts checks before a write runs and before it is
 *   answered). Without the lease (at start, or after losing it) it is *fenced*: it serves reads,
 *   refuses writes with NOT_PRIMARY and stands in elections with its own positions. A newer holder
 *   seen while fenced means this node was failed over: it **demotes**: the writes it has that the new
 *   history lacks are reported (log line, `edgelite_failover_discarded_transactions_total`), its files
 *   are set aside (bin/ha-roles.ts), and it starts over as a replica of the holder.
 * - **replica** (candidate): follows the holder found in the lease record; when the lease is vacant it
 *   stands in the election; if it wins it **promotes**: its copies become primary databases
 *   (primary/adopt.ts) and it starts the primary role holding the lease.
 *
 * The election (shared/election.ts) runs in the lease store: every node publishes its positions under
 * `PREFIX/candidates/NODE` (renewed with its own etcd lease); a vacancy seen for ELECTION_SETTLE_MS
 * (every node re-publishes the moment it sees it) makes each rank the records the same way, and only the
 * best campaigns. If the best died, its record lapses and the next best becomes the best.
 */
import { startPrimary, type PrimaryHandle } from '../primary/server.ts';
import type { PrimaryHa } from '../primary/ha.ts';
import { adoptCopies } from '../primary/adopt.ts';
import { startReplica, type ReplicaHandle } from '../replica/server.ts';
import { rankCandidates } from '../shared/election.ts';
import { LeaseKeeper, LeaseStore, type PrimaryRecord } from '../shared/lease.ts';
import type { AuthConfig } from '../shared/auth.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import { generationStartsOf } from '../shared/primary-client.ts';
import { PrimaryLocator } from '../shared/primary-locator.ts';
import { candidatePositions, isEmptyDataDir, isPrimaryDataDir, removeReplicaState, setAside, unreplicated, type NodeConfigs } from './ha-roles.ts';
import { haExtension } from './ha-routes.ts';

/** How often a node reads the lease record (and so how soon it sees a vacancy or a new holder). */
export const LEASE_POLL_MS = 100;
/** How often a node re-publishes its candidate record while nothing changes. */
export const CANDIDATE_PUBLISH_MS = 1000;
/** How long a vacancy must be seen before the ranking is read: time for every live node to publish its final positions. */
export const ELECTION_SETTLE_MS = 300;

type Role = { kind: 'primary'; handle: PrimaryHandle } | { kind: 'replica'; handle: ReplicaHandle; following: string | null };

export interface FailoverEvent {
  at: number;
  kind: 'took-lease' | 'promoted' | 'demoted' | 'lost-lease';
  epoch: number;
  detail?: unknown;
}

export class FailoverNode implements PrimaryHa {
  readonly node: string;
  readonly store: LeaseStore;
  /** The node's one locator, kept across role switches: the replica role follows the holder through it and the highest epoch seen survives a switch. */
  readonly locator: PrimaryLocator;
  readonly #c: NodeConfigs;
  readonly #logger: Logger;
  #role: Role | null = null;
  #keeper: LeaseKeeper | null = null;
  #lastEpoch = 0;
  #holder: PrimaryRecord | null = null;
  #etcdDown = false;
  #vacantSince: number | null = null;
  #publishedAt = 0;
  #candidateKeeper: LeaseKeeper | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #closed = false;
  #busy = false;
  /** Set while a hand-over (stepDown) waits for the target to catch up: no write is acknowledged. */
  #steppingDown = false;
  /** Transactions an old primary held that the new history lacks, per database (the metric). */
  readonly discarded = new Map<string, number>();
  readonly events: FailoverEvent[] = [];

  constructor(configs: NodeConfigs, logger: Logger) {
    this.#c = configs;
    this.#logger = logger;
    this.node = configs.lease.node;
    this.store = new LeaseStore(configs.lease.target);
    this.locator = new PrimaryLocator({ store: this.store, logger });
  }

  // PrimaryHa, for the primary role (primary/ha.ts).
  get epoch(): number {
    return this.#keeper?.epoch ?? this.#lastEpoch;
  }
  writable(): boolean {
    return !this.#steppingDown && (this.#keeper?.writable() ?? false);
  }
  holder(): { url: string; epoch: number } | null {
    return this.#holder ? { url: this.#holder.url, epoch: this.#holder.epoch } : null;
  }
  async publishSyncSet(nodes: string[]): Promise<boolean> {
    const k = this.#keeper;
    if (!k || !k.writable()) return false;
    return this.store.publishSyncSet({ epoch: k.epoch, nodes, since: Date.now() });
  }

  get role(): 'primary' | 'replica' | null {
    return this.#role?.kind ?? null;
  }
  get primaryHandle(): PrimaryHandle | null {
    return this.#role?.kind === 'primary' ? this.#role.handle : null;
  }
  get replicaHandle(): ReplicaHandle | null {
    return this.#role?.kind === 'replica' ? this.#role.handle : null;
  }
  get currentHolder(): PrimaryRecord | null {
    return this.#holder;
  }
  get logger(): Logger {
    return this.#logger;
  }
  get auth(): AuthConfig {
    return this.#c.primary.auth;
  }

  async start(): Promise<void> {
    const dir = this.#c.primary.dataDir;
    const asPrimary = isPrimaryDataDir(dir) || (this.#c.prefer === 'primary' && isEmptyDataDir(dir));
    this.#holder = await this.store.primary().catch(() => null);
    this.locator.start();
    if (asPrimary) await this.#startPrimaryRole();
    else await this.#startReplicaRole(this.#holder);
    this.#logger({ msg: 'failover node started', node: this.node, role: this.role, lease: this.store.description, holder: this.#holder?.node ?? null, epoch: this.#holder?.epoch ?? null });
    this.#schedule(0);
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => void this.#tick(), ms);
  }

  async #tick(): Promise<void> {
    if (this.#closed || this.#busy) return;
    this.#busy = true;
    try {
      await this.#step();
    } catch (err) {
      this.#logger({ msg: 'failover node step failed', error: (err as Error).message });
    } finally {
      this.#busy = false;
      this.#schedule(LEASE_POLL_MS);
    }
  }

  async #step(): Promise<void> {
    let holder: PrimaryRecord | null;
    try {
      holder = await this.store.primary();
      if (this.#etcdDown) this.#logger({ msg: 'lease store reachable again', lease: this.store.description });
      this.#etcdDown = false;
    } catch (err) {
      if (!this.#etcdDown) this.#logger({ msg: 'lease store unreachable', lease: this.store.description, error: (err as Error).message });
      this.#etcdDown = true;
      return; // a holder keeps writing until its keeper's margin; nothing else can be decided
    }
    this.#holder = holder;
    if (this.#keeper && !this.#keeper.writable() && (!holder || holder.epoch !== this.#keeper.epoch)) {
      this.#event('lost-lease', this.#keeper.epoch);
      this.#logger({ msg: 'lost the lease: writes refused', epoch: this.#keeper.epoch });
      this.#keeper.stop();
      this.#keeper = null;
    }
    const mine = holder !== null && this.#keeper !== null && holder.epoch === this.#keeper.epoch;
    if (mine) {
      this.#vacantSince = null;
      return this.#publish(false);
    }
    if (holder) {
      this.#vacantSince = null;
      if (this.#role?.kind === 'primary' && holder.node !== this.node) return this.#demote(holder);
      if (this.#role?.kind === 'replica' && this.#role.following !== holder.url) await this.#follow(holder);
      return this.#publish(false);
    }
    // Vacant.
    if (this.#vacantSince === null) {
      this.#vacantSince = Date.now();
      return this.#publish(true);
    }
    await this.#publish(false);
    if (Date.now() - this.#vacantSince < ELECTION_SETTLE_MS) return;
    const ranked = rankCandidates(await this.store.candidates(), await this.store.syncSet());
    if (ranked[0]?.node !== this.node) return;
    await this.#campaign();
  }

  /**
   * promoteHere is `edgelite promote` (POST /v1/ha/promote) on this node: take the lease now. Vacant:
   * campaign without waiting for the ranking. Held by another node: ask it to hand over
   * (`stepDown`, which waits until this node has caught up), then campaign at once.
   */
  async promoteHere(auth: string | undefined, timeoutMs: number): Promise<{ epoch: number; handedOverBy: string | null }> {
    if (this.writable()) return { epoch: this.epoch, handedOverBy: null };
    let holder = await this.store.primary();
    let handedOverBy: string | null = null;
    if (holder && holder.node !== this.node) {
      const res = await fetch(`${holder.url}/v1/ha/step-down`, { method: 'POST', headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) }, body: JSON.stringify({ to: this.node, url: this.#c.lease.advertise, timeoutMs }), signal: AbortSignal.timeout(timeoutMs + 5000) });
      const body = (await res.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
      if (!res.ok) throw new EdgeliteError(body?.error?.code === 'HANDOVER_FAILED' ? 'HANDOVER_FAILED' : 'UNAVAILABLE', `the holder ${holder.node} (${holder.url}) did not hand over: ${body?.error?.message ?? res.status}`);
      handedOverBy = holder.node;
      holder = null;
    }
    if (holder && holder.node === this.node) throw new EdgeliteError('HANDOVER_FAILED', `this node's own earlier lease (epoch ${holder.epoch}) has not lapsed yet; retry in ${Math.ceil(holder.ttlMs / 1000)} s`);
    await this.#exclusive(() => this.#campaign(true));
    if (!this.#keeper) throw new EdgeliteError('HANDOVER_FAILED', `another node took the lease first: ${this.#holder?.node ?? 'unknown'}`);
    return { epoch: this.#keeper.epoch, handedOverBy };
  }

  /**
   * stepDown hands the lease to node `to` (POST /v1/ha/step-down): stop acknowledging writes, wait until
   * `to` has applied everything this primary holds (its GET /v1/db/{name}), then give the lease up.
   * Not caught up within `timeoutMs`: writes resume and HANDOVER_FAILED.
   */
  async stepDown(to: { node: string; url: string }, auth: string | undefined, timeoutMs: number): Promise<{ positions: Record<string, number> }> {
    const role = this.#role;
    if (role?.kind !== 'primary' || !this.#keeper?.writable()) throw new EdgeliteError('NOT_PRIMARY', `${this.node} does not hold the lease`, { details: { primary: this.#holder?.url ?? null, epoch: this.#holder?.epoch ?? null, node: this.node, outcome: 'not-applied' } });
    this.#steppingDown = true;
    try {
      const deadline = Date.now() + timeoutMs;
      const positions = Object.fromEntries(role.handle.store.names().map((n) => [n, role.handle.store.requireInfo(n).position.txid]));
      for (;;) {
        // Writes are refused from here: what the target must reach no longer moves.
        for (const n of role.handle.store.names()) positions[n] = role.handle.store.requireInfo(n).position.txid;
        const behind: string[] = [];
        for (const [db, txid] of Object.entries(positions)) {
          const r = await fetch(`${to.url}/v1/db/${db}`, { headers: auth ? { authorization: auth } : {}, signal: AbortSignal.timeout(2000) }).catch(() => null);
          const got = r?.ok ? ((await r.json()) as { txid?: number }).txid ?? -1 : -1;
          if (got < txid) behind.push(db);
        }
        if (behind.length === 0) break;
        if (Date.now() > deadline) throw new EdgeliteError('HANDOVER_FAILED', `${to.node} did not catch up within ${timeoutMs} ms (behind on ${behind.join(', ')}); this node keeps the lease`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const keeper = this.#keeper;
      this.#keeper = null;
      await keeper.resign();
      this.#event('lost-lease', keeper.epoch, { handedOverTo: to.node });
      this.#logger({ msg: 'handed the lease over', to: to.node, epoch: keeper.epoch, positions });
      return { positions };
    } finally {
      this.#steppingDown = false;
    }
  }

  /** #exclusive runs `fn` when no step of the loop runs (role switches never interleave). */
  async #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#busy) await new Promise((r) => setTimeout(r, 10));
    this.#busy = true;
    try {
      return await fn();
    } finally {
      this.#busy = false;
    }
  }

  /**
   * #campaign takes the lease if it is vacant. A replica then promotes: at once, or, for
   * `deferPromotion` (the request that asked for it must be answered before the role's server closes),
   * right after.
   */
  async #campaign(deferPromotion = false): Promise<void> {
    const r = await this.store.campaign({ node: this.node, url: this.#c.lease.advertise, ttlMs: this.#c.lease.ttlMs, since: Date.now() });
    if (!r.won) {
      this.#holder = r.holder;
      return;
    }
    const keeper = new LeaseKeeper({ store: this.store, epoch: r.epoch, leaseId: r.leaseId, ttlMs: this.#c.lease.ttlMs, grantedAt: r.grantedAt });
    this.#keeper = keeper;
    this.#lastEpoch = r.epoch;
    this.#holder = { node: this.node, url: this.#c.lease.advertise, epoch: r.epoch, ttlMs: this.#c.lease.ttlMs, since: Date.now() };
    this.#vacantSince = null;
    if (this.#role?.kind === 'replica') {
      if (deferPromotion) setTimeout(() => void this.#exclusive(() => this.#promote(r.epoch)).catch((err: unknown) => this.#logger({ msg: 'promotion failed', error: (err as Error).message })), 50);
      else await this.#promote(r.epoch);
    }
    this.#event('took-lease', r.epoch);
    this.#logger({ msg: 'holding the lease: accepting writes', node: this.node, epoch: r.epoch, url: this.#c.lease.advertise });
    await this.#publish(true);
  }

  /** #promote turns this candidate's copies into primary databases and starts the primary role. */
  async #promote(epoch: number): Promise<void> {
    const role = this.#role as Extract<Role, { kind: 'replica' }>;
    const copies = role.handle.store.names().flatMap((name) => {
      const db = role.handle.store.get(name)!;
      const p = db.position;
      return p && db.databaseId !== null ? [{ name, databaseId: db.databaseId, generation: p.generation, txid: p.txid }] : [];
    });
    await role.handle.close();
    this.#role = null;
    const dir = this.#c.primary.dataDir;
    const adopted = adoptCopies(dir, copies, epoch, `failover to ${this.node} in epoch ${epoch}`);
    removeReplicaState(dir, copies.map((c) => c.name));
    this.#event('promoted', epoch, adopted.map((a) => ({ db: a.name, txid: a.txid, generation: a.startGeneration })));
    this.#logger({ msg: 'promoted to primary', epoch, databases: adopted.map((a) => ({ db: a.name, fromTxid: a.txid, fromGeneration: a.generation, generation: a.startGeneration })) });
    await this.#startPrimaryRole();
  }

  /** #demote: a newer holder exists. Report what this old primary had that the new history lacks, set its files aside, follow. */
  async #demote(holder: PrimaryRecord): Promise<void> {
    const role = this.#role as Extract<Role, { kind: 'primary' }>;
    const token = this.#c.replica.primaryToken;
    const gens = async (db: string) => {
      try {
        const res = await fetch(`${holder.url}/v1/db/${db}`, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(5000) });
        if (res.status === 404) return null;
        if (!res.ok) return undefined;
        return generationStartsOf(((await res.json()) as { generations?: unknown }).generations) ?? undefined;
      } catch {
        return undefined;
      }
    };
    const { discarded, unknown } = await unreplicated(role.handle.store, gens);
    for (const d of discarded) {
      this.discarded.set(d.db, (this.discarded.get(d.db) ?? 0) + d.count);
      this.#logger({ msg: 'writes never replicated before the failover: discarded, never served again', ...d, epoch: holder.epoch, primary: holder.url });
    }
    if (unknown.length > 0) this.#logger({ msg: 'could not compare with the new primary; set aside unchecked', databases: unknown, primary: holder.url });
    await role.handle.close();
    this.#role = null;
    setAside(this.#c.primary.dataDir, this.epoch, this.#logger);
    this.#event('demoted', holder.epoch, discarded);
    this.#logger({ msg: 'demoted: following the new primary', epoch: holder.epoch, primary: holder.url, node: holder.node });
    await this.#startReplicaRole(holder);
  }

  async #startPrimaryRole(): Promise<void> {
    const handle = await startPrimary(this.#c.primary, this.#logger, { ha: this, extend: haExtension(this) });
    this.#role = { kind: 'primary', handle };
  }

  async #startReplicaRole(holder: PrimaryRecord | null): Promise<void> {
    if (holder) this.locator.observe(holder.epoch);
    const handle = await startReplica(this.#c.replica, this.#logger, { extend: haExtension(this), locator: this.locator });
    this.#role = { kind: 'replica', handle, following: holder?.url ?? null };
  }

  /** #follow: the replica role follows the holder through the locator (no restart); this makes it look now. */
  async #follow(holder: PrimaryRecord): Promise<void> {
    const role = this.#role as Extract<Role, { kind: 'replica' }>;
    this.#logger({ msg: 'following the lease holder', primary: holder.url, node: holder.node, epoch: holder.epoch });
    role.following = holder.url;
    await this.locator.refresh();
  }

  /** #publish writes this node's candidate record (positions) now when `now`, else once it is CANDIDATE_PUBLISH_MS old. */
  async #publish(now: boolean): Promise<void> {
    if (!now && Date.now() - this.#publishedAt < CANDIDATE_PUBLISH_MS) return;
    const role = this.#role;
    if (!role) return;
    const positions = role.kind === 'primary'
      ? candidatePositions(role.handle.store.names().map((n) => [n, role.handle.store.requireInfo(n).position]))
      : candidatePositions(role.handle.store.names().map((n) => [n, role.handle.store.get(n)!.position]));
    if (!this.#candidateKeeper || !this.#candidateKeeper.writable()) {
      this.#candidateKeeper?.stop();
      const grantedAt = performance.now();
      const id = await this.store.etcd.grant(this.#c.lease.ttlMs);
      this.#candidateKeeper = new LeaseKeeper({ store: this.store, epoch: 0, leaseId: id, ttlMs: this.#c.lease.ttlMs, grantedAt });
    }
    await this.store.publishCandidate({ node: this.node, url: this.#c.lease.advertise, role: role.kind, positions, epoch: Math.max(this.#lastEpoch, this.#holder?.epoch ?? 0), time: Date.now() }, this.#candidateKeeper.leaseId);
    this.#publishedAt = Date.now();
  }

  #event(kind: FailoverEvent['kind'], epoch: number, detail?: unknown): void {
    this.events.push({ at: Date.now(), kind, epoch, ...(detail === undefined ? {} : { detail }) });
    if (this.events.length > 100) this.events.shift();
  }

  /** close stops the node: the lease is given up (a candidate takes over at once), then the role stops. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    while (this.#busy) await new Promise((r) => setTimeout(r, 20));
    const keeper = this.#keeper;
    this.#keeper = null;
    await keeper?.resign().catch(() => undefined);
    const candidate = this.#candidateKeeper;
    candidate?.stop();
    if (candidate) await this.store.etcd.revoke(candidate.leaseId).catch(() => undefined);
    await this.#role?.handle.close();
    this.#role = null;
    this.locator.stop();
  }
}

/** haMain runs `edgelite primary|replica … --lease …` as a failover node. */
export async function haMain(configs: NodeConfigs, logger: Logger): Promise<FailoverNode> {
  const node = new FailoverNode(configs, logger);
  await node.start();
  return node;
}
