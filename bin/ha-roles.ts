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
import { PRIMARY_ONLY as PRIMARY_ONLY_FLAGS, REPLICA_ONLY as REPLICA_ONLY_FLAGS, type FlagSpec } from '../shared/cli-flags.ts';
import type { GenerationStart } from '../shared/consistency.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { CandidatePosition } from '../shared/lease.ts';
import type { LeaseConfig } from '../shared/lease-config.ts';
import type { Logger } from '../shared/log.ts';
import { formatChecksum, type Position } from '../shared/types.ts';

export interface NodeConfigs {
  lease: LeaseConfig;
  primary: PrimaryConfig;
  replica: ReplicaConfig;
  /** The role the command asked for: what an empty data directory starts as. */
  prefer: 'primary' | 'replica';
}

/** Flags only the primary role takes, and only the replica role (shared/cli-flags.ts), each marked true when it is a switch. */
const PRIMARY_ONLY = switches(PRIMARY_ONLY_FLAGS);
const REPLICA_ONLY = switches(REPLICA_ONLY_FLAGS);

function switches(flags: readonly FlagSpec[]): Record<string, boolean> {
  return Object.fromEntries(flags.map((f) => [f.name, f.value === undefined]));
}

/** `--encryption-key-file` and `--s3-endpoint` go with `--backup` (primary) or `--source` (replica). */
const WITH_BUCKET = new Set(['encryption-key-file', 's3-endpoint']);

/**
 * splitNodeArgs sorts a failover node's command line into the primary role's flags and the replica
 * role's: a node keeps every flag it was given across role switches (a candidate promoted keeps
 * `--backup`, a demoted primary keeps `--read-wait-ms`). Flags of neither list go to both, where each
 * role's own parser refuses what it does not know.
 */
export function splitNodeArgs(argv: readonly string[]): { primary: string[]; replica: string[] } {
  const primary: string[] = [];
  const replica: string[] = [];
  const bucket: string[][] = [];
  let backup = false;
  let source = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const m = /^--([a-z0-9-]+)(=.*)?$/.exec(a);
    if (!m) {
      primary.push(a);
      replica.push(a);
      continue;
    }
    const name = m[1]!;
    const boolean = PRIMARY_ONLY[name] ?? REPLICA_ONLY[name] ?? false;
    const pair = m[2] !== undefined || boolean || i + 1 >= argv.length ? [a] : [a, argv[++i]!];
    if (name === 'backup') backup = true;
    if (name === 'source') source = true;
    if (name in PRIMARY_ONLY) primary.push(...pair);
    else if (name in REPLICA_ONLY) replica.push(...pair);
    else if (WITH_BUCKET.has(name)) bucket.push(pair);
    else {
      primary.push(...pair);
      replica.push(...pair);
    }
  }
  if (bucket.length > 0) {
    if (backup && source) throw new EdgeliteError('MISCONFIGURED', 'a failover node with both --backup and --source cannot tell whose --encryption-key-file or --s3-endpoint that is: use one bucket option');
    (source ? replica : primary).push(...bucket.flat());
  }
  return { primary, replica };
}

/**
 * nodeConfigs parses `edgelite primary --lease …` or `edgelite replica --candidate --lease …` into both
 * roles' configurations (splitNodeArgs): the same data directory, listen address, lease, auth and
 * `--sync-replicas`, and each role's own flags as given.
 */
export function nodeConfigs(command: 'primary' | 'replica', argv: string[], env: Record<string, string | undefined>): NodeConfigs {
  const split = splitNodeArgs(argv);
  const replicaArgs = split.replica.includes('--candidate') ? split.replica : [...split.replica, '--candidate'];
  const primary = parsePrimaryConfig(split.primary, env);
  const replica = parseReplicaConfig(replicaArgs, env);
  if (!primary.lease || !replica.lease) throw new EdgeliteError('MISCONFIGURED', `a failover node needs --lease (edgelite ${command === 'primary' ? 'primary' : 'replica --candidate'} --lease etcd://HOST:PORT/PREFIX …)`);
  return { lease: primary.lease, primary, replica, prefer: command };
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
    const p = store.requireInfo(db).position;
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
