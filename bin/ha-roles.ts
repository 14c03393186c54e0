/**
 * The two roles of a failover node (bin/ha.ts, README.md#high-availability): the configurations of the
 * primary and the replica it runs, derived from the one command line it was started with, and the data
 * directory's moves between them (promotion through primary/adopt.ts; demotion, which sets the old
 * primary's files aside and reports the writes that were never replicated).
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parsePrimaryConfig, type PrimaryConfig } from '../primary/config.ts';
import type { PrimaryStore } from '../primary/store.ts';
import { parseReplicaConfig, type ReplicaConfig } from '../replica/config.ts';
import { positionFilePath } from '../replica/position-file.ts';
import type { GenerationStart } from '../shared/consistency.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { CandidatePosition } from '../shared/lease.ts';
import type { LeaseConfig, SyncConfig } from '../shared/lease-config.ts';
import type { Logger } from '../shared/log.ts';
import { formatChecksum, type Position } from '../shared/types.ts';

export interface NodeConfigs {
  lease: LeaseConfig;
  primary: PrimaryConfig;
  replica: ReplicaConfig;
  /** The role the command asked for: what an empty data directory starts as. */
  prefer: 'primary' | 'replica';
}

/** The flags both roles share, as the command line gave them (the other role is started with these). */
function sharedArgs(lease: LeaseConfig, sync: SyncConfig, dataDir: string, host: string, port: number, queryTimeoutMs: number): string[] {
  return [
    '--data', dataDir, '--listen', `${host.includes(':') ? `[${host}]` : host}:${port}`,
    '--lease', `etcd://${lease.target.endpoint.replace(/^http:\/\//, '')}/${lease.target.prefix}`,
    '--lease-ttl', `${lease.ttlMs}ms`, '--advertise', lease.advertise, '--node-id', lease.node,
    '--query-timeout-ms', String(queryTimeoutMs),
    ...(sync.replicas > 0 ? ['--sync-replicas', String(sync.replicas), '--sync-timeout', `${sync.timeoutMs}ms`] : []),
  ];
}

/**
 * nodeConfigs parses `edgelite primary --lease …` or `edgelite replica --candidate --lease …` and
 * derives the other role's configuration: the same data directory, listen address, lease, auth and
 * `--sync-replicas`; the other role's own flags at their defaults.
 */
export function nodeConfigs(command: 'primary' | 'replica', argv: string[], env: Record<string, string | undefined>): NodeConfigs {
  if (command === 'primary') {
    const primary = parsePrimaryConfig(argv, env);
    if (!primary.lease) throw new EdgeliteError('MISCONFIGURED', 'a failover node needs --lease');
    const replica = parseReplicaConfig([...sharedArgs(primary.lease, primary.sync, primary.dataDir, primary.host, primary.port, primary.queryTimeoutMs), '--candidate'], env);
    return { lease: primary.lease, primary, replica, prefer: 'primary' };
  }
  const replica = parseReplicaConfig(argv, env);
  if (!replica.lease || !replica.candidate) throw new EdgeliteError('MISCONFIGURED', 'a failover node needs --candidate --lease');
  const primary = parsePrimaryConfig(sharedArgs(replica.lease, replica.sync, replica.dataDir, replica.host, replica.port, replica.queryTimeoutMs), env);
  return { lease: replica.lease, primary, replica, prefer: 'replica' };
}

/** isPrimaryDataDir: the directory holds a primary's state (meta files and logs under `.edgelite/`). */
export function isPrimaryDataDir(dir: string): boolean {
  return existsSync(join(dir, '.edgelite'));
}

/** isEmptyDataDir: nothing of ours in it yet (a new node). */
export function isEmptyDataDir(dir: string): boolean {
  return !existsSync(dir) || readdirSync(dir).every((f) => f.startsWith('.discarded'));
}

/** positionsOf renders positions for a candidate record. */
export function candidatePositions(list: Iterable<[string, Position | null]>): Record<string, CandidatePosition> {
  const out: Record<string, CandidatePosition> = {};
  for (const [db, p] of list) if (p) out[db] = { generation: p.generation, txid: p.txid, checksum: formatChecksum(p.checksum) };
  return out;
}

/** removeReplicaState deletes the replica's position sidecars of promoted databases (the meta files replace them). */
export function removeReplicaState(dataDir: string, names: readonly string[]): void {
  for (const n of names) {
    rmSync(positionFilePath(join(dataDir, `${n}.db`)), { force: true });
  }
}

export interface Discarded {
  db: string;
  generation: number;
  fromTxid: number;
  toTxid: number;
  count: number;
}

/**
 * unreplicated compares an old primary's databases with the new holder's histories: the txids it holds
 * past the start of the holder's next generation were never replicated (the new history does not
 * have them). `holderGenerations(db)` is the holder's generation list, or null when the holder does not
 * have the database at all (every txid is then unreplicated), or undefined when it could not be asked.
 */
export async function unreplicated(store: PrimaryStore, holderGenerations: (db: string) => Promise<GenerationStart[] | null | undefined>): Promise<{ discarded: Discarded[]; unknown: string[] }> {
  const discarded: Discarded[] = [];
  const unknown: string[] = [];
  for (const db of store.names()) {
    const p = store.require(db).position;
    const gens = await holderGenerations(db);
    if (gens === undefined) {
      unknown.push(db);
      continue;
    }
    const from = gens === null ? 1 : gens.find((g) => g.generation > p.generation)?.startTxid;
    if (from !== undefined && p.txid >= from) discarded.push({ db, generation: p.generation, fromTxid: from, toTxid: p.txid, count: p.txid - from + 1 });
  }
  return { discarded, unknown };
}

/**
 * setAside moves an old primary's files out of the data directory into `.discarded/<epoch>-<time>/`
 * (kept for people to inspect, never served again), so the directory starts over as an empty replica.
 */
export function setAside(dataDir: string, epoch: number, logger: Logger): string {
  const dest = join(dataDir, '.discarded', `epoch-${epoch}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(dest, { recursive: true });
  for (const f of readdirSync(dataDir)) {
    if (f === '.discarded') continue;
    renameSync(join(dataDir, f), join(dest, f));
  }
  logger({ msg: 'old primary files set aside', dir: dest });
  return dest;
}
