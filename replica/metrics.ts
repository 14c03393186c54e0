/**
 * Prometheus text for the replica's GET /metrics. Per database: where it stands (the same figures as
 * GET /v1/db/{name}, read from the same getters, so the two never disagree) and whether it waits for a
 * snapshot; replica-wide: the follower's stream, forwarded writes and the query pool. Position and
 * size metrics carry the primary's names (edgelite_txid, edgelite_generation, edgelite_db_pages) so a
 * dashboard compares a replica with its primary by instance. Lag is in seconds, Prometheus's base
 * unit (+Inf while unknown, where the JSON says null).
 */
import type { QueryPool } from '../shared/node/query-pool.ts';
import { queryPoolMetrics } from '../shared/node/query-pool-metrics.ts';
import { MetricsText } from '../shared/prometheus.ts';
import type { RangeStats } from '../shared/changes-client.ts';
import type { Follower, FollowerState } from './follower.ts';
import type { ForwardCounts } from './forward.ts';
import type { LazyDatabases } from './lazy.ts';
import type { ReplicaStore } from './store.ts';

export interface ReplicaMetricsSources {
  store: ReplicaStore;
  /** null: no stream of its own (the follower metrics are left out). */
  follower: Follower | null;
  forwarded: ForwardCounts;
  queryPool: QueryPool | null;
  /** Lazy mode's fetches and evictions; null when the replica follows all or a list. */
  lazy?: LazyDatabases | null;
  /** The primary client's catch-up range reads (GET /v1/db/{name}/changes/...); null without a primary. */
  ranges?: RangeStats | null;
  /** Under the failover lease (README.md#high-availability): the fence's refusals and failed reads of the lease record; null otherwise. */
  lease?: { staleRefusals: number; readFailures: number } | null;
}

/** FOLLOWER_STATES lists every state, so each gets a 0/1 sample (a Record: a new state fails to compile). */
const FOLLOWER_STATES = Object.keys({ connecting: 0, streaming: 0, waiting: 0, stopped: 0 } satisfies Record<FollowerState, 0>) as FollowerState[];

