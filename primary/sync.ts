/**
 * SyncReplicas is the primary's side of `--sync-replicas N` (README.md#synchronous-replicas,
 * docs/ARCHITECTURE.md#high-availability): candidates report the positions they applied
 * (`POST /v1/replicas/applied`, parseAppliedReport); a write is acknowledged only once every member of
 * the **sync set** reported (generation, txid) at least the write's, and the set has N members.
 *
 * The sync set is chosen as PostgreSQL chooses its synchronous standbys: current members stay while they
 * report; a vacancy (a member gone, or the set not full yet) is filled by a live node that is caught up
 * with every write this primary acknowledged (and everything it held when it started, which an earlier
 * epoch may have acknowledged), in node-name order. A gone member is only replaced, never just dropped:
 * it still holds every acknowledged write, and no write is acknowledged while it is missing. So every
 * member of the set always holds every acknowledged write, which is what the election relies on.
 * A new set is published in etcd (PrimaryHa.publishSyncSet, fenced by the epoch) before any wait uses it;
 * while it is being published, waits need the old and the new members, so a write acknowledged during
 * the change is on both. With N = 0 reports are only listed (GET /v1/replicas): nothing waits.
 *
 * Waits are event-driven: woken by reports and set changes, bounded by `--sync-timeout`.
 */
import { EdgeliteError, type AppliedOutcome } from '../shared/errors.ts';
import type { CandidatePosition } from '../shared/lease.ts';
import type { Logger } from '../shared/log.ts';
import { AppliedReportSchema } from '../shared/openapi/requests.ts';
import { validateBody } from '../shared/openapi/validate.ts';
import { validateDatabaseName, type Txid } from '../shared/types.ts';
import type { PrimaryHa } from './ha.ts';

/** GONE_AFTER_MS: a node not heard from this long is gone (candidates report at least every second). */
export const GONE_AFTER_MS = 3_000;
/** FORGET_AFTER_MS: a gone node that is not a member drops out of GET /v1/replicas after this long. */
export const FORGET_AFTER_MS = 60_000;
/** PUBLISH_RETRY_MS: after a failed publish, the next attempt waits at least this long. */
export const PUBLISH_RETRY_MS = 1_000;
export { MAX_REPORTED_DATABASES } from '../shared/openapi/requests.ts';

/** AppliedReport is the body of `POST /v1/replicas/applied`. */
export interface AppliedReport {
  node: string;
  url: string;
  positions: Record<string, CandidatePosition>;
}

interface At {
  generation: number;
  txid: Txid;
}

interface Reported extends AppliedReport {
  /** performance.now() of the last report. */
  seenAt: number;
  /** Date.now() of the last report, for the listing. */
  lastSeen: number;
}

interface Waiter {
  name: string;
  at: At;
  done: (reached: boolean, reason?: SyncWaitReason) => void;
}

export type SyncWaitReason = 'timeout' | 'aborted';

/** parseAppliedReport checks a report body (AppliedReportSchema); anything off is BAD_REQUEST naming the field. */
export function parseAppliedReport(body: unknown): AppliedReport {
  return validateBody(AppliedReportSchema, body, '');
}

const reaches = (p: At | undefined, at: At): boolean => p !== undefined && p.generation >= at.generation && p.txid >= at.txid;

export interface SyncReplicasOptions {
  /** `--sync-replicas N`; 0: reports are listed, nothing waits. */
  replicas: number;
  /** `--sync-timeout`. */
  timeoutMs: number;
  /** Publishes the set (required when replicas > 0). */
  ha: PrimaryHa | null;
  /** Where each database stood when this primary started: an earlier epoch may have acknowledged all of it. */
  initial: Record<string, At>;
  logger: Logger;
  now?: () => number;
}

/** SyncFigures are the figures of /metrics. */
export interface SyncFigures {
  members: number;
  waitSecondsSum: number;
  waits: number;
  pending: number;
}

