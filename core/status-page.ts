/**
 * The live status page every node serves at `GET /` (issue 6): plain HTML, CSS and JavaScript with
 * no build step and nothing loaded from elsewhere. The script polls `/status` and
 * `/status/history` every second and draws the node's role, tables, a lag chart and its events.
 *
 * Safety: every text from the node goes into the page through `textContent` or SVG text nodes,
 * never as markup (a table may be named `<img src=x onerror=…>`). The script and the style are
 * served as files of their own so the Content-Security-Policy can forbid every inline script and
 * style and every other origin (`default-src 'none'`, `script-src 'self'`, `connect-src 'self'`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpHandler } from './http-server.js';

/** The colour of the lag line (and nothing else in the chart): what a test of the chart looks for. */
export const STATUS_PAGE_LINE_COLOUR = '#1f77b4';

/** Whatever the page asks for: its own files and the node's JSON, nothing else. */
export const STATUS_PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>walship node</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/status.css">
<script src="/status.js" defer></script>
</head>
<body>
<header>
  <h1>walship <span id="node-id">…</span> <span id="role" class="badge">loading</span></h1>
  <p><span id="updated">not updated yet</span> <strong id="unreachable" hidden></strong>
  <strong id="page-error" hidden></strong></p>
</header>
<main>
<section>
  <h2>Node</h2>
  <dl id="facts">
    <div id="fact-row-epoch" hidden><dt>epoch</dt><dd id="fact-epoch"></dd></div>
    <div id="fact-row-accepting-writes" hidden><dt>accepting writes</dt><dd id="fact-accepting-writes"></dd></div>
    <div id="fact-row-ack-mode" hidden><dt>ack mode</dt><dd id="fact-ack-mode"></dd></div>
    <div id="fact-row-staleness" hidden><dt>staleness</dt><dd id="fact-staleness"></dd></div>
    <div id="fact-row-primary-silent" hidden><dt>primary announced</dt><dd id="fact-primary-silent"></dd></div>
    <div id="fact-row-primary-lease" hidden><dt>primary's lease</dt><dd id="fact-primary-lease"></dd></div>
    <div id="fact-row-cluster-id" hidden><dt>cluster id</dt><dd id="fact-cluster-id"></dd></div>
    <div id="fact-row-store" hidden><dt>store</dt><dd id="fact-store"></dd></div>
    <div id="fact-row-store-error" hidden class="bad"><dt>store error</dt><dd id="fact-store-error"></dd></div>
    <div id="fact-row-operation" hidden><dt>operation</dt><dd id="fact-operation"></dd></div>
    <div id="fact-row-following" hidden class="bad"><dt>following</dt><dd id="fact-following"></dd></div>
    <div id="fact-row-fenced-by" hidden class="bad"><dt>fenced by</dt><dd id="fact-fenced-by"></dd></div>
    <div id="fact-row-divergence" hidden class="bad"><dt>divergence</dt><dd id="fact-divergence"></dd></div>
  </dl>
</section>
<section>
  <h2>Tables</h2>
  <table id="tables"><thead></thead><tbody></tbody></table>
  <p id="tables-note" hidden></p>
</section>
<section>
  <h2>Lag</h2>
  <svg id="lag-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 640 220" width="640" height="220"
    role="img" aria-label="lag over the last minutes"></svg>
  <p id="lag-summary"></p>
</section>
<section>
  <h2>Events</h2>
  <ol id="events"></ol>
  <p id="no-events">no events yet</p>
