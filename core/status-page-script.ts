/**
 * The status page's script (status-page.ts serves it as `/status.js`): plain ES2020 for the
 * browser, kept free of template literals so it can live in one. Every text goes in through
 * `textContent` or SVG text nodes.
 *
 * It never goes blank (issue 19): each of `/status`, `/status/history` and `/status/cluster` is
 * drawn when it answers and left as last drawn when it does not; while the node changes role
 * (`/status` says `switching`, or names no role) the page keeps the last role's facts and tables
 * (or those the node kept, `last`) and says since when it has been switching; when `/status` does
 * not answer it keeps everything and says since when the node has been unreachable.
 */

/** The colour of the overall lag line (and nothing else in the chart): what a test of the chart looks for. */
export const STATUS_PAGE_LINE_COLOUR = '#1f77b4';

/** The role badge and banner of a node changing role, and the shading of that time in the chart. */
export const STATUS_PAGE_SWITCHING_COLOUR = '#ef6c00';

/**
 * The per-table lag lines, in order (the laggiest table first). Each is far (more than 24 on some
 * channel: what the tests' pixel counts tell apart) from the overall line's colour, the markers'
 * and the switching colour.
 */
export const STATUS_PAGE_TABLE_COLOURS = ['#e377c2', '#2ca02c', '#d62728', '#9467bd', '#8c564b'] as const;

/** Chart markers by event kind; events of other kinds (`started`, `waiting`) get no marker. */
export const STATUS_PAGE_MARKER_COLOURS: Readonly<Record<string, string>> = {
  promoted: '#2e7d32',
  demoted: '#6a1b9a',
  fenced: '#212121',
  divergence: '#880e4f',
  suspended: '#f9a825',
  resumed: '#00796b',
  role: '#616161',
};

