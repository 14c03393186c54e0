/**
 * mountStatusUi adds the status page (README.md#status-page) to a primary's or replica's app:
 * - `GET /ui`: the HTML shell, public, with no data in it;
 * - `GET /ui/assets/{status.js, status.css, uPlot.iife.min.js, uPlot.min.css}`: served from this
 *   server (uPlot is read from the installed package once, shared/node/ui-assets.ts; no CDN);
 * - `GET /v1/ui/samples` (read right): the lag history of shared/ui/samples.ts and what this node knows
 *   of its place in the topology. A tenant-scoped token sees its own databases' series only.
 * Worker-safe: the assets are handed in as strings.
 */
import type { Hono } from 'hono';
import { type AuthConfig } from '../auth.ts';
import { EdgeliteError } from '../errors.ts';
import { jsonResponse, requestGrant, requireRight } from '../http.ts';
import { renderShell, STATUS_CSS, UI_ASSET_PREFIX, UI_CSP, type UiRole } from './page.ts';
import type { LagSample, LagSampler } from './samples.ts';
import { STATUS_JS } from './script.ts';

/** UiAssets are uPlot's files, as text. */
export interface UiAssets {
  uplotJs: string;
  uplotCss: string;
}

/** StatusUi is what a server hands its app to serve the page: the sampler it stops on close, the assets. */
export interface StatusUi {
  sampler: LagSampler;
  assets: UiAssets;
}

export interface MountStatusUiOptions {
  auth: AuthConfig;
  role: UiRole;
  /** Every database's figures now (the sampler calls it once a tick). */
  sample: () => Iterable<LagSample>;
  /** What this node knows of the topology, for the page (no secrets: URLs without credentials). */
  node: () => Record<string, unknown>;
  /** Where a tick whose sampling failed is logged (the page keeps going with the next tick). */
  logger: (e: Record<string, unknown>) => void;
}

const SECURITY_HEADERS = {
  'content-security-policy': UI_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

export function mountStatusUi(app: Hono, ui: StatusUi, o: MountStatusUiOptions): void {
  const shell = renderShell(o.role);
  const files = new Map<string, { body: string; type: string }>([
    ['status.js', { body: STATUS_JS, type: 'text/javascript; charset=utf-8' }],
    ['status.css', { body: STATUS_CSS, type: 'text/css; charset=utf-8' }],
    ['uPlot.iife.min.js', { body: ui.assets.uplotJs, type: 'text/javascript; charset=utf-8' }],
    ['uPlot.min.css', { body: ui.assets.uplotCss, type: 'text/css; charset=utf-8' }],
  ]);
  app.get('/ui', () => new Response(shell, { headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...SECURITY_HEADERS } }));
  app.get('/ui/', (c) => c.redirect('/ui', 308));
  app.get(`${UI_ASSET_PREFIX}:file`, (c) => {
    const f = files.get(c.req.param('file'));
    if (!f) throw new EdgeliteError('NOT_FOUND', `no status page asset ${JSON.stringify(c.req.param('file').slice(0, 80))}`);
    return new Response(f.body, { headers: { 'content-type': f.type, 'cache-control': 'public, max-age=300', ...SECURITY_HEADERS } });
  });
  app.get('/v1/ui/samples', requireRight(o.auth, 'read'), (c) => {
    const grant = requestGrant(o.auth, c, 'read');
    const since = parseSince(c.req.query('since'));
    return jsonResponse({ node: { role: o.role, ...o.node() }, ...ui.sampler.body(grant.allows, grant.databases === null, since) });
  });
  ui.sampler.start(o.sample, (err) => o.logger({ msg: 'status page sample failed', error: String(err), stack: (err as Error)?.stack }));
}

/** parseSince reads `?since=MS` (the last tick time the page holds): a non-negative integer, or absent. */
export function parseSince(v: string | undefined): number | null {
  if (v === undefined) return null;
  if (!/^\d{1,16}$/.test(v) || !Number.isSafeInteger(Number(v))) throw new EdgeliteError('BAD_REQUEST', `since must be a time in ms since the epoch (digits), got ${JSON.stringify(v.slice(0, 40))}`);
  return Number(v);
}

/** lagSampleOf reads a GET /v1/db/{name} answer as a sample, so the chart shows the very numbers the API does. */
export function lagSampleOf(d: Record<string, unknown>): LagSample {
  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const backup = d.backup as { lagMs?: unknown } | undefined;
  return { name: String(d.name), txid: num(d.txid), lagMs: num(d.lagMs), lagTxids: num(d.lagTxids), backupLagMs: backup ? num(backup.lagMs) : null };
}

/** publicUrl is `url` without user name or password, for showing on the page. */
export function publicUrl(url: string | null | undefined): string | null {
  if (!url) return null;
  if (!URL.canParse(url)) return null;
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return u.toString().replace(/\/$/, '');
}
