/**
 * The status page's HTML shell and style sheet (README.md#status-page). The shell is public and carries
 * no data: the script (shared/ui/script.ts) fetches everything with the token the operator typed in, so
 * every figure passes the read right. Every string put into the HTML goes through escapeHtml; the
 * script builds its DOM with textContent only.
 */

/** UI_ASSET_PREFIX: where the page's script, style sheet and uPlot are served from (no CDN). */
export const UI_ASSET_PREFIX = '/ui/assets/';

/**
 * UI_CSP is the page's Content-Security-Policy: scripts and styles only from this server, fetches only
 * to it, no frames, no forms posting elsewhere. uPlot sets element styles through the CSSOM, which
 * `style-src 'self'` allows.
 */
export const UI_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** escapeHtml makes `s` safe as HTML text and as a double- or single-quoted attribute value. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"'`]/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

export type UiRole = 'primary' | 'replica';

/** renderShell is GET /ui: the page's frame, filled in by the script. */
export function renderShell(role: UiRole): string {
  const r = escapeHtml(role);
  const a = (file: string) => escapeHtml(UI_ASSET_PREFIX + file);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>edgelite ${r} status</title>
<link rel="stylesheet" href="${a('uPlot.min.css')}">
<link rel="stylesheet" href="${a('status.css')}">
<script src="${a('uPlot.iife.min.js')}" defer></script>
<script src="${a('status.js')}" defer></script>
</head>
<body data-role="${r}">
<header>
<h1>edgelite <span class="role">${r}</span></h1>
<form id="token-form" autocomplete="off">
<label for="token">Token (read right)</label>
<input id="token" name="token" type="password" spellcheck="false" placeholder="kept in this browser only">
<button type="submit">Use</button>
<button type="button" id="token-forget">Forget</button>
</form>
<p id="status" role="status" aria-live="polite">Loading…</p>
</header>
<main>
<section id="topology-section"><h2>Topology</h2><div id="topology"></div></section>
<section id="databases-section"><h2>Databases</h2><div class="scroll"><table id="databases"><thead></thead><tbody></tbody></table></div></section>
<section id="chart-section"><h2>Lag, last minutes</h2><p class="note" id="chart-note"></p><div id="chart" data-points="0" data-series="0"></div></section>
</main>
</body>
</html>
`;
}

/** STATUS_CSS: one column under 600 px, two panels side by side above it. */
export const STATUS_CSS = `
:root { color-scheme: light dark; --fg: #1d2330; --muted: #5b6475; --bg: #f7f8fa; --panel: #fff; --line: #d9dde5; --bad: #b3261e; --ok: #1f7a3a; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ef; --muted: #9aa3b5; --bg: #14171c; --panel: #1c2027; --line: #303643; --bad: #ff8a80; --ok: #7bd88f; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header, main { max-width: 1200px; margin: 0 auto; padding: 12px 16px; }
h1 { font-size: 20px; margin: 4px 0 8px; }
h1 .role { font-weight: 400; color: var(--muted); }
h2 { font-size: 16px; margin: 0 0 8px; }
form { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
form label { color: var(--muted); }
form input { flex: 1 1 220px; min-width: 0; padding: 6px 8px; font: inherit; border: 1px solid var(--line); border-radius: 4px; background: var(--panel); color: var(--fg); }
button { padding: 6px 12px; font: inherit; border: 1px solid var(--line); border-radius: 4px; background: var(--panel); color: var(--fg); cursor: pointer; }
#status { color: var(--muted); margin: 8px 0 0; }
#status.error { color: var(--bad); }
main { display: grid; grid-template-columns: minmax(280px, 1fr) 2fr; gap: 16px; }
section { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 12px; min-width: 0; }
#topology-section { grid-column: 1; grid-row: 1; }
#chart-section { grid-column: 2; grid-row: 1; }
#databases-section { grid-column: 1 / -1; }
h3 { font-size: 14px; margin: 12px 0 6px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
td.num, th.num { text-align: right; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0 0 8px; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: break-word; min-width: 0; }
.lagging { color: var(--bad); }
.fine { color: var(--ok); }
.note { color: var(--muted); margin: 0 0 6px; font-size: 13px; }
#chart { min-height: 240px; }
@media (max-width: 600px) {
  main { grid-template-columns: 1fr; padding: 8px; }
  #topology-section, #chart-section, #databases-section { grid-column: 1; grid-row: auto; }
  header { padding: 8px; }
  th, td { padding: 4px; }
  #databases [data-field="checksum"], #databases [data-field="generation"] { display: none; }
}
`;