</section>
</main>
</body>
</html>
`;

export const STATUS_PAGE_CSS = `body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
.badge { display: inline-block; padding: .1em .6em; border-radius: .8em; font-size: .8em; color: #fff; background: #777; vertical-align: middle; }
.role-primary { background: #2e7d32; }
.role-replica { background: #6a1b9a; }
.role-switching { background: #ef6c00; }
#unreachable, #page-error { color: #fff; background: #c62828; padding: .1em .5em; }
body.unreachable main { opacity: .55; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; margin: 0; }
dl div { display: contents; }
dl div[hidden] { display: none; }
dt { color: #555; }
dd { margin: 0; overflow-wrap: anywhere; }
.bad dd, td.bad { color: #c62828; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #ddd; padding: .25em .8em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
td[data-col="lastError"], td[data-col="suspended"] { white-space: normal; text-align: left; }
#lag-chart { background: #fff; border: 1px solid #ddd; display: block; }
#events { padding-left: 1.5em; }
#events time { color: #555; margin-right: .5em; }
.kind { display: inline-block; min-width: 6em; font-weight: 600; }
`;

/** Plain ES2020 for the browser; kept free of template literals so it can live in this one. */
export const STATUS_PAGE_SCRIPT = `(function () {
  'use strict';
  var POLL_MS = 1000;
  var FETCH_TIMEOUT_MS = 5000;
  var LINE_COLOUR = '${STATUS_PAGE_LINE_COLOUR}';
  var SVG_NS = 'http://www.w3.org/2000/svg';
  var CHART = { width: 640, height: 220, left: 70, right: 16, top: 14, bottom: 34 };
  var ROLES = ['primary', 'replica', 'switching'];
  var COLUMNS = {
    primary: [
      ['name', 'table', text], ['committedTxn', 'committed', text], ['uploadedTxn', 'uploaded', text],
      ['pendingTxns', 'pending txns', text], ['pendingBytes', 'pending bytes', text],
      ['oldestPendingAgeMs', 'oldest pending', duration], ['lastUploadAgoMs', 'last upload', ago],
      ['lastError', 'error', text]
    ],
    replica: [
      ['name', 'table', text], ['appliedTxn', 'applied', text], ['txnsBehind', 'behind', text],
      ['epoch', 'epoch', text], ['sinceCaughtUpMs', 'caught up', ago],
      ['lastAppliedAgoMs', 'last applied', ago], ['suspended', 'suspended', suspension]
    ]
  };
  var unreachableSince = null;

  function byId(id) { return document.getElementById(id); }
  function text(value) { return value === null || value === undefined ? '' : String(value); }
  function duration(ms) {
    if (typeof ms !== 'number') return '';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
    return (ms / 60000).toFixed(1) + ' min';
  }
  function ago(ms) { return typeof ms === 'number' ? duration(ms) + ' ago' : ''; }
  function suspension(s) { return s && typeof s === 'object' ? text(s.code) + ': ' + text(s.message) : ''; }
  function progress(op) {
    var done = text(op.done) + (typeof op.total === 'number' ? ' of ' + op.total : '') + ' ' + text(op.unit);
    var percent = typeof op.total === 'number' && op.total > 0 ? ' (' + Math.floor((100 * op.done) / op.total) + '%)' : '';
    return done + percent + ', started ' + ago(op.startedAgoMs);
  }
  function clock(at) { return new Date(at).toLocaleTimeString(); }
  function element(tag, className, content) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (content !== undefined) e.textContent = content;
    return e;
  }
  function svg(tag, attributes, content) {
    var e = document.createElementNS(SVG_NS, tag);
    for (var name in attributes) e.setAttribute(name, String(attributes[name]));
    if (content !== undefined) e.textContent = content;
    return e;
  }

  function setFact(name, value) {
    byId('fact-' + name).textContent = value === null ? '' : value;
    byId('fact-row-' + name).hidden = value === null;
  }

  function renderStatus(s) {
    byId('node-id').textContent = text(s.nodeId);
    var role = byId('role');
    role.textContent = text(s.role);
    role.className = 'badge role-' + (ROLES.indexOf(s.role) >= 0 ? s.role : 'unknown');
    document.title = 'walship ' + text(s.nodeId) + ' (' + text(s.role) + ')';
    setFact('epoch', s.epoch === undefined ? null : text(s.epoch));
    setFact('accepting-writes', typeof s.acceptingWrites === 'boolean' ? (s.acceptingWrites ? 'yes' : 'no') : null);
    setFact('ack-mode', s.ackMode === undefined ? null : text(s.ackMode));
    setFact('staleness', s.role === 'replica' ? (s.stalenessMs === null ? 'unknown' : duration(s.stalenessMs)) : null);
    setFact('primary-silent', s.role === 'replica' && typeof s.primarySilentMs === 'number' ? 'its last upload ' + duration(s.primarySilentMs) + ' ago' : null);
    var lease = s.primaryLease && typeof s.primaryLease === 'object' ? s.primaryLease : null;
    setFact('primary-lease', lease ? (lease.unrenewedMs > lease.timeoutMs / 2 ? 'NOT RENEWED for ' + duration(lease.unrenewedMs) : 'renewed ' + duration(lease.unrenewedMs) + ' ago') + ' (failover after ' + duration(lease.timeoutMs) + ')' : null);
    setFact('cluster-id', s.clusterId === undefined ? null : text(s.clusterId));
    var store = s.store && typeof s.store === 'object' ? s.store : null;
    setFact('store', store ? text(store.description) : null);
    var storeError = store && store.lastError ? store.lastError : null;
    setFact('store-error', storeError ? text(storeError.message) + ' (' + ago(storeError.agoMs) + ')' : null);
    var op = s.operation && typeof s.operation === 'object' ? s.operation : null;
    setFact('operation', op ? text(op.name) + ': ' + text(op.phase) + ', ' + progress(op) : null);
    var following = s.following && typeof s.following === 'object' ? s.following : null;
    setFact('following', following ? 'stopped: ' + text(following.stopped) : null);
    setFact('fenced-by', s.fencedBy ? text(s.fencedBy) : null);
    var d = s.divergence && typeof s.divergence === 'object' ? s.divergence : null;
    var files = d && Array.isArray(d.files) ? d.files : [];
    setFact('divergence', d ? 'epoch ' + text(d.epoch) + ': ' + files.length + ' divergence file(s)' +
      (d.movedTo ? '; database moved to ' + text(d.movedTo) : '') : null);
    renderTables(s);
  }

  function renderTables(s) {
    var note = byId('tables-note');
    if (!Array.isArray(s.tables)) {
      note.textContent = 'the node is changing role: tables as last seen';
      note.hidden = false;
      return;
    }
    var columns = COLUMNS[s.role] || COLUMNS.replica;
    var head = element('tr');
    columns.forEach(function (c) { head.appendChild(element('th', '', c[1])); });
    var table = byId('tables');
    table.tHead.replaceChildren(head);
    var rows = s.tables.map(function (t) {
      var row = element('tr');
      columns.forEach(function (c) {
        var cell = element('td', '', c[2](t[c[0]]));
        cell.dataset.col = c[0];
        if ((c[0] === 'suspended' || c[0] === 'lastError') && t[c[0]]) cell.className = 'bad';
        row.appendChild(cell);
      });
      return row;
    });
    table.tBodies[0].replaceChildren.apply(table.tBodies[0], rows);
    note.textContent = rows.length === 0 ? 'no tables yet' : '';
    note.hidden = rows.length > 0;
  }

  function niceCeil(value) {
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * power >= value) return steps[i] * power;
    return 10 * power;
  }

  /** x spans the last historyMs, or since the first sample when the node has less history. */
  function renderChart(h) {
    var chart = byId('lag-chart');
    chart.replaceChildren();
    var samples = Array.isArray(h.samples) ? h.samples : [];
    var nowMs = typeof h.nowMs === 'number' ? h.nowMs : Date.now();
    var historyMs = typeof h.historyMs === 'number' ? h.historyMs : 600000;
    var firstMs = samples.length > 0 ? samples[0].at : nowMs;
    var startMs = Math.max(nowMs - historyMs, Math.min(firstMs, nowMs - 1000));
    var spanMs = nowMs - startMs;
    var lags = samples.map(function (s) { return s.lagMs; }).filter(function (v) { return typeof v === 'number'; });
    var maxLagMs = niceCeil(Math.max(10, Math.max.apply(null, lags.concat([0]))));
    var x0 = CHART.left, x1 = CHART.width - CHART.right, y0 = CHART.height - CHART.bottom, y1 = CHART.top;
    [0, 0.5, 1].forEach(function (f) {
      var y = y0 - f * (y0 - y1);
      chart.appendChild(svg('line', { x1: x0, x2: x1, y1: y, y2: y, stroke: f === 0 ? '#888' : '#e3e3e3' }));
      chart.appendChild(svg('text', { x: x0 - 6, y: y + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#555' },
        Math.round(f * maxLagMs) + ' ms'));
    });
    chart.appendChild(svg('text', { x: 12, y: (y0 + y1) / 2, 'font-size': 11, fill: '#555', 'text-anchor': 'middle',
      transform: 'rotate(-90 12 ' + (y0 + y1) / 2 + ')' }, 'lag (ms)'));
    chart.appendChild(svg('text', { x: x0, y: y0 + 18, 'font-size': 11, fill: '#555' }, '-' + duration(spanMs)));
    chart.appendChild(svg('text', { x: x1, y: y0 + 18, 'font-size': 11, fill: '#555', 'text-anchor': 'end' }, 'now'));
    if (lags.length === 0) {
      chart.appendChild(svg('text', { id: 'no-samples', x: (x0 + x1) / 2, y: (y0 + y1) / 2, 'text-anchor': 'middle',
        'font-size': 14, fill: '#555' }, samples.length === 0 ? 'no samples yet' : 'lag not known yet'));
      byId('lag-summary').textContent = '';
      return;
    }
    var segments = [[]];
    samples.forEach(function (s) {
      if (typeof s.lagMs !== 'number') { segments.push([]); return; }
      var x = x0 + Math.min(1, Math.max(0, (s.at - startMs) / spanMs)) * (x1 - x0);
      var y = y0 - (s.lagMs / maxLagMs) * (y0 - y1);
      segments[segments.length - 1].push(x.toFixed(1) + ' ' + y.toFixed(1));
    });
    segments.forEach(function (points) {
      if (points.length === 1) {
        var xy = points[0].split(' ');
        chart.appendChild(svg('circle', { class: 'lag-point', cx: xy[0], cy: xy[1], r: 2.5, fill: LINE_COLOUR }));
      } else if (points.length > 1) {
        chart.appendChild(svg('path', { class: 'lag-line', d: 'M' + points.join(' L'), fill: 'none',
          stroke: LINE_COLOUR, 'stroke-width': 2, 'stroke-linejoin': 'round' }));
      }
    });
    var last = samples[samples.length - 1];
    byId('lag-summary').textContent = samples.length + ' samples every ' + duration(h.intervalMs) +
      '; now ' + (typeof last.lagMs === 'number' ? duration(last.lagMs) : 'unknown') +
      ', max ' + duration(Math.max.apply(null, lags)) +
      (last.role === 'primary' ? '; ' + last.pendingTxns + ' txns pending upload' : '') +
      (last.role === 'replica' ? '; ' + last.txnsBehind + ' txns behind' : '');
  }

  function renderEvents(events) {
    var items = (Array.isArray(events) ? events : []).map(function (e) {
      var item = element('li', 'event event-' + text(e.kind));
      var time = element('time', '', clock(e.at));
      time.dateTime = new Date(e.at).toISOString();
      item.appendChild(time);
      item.appendChild(element('span', 'kind', text(e.kind)));
      item.appendChild(element('span', 'message', text(e.message)));
      return item;
    });
    var list = byId('events');
    list.replaceChildren.apply(list, items);
    byId('no-events').hidden = items.length > 0;
  }

  function setReachable(error) {
    var banner = byId('unreachable');
    if (error === null) {
      unreachableSince = null;
      banner.hidden = true;
      document.body.classList.remove('unreachable');
      return;
    }
    if (unreachableSince === null) unreachableSince = Date.now();
    banner.textContent = 'node unreachable since ' + clock(unreachableSince) + ' (' + text(error.message) +
      '); showing the last data';
    banner.hidden = false;
    document.body.classList.add('unreachable');
  }

  function getJson(path) {
    return fetch(path, { cache: 'no-store', signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) }).then(function (r) {
      if (!r.ok) throw new Error(path + ' answered HTTP ' + r.status);
      return r.json();
    });
  }

  function poll() {
    Promise.all([getJson('/status'), getJson('/status/history')]).then(function (answers) {
      setReachable(null);
      var problem = byId('page-error');
      try {
        renderStatus(answers[0]);
        renderChart(answers[1]);
        renderEvents(answers[1].events);
        problem.hidden = true;
      } catch (error) {
        problem.textContent = 'cannot show this status: ' + text(error && error.message);
        problem.hidden = false;
      }
      byId('updated').textContent = 'last updated ' + clock(Date.now());
    }, setReachable).finally(function () { setTimeout(poll, POLL_MS); });
  }

  poll();
})();
`;

/** The tab icon: served here, so the browser's request for one is not a 404 in its console. */
const FAVICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="#2e7d32"/></svg>';

interface Asset {
  contentType: string;
  body: Buffer;
}

const HTML: Asset = { contentType: 'text/html; charset=utf-8', body: Buffer.from(STATUS_PAGE_HTML) };
const ASSETS = new Map<string, Asset>([
  ['/', HTML],
  ['/index.html', HTML],
  ['/status.js', { contentType: 'text/javascript; charset=utf-8', body: Buffer.from(STATUS_PAGE_SCRIPT) }],
  ['/status.css', { contentType: 'text/css; charset=utf-8', body: Buffer.from(STATUS_PAGE_CSS) }],
  ['/favicon.svg', { contentType: 'image/svg+xml', body: Buffer.from(FAVICON_SVG) }],
]);

/**
 * `GET /`, `/index.html`, `/status.js`, `/status.css`, `/favicon.svg` (and HEAD): the status page's files, never
 * cached (a node's upgrade changes them), under STATUS_PAGE_CSP. Other requests fall through.
 * The page reads `/status` and `/status/history`, which the node serves.
 */
export function createStatusPageHandler(): HttpHandler {
  return async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const asset = ASSETS.get(req.url?.split('?')[0] ?? '');
    if (asset === undefined) return false;
    res.writeHead(200, {
      'content-type': asset.contentType,
      'content-length': asset.body.byteLength,
      'cache-control': 'no-store',
      'content-security-policy': STATUS_PAGE_CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
    return true;
  };
}