export const STATUS_PAGE_SCRIPT = `(function () {
  'use strict';
  var POLL_MS = 1000;
  var FETCH_TIMEOUT_MS = 5000;
  var LINE_COLOUR = '${STATUS_PAGE_LINE_COLOUR}';
  var TABLE_COLOURS = ${JSON.stringify(STATUS_PAGE_TABLE_COLOURS)};
  var MARKER_COLOURS = ${JSON.stringify(STATUS_PAGE_MARKER_COLOURS)};
  var SWITCHING_COLOUR = '${STATUS_PAGE_SWITCHING_COLOUR}';
  var SVG_NS = 'http://www.w3.org/2000/svg';
  /** Two panels on one time axis: every table (the node's own lag) above, the laggiest tables below. */
  var CHART = { width: 640, left: 70, right: 16, overall: { top: 14, bottom: 160 }, tables: { top: 184, bottom: 300 } };
  var ROLES = ['primary', 'replica', 'switching', 'router', 'unreachable'];
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
    ],
    cluster: [
      ['nodeId', 'node', text], ['url', 'url', text], ['role', 'role', text], ['epoch', 'epoch', text],
      ['lagMs', 'lag', duration], ['backlogTxns', 'backlog txns', text], ['lastSeenAgoMs', 'last seen', ago],
      ['error', 'problem', text]
    ]
  };
  /** What the page keeps between polls so that it never goes blank. */
  var kept = { nodeId: null, roleStatus: null, roleStatusAt: null, unreachableSince: null, switchingSince: null, router: false };

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
  function objectOr(value) { return value && typeof value === 'object' ? value : null; }
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
  function show(id, message) {
    var e = byId(id);
    e.textContent = message === null ? '' : message;
    e.hidden = message === null;
  }

  function setFact(name, value) {
    byId('fact-' + name).textContent = value === null ? '' : value;
    byId('fact-row-' + name).hidden = value === null;
  }

  function setBadge(role) {
    var badge = byId('role');
    badge.textContent = role;
    badge.className = 'badge role-' + (ROLES.indexOf(role) >= 0 ? role : 'unknown');
  }

  function setMode(router) {
    kept.router = router;
    byId('section-node').hidden = router;
    byId('section-router').hidden = !router;
    ['section-tables', 'section-lag', 'section-events'].forEach(function (id) { byId(id).hidden = router; });
  }

  /** A node's /status: its role's, or (switching, or no role named) the last role's data kept. */
  function renderNode(s) {
    setMode(false);
    var switching = typeof s.role !== 'string' || s.role === 'switching';
    var last = objectOr(s.last);
    if (typeof s.nodeId === 'string') kept.nodeId = s.nodeId;
    else if (switching && last && typeof last.nodeId === 'string' && kept.nodeId === null) kept.nodeId = last.nodeId;
    byId('node-id').textContent = text(kept.nodeId);
    if (!switching) {
      kept.switchingSince = null;
      kept.roleStatus = s;
      kept.roleStatusAt = Date.now();
      show('switching', null);
      setBadge(s.role);
      document.title = 'walship ' + text(kept.nodeId) + ' (' + s.role + ')';
      renderFacts(s, s);
      renderTables(s, null);
      return;
    }
    if (kept.switchingSince === null) kept.switchingSince = Date.now();
    if (kept.roleStatus === null && last) { kept.roleStatus = last; kept.roleStatusAt = typeof last.at === 'number' ? last.at : Date.now(); }
    setBadge('switching');
    document.title = 'walship ' + text(kept.nodeId) + ' (switching role)';
    var change = objectOr(s.switching);
    var what = change ? 'switching role (' + text(change.from) + ' to ' + text(change.to) + ')' : 'starting, no role yet';
    var since = change && typeof change.forMs === 'number' ? Date.now() - change.forMs : kept.switchingSince;
    show('switching', what + ' since ' + clock(since) +
      (kept.roleStatus ? '; showing the data of ' + clock(kept.roleStatusAt) : '; no data from a role yet'));
    // Facts of the last role, but what is happening now (operation, waiting) from this answer.
    renderFacts(kept.roleStatus || {}, s);
    setFact('accepting-writes', 'no: changing role');
    renderTables(kept.roleStatus, kept.roleStatus ? 'the node is changing role: tables as last seen' :
      'the node is changing role: no tables seen yet');
  }

  /** Facts of the role's status \`r\`; the operation and waiting of the current answer \`now\`. */
  function renderFacts(r, now) {
    setFact('epoch', r.epoch === undefined ? null : text(r.epoch));
    setFact('accepting-writes', typeof r.acceptingWrites === 'boolean' ? (r.acceptingWrites ? 'yes' : 'no') : null);
    setFact('ack-mode', r.ackMode === undefined ? null : text(r.ackMode));
    setFact('staleness', r.role === 'replica' ? (typeof r.stalenessMs === 'number' ? duration(r.stalenessMs) : 'unknown') : null);
    setFact('primary-silent', r.role === 'replica' && typeof r.primarySilentMs === 'number' ? 'its last upload ' + duration(r.primarySilentMs) + ' ago' : null);
    var lease = objectOr(r.primaryLease);
    setFact('primary-lease', lease ? (lease.unrenewedMs > lease.timeoutMs / 2 ? 'NOT RENEWED for ' + duration(lease.unrenewedMs) : 'renewed ' + duration(lease.unrenewedMs) + ' ago') + ' (failover after ' + duration(lease.timeoutMs) + ')' : null);
    setFact('cluster-id', r.clusterId === undefined ? null : text(r.clusterId));
    var store = objectOr(r.store);
    setFact('store', store ? text(store.description) : null);
    var storeError = store && store.lastError ? store.lastError : null;
    setFact('store-error', storeError ? text(storeError.message) + ' (' + ago(storeError.agoMs) + ')' : null);
    var op = objectOr(now.operation);
    setFact('operation', op ? text(op.name) + ': ' + text(op.phase) + ', ' + progress(op) : null);
    var waiting = objectOr(now.waiting);
    setFact('waiting', waiting ? text(waiting.for) + (waiting.hint ? '; ' + text(waiting.hint) : '') : null);
    var following = objectOr(r.following);
    setFact('following', following ? 'stopped: ' + text(following.stopped) : null);
    setFact('fenced-by', r.fencedBy ? text(r.fencedBy) : null);
    var d = objectOr(now.divergence) || objectOr(r.divergence);
    var files = d && Array.isArray(d.files) ? d.files : [];
    setFact('divergence', d ? 'epoch ' + text(d.epoch) + ': ' + files.length + ' divergence file(s)' +
      (d.movedTo ? '; database moved to ' + text(d.movedTo) : '') : null);
  }

  /** The role's tables; \`keptNote\` says they are the last seen (switching), null when current. */
  function renderTables(s, keptNote) {
    var note = byId('tables-note');
    if (!s || !Array.isArray(s.tables)) {
      note.textContent = keptNote === null ? 'no tables in this answer' : keptNote;
      note.hidden = false;
      return;
    }
    var rows = rowsOf(s.tables, COLUMNS[s.role] || COLUMNS.replica, byId('tables'), function (t, c) {
      return (c === 'suspended' || c === 'lastError') && t[c] ? 'bad' : '';
    });
    note.textContent = keptNote !== null ? keptNote : rows === 0 ? 'no tables yet' : '';
    note.hidden = keptNote === null && rows > 0;
  }

  /** Fills a table from \`items\` by \`columns\`; returns the number of rows. */
  function rowsOf(items, columns, table, cellClass) {
    var head = element('tr');
    columns.forEach(function (c) { head.appendChild(element('th', '', c[1])); });
    table.tHead.replaceChildren(head);
    var rows = items.map(function (item) {
      var row = element('tr');
      columns.forEach(function (c) {
        var cell = element('td', cellClass(item, c[0]), c[2](item[c[0]]));
        cell.dataset.col = c[0];
        row.appendChild(cell);
      });
      return row;
    });
    table.tBodies[0].replaceChildren.apply(table.tBodies[0], rows);
    return rows.length;
  }

  function renderRouter(s) {
    setMode(true);
    show('switching', null);
    kept.nodeId = 'router';
    byId('node-id').textContent = 'router';
    setBadge('router');
    document.title = 'walship router';
    var primary = objectOr(s.primary) || {};
    byId('router-writes-to').textContent = primary.url ? text(primary.nodeId) + ' (' + text(primary.url) + ')' : 'nobody now';
    byId('router-why').textContent = text(primary.why);
    byId('router-read-preference').textContent = text(s.readPreference);
    byId('router-nodes').textContent = text(s.reachable) + ' of ' + text(s.nodes) + ' reachable, from ' + text(s.nodesFrom) +
      ', refreshed ' + ago(s.refreshedAgoMs);
    byId('router-version').textContent = text(s.version);
    byId('router-store-error').textContent = text(s.storeError);
    byId('router-row-store-error').hidden = !s.storeError;
  }

  function renderCluster(c) {
    var nodes = Array.isArray(c.nodes) ? c.nodes : [];
    var items = nodes.map(function (n) {
      var epoch = n.epoch !== null && n.epoch !== undefined ? text(n.epoch) : n.appliedEpoch ? text(n.appliedEpoch) + ' (applied)' : '';
      return {
        nodeId: text(n.nodeId || '?') + (n.self ? ' (this node)' : ''), url: n.url, role: n.role, epoch: epoch,
        lagMs: n.lagMs, backlogTxns: n.backlogTxns, lastSeenAgoMs: n.lastSeenAgoMs, error: n.error
      };
    });
    var table = byId('cluster');
    rowsOf(items, COLUMNS.cluster, table, function (item, c) { return c === 'error' && item.error ? 'bad' : ''; });
    nodes.forEach(function (n, i) {
      var row = table.tBodies[0].rows[i];
      row.dataset.node = text(n.nodeId);
      row.dataset.role = text(n.role);
      if (n.self) row.className = 'self';
    });
    byId('cluster-note').textContent = nodes.length + ' node(s) from ' + text(c.from) +
      (typeof c.refreshedAgoMs === 'number' ? ', refreshed ' + ago(c.refreshedAgoMs) : ', not refreshed yet') +
      (c.storeError ? '; store error: ' + text(c.storeError) : '') + (c.note ? '; ' + text(c.note) : '');
  }

  function niceCeil(value) {
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * power >= value) return steps[i] * power;
    return 10 * power;
  }
  function numbers(values) { return values.filter(function (v) { return typeof v === 'number'; }); }

  /** Events drawn as markers: a band from start to end when the event has a duration (or is ongoing). */
  function markersOf(events, nowMs) {
    var list = Array.isArray(events) ? events : [];
    return list.filter(function (e) { return MARKER_COLOURS[e.kind] && typeof e.at === 'number'; }).map(function (e) {
      var hasDuration = typeof e.durationMs === 'number';
      // A suspension with no resumption after it (events are newest first) is still on.
      var ongoing = e.kind === 'suspended' && typeof e.table === 'string' && !list.some(function (r) {
        return r.kind === 'resumed' && r.table === e.table && r.at >= e.at;
      });
      return { kind: e.kind, atMs: e.at, startMs: hasDuration ? e.at - e.durationMs : e.at,
        endMs: ongoing ? nowMs : e.at, durationMs: hasDuration ? e.durationMs : ongoing ? nowMs - e.at : null,
        ongoing: ongoing, label: text(e.kind) + (hasDuration ? ' ' + duration(e.durationMs) : ongoing ? ' (ongoing)' : '') };
    });
  }

  /** x spans the last historyMs, or since the first sample or marker when the node has less history. */
  function renderChart(h) {
    var chart = byId('lag-chart');
    chart.replaceChildren();
    var samples = Array.isArray(h.samples) ? h.samples : [];
    var lines = (Array.isArray(h.tableLines) ? h.tableLines : []).slice(0, TABLE_COLOURS.length);
    var nowMs = typeof h.nowMs === 'number' ? h.nowMs : Date.now();
    var historyMs = typeof h.historyMs === 'number' ? h.historyMs : 600000;
    var markers = markersOf(h.events, nowMs).filter(function (m) { return m.endMs >= nowMs - historyMs; });
    var firstMs = Math.min.apply(null, [samples.length > 0 ? samples[0].at : nowMs].concat(markers.map(function (m) { return m.startMs; })));
    var startMs = Math.max(nowMs - historyMs, Math.min(firstMs, nowMs - 1000));
    var spanMs = nowMs - startMs;
    var x0 = CHART.left, x1 = CHART.width - CHART.right;
    function xOf(atMs) { return x0 + Math.min(1, Math.max(0, (atMs - startMs) / spanMs)) * (x1 - x0); }
    var lags = numbers(samples.map(function (s) { return s.lagMs; }));
    var tableLags = [].concat.apply([], lines.map(function (l) { return numbers(Array.isArray(l.lagMs) ? l.lagMs : []); }));
    var overall = panel(chart, CHART.overall, lags, 'all tables');
    var tables = panel(chart, CHART.tables, tableLags, 'laggiest tables');
    var bottom = CHART.tables.bottom;
    chart.appendChild(svg('text', { x: x0, y: bottom + 18, 'font-size': 11, fill: '#555' }, '-' + duration(spanMs)));
    chart.appendChild(svg('text', { x: x1, y: bottom + 18, 'font-size': 11, fill: '#555', 'text-anchor': 'end' }, 'now'));
    var switching = switchingRuns(samples, nowMs);
    switching.forEach(function (run) {
      var xa = xOf(run[0]), top = CHART.overall.top;
      chart.appendChild(svg('rect', { class: 'switching-band', x: xa, y: top, width: Math.max(1, xOf(run[1]) - xa),
        height: bottom - top, fill: SWITCHING_COLOUR, 'fill-opacity': 0.12 }));
    });
    markers.forEach(function (m, i) {
      var colour = MARKER_COLOURS[m.kind];
      var g = svg('g', { class: 'marker', 'data-kind': m.kind, 'data-duration-ms': m.durationMs === null ? '' : Math.round(m.durationMs) });
      var xa = xOf(m.startMs), xb = xOf(m.endMs), top = CHART.overall.top;
      if (xb - xa >= 1) g.appendChild(svg('rect', { x: xa, y: top, width: xb - xa, height: bottom - top, fill: colour, 'fill-opacity': 0.15 }));
      g.appendChild(svg('line', { x1: xb, x2: xb, y1: top, y2: bottom, stroke: colour, 'stroke-width': 2, 'stroke-dasharray': '4 3' }));
      g.appendChild(svg('text', { x: Math.max(x0 + 2, xb - 3), y: top + 24 + 12 * (i % 3), 'text-anchor': 'end', 'font-size': 10, fill: colour }, m.label));
      chart.appendChild(g);
    });
    renderLegend(lines, markers, switching.length > 0);
    if (lags.length === 0) {
      note(chart, CHART.overall, 'no-samples', samples.length === 0 ? 'no samples yet' : 'lag not known yet');
      byId('lag-summary').textContent = '';
    }
    if (lines.length === 0) note(chart, CHART.tables, 'no-table-lag', samples.length === 0 ? '' : 'no table lagged');
    function draw(area, values, attributes, pointClass, colour) {
      var segments = [[]];
      samples.forEach(function (s, i) {
        var v = values[i];
        if (typeof v !== 'number') { segments.push([]); return; }
        segments[segments.length - 1].push(xOf(s.at).toFixed(1) + ' ' + area.yOf(v).toFixed(1));
      });
      segments.forEach(function (points) {
        if (points.length === 1) {
          var xy = points[0].split(' ');
          chart.appendChild(svg('circle', { class: pointClass, cx: xy[0], cy: xy[1], r: 2.5, fill: colour }));
        } else if (points.length > 1) {
          var path = svg('path', attributes);
          path.setAttribute('d', 'M' + points.join(' L'));
          chart.appendChild(path);
        }
      });
    }
    lines.forEach(function (l, i) {
      draw(tables, Array.isArray(l.lagMs) ? l.lagMs : [], { class: 'table-line', 'data-table': text(l.name), fill: 'none',
        stroke: TABLE_COLOURS[i], 'stroke-width': 2, 'stroke-linejoin': 'round' }, 'table-point', TABLE_COLOURS[i]);
    });
    if (lags.length === 0) return;
    draw(overall, samples.map(function (s) { return s.lagMs; }), { class: 'lag-line', fill: 'none', stroke: LINE_COLOUR,
      'stroke-width': 2, 'stroke-linejoin': 'round' }, 'lag-point', LINE_COLOUR);
    var last = samples[samples.length - 1];
    byId('lag-summary').textContent = samples.length + ' samples every ' + duration(h.intervalMs) +
      '; now ' + (typeof last.lagMs === 'number' ? duration(last.lagMs) : 'unknown') +
      ', max ' + duration(Math.max.apply(null, lags)) +
      (last.role === 'primary' ? '; ' + last.pendingTxns + ' txns pending upload' : '') +
      (last.role === 'replica' ? '; ' + last.txnsBehind + ' txns behind' : '');
  }

  /** One panel's grid and scale (0 to a round number above its largest lag); returns its y of a lag. */
  function panel(chart, area, values, title) {
    var x0 = CHART.left, x1 = CHART.width - CHART.right;
    var maxLagMs = niceCeil(Math.max(10, Math.max.apply(null, values.concat([0]))));
    [0, 0.5, 1].forEach(function (f) {
      var y = area.bottom - f * (area.bottom - area.top);
      chart.appendChild(svg('line', { x1: x0, x2: x1, y1: y, y2: y, stroke: f === 0 ? '#888' : '#e3e3e3' }));
      chart.appendChild(svg('text', { x: x0 - 6, y: y + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#555' },
        Math.round(f * maxLagMs) + ' ms'));
    });
    var middle = (area.top + area.bottom) / 2;
    chart.appendChild(svg('text', { x: 12, y: middle, 'font-size': 11, fill: '#555', 'text-anchor': 'middle',
      transform: 'rotate(-90 12 ' + middle + ')' }, 'lag (ms)'));
    chart.appendChild(svg('text', { x: x0 + 4, y: area.top + 10, 'font-size': 11, fill: '#555' }, title));
    return { yOf: function (v) { return area.bottom - (v / maxLagMs) * (area.bottom - area.top); } };
  }

  function note(chart, area, id, message) {
    chart.appendChild(svg('text', { id: id, x: (CHART.left + CHART.width - CHART.right) / 2, y: (area.top + area.bottom) / 2,
      'text-anchor': 'middle', 'font-size': 14, fill: '#555' }, message));
  }

  function legendItem(colour, label, kind, tint) {
    var item = element('li');
    item.dataset.kind = kind;
    var swatch = svg('svg', { width: 14, height: 10, viewBox: '0 0 14 10' });
    swatch.appendChild(tint ? svg('rect', { x: 0, y: 0, width: 14, height: 10, fill: colour, 'fill-opacity': 0.25 })
      : svg('rect', { x: 0, y: 3, width: 14, height: 4, fill: colour }));
    item.appendChild(swatch);
    item.appendChild(element('span', '', label));
    return item;
  }

  /** [from, to] of each run of samples taken while the node was switching role (to now when it still is). */
  function switchingRuns(samples, nowMs) {
    var runs = [];
    samples.forEach(function (s, i) {
      if (s.role !== 'switching') {
        if (runs.length > 0 && runs[runs.length - 1][1] === null) runs[runs.length - 1][1] = s.at;
      } else if (i === 0 || samples[i - 1].role !== 'switching') runs.push([s.at, null]);
    });
    runs.forEach(function (run) { if (run[1] === null) run[1] = nowMs; });
    return runs;
  }

  function renderLegend(lines, markers, switching) {
    var items = [legendItem(LINE_COLOUR, 'all tables', 'overall')];
    lines.forEach(function (l, i) { items.push(legendItem(TABLE_COLOURS[i], 'table ' + text(l.name), 'table')); });
    var kinds = [];
    markers.forEach(function (m) { if (kinds.indexOf(m.kind) < 0) kinds.push(m.kind); });
    kinds.forEach(function (k) { items.push(legendItem(MARKER_COLOURS[k], k, 'marker')); });
    if (switching) items.push(legendItem(SWITCHING_COLOUR, 'switching role', 'switching', true));
    var legend = byId('lag-legend');
    legend.replaceChildren.apply(legend, items);
  }

  function renderEvents(events) {
    var items = (Array.isArray(events) ? events : []).map(function (e) {
      var item = element('li', 'event event-' + text(e.kind));
      var time = element('time', '', clock(e.at));
      time.dateTime = new Date(e.at).toISOString();
      item.appendChild(time);
      item.appendChild(element('span', 'kind', text(e.kind)));
      item.appendChild(element('span', 'message', text(e.message)));
      if (typeof e.durationMs === 'number') item.appendChild(element('span', 'duration', '(' + duration(e.durationMs) + ')'));
      return item;
    });
    var list = byId('events');
    list.replaceChildren.apply(list, items);
    byId('no-events').hidden = items.length > 0;
  }

  function setReachable(error) {
    if (error === null) {
      kept.unreachableSince = null;
      show('unreachable', null);
      document.body.classList.remove('unreachable');
      return;
    }
    if (kept.unreachableSince === null) kept.unreachableSince = Date.now();
    var known = kept.nodeId !== null;
    show('unreachable', (kept.router ? 'router' : 'node') + ' unreachable since ' + clock(kept.unreachableSince) +
      ' (' + text(error && error.message) + ')' + (known ? '; showing the last data' : '; retrying every second'));
    if (!known) setBadge('unreachable');
    document.body.classList.add('unreachable');
  }

  function getJson(path) {
    return fetch(path, { cache: 'no-store', signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) }).then(function (r) {
      if (!r.ok) throw new Error(path + ' answered HTTP ' + r.status);
      return r.json();
    });
  }
  function settled(promise) {
    return promise.then(function (value) { return { value: value, error: null }; },
      function (error) { return { value: null, error: error || new Error('failed') }; });
  }

  /** Runs one part of a render; a part that throws is reported and does not stop the others. */
  function part(problems, name, draw) {
    try { draw(); } catch (error) { problems.push('cannot show ' + name + ': ' + text(error && error.message)); }
  }

  function render(status, cluster, history) {
    var problems = [];
    var missing = [];
    if (status.error !== null) {
      setReachable(status.error);
      return;
    }
    setReachable(null);
    part(problems, '/status', function () {
      if (objectOr(status.value) && status.value.role === 'router') renderRouter(status.value);
      else renderNode(objectOr(status.value) || {});
    });
    [['/status/cluster', cluster, function (c) { renderCluster(c); }],
      ['/status/history', history, function (h) { renderChart(h); renderEvents(h.events); }]].forEach(function (p) {
      if (p[1] === null) return;
      if (p[1].error !== null) missing.push(p[0] + ' (' + text(p[1].error.message) + ')');
      else part(problems, p[0], function () { p[2](objectOr(p[1].value) || {}); });
    });
    show('partial', missing.length === 0 ? null : 'could not read ' + missing.join(', ') + '; showing the last');
    show('page-error', problems.length === 0 ? null : problems.join('; '));
    byId('updated').textContent = 'last updated ' + clock(Date.now());
  }

  /** /status first (it tells a router from a node); then the cluster and, on a node, the history. */
  function poll() {
    settled(getJson('/status')).then(function (status) {
      if (status.error !== null) return render(status, null, null);
      var router = objectOr(status.value) !== null && status.value.role === 'router';
      return Promise.all([settled(getJson('/status/cluster')), router ? null : settled(getJson('/status/history'))])
        .then(function (answers) { render(status, answers[0], answers[1]); });
    }).finally(function () { setTimeout(poll, POLL_MS); });
  }

  poll();
})();
`;
