/** Prometheus text for GET /metrics: per-database position, size and log figures, and stream fan-out. */
import type { PrimaryStore } from './store.ts';

export function renderMetrics(store: PrimaryStore): string {
  const lines: string[] = [
    '# HELP edgelite_txid Newest captured txid per database.',
    '# TYPE edgelite_txid gauge',
  ];
  const rows = store.names().map((name) => ({ name, db: store.get(name)! }));
  for (const { name, db } of rows) lines.push(`edgelite_txid{db="${name}"} ${db.position.txid}`);
  lines.push('# HELP edgelite_generation Current generation per database.', '# TYPE edgelite_generation gauge');
  for (const { name, db } of rows) lines.push(`edgelite_generation{db="${name}"} ${db.position.generation}`);
  lines.push('# HELP edgelite_db_pages Database size in pages.', '# TYPE edgelite_db_pages gauge');
  for (const { name, db } of rows) lines.push(`edgelite_db_pages{db="${name}"} ${db.pageCount}`);
  lines.push('# HELP edgelite_log_records Change sets retained in the log.', '# TYPE edgelite_log_records gauge');
  for (const { name, db } of rows) lines.push(`edgelite_log_records{db="${name}"} ${db.log.stats().records}`);
  lines.push('# HELP edgelite_log_bytes Bytes retained in the log.', '# TYPE edgelite_log_bytes gauge');
  for (const { name, db } of rows) lines.push(`edgelite_log_bytes{db="${name}"} ${db.log.stats().bytes}`);
  lines.push('# HELP edgelite_stream_subscribers Open replication streams.', '# TYPE edgelite_stream_subscribers gauge');
  lines.push(`edgelite_stream_subscribers ${store.hub.size}`);
  return `${lines.join('\n')}\n`;
}