export class SyncReplicas {
  readonly replicas: number;
  readonly timeoutMs: number;
  readonly #ha: PrimaryHa | null;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #nodes = new Map<string, Reported>();
  /** The highest position acknowledged per database (a newcomer must reach it to join). */
  readonly #acked = new Map<string, At>();
  readonly #waiters = new Set<Waiter>();
  #members: string[] = [];
  /** The set being published, or null: waits need its members too until the publish ends. */
  #publishing: string[] | null = null;
  #lastFailedPublish = Number.NEGATIVE_INFINITY;
  #figures = { waitSecondsSum: 0, waits: 0, pending: 0 };

  constructor(o: SyncReplicasOptions) {
    if (!Number.isSafeInteger(o.replicas) || o.replicas < 0) throw new EdgeliteError('MISCONFIGURED', `--sync-replicas must be a whole number >= 0, got ${o.replicas}`);
    if (o.replicas > 0 && !o.ha) throw new EdgeliteError('MISCONFIGURED', '--sync-replicas needs the failover lease (--lease): the sync set is published under its epoch');
    this.replicas = o.replicas;
    this.timeoutMs = o.timeoutMs;
    this.#ha = o.ha;
    this.#logger = o.logger;
    this.#now = o.now ?? (() => performance.now());
    for (const [name, at] of Object.entries(o.initial)) this.#acked.set(name, { generation: at.generation, txid: at.txid });
  }

  /** members is the sync set the waits use now. */
  get members(): readonly string[] {
    return this.#members;
  }

