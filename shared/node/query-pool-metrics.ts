/**
 * queryPoolMetrics adds a query pool's figures (query-pool.ts) to /metrics, the same on the primary and
 * the replica: gauges for what the processes are doing now, counters for the requests the pool turned
 * away. `ready` ≤ `live`, so they are separate gauges, not one metric with a state label (a sum over
 * the label would count ready processes twice).
 */
import type { MetricsText } from '../prometheus.ts';
import type { QueryPool } from './query-pool.ts';

export function queryPoolMetrics(m: MetricsText, pool: QueryPool): void {
  const s = pool.stats();
  m.gauge('edgelite_query_pool_size', 'Most query processes the pool runs at once.')(pool.size);
  m.gauge('edgelite_query_pool_live', 'Query processes alive and usable (starting or ready).')(s.live);
  m.gauge('edgelite_query_pool_ready', 'Query processes that are ready.')(s.ready);
  m.gauge('edgelite_query_pool_busy', 'Query processes running a request.')(s.busy);
  m.gauge('edgelite_query_pool_queued', 'Requests waiting for a query process.')(s.queued);
  m.gauge('edgelite_query_pool_dying', 'Killed query processes whose exit has not been seen yet.')(s.dying);
  m.counter('edgelite_query_pool_timeouts_total', 'Requests answered with QUERY_TIMEOUT (each killed its process, unless stopped in-process).')(s.timeouts);
  m.counter('edgelite_query_inprocess_total', 'Reads answered in the server process, within their slice of the time limit.')(s.inProcess);
  m.counter('edgelite_query_handoffs_total', 'Reads stopped at the end of their in-process slice and handed to a query process.')(s.handedOff);
  m.counter('edgelite_query_pool_refused_total', 'Requests refused with BUSY (queue full, or no process free in time).')(s.refused);
}