export function renderReplicaMetrics(o: ReplicaMetricsSources): string {
  const m = new MetricsText();
  const txid = m.gauge('edgelite_txid', 'Applied txid per database (absent until a first snapshot is in).');
  const generation = m.gauge('edgelite_generation', 'Applied generation per database.');
  const pages = m.gauge('edgelite_db_pages', 'Local database size in pages.');
  const lagSeconds = m.gauge('edgelite_lag_seconds', 'How stale the local copy may be, as GET /v1/db lagMs (+Inf: unknown).');
  const lagTxids = m.gauge('edgelite_lag_txids', "Txids the primary's last heartbeat had that are not applied here.");
  const primaryTxid = m.gauge('edgelite_primary_txid', "Newest txid per database in the primary's last heartbeat.");
  const bootstrapping = m.gauge('edgelite_bootstrapping', '1 while a database has no local copy yet (its first snapshot is not in).');
  const needsSnapshot = m.gauge('edgelite_needs_snapshot', '1 while a database waits for a (re-)snapshot; reads are served from the last good state.');
  const counts = o.store.counts();
  const databases = m.gauge('edgelite_databases', 'Local databases, by state (open: holding connections; closed: idle, README.md#many-databases).');
  databases(counts.open, { state: 'open' });
  databases(counts.databases - counts.open, { state: 'closed' });
  for (const name of o.store.names()) {
    const db = o.store.get(name);
    if (!db) continue;
    const labels = { db: name };
    const p = db.position;
    if (p) {
      txid(p.txid, labels);
      generation(p.generation, labels);
    }
    pages(db.pageCount, labels);
    lagSeconds(db.lagMs / 1000, labels);
    lagTxids(db.lagTxids, labels);
    if (db.primary) primaryTxid(db.primary.txid, labels);
    bootstrapping(p === null, labels);
    needsSnapshot(db.needsSnapshot !== null, labels);
  }
  if (o.follower) {
    const f = o.follower;
    const state = m.gauge('edgelite_follower_state', "1 for the follower's current state (streaming: connected to the primary).");
    for (const s of FOLLOWER_STATES) state(f.state === s, { state: s });
    m.counter('edgelite_follower_connects_total', 'Replication streams opened to the primary.')(f.connects);
    const downloads = m.gauge('edgelite_snapshot_downloads', 'Snapshot downloads in progress (running, at most --bootstrap-concurrency) and waiting for a slot (queued).');
    downloads(f.snapshots.running, { state: 'running' });
    downloads(f.snapshots.queued, { state: 'queued' });
    m.gauge('edgelite_primary_last_contact_seconds', 'Time since the primary last sent anything (+Inf: never).')(f.lastContactMs / 1000);
    const changeSets = m.counter('edgelite_changesets_applied_total', 'Change sets applied per database since start.');
    const snapshots = m.counter('edgelite_snapshots_applied_total', 'Snapshots installed per database since start (bootstrap and re-snapshots).');
    for (const name of o.store.names()) {
      const a = f.applied(name);
      changeSets(a.changeSets, { db: name });
      snapshots(a.snapshots, { db: name });
    }
  }
  if (o.ranges) {
    m.counter('edgelite_catchup_ranges_total', 'Catch-up ranges (immutable, cacheable GETs) read whole and applied through the stream.')(o.ranges.ranges);
    m.counter('edgelite_catchup_range_changesets_total', 'Change sets those ranges brought.')(o.ranges.changeSets);
    m.counter('edgelite_catchup_ranges_refused_total', 'Range answers refused (a change set failing its checksums or not continuing the position, a range cut short): never applied.')(o.ranges.damaged);
    m.counter('edgelite_catchup_ranges_fresh_total', 'Ranges asked again past the caches (after a refused answer).')(o.ranges.fresh);
  }
  if (o.follower?.bucket && o.follower.feed) {
    const { bucket, feed } = o.follower;
    const fedBy = m.gauge('edgelite_replica_fed_by', '1 for what feeds the replica now (--source): the primary\'s stream, or the bucket alone.');
    for (const s of ['primary', 'bucket'] as const) fedBy(bucket.feeding === s, { source: s });
    m.counter('edgelite_bucket_listings_total', 'Listings of the --source bucket.')(feed.listings);
    m.counter('edgelite_bucket_primary_failures_total', 'Stream requests to the primary that failed while the bucket fed the replica.')(bucket.primaryFailures);
    const changeSets = m.counter('edgelite_bucket_changesets_applied_total', 'Change sets from the bucket applied per database since start.');
    const snapshots = m.counter('edgelite_bucket_snapshots_total', 'Snapshots read from the bucket per database since start.');
    const refused = m.counter('edgelite_bucket_objects_refused_total', 'Bucket objects refused (damaged, truncated, missing) per database: never applied.');
    for (const name of o.store.names()) {
      const st = feed.status(name);
      changeSets(st.changeSets, { db: name });
      snapshots(st.snapshots, { db: name });
      refused(st.refused, { db: name });
    }
  }
  if (o.lease) {
    m.counter('edgelite_stale_primary_refusals_total', 'Streams and snapshots refused because their primary had an older lease epoch than one seen (a deposed primary).')(o.lease.staleRefusals);
    m.counter('edgelite_lease_read_failures_total', 'Reads of the lease record that failed (etcd unreachable); the last known primary is followed meanwhile.')(o.lease.readFailures);
  }
  if (o.lazy) {
    m.counter('edgelite_lazy_fetches_total', 'Databases fetched on their first request (lazy mode).')(o.lazy.fetches);
    m.counter('edgelite_lazy_evictions_total', 'Databases evicted under --max-databases (lazy mode).')(o.lazy.evictions);
  }
  const forwarded = m.counter('edgelite_forwarded_writes_total', 'Writes forwarded to the primary, by result (committed, failed).');
  forwarded(o.forwarded.committed, { result: 'committed' });
  forwarded(o.forwarded.failed, { result: 'failed' });
  m.counter('edgelite_forwarded_writes_unapplied_total', 'Committed forwarded writes answered before this replica applied them.')(o.forwarded.unapplied);
  if (o.queryPool) queryPoolMetrics(m, o.queryPool);
  return m.toString();
}