  get figures(): SyncFigures {
    return { members: this.#members.length, ...this.#figures };
  }

  /** report records a node's applied positions, wakes the waits it satisfies and reconsiders the set. */
  report(r: AppliedReport): void {
    const now = this.#now();
    this.#nodes.set(r.node, { ...r, seenAt: now, lastSeen: Date.now() });
    for (const [n, rec] of this.#nodes) if (now - rec.seenAt > FORGET_AFTER_MS && !this.#members.includes(n)) this.#nodes.delete(n);
    if (this.replicas === 0) return;
    this.#wake();
    this.#reconsider();
  }

  /** list is GET /v1/replicas: every node heard from lately, with its positions, age and membership. */
  list(): Record<string, unknown> {
    const now = this.#now();
    const nodes = [...this.#nodes.values()].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0)).map((r) => ({
      node: r.node,
      url: r.url,
      positions: r.positions,
      lastSeen: r.lastSeen,
      ageMs: Math.round(now - r.seenAt),
      alive: now - r.seenAt < GONE_AFTER_MS,
      member: this.#members.includes(r.node),
    }));
    return { syncReplicas: this.replicas, members: [...this.#members], publishing: this.#publishing, nodes };
  }

  /**
   * wait returns null once the sync set holds the write at `at` of `name` (at once with N = 0), or the
   * 504 REPLICATION_PENDING to answer instead: committed here (`outcome: 'applied'`) but not on enough
   * candidates within `--sync-timeout`. `token` is the write's (null for a database creation).
   */
  async wait(name: string, at: At, token: string | null, signal?: AbortSignal): Promise<EdgeliteError | null> {
    if (this.replicas === 0) return null;
    const started = this.#now();
    const w = await new Promise<{ reached: boolean; reason?: SyncWaitReason }>((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = (): void => waiter.done(false, 'aborted');
      const waiter: Waiter = {
        name,
        at: { generation: at.generation, txid: at.txid },
        done: (reached, reason) => {
          if (!this.#waiters.delete(waiter)) return;
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(reason ? { reached, reason } : { reached });
        },
      };
      this.#waiters.add(waiter);
      if (this.#holds(waiter)) return waiter.done(true);
      if (signal?.aborted) return waiter.done(false, 'aborted');
      signal?.addEventListener('abort', onAbort, { once: true });
      timer = setTimeout(() => waiter.done(false, 'timeout'), this.timeoutMs);
    });
    const waitedMs = Math.round(this.#now() - started);
    this.#figures.waits++;
    this.#figures.waitSecondsSum += waitedMs / 1000;
    if (w.reached) {
      this.#acknowledged(name, at);
      return null;
    }
    this.#figures.pending++;
    const have = this.#members.filter((n) => reaches(this.#nodes.get(n)?.positions[name], at));
    const what = token === null ? `database ${name} was created on the primary` : `the write was committed on the primary (txid ${at.txid})`;
    const why = w.reason === 'aborted' ? 'the request ended before' : `after ${waitedMs} ms`;
    return new EdgeliteError('REPLICATION_PENDING', `${what} but ${have.length} of the ${this.replicas} sync replicas had applied it ${why} (sync set: ${this.#members.join(', ') || 'empty'}); it stays and replicates later: do not send it again`, {
      details: {
        outcome: 'applied' satisfies AppliedOutcome,
        reason: w.reason,
        ...(token === null ? {} : { token }),
        generation: at.generation,
        txid: at.txid,
        syncReplicas: this.replicas,
        members: [...this.#members],
        applied: have,
        waitedMs,
      },
    });
  }

  /** close answers every wait (the primary is stopping): REPLICATION_PENDING with reason aborted. */
  close(): void {
    for (const w of [...this.#waiters]) w.done(false, 'aborted');
  }

  #acknowledged(name: string, at: At): void {
    const cur = this.#acked.get(name);
    if (!cur || at.txid > cur.txid || at.generation > cur.generation) this.#acked.set(name, { generation: Math.max(at.generation, cur?.generation ?? 0), txid: Math.max(at.txid, cur?.txid ?? 0) });
  }

  /** #holds: the set is full and every member (and every member of a set being published) reached `w`. */
  #holds(w: Waiter): boolean {
    if (this.#members.length < this.replicas) return false;
    const need = this.#publishing ? new Set([...this.#members, ...this.#publishing]) : this.#members;
    for (const n of need) if (!reaches(this.#nodes.get(n)?.positions[w.name], w.at)) return false;
    return true;
  }

  #wake(): void {
    for (const w of [...this.#waiters]) if (this.#holds(w)) w.done(true);
  }

  #alive(n: string, now: number): boolean {
    const r = this.#nodes.get(n);
    return r !== undefined && now - r.seenAt < GONE_AFTER_MS;
  }

  #caughtUp(r: Reported): boolean {
    for (const [name, at] of this.#acked) if (at.txid > 0 && !reaches(r.positions[name], at)) return false;
    return true;
  }

  /** desired is the set as it should be now (see the top of this file). */
  #desired(): string[] {
    const now = this.#now();
    const keep = this.#members.filter((n) => this.#alive(n, now));
    const newcomers = [...this.#nodes.values()]
      .filter((r) => !this.#members.includes(r.node) && now - r.seenAt < GONE_AFTER_MS && this.#caughtUp(r))
      .map((r) => r.node)
      .sort();
    const set = [...keep, ...newcomers].slice(0, this.replicas);
    for (const n of this.#members) if (set.length < this.replicas && !set.includes(n)) set.push(n);
    return set;
  }

  #reconsider(): void {
    if (this.#publishing || this.#now() - this.#lastFailedPublish < PUBLISH_RETRY_MS) return;
    const next = this.#desired();
    if (next.length === this.#members.length && next.every((n) => this.#members.includes(n))) return;
    this.#publishing = next;
    void this.#publish(next);
  }

  async #publish(next: string[]): Promise<void> {
    let ok = false;
    let error: string | null = null;
    try {
      ok = await this.#ha!.publishSyncSet(next);
    } catch (err) {
      error = (err as Error).message;
    }
    this.#publishing = null;
    if (ok) {
      this.#logger({ msg: 'sync set', members: next, was: this.#members, epoch: this.#ha!.epoch });
      this.#members = next;
    } else {
      this.#lastFailedPublish = this.#now();
      this.#logger({ msg: 'sync set not published; the old one stays', level: 'warn', members: next, kept: this.#members, error: error ?? 'this epoch no longer holds the lease' });
    }
    this.#wake();
    if (ok) this.#reconsider();
  }
}
