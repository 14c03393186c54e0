/**
 * STATUS_JS is the status page's script (README.md#status-page), served at /ui/assets/status.js. It asks
 * this server, with the token kept in localStorage and sent as `Authorization: Bearer`, for
 * GET /v1/ui/samples (the chart's history, then only newer ticks each second), GET /v1/db (positions
 * and lag, the same answer a client gets), and for the topology GET /v1/replicas and GET /v1/ha where
 * they exist. The token never goes into a URL. DOM nodes are built with textContent only, so no string
 * from the server is ever parsed as HTML. `#chart[data-points]` is the tick count uPlot last drew, for
 * the browser test (test/e2e/status-page.test.ts).
 *
 * Plain browser JavaScript kept as a string (no bundler): no backquotes or dollar-brace in it.
 */
export const STATUS_JS = String.raw`(function () {
  'use strict';
  var KEY = 'edgelite-ui-token';
  var MAX_ROWS = 500;
  var PALETTE = ['#2f6fdf', '#d9534f', '#2e9e5b', '#c77c02', '#8e44ad', '#16a2b8', '#b5446e', '#6b7a8f', '#7a9e16', '#e0672a'];
  var FIELDS = ['lagMs', 'lagTxids', 'txid', 'backupLagMs'];
  var role = document.body.getAttribute('data-role');
  var memoryToken = '';
  var gen = 0;
  var tick = 0;
  var timer = null;
  var node = {};
  var hist = null;
  var plot = null;
  var plotKey = '';
  var haAbsent = false;

  function byId(id) { return document.getElementById(id); }
  function readToken() {
    try { return localStorage.getItem(KEY) || memoryToken; } catch (e) { return memoryToken; }
  }
  function writeToken(t) {
    memoryToken = t;
    try { if (t) localStorage.setItem(KEY, t); else localStorage.removeItem(KEY); } catch (e) { /* storage refused: kept in memory for this tab */ }
  }
  function text(v) {
    if (v === null || v === undefined) return '\u2013';
    return typeof v === 'object' ? JSON.stringify(v) : String(v);
  }
  function el(tag, attrs, children) {
    var n = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { if (attrs[k] !== null && attrs[k] !== undefined) n.setAttribute(k, String(attrs[k])); });
    (children || []).forEach(function (c) { n.append(c instanceof Node ? c : document.createTextNode(text(c))); });
    return n;
  }
  function note(s) { return el('p', { class: 'note' }, [s]); }
  function dl(pairs) {
    var d = el('dl');
    pairs.forEach(function (p) { d.append(el('dt', null, [p[0]]), el('dd', null, [p[1]])); });
    return d;
  }
  function table(head, rows) {
    return el('div', { class: 'scroll' }, [el('table', null, [
      el('thead', null, [el('tr', null, head.map(function (h) { return el('th', null, [h]); }))]),
      el('tbody', null, rows.map(function (r) { return el('tr', null, r.map(function (v) { return el('td', null, [v]); })); })),
    ])]);
  }
  function setStatus(s, bad) {
    var p = byId('status');
    p.textContent = s;
    p.className = bad ? 'error' : '';
  }
  function failure(r) {
    var e = r.body && r.body.error;
    return r.status + ' ' + (e ? e.code + ': ' + e.message : 'answer without an error body');
  }

  async function get(path) {
    var headers = { accept: 'application/json' };
    var t = readToken();
    if (t) headers.authorization = 'Bearer ' + t;
    var res = await fetch(path, { headers: headers, cache: 'no-store', credentials: 'omit' });
    var body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    return { status: res.status, body: body };
  }

  function emptyHistory() { return { t: [], series: {}, all: null, capacity: 600, top: 8 }; }
  function nulls(n) { var a = new Array(n); for (var i = 0; i < n; i++) a[i] = null; return a; }

  /** merge appends a /v1/ui/samples answer (ticks after the last one held) and trims to the capacity. */
  function merge(b) {
    hist.capacity = b.capacity;
    hist.top = b.top;
    var before = hist.t.length;
    var added = b.t.length;
    if (added === 0) return;
    hist.t = hist.t.concat(b.t);
    Object.keys(b.series).forEach(function (name) {
      if (hist.series[name]) return;
      var s = {};
      FIELDS.forEach(function (f) { s[f] = nulls(before); });
      hist.series[name] = s;
    });
    Object.keys(hist.series).forEach(function (name) {
      var fresh = b.series[name];
      FIELDS.forEach(function (f) { hist.series[name][f] = hist.series[name][f].concat(fresh ? fresh[f] : nulls(added)); });
    });
    if (b.all) {
      var all = hist.all || { databases: nulls(before), lagging: nulls(before), maxLagMs: nulls(before), maxBackupLagMs: nulls(before) };
      Object.keys(all).forEach(function (f) { all[f] = all[f].concat(b.all[f]); });
      hist.all = all;
    }
    var extra = hist.t.length - hist.capacity;
    if (extra > 0) {
      hist.t = hist.t.slice(extra);
      Object.keys(hist.series).forEach(function (name) {
        var s = hist.series[name];
        FIELDS.forEach(function (f) { s[f] = s[f].slice(extra); });
        if (s.txid.every(function (v) { return v === null; })) delete hist.series[name];
      });
      if (hist.all) Object.keys(hist.all).forEach(function (f) { hist.all[f] = hist.all[f].slice(extra); });
    }
  }

  function duration(v) {
    if (v === null || v === undefined) return '\u2013';
    return v >= 1000 ? (Math.round(v / 100) / 10) + ' s' : Math.round(v) + ' ms';
  }
  function anyValue(a) { return a.some(function (v) { return v !== null; }); }

  /** chartSeries: each kept database's lag, its backup lag where a backup runs, and the largest over all. */
  function chartSeries() {
    var out = [];
    Object.keys(hist.series).sort().forEach(function (name) {
      var s = hist.series[name];
      out.push({ label: name, values: s.lagMs });
      if (anyValue(s.backupLagMs)) out.push({ label: name + ' backup', values: s.backupLagMs, dash: [6, 4] });
    });
    var last = hist.all ? hist.all.databases[hist.all.databases.length - 1] : null;
    if (hist.all && last !== null && last > Object.keys(hist.series).length) {
      out.push({ label: 'largest of all ' + last, values: hist.all.maxLagMs, dash: [2, 3] });
      if (anyValue(hist.all.maxBackupLagMs)) out.push({ label: 'largest backup lag', values: hist.all.maxBackupLagMs, dash: [2, 3] });
    }
    return out;
  }

  function drawChart() {
    var box = byId('chart');
    var series = chartSeries();
    var data = [hist.t.map(function (t) { return t / 1000; })].concat(series.map(function (s) { return s.values; }));
    var key = series.map(function (s) { return s.label; }).join('\n');
    var total = hist.all ? hist.all.databases[hist.all.databases.length - 1] : null;
    byId('chart-note').textContent = 'One sample a second for ' + Math.round(hist.capacity / 60) + ' minutes; the ' + hist.top +
      ' databases with the worst lag at each tick have their own line' + (total !== null && total !== undefined ? ' (of ' + total + ')' : '') + '. Gaps: lag not known yet.';
    if (typeof uPlot !== 'function') { setStatus('uPlot did not load (' + '/ui/assets/uPlot.iife.min.js)', true); return; }
    var width = Math.max(260, box.clientWidth);
    if (plot && key === plotKey) {
      plot.setData(data);
      return;
    }
    if (plot) plot.destroy();
    plotKey = key;
    var fg = getComputedStyle(document.body).color;
    var grid = { stroke: 'rgba(128,128,128,0.2)' };
    plot = new uPlot({
      width: width,
      height: 240,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(10, max * 1.1)]; } } },
      series: [{}].concat(series.map(function (s, i) {
        return { label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2, dash: s.dash, value: function (u, v) { return duration(v); } };
      })),
      axes: [{ stroke: fg, grid: grid }, { stroke: fg, grid: grid, size: 64, values: function (u, vals) { return vals.map(duration); } }],
      hooks: { draw: [function (u) { box.setAttribute('data-points', String(u.data[0].length)); box.setAttribute('data-series', String(u.series.length - 1)); }] },
    }, data, box);
  }

  function value(d, key) {
    if (key === 'backupTxid') return d.backup ? d.backup.uploadedTxid : null;
    if (key === 'backupLagMs') return d.backup ? d.backup.lagMs : null;
    if (key === 'state') return d.ready ? (d.needsSnapshot ? 'needs snapshot' : 'ready') : 'bootstrapping';
    return d[key];
  }

  function renderDatabases(list) {
    var hasBackup = list.some(function (d) { return !!d.backup; });
    var cols = role === 'primary'
      ? [['name', 'database'], ['generation', 'generation', 1], ['txid', 'txid', 1], ['checksum', 'checksum'], ['lagMs', 'lag ms', 1], ['lagTxids', 'lag txids', 1], ['backupTxid', 'backup txid', 1], ['backupLagMs', 'backup lag ms', 1]]
      : [['name', 'database'], ['generation', 'generation', 1], ['txid', 'txid', 1], ['primaryTxid', 'primary txid', 1], ['checksum', 'checksum'], ['lagMs', 'lag ms', 1], ['lagTxids', 'lag txids', 1], ['state', 'state']];
    cols = cols.filter(function (c) { return hasBackup || c[0].indexOf('backup') !== 0; });
    var shown = list.slice().sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; }).slice(0, MAX_ROWS);
    var t = byId('databases');
    t.tHead.replaceChildren(el('tr', null, cols.map(function (c) { return el('th', { 'data-field': c[0], class: c[2] ? 'num' : null }, [c[1]]); })));
    t.tBodies[0].replaceChildren.apply(t.tBodies[0], shown.map(function (d) {
      return el('tr', { 'data-db': d.name }, cols.map(function (c) {
        var v = value(d, c[0]);
        var cls = c[2] ? 'num' : '';
        if (c[0] === 'lagMs' || c[0] === 'backupLagMs') cls += v === null || v > 0 ? ' lagging' : ' fine';
        return el('td', { 'data-field': c[0], class: cls.trim() || null }, [v]);
      }));
    }));
    if (list.length > shown.length) t.tBodies[0].append(el('tr', null, [el('td', { colspan: cols.length, class: 'note' }, ['showing ' + shown.length + ' of ' + list.length + ' databases (by name)'])]));
    if (list.length === 0) t.tBodies[0].append(el('tr', null, [el('td', { colspan: cols.length, class: 'note' }, ['no database this token may see'])]));
    t.setAttribute('data-updated', String(Date.now()));
  }

  async function renderTopology() {
    var parts = [];
    if (role === 'primary') {
      parts.push(dl([['primary', location.origin + ' (this node)'], ['streams open', node.streams], ['backup', node.backup ? 'continuous (--backup)' : 'off']]));
      var reps = await get('/v1/replicas');
      if (reps.status === 200) {
        var nodes = reps.body.nodes || [];
        parts.push(el('h3', null, ['Replicas reporting their position (' + nodes.length + ')']));
        if (nodes.length === 0) parts.push(note('None: candidates (--candidate) report what they applied; other replicas only show as open streams.'));
        else parts.push(table(['node', 'url', 'alive', 'sync member', 'last report (ms ago)'], nodes.map(function (n) { return [n.node, n.url, n.alive ? 'yes' : 'no', n.member ? 'yes' : 'no', n.ageMs]; })));
      } else if (reps.status !== 404) parts.push(note('Replicas: ' + failure(reps)));
    } else {
      var pairs = [['replica', location.origin + ' (this node)'], ['primary', node.primary || 'none (fed from a bucket only)'], ['stream', node.stream], ['last contact', node.lastContactMs === null || node.lastContactMs === undefined ? 'never' : node.lastContactMs + ' ms ago']];
      if (node.source) pairs.push(['bucket', node.source]);
      if (node.epoch !== undefined) pairs.push(['lease epoch', node.epoch]);
      parts.push(dl(pairs));
    }
    // GET /v1/ha exists on a failover node only (README.md#high-availability): after a 404, not asked again.
    var ha = haAbsent ? { status: 404, body: null } : await get('/v1/ha');
    if (ha.status === 404) haAbsent = true;
    if (ha.status === 200) {
      var h = ha.body.holder;
      parts.push(el('h3', null, ['Failover lease']));
      parts.push(dl([['this node', ha.body.node + ' (' + ha.body.role + ')'], ['holder', h ? h.node + ' at ' + h.url + ', epoch ' + h.epoch : 'nobody'], ['holding it here', ha.body.holding ? 'yes' : 'no'], ['lease', ha.body.lease]]));
    } else if (ha.status === 404) parts.push(note('No failover lease on this node.'));
    else parts.push(note('Lease: ' + failure(ha)));
    var box = byId('topology');
    box.replaceChildren.apply(box, parts);
  }

  function refused(r) {
    var hint = r.status === 401 || r.status === 403 ? ' (enter a token with the read right above)' : '';
    setStatus(failure(r) + hint, true);
  }

  async function poll(mine) {
    var ok = false;
    try {
      var last = hist.t.length ? hist.t[hist.t.length - 1] : null;
      var s = await get('/v1/ui/samples' + (last === null ? '' : '?since=' + last));
      if (mine !== gen) return;
      if (s.status !== 200) { refused(s); return; }
      node = s.body.node || {};
      merge(s.body);
      drawChart();
      if (tick % 2 === 0) {
        var dbs = await get('/v1/db');
        if (mine !== gen) return;
        if (dbs.status !== 200) { refused(dbs); return; }
        renderDatabases(dbs.body.databases || []);
        await renderTopology();
      }
      ok = true;
      setStatus('Updated ' + new Date().toLocaleTimeString(), false);
    } catch (e) {
      setStatus('Cannot reach this server: ' + (e && e.message ? e.message : e), true);
    } finally {
      if (mine === gen) {
        tick++;
        timer = setTimeout(function () { poll(mine); }, ok ? 1000 : 5000);
      }
    }
  }

  function restart() {
    gen++;
    if (timer !== null) clearTimeout(timer);
    timer = null;
    tick = 0;
    haAbsent = false;
    hist = emptyHistory();
    poll(gen);
  }

  byId('token-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var input = byId('token');
    writeToken(input.value.trim());
    input.value = '';
    input.placeholder = readToken() ? 'token kept in this browser' : 'kept in this browser only';
    restart();
  });
  byId('token-forget').addEventListener('click', function () {
    writeToken('');
    byId('token').placeholder = 'kept in this browser only';
    restart();
  });
  window.addEventListener('resize', function () {
    if (plot) plot.setSize({ width: Math.max(260, byId('chart').clientWidth), height: 240 });
  });
  if (readToken()) byId('token').placeholder = 'token kept in this browser';
  restart();
})();
`;
