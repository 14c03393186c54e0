/**
 * What a failover node (bin/ha.ts) adds to the app of whichever role it runs (README.md#high-availability):
 * `GET /v1/ha` (read right): this node's role, epoch and view of the lease; and metric lines:
 * `edgelite_ha_holder` (1 while this node holds the lease and may accept writes), `edgelite_ha_epoch`,
 * `edgelite_failover_discarded_transactions_total{db}` (writes an old primary had that were never
 * replicated before a failover, set aside at its demotion).
 */
import type { Hono } from 'hono';
import { z } from 'zod';
import { jsonResponse, readJsonBody, requireRight } from '../shared/http.ts';
import type { AppExtension } from '../shared/http.ts';
import { validateBody } from '../shared/openapi/validate.ts';
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

const TIMEOUT = z.unknown().optional().meta({ type: 'number', description: 'How long to wait, ms (1 to 60000; anything else: 10000).' });
const STEP_DOWN = 'step-down wants {"to": NODE, "url": URL}';

/** PromoteSchema is the body of POST /v1/ha/promote (optional, like its fields). */
const PromoteSchema = z.object({ timeoutMs: TIMEOUT });

/** StepDownSchema is the body of POST /v1/ha/step-down: the node to hand the lease to. */
const StepDownSchema = z.object(
  {
    to: z.string({ error: STEP_DOWN }).meta({ description: 'The node to hand the lease to.' }),
    url: z.string({ error: STEP_DOWN }).refine((u) => URL.canParse(u), { error: STEP_DOWN }).meta({ description: 'Its URL.' }),
    timeoutMs: TIMEOUT,
  },
  { error: STEP_DOWN },
);

function timeoutOf(v: unknown): number {
  return typeof v === 'number' && v > 0 && v <= 60_000 ? v : 10_000;
}

const HaStatusSchema = z.object({ node: z.string(), role: z.string(), holding: z.boolean(), epoch: z.int(), holder: z.object({ node: z.string(), url: z.string(), epoch: z.int() }).nullable() });
const HandoverSchema = z.object({ node: z.string() }).meta({ description: 'This node, and the outcome of the handover.' });

export function haExtension(node: FailoverNode): AppExtension {
  return {
    docs: {
      'GET /v1/ha': { summary: "This node's role, epoch and view of the failover lease (README.md#high-availability)", responses: { 200: { description: 'The lease as this node sees it', json: HaStatusSchema } } },
      'POST /v1/ha/promote': { summary: 'Take the lease here, by hand (`edgelite promote`)', body: { schema: PromoteSchema, required: false }, responses: { 200: { description: 'Promoted', json: HandoverSchema } } },
      'POST /v1/ha/step-down': { summary: 'Hand the lease to another node', body: { schema: StepDownSchema, required: true }, responses: { 200: { description: 'Handed over', json: HandoverSchema } } },
    },
    routes: (app: Hono) => {
      app.get('/v1/ha', requireRight(node.auth, 'read', { every: true }), () => jsonResponse(haStatus(node)));
      // `edgelite promote` (README.md#high-availability): take the lease here, by hand.
      app.post('/v1/ha/promote', requireRight(node.auth, 'admin', { every: true }), async (c) => {
        // The body is optional: none, or one that does not parse, means the defaults.
        const parsed = PromoteSchema.safeParse(await readJsonBody(c, 4096).catch(() => ({})));
        const timeoutMs = timeoutOf(parsed.success ? parsed.data.timeoutMs : undefined);
        return jsonResponse({ node: node.node, ...(await node.promoteHere(c.req.header('authorization'), timeoutMs)) });
      });
      app.post('/v1/ha/step-down', requireRight(node.auth, 'admin', { every: true }), async (c) => {
        const body = validateBody(StepDownSchema, await readJsonBody(c, 4096), '');
        const timeoutMs = timeoutOf(body.timeoutMs);
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
