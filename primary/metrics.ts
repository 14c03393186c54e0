/**
 * Prometheus text for the primary's GET /metrics: per-database position, size and log figures, stream
 * fan-out, and, when API reads and writes run in a query pool, the pool's figures and each database's
 * group commit (write-queue.ts). The names of the first six metrics are scraped by users: keep them.
 */
import type { QueryPool } from '../shared/node/query-pool.ts';
import { queryPoolMetrics } from '../shared/node/query-pool-metrics.ts';
import { MetricsText } from '../shared/prometheus.ts';
import type { BackupRunner } from './backup.ts';
import type { SyncReplicas } from './sync.ts';
import type { PrimaryStore } from './store.ts';

export function renderMetrics(store: PrimaryStore, queryPool: QueryPool | null = null, backup: BackupRunner | null = null, rangeAnswers: ReadonlyMap<number, number> = new Map(), sync: SyncReplicas | null = null): string {
  const m = new MetricsText();
  const ranges = m.counter('edgelite_catchup_range_answers_total', 'Catch-up range requests (GET /v1/db/{name}/changes/...) answered, by HTTP status (200 range, 304 not modified, 308 to the aligned range, 409 use the stream or a snapshot).');
  for (const [status, n] of [...rangeAnswers].sort(([a], [b]) => a - b)) ranges(n, { status: String(status) });
  const txid = m.gauge('edgelite_txid', 'Newest captured txid per database.');
  const generation = m.gauge('edgelite_generation', 'Current generation per database.');
  const pages = m.gauge('edgelite_db_pages', 'Database size in pages.');
  const logRecords = m.gauge('edgelite_log_records', 'Change sets retained in the log (open databases only: a closed one reports none).');
  const logBytes = m.gauge('edgelite_log_bytes', 'Bytes retained in the log (open databases only).');
  m.gauge('edgelite_stream_subscribers', 'Open replication streams.')(store.hub.size);
  const counts = store.counts();
  const databases = m.gauge('edgelite_databases', 'Databases in the data directory, by state (open: holding connections; closed: idle, README.md#many-databases).');
  databases(counts.open, { state: 'open' });
  databases(counts.databases - counts.open, { state: 'closed' });
  const names = store.names();
  for (const name of names) {
    const labels = { db: name };
    const info = store.info(name);
    if (!info) continue;
    txid(info.position.txid, labels);
    generation(info.position.generation, labels);
    pages(info.pageCount, labels);
    const open = store.peek(name);
    if (!open) continue;
    const log = open.log.stats();
    logRecords(log.records, labels);
    logBytes(log.bytes, labels);
  }
  const dbs = names.flatMap((name) => {
    const db = store.peek(name);
    return db ? [{ name, db }] : [];
  });
  if (queryPool) {
    queryPoolMetrics(m, queryPool);
    const batches = m.counter('edgelite_write_batches_total', 'Group-committed write batches (one transaction each) with at least one write committed.');
    const writes = m.counter('edgelite_writes_total', 'API writes committed; writes_total / write_batches_total is the mean batch size.');
    const waiting = m.gauge('edgelite_writes_waiting', 'API writes queued for the next batch.');
    for (const { name, db } of dbs) {
      const s = db.writeStats;
      if (!s) continue;
      batches(s.batches, { db: name });
      writes(s.writes, { db: name });
      waiting(s.waiting, { db: name });
    }
  }
  if (backup) {
    const uploaded = m.gauge('edgelite_backup_uploaded_txid', 'Highest txid restorable from the backup in the current generation.');
    const lag = m.gauge('edgelite_backup_lag_seconds', 'Age of the oldest change not yet uploaded (0: all uploaded).');
    const errors = m.counter('edgelite_backup_errors_total', 'Failed backup uploads (each retried with backoff).');
    const compactions = m.counter('edgelite_backup_compactions_total', 'Merged segments written by compaction (docs/FORMAT.md#compaction-and-retention).');
    const deleted = m.counter('edgelite_backup_deleted_objects_total', 'Backup objects deleted: superseded by a merged segment, or out of the retention window.');
    const compactionErrors = m.counter('edgelite_backup_compaction_errors_total', 'Failed merges or deletions (logged; retried).');
    for (const name of names) {
      const s = backup.status(name);
      uploaded(s.uploadedTxid, { db: name });
      lag(s.lagMs / 1000, { db: name });
      errors(s.errors, { db: name });
      compactions(s.compactions, { db: name });
      deleted(s.deleted, { db: name });
      compactionErrors(s.compactionErrors, { db: name });
    }
  }
  if (sync && sync.replicas > 0) {
    const f = sync.figures;
    m.gauge('edgelite_sync_replicas_members', 'Members of the --sync-replicas sync set (README.md#synchronous-replicas).')(f.members);
    m.summary('edgelite_sync_wait_seconds', 'Time writes waited for the sync set.')(f.waitSecondsSum, f.waits);
    m.counter('edgelite_sync_pending_total', 'Writes answered 504 REPLICATION_PENDING (committed, not on the sync set in time).')(f.pending);
  }
  return m.toString();
}
