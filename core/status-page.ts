/**
 * The live status page every node and the router serve at `GET /` (issues 6 and 19): plain HTML,
 * CSS and JavaScript (status-page-script.ts) with no build step and nothing loaded from elsewhere.
 * On a node the script polls `/status`, `/status/history` and `/status/cluster` every second and
 * draws the node's role, facts, tables, a lag chart (overall, the laggiest tables, promotions,
 * demotions, fences and suspensions as markers) and its events, plus every node of the cluster.
 * On the router (`/status` says role `router`) it draws the router's facts and its cluster view.
 *
 * Safety: every text from the node goes into the page through `textContent` or SVG text nodes,
 * never as markup (a table may be named `<img src=x onerror=…>`). The script and the style are
 * served as files of their own so the Content-Security-Policy can forbid every inline script and
 * style and every other origin (`default-src 'none'`, `script-src 'self'`, `connect-src 'self'`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpHandler } from './http-server.js';
import { STATUS_PAGE_SCRIPT, STATUS_PAGE_SWITCHING_COLOUR } from './status-page-script.js';

export {
  STATUS_PAGE_LINE_COLOUR,
  STATUS_PAGE_MARKER_COLOURS,
  STATUS_PAGE_SCRIPT,
  STATUS_PAGE_SWITCHING_COLOUR,
  STATUS_PAGE_TABLE_COLOURS,
} from './status-page-script.js';

/** Whatever the page asks for: its own files and the node's JSON, nothing else. */
export const STATUS_PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** One node of `GET /status/cluster`, as a node (node/cluster-status.ts) or the router sees it. */
export interface ClusterStatusNode {
  /** Null until the node answered (or its registration named it). */
  nodeId: string | null;
  url: string;
  /** What its `/status` said (`primary`, `replica`, `switching`), `unreachable`, or `unknown`. */
  role: string;
  /** A primary's epoch (decimal); null otherwise. */
  epoch: string | null;
  /** A replica's newest epoch among the tables it applied (decimal); null when unknown or not a replica. */
  appliedEpoch: string | null;
  acceptingWrites: boolean | null;
  /**
   * A replica's staleness, a primary's oldest txn not in the store yet (0 when all are), in ms as
   * of now (the age of the answer added); null when unknown.
   */
  lagMs: number | null;
  /** A replica's txns known to be behind the store, a primary's txns not uploaded yet; null when unknown. */
  backlogTxns: number | null;
  /** Ms since its `/status` last answered (0 for the node answering); null when never. */
  lastSeenAgoMs: number | null;
  /** Ms since its registration `nodes/<id>.json` was written; null when the node is not known from one. */
  registeredAgoMs: number | null;
  /** The node serving this answer. */
  self: boolean;
  /** Why the last look at it failed; null when it answered. */
  error: string | null;
}

/** `GET /status/cluster`: every node of the cluster, public like `/status`. */
export interface ClusterStatus {
  /** Where the node list came from. */
  from: 'store registrations' | 'router.nodes';
  /** Ms since the view was last refreshed; null before the first refresh. */
  refreshedAgoMs: number | null;
  /** The router's choice of where writes go and why; null on a node (it routes nothing). */
  primary: { nodeId: string | null; url: string | null; why: string } | null;
  /** In node id order (the router: in the order it knows them). */
  nodes: ClusterStatusNode[];
  /** The store's error at the last refresh; null when it answered. */
  storeError: string | null;
  /** Something the operator should know about the list itself (none registered, some left out); null when nothing. */
  note: string | null;
}

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>walship</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/status.css">
<script src="/status.js" defer></script>
</head>
<body>
<header>
  <h1>walship <span id="node-id">…</span> <span id="role" class="badge">connecting</span></h1>
  <p><span id="updated">not updated yet</span> <strong id="switching" hidden></strong>
  <strong id="unreachable" hidden></strong> <strong id="partial" hidden></strong>
  <strong id="page-error" hidden></strong></p>
</header>
<main>
<section id="section-node">
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
    <div id="fact-row-waiting" hidden class="bad"><dt>waiting</dt><dd id="fact-waiting"></dd></div>
    <div id="fact-row-following" hidden class="bad"><dt>following</dt><dd id="fact-following"></dd></div>
    <div id="fact-row-fenced-by" hidden class="bad"><dt>fenced by</dt><dd id="fact-fenced-by"></dd></div>
    <div id="fact-row-divergence" hidden class="bad"><dt>divergence</dt><dd id="fact-divergence"></dd></div>
  </dl>
</section>
<section id="section-router" hidden>
  <h2>Router</h2>
  <dl id="router-facts">
    <div><dt>writes go to</dt><dd id="router-writes-to"></dd></div>
    <div><dt>why</dt><dd id="router-why"></dd></div>
    <div><dt>read preference</dt><dd id="router-read-preference"></dd></div>
    <div><dt>nodes</dt><dd id="router-nodes"></dd></div>
    <div><dt>version</dt><dd id="router-version"></dd></div>
    <div id="router-row-store-error" hidden class="bad"><dt>store error</dt><dd id="router-store-error"></dd></div>
  </dl>
</section>
<section id="section-cluster">
  <h2>Cluster</h2>
  <table id="cluster"><thead></thead><tbody></tbody></table>
  <p id="cluster-note">not read yet</p>
</section>
<section id="section-tables">
  <h2>Tables</h2>
  <table id="tables"><thead></thead><tbody></tbody></table>
  <p id="tables-note" hidden></p>
</section>
<section id="section-lag">
  <h2>Lag</h2>
  <svg id="lag-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 640 326" width="640" height="326"
    role="img" aria-label="lag over the last minutes: every table, then the laggiest tables"></svg>
  <ul id="lag-legend"></ul>
  <p id="lag-summary"></p>
</section>
<section id="section-events">
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
.role-switching { background: ${STATUS_PAGE_SWITCHING_COLOUR}; }
.role-router { background: #37474f; }
.role-unreachable { background: #c62828; }
#unreachable, #page-error { color: #fff; background: #c62828; padding: .1em .5em; }
#switching { color: #fff; background: ${STATUS_PAGE_SWITCHING_COLOUR}; padding: .1em .5em; }
#partial { color: #222; background: #ffe082; padding: .1em .5em; }
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
td[data-col="lastError"], td[data-col="suspended"], td[data-col="error"] { white-space: normal; text-align: left; }
td[data-col="url"], td[data-col="role"] { text-align: left; }
#cluster tr.self td { font-weight: 600; }
#cluster th:nth-child(-n+3), #cluster th:last-child { text-align: left; }
#lag-chart { background: #fff; border: 1px solid #ddd; display: block; }
#lag-legend { list-style: none; padding: 0; margin: .4em 0 0; max-width: 640px; }
#lag-legend li { display: inline-block; margin-right: 1.2em; }
#lag-legend svg { vertical-align: middle; margin-right: .3em; }
#events { padding-left: 1.5em; }
#events time { color: #555; margin-right: .5em; }
.kind { display: inline-block; min-width: 6em; font-weight: 600; }
.duration { color: #555; margin-left: .5em; }
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
 * The page reads `/status` and `/status/cluster` (and on a node `/status/history`), which the
 * node or router serves.
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
