/**
 * What a failover node (bin/ha.ts) adds to the app of whichever role it runs (README.md#high-availability):
 * `GET /v1/ha` (read right): this node's role, epoch and view of the lease; and metric lines:
 * `edgelite_ha_holder` (1 while this node holds the lease and may accept writes), `edgelite_ha_epoch`,
 * `edgelite_failover_discarded_transactions_total{db}` (writes an old primary had that were never
 * replicated before a failover, set aside at its demotion).
 */
import type { Hono } from 'hono';
import { EdgeliteError } from '../shared/errors.ts';
import { jsonResponse, readJsonBody, requireRight } from '../shared/http.ts';
import type { AppExtension } from '../shared/http.ts';
import { MetricsText } from '../shared/prometheus.ts';
import type { FailoverNode } from './ha.ts';

/** haStatus is the body of GET /v1/ha. */
export function haStatus(node: FailoverNode): Record<string, unknown> {
  const h = node.currentHolder;
  return {
    node: node.node,
    role: node.role,
    holder: h ? { node: h.node, url: h.url, epoch: h.epoch, since: new Date(h.since).toISOString(), ttlMs: h.ttlMs } : null,
    holding: node.writable(),
    epoch: node.epoch,
    lease: node.store.description,
    discarded: Object.fromEntries(node.discarded),
    events: node.events.map((e) => ({ ...e, at: new Date(e.at).toISOString() })),
  };
}

export function haExtension(node: FailoverNode): AppExtension {
  return {
    routes: (app: Hono) => {
      app.get('/v1/ha', requireRight(node.auth, 'read', { every: true }), () => jsonResponse(haStatus(node)));
      // `edgelite promote` (README.md#high-availability): take the lease here, by hand.
      app.post('/v1/ha/promote', requireRight(node.auth, 'admin', { every: true }), async (c) => {
        const body = (await readJsonBody(c, 4096).catch(() => ({}))) as { timeoutMs?: unknown };
        const timeoutMs = typeof body.timeoutMs === 'number' && body.timeoutMs > 0 && body.timeoutMs <= 60_000 ? body.timeoutMs : 10_000;
        return jsonResponse({ node: node.node, ...(await node.promoteHere(c.req.header('authorization'), timeoutMs)) });
      });
      app.post('/v1/ha/step-down', requireRight(node.auth, 'admin', { every: true }), async (c) => {
        const body = (await readJsonBody(c, 4096)) as { to?: unknown; url?: unknown; timeoutMs?: unknown };
        if (typeof body.to !== 'string' || typeof body.url !== 'string' || !URL.canParse(body.url)) throw new EdgeliteError('BAD_REQUEST', 'step-down wants {"to": NODE, "url": URL}');
        const timeoutMs = typeof body.timeoutMs === 'number' && body.timeoutMs > 0 && body.timeoutMs <= 60_000 ? body.timeoutMs : 10_000;
        return jsonResponse({ node: node.node, ...(await node.stepDown({ node: body.to, url: body.url }, c.req.header('authorization'), timeoutMs)) });
      });
    },
    metrics: () => {
      const m = new MetricsText();
      m.gauge('edgelite_ha_holder', 'Whether this node holds the failover lease and may accept writes (README.md#high-availability).')(node.writable());
      m.gauge('edgelite_ha_epoch', 'The lease epoch this node holds or last saw.')(Math.max(node.epoch, node.currentHolder?.epoch ?? 0));
      const d = m.counter('edgelite_failover_discarded_transactions_total', 'Transactions an old primary had that were never replicated before a failover: set aside, never served again.');
      for (const [db, n] of node.discarded) d(n, { db });
      return m.toString();
    },
  };
}
