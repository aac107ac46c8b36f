/**
 * The live status page (`GET /`, core/status-page.ts) of real in-process WalshipNodes on a
 * filesystem store, and of a router in front of them, looked at in headless Chromium (Debian's
 * `chromium`, driven by playwright-core). The nodes register in the store, so every node's
 * `/status/cluster` (and the router's) lists them all:
 *
 * - A primary A and a replica B take rows (one table named like markup), then a switchover: A
 *   demotes, B is promoted to epoch 2, B takes more rows and A follows. Each page must show what its
 *   node's `/status` says: role, epoch, every table's watermarks; B's events list the promotion and
 *   A's the demotion.
 * - The lag chart: a screenshot of the chart element is decoded and the pixels of the line colour
 *   counted. The negative control is a node that has taken no sample yet: no such pixel, and the
 *   "no samples yet" text. Both go through the same page code and the same count.
 * - A primary whose first upload of one table is held (a store wrapper): committed ahead of uploaded
 *   on the page, and its lag (the oldest un-uploaded txn's age) grows in `/status/history`.
 * - A table named `<img src=x onerror=window.xss=1>` shows as text: no `img` element, no script ran.
 * - Rare states (fenced by, divergence, store error, operation, a suspended table) rendered from the
 *   node's real `/status` with those fields set, answered to the page by the browser (`page.route`).
 * - A node that goes away: the page says "node unreachable" and keeps the last data.
 * - A promotion held inside its epoch claim (a store wrapper holds that PUT): `/status`,
 *   `/status/history` and the page answer while the node switches, and show the new role after.
 * - The page loads under its own Content-Security-Policy without a violation or a script error.
 * - The cluster view (issue 19): `/status/cluster` of A and of B lists both with the role and epoch
 *   each one's own `/status` says; so do A's page and the router's page (which has no node of its
 *   own: no tables, chart or events, and no request the router would answer 404).
 * - Per-table lag lines: the held primary's `held` table is drawn in the first table colour (DOM and
 *   pixels of a screenshot); markers: B's chart marks its promotion and A's its demotion, each with
 *   the duration its event carries (DOM and pixels). The node without samples is the negative
 *   control of both: no table line, no marker, no pixel of either colour.
 * - Never blank: mid-switch (the held promotion) the page keeps the node id, the last tables and the
 *   cluster view and says it is switching (a screenshot shows the switching colour); a page opened
 *   mid-switch shows the tables of the role the node left (`last` in `/status`).
 *
 * Checked by breaking the page on purpose (temporarily): table cells filled with innerHTML, the
 * line drawn grey, a line drawn without samples, fetch failures ignored, the uploaded column showing
 * committed, the replica's behind column showing applied, an empty events list, and the switching
 * routes without the status page each fail at least one test here.
 *
 * Without /usr/bin/chromium the browser tests are skipped with a printed reason, or fail when CI is
 * set (CI must never skip them silently).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { type Browser, chromium, type Page } from 'playwright-core';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ClusterStatus,
  STATUS_PAGE_CSP,
  STATUS_PAGE_HTML,
  STATUS_PAGE_LINE_COLOUR,
  STATUS_PAGE_MARKER_COLOURS,
  STATUS_PAGE_SWITCHING_COLOUR,
  STATUS_PAGE_TABLE_COLOURS,
  seededRandom,
  systemClock,
} from '../core/index.js';
import { EPOCHS_PREFIX, epochKey } from '../layout/index.js';
import { WalshipNode } from '../node/index.js';
import { FsStore, type ObjectStore } from '../objectstore/index.js';
import { gatedStore } from './helpers/gated-store.js';
import { testNodeSettings } from './helpers/test-node.js';
import { startTestRouter } from './helpers/test-router.js';

const CHROMIUM_PATH = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];
/** A generous bound for waits (a replica to catch up, the page to poll): never a performance check. */
const WAIT_MS = 20_000;
/** The nodes sample their status this often here (the default is 1 s). */
const SAMPLE_MS = 100;
/** Per colour channel: anti-aliased edges of the 2 px line blend with the white background. */
const COLOUR_TOLERANCE = 24;
/**
 * Line pixels a drawn chart must have at least: the line runs across the plot (554 px wide, x
 * spans the node's samples) with a 2 px stroke, so over a thousand; half the plot's width is far
 * above anything but a line, far below what one draws.
 */
const LINE_PIXELS_MIN = 277;
/**
 * Columns of the chart a table's line must cross: once it has over a second of samples
 * (HELD_LINE_POINTS_MIN) it runs from its table's first sample to the last, most of the chart's
 * span and of the plot's 554 columns; a quarter of them is far above nothing. Columns, not pixels: a 2 px line on a slope
 * keeps about one full-colour pixel per column once anti-aliased.
 */
const TABLE_LINE_COLUMNS_MIN = 138;
/** Points of the held table's line before its pixels are counted: over a second of 100 ms samples. */
const HELD_LINE_POINTS_MIN = 11;
/**
 * Pixels a drawn marker must have at least: its dashed line runs the chart's height (286 px, 4 px
 * on and 3 off) 2 px wide, so over 160 full-colour pixels whatever its x, and its label about 40
 * more; the label alone stays below this (checked by drawing the line 0 px wide), the band behind
 * is a 15% tint, and without a marker there are none.
 */
const MARKER_PIXELS_MIN = 80;
/** Pixels of the switching colour a page mid-switch shows at least: the badge alone is ~70 × 18. */
const SWITCHING_PIXELS_MIN = 500;
/** Nodes register in the store (at start and at each role change); rewrites are not needed here. */
const REGISTER_MS = 60_000;
/** A table name that is markup: valid (table/names.ts forbids `( ) / ' "`, not `< > = . space`). */
const XSS_TABLE = '<img src=x onerror=window.xss=1>';

const browserMissing = existsSync(CHROMIUM_PATH)
  ? null
  : `${CHROMIUM_PATH} not found (Debian package chromium)`;
if (browserMissing !== null && !process.env.CI)
  console.warn(`[walship tests] skipping the status page browser tests: ${browserMissing}`);

let base = '';
let store: ObjectStore;
let a: WalshipNode;
let b: WalshipNode;
const nodes: WalshipNode[] = [];

async function startNode(
  role: 'primary' | 'replica',
  name: string,
  options: { store?: ObjectStore; statusSampleMs?: number } = {},
): Promise<WalshipNode> {
  const settings = testNodeSettings(options.store ?? store, path.join(base, name), {
    statusSampleMs: options.statusSampleMs ?? SAMPLE_MS,
  });
  const node = await WalshipNode.start(
    role,
    { ...settings, registerIntervalMs: REGISTER_MS },
    {
      clock: systemClock,
      random: seededRandom(7),
      log: pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' }),
    },
  );
  nodes.push(node);
  return node;
}

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-status-page-'));
  store = await FsStore.open({ root: path.join(base, 'store') });
  a = await startNode('primary', 'a');
  b = await startNode('replica', 'b');
  await writeRows(a.httpPort, 'trades', [1, 2, 3]);
  await writeRows(a.httpPort, 'trades', [4, 5]);
  await writeRows(a.httpPort, XSS_TABLE, [1]);
  await caughtUp(b, a);
  await a.demote();
  await b.promote('status page test');
  await writeRows(b.httpPort, 'trades', [6, 7]);
  await writeRows(b.httpPort, 'quotes', [1]);
  await caughtUp(a, b);
  await waitFor('B uploaded everything', async () =>
    tablesOf(await getStatus(b.httpPort)).every(
      (t) => t.pendingTxns === 0 && t.uploadedTxn === t.committedTxn,
    ),
  );
});

afterAll(async () => {
  await Promise.all(nodes.splice(0).map((node) => node.close()));
  await store?.close();
  await rm(base, { recursive: true, force: true });
});

describe('status page over HTTP', () => {
  it('serves the page, its script and style uncached under a CSP that allows nothing from elsewhere', async () => {
    for (const [route, type] of [
      ['/', 'text/html; charset=utf-8'],
      ['/index.html', 'text/html; charset=utf-8'],
      ['/status.js', 'text/javascript; charset=utf-8'],
      ['/status.css', 'text/css; charset=utf-8'],
      ['/favicon.svg', 'image/svg+xml'],
    ] as const) {
      const response = await fetch(`http://127.0.0.1:${b.httpPort}${route}`);
      expect(response.status, route).toBe(200);
      expect(response.headers.get('content-type'), route).toBe(type);
      expect(response.headers.get('cache-control'), route).toBe('no-store');
      expect(response.headers.get('x-content-type-options'), route).toBe('nosniff');
      const csp = response.headers.get('content-security-policy') ?? '';
      expect(csp, route).toBe(STATUS_PAGE_CSP);
      expect(csp, route).toContain("default-src 'none'");
      expect(csp, route).toContain("script-src 'self'");
      expect(csp, route).not.toContain('unsafe-inline');
      await response.arrayBuffer();
    }
    const html = await (await fetch(`http://127.0.0.1:${b.httpPort}/`)).text();
    expect(html).toBe(STATUS_PAGE_HTML);
    // Every reference is a path on this node: no CDN, no fonts, no inline script.
    const references = [...html.matchAll(/\s(?:src|href)="([^"]*)"/g)].map((m) => m[1]);
    expect(references).toEqual(['/favicon.svg', '/status.css', '/status.js']);
    expect(html).not.toMatch(/<script(?![^>]*\ssrc=)/);
    expect(html).not.toMatch(/\sstyle=|\son[a-z]+=/);
  });

  it('/status carries the newest events first and /status/history the samples and all events', async () => {
    const status = await getStatus(b.httpPort);
    const events = status.events as { at: number; kind: string; message: string }[];
    expect(events.map((e) => e.kind)).toEqual(['promoted', 'started']);
    expect(events[0]?.message).toBe('promoted to primary at epoch 2 (status page test)');
    expect(events[0]!.at).toBeGreaterThanOrEqual(events[1]!.at);

    // Three samples, the newest taken after B's uploads were seen done (one taken just before can
    // still hold them as pending: samples and /status are read at different moments).
    await waitFor('B has three samples, the newest with nothing pending', async () => {
      const { samples } = await getHistory(b.httpPort);
      return samples.length >= 3 && samples.at(-1)?.pendingTxns === 0;
    });
    const history = await getHistory(b.httpPort);
    expect(history.intervalMs).toBe(SAMPLE_MS);
    expect(history.events).toEqual(events);
    expect(history.samples.at(-1)).toMatchObject({ role: 'primary', epoch: '2', lagMs: 0, pendingTxns: 0 });
    expect(
      history.samples.some((s) => s.role === 'replica'),
      'B was a replica before',
    ).toBe(true);
    const ats = history.samples.map((s) => s.at);
    expect(ats).toEqual([...ats].sort((x, y) => x - y));
    expect(history.nowMs).toBeGreaterThanOrEqual(ats.at(-1)!);

    expect(typeof history.events[0]?.durationMs, 'the promotion took a measured time').toBe('number');
    const demoted = (await getStatus(a.httpPort)).events as { kind: string; durationMs?: number }[];
    expect(demoted.map((e) => e.kind)).toEqual(['demoted', 'started']);
    expect(typeof demoted[0]?.durationMs).toBe('number');
  });

  it('/status/cluster of every node lists every registered node with the role and epoch its /status says', async () => {
    for (const viewer of [a, b]) {
      const expected = await clusterRowsExpected([a, b], viewer);
      await expect
        .poll(async () => clusterRowsOf(await getCluster(viewer.httpPort), [a, b]), { timeout: WAIT_MS })
        .toEqual(expected);
    }
    const fromA = await getCluster(a.httpPort);
    expect(fromA.from).toBe('store registrations');
    expect(fromA.nodes.find((n) => n.nodeId === a.nodeId)).toMatchObject({
      role: 'replica',
      epoch: null,
      appliedEpoch: '2',
      lastSeenAgoMs: 0,
      self: true,
    });
    expect(fromA.nodes.find((n) => n.nodeId === b.nodeId)).toMatchObject({
      role: 'primary',
      epoch: '2',
      acceptingWrites: true,
      backlogTxns: 0,
    });
  });

  it('answers only GET and HEAD for the page', async () => {
    const post = await fetch(`http://127.0.0.1:${b.httpPort}/`, { method: 'POST', body: '' });
    expect(post.status).toBe(404);
    await post.arrayBuffer();
    const head = await fetch(`http://127.0.0.1:${b.httpPort}/`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBe(Buffer.byteLength(STATUS_PAGE_HTML));
  });
});

describe.skipIf(browserMissing !== null && !process.env.CI)('status page in Chromium', () => {
  let browser: Browser;

  beforeAll(async () => {
    if (browserMissing !== null)
      throw new Error(`CI is set, but the browser tests cannot run: ${browserMissing}`);
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** A page on the node's `/`; `problems` collects script errors and console errors (CSP violations). */
  async function open(port: number): Promise<{ page: Page; problems: string[] }> {
    const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    const response = await page.goto(`http://127.0.0.1:${port}/`);
    expect(response?.status()).toBe(200);
    await expect
      .poll(() => page.locator('#updated').textContent(), { timeout: WAIT_MS })
      .toMatch(/^last updated/);
    return { page, problems };
  }

  it('the primary page shows what /status says: role, epoch, facts, every table and its watermarks', async () => {
    const { page, problems } = await open(b.httpPort);
    const status = await getStatus(b.httpPort);
    expect(status.epoch).toBe('2');
    const expected = tablesOf(status).map((t) => ({
      name: t.name,
      committedTxn: String(t.committedTxn),
      uploadedTxn: String(t.uploadedTxn),
      pendingTxns: String(t.pendingTxns),
    }));
    expect(expected.map((t) => t.name).sort()).toEqual([XSS_TABLE, 'quotes', 'trades'].sort());
    await expect
      .poll(
        async () => (await pageTables(page)).map(pick('name', 'committedTxn', 'uploadedTxn', 'pendingTxns')),
        {
          timeout: WAIT_MS,
        },
      )
      .toEqual(expected);
    expect(await page.locator('#role').textContent()).toBe('primary');
    expect(await page.locator('#node-id').textContent()).toBe(status.nodeId);
    expect(await page.locator('#fact-epoch').textContent()).toBe(status.epoch);
    expect(await page.locator('#fact-accepting-writes').textContent()).toBe(
      status.acceptingWrites ? 'yes' : 'no',
    );
    expect(await page.locator('#fact-ack-mode').textContent()).toBe(status.ackMode);
    expect(await page.locator('#fact-cluster-id').textContent()).toBe(status.clusterId);
    expect(await page.locator('#fact-store').textContent()).toBe(
      (status.store as { description: string }).description,
    );
    expect(await page.locator('#fact-row-store-error').isHidden()).toBe(true);
    expect(await page.locator('#fact-row-staleness').isHidden(), 'a primary has no staleness').toBe(true);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('a primary whose upload is held shows committed ahead of uploaded, and a growing lag', async () => {
    const heldStore = await FsStore.open({ root: path.join(base, 'held-store') });
    const gate = gatedStore(heldStore, (key) => key.startsWith('tables/held/wal/'));
    const primary = await startNode('primary', 'held-primary', { store: gate.store });
    try {
      await writeRows(primary.httpPort, 'held', [1, 2]);
      await writeRows(primary.httpPort, 'held', [3]);
      await writeRows(primary.httpPort, 'free', [1]);
      await gate.reached;
      await waitFor('free uploaded', async () =>
        tablesOf(await getStatus(primary.httpPort)).some((t) => t.name === 'free' && t.uploadedTxn === '1'),
      );
      const { page, problems } = await open(primary.httpPort);
      const status = await getStatus(primary.httpPort);
      const expected = tablesOf(status).map((t) => ({
        name: t.name,
        committedTxn: String(t.committedTxn),
        uploadedTxn: String(t.uploadedTxn),
        pendingTxns: String(t.pendingTxns),
      }));
      expect(
        expected.find((t) => t.name === 'held'),
        'the held table',
      ).toEqual({
        name: 'held',
        committedTxn: '2',
        uploadedTxn: '0',
        pendingTxns: '2',
      });
      await expect
        .poll(
          async () =>
            (await pageTables(page)).map(pick('name', 'committedTxn', 'uploadedTxn', 'pendingTxns')),
          {
            timeout: WAIT_MS,
          },
        )
        .toEqual(expected);
      const held = (await pageTables(page)).find((t) => t.name === 'held');
      expect(held?.oldestPendingAgeMs, 'the held txns have an age').toMatch(/\d/);
      // The primary's lag is the age of its oldest txn not in the store: it grows while the upload is held.
      await waitFor('two samples with the upload held', async () => {
        const samples = (await getHistory(primary.httpPort)).samples;
        return samples.filter((s) => (s.lagMs ?? 0) > 0).length >= 2;
      });
      const lags = (await getHistory(primary.httpPort)).samples.map((s) => s.lagMs ?? 0).filter((l) => l > 0);
      expect(lags.at(-1)!).toBeGreaterThan(lags[0]!);
      // Its own line in the table panel: the laggiest table, in the first table colour, in the legend.
      expect((await getHistory(primary.httpPort)).tableLines[0]?.name).toBe('held');
      await expect
        .poll(async () => (await chartOn(page)).tableLines[0], { timeout: WAIT_MS })
        .toMatchObject({ table: 'held', stroke: STATUS_PAGE_TABLE_COLOURS[0] });
      // Over a second of its samples: the chart then spans its samples, not a second mostly empty.
      await expect
        .poll(async () => (await chartOn(page)).tableLines[0]?.points, { timeout: WAIT_MS })
        .toBeGreaterThan(HELD_LINE_POINTS_MIN);
      const chart = await chartOn(page);
      expect(chart.legend).toContain('table held');
      const columns = colourColumns(
        await page.locator('#lag-chart').screenshot(),
        STATUS_PAGE_TABLE_COLOURS[0],
      );
      expect(columns, `columns the held table's line crosses (${columns})`).toBeGreaterThan(
        TABLE_LINE_COLUMNS_MIN,
      );
      expect(problems).toEqual([]);
      await page.close();
    } finally {
      gate.release();
    }
    await primary.close();
    await heldStore.close();
  });

  it('the replica page shows applied watermarks, how far behind and the epoch of every table', async () => {
    const { page, problems } = await open(a.httpPort);
    const status = await getStatus(a.httpPort);
    const expected = tablesOf(status).map((t) => ({
      name: t.name,
      appliedTxn: String(t.appliedTxn),
      txnsBehind: String(t.txnsBehind),
      epoch: String(t.epoch),
      suspended: '',
    }));
    expect(expected.find((t) => t.name === 'quotes')?.epoch, 'quotes was created at epoch 2').toBe('2');
    await expect
      .poll(
        async () =>
          (await pageTables(page)).map(pick('name', 'appliedTxn', 'txnsBehind', 'epoch', 'suspended')),
        {
          timeout: WAIT_MS,
        },
      )
      .toEqual(expected);
    expect(await page.locator('#role').textContent()).toBe('replica');
    expect(await page.locator('#fact-row-epoch').isHidden(), 'a replica has no epoch of its own').toBe(true);
    expect(await page.locator('#fact-row-staleness').isVisible()).toBe(true);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('lists the promotion on the new primary and the demotion on the old one, newest first', async () => {
    const { page: pageB, problems } = await open(b.httpPort);
    await expect.poll(() => eventsOn(pageB), { timeout: WAIT_MS }).toHaveLength(2);
    const events = await eventsOn(pageB);
    expect(events[0]).toEqual({
      kind: 'promoted',
      message: 'promoted to primary at epoch 2 (status page test)',
    });
    expect(events[1]).toEqual({ kind: 'started', message: 'started as replica' });
    expect(await pageB.locator('#no-events').isHidden()).toBe(true);
    const { page: pageA } = await open(a.httpPort);
    await expect.poll(() => eventsOn(pageA), { timeout: WAIT_MS }).toHaveLength(2);
    const old = await eventsOn(pageA);
    expect(old.map((e) => e.kind)).toEqual(['demoted', 'started']);
    expect(old[0]?.message).toMatch(/^demoted from epoch 1/);
    expect(old[1]?.message).toBe('started as primary at epoch 1');
    expect(problems).toEqual([]);
    await Promise.all([pageA.close(), pageB.close()]);
  });

  it('draws the lag line; a node with no sample yet shows none and says so (negative control)', async () => {
    const { page, problems } = await open(b.httpPort);
    await expect
      .poll(() => page.locator('#lag-summary').textContent(), { timeout: WAIT_MS })
      .toMatch(/^\d+ samples/);
    const drawn = linePixels(await page.locator('#lag-chart').screenshot());
    expect(await page.locator('#no-samples').count()).toBe(0);
    expect(drawn, `line pixels of a chart with samples (${drawn})`).toBeGreaterThan(LINE_PIXELS_MIN);

    // A node whose first sample is ten minutes away: same page, same count, no line.
    const fresh = await startNode('replica', 'fresh', { statusSampleMs: 600_000 });
    const control = await open(fresh.httpPort);
    expect((await getHistory(fresh.httpPort)).samples).toEqual([]);
    await expect
      .poll(() => control.page.locator('#no-samples').textContent(), { timeout: WAIT_MS })
      .toBe('no samples yet');
    const png = await control.page.locator('#lag-chart').screenshot();
    expect(linePixels(png), 'line pixels of a chart without samples').toBe(0);
    expect(colourColumns(png, STATUS_PAGE_TABLE_COLOURS[0]), 'table line columns').toBe(0);
    expect(colourPixels(png, STATUS_PAGE_MARKER_COLOURS.promoted!), 'marker pixels').toBe(0);
    expect(await chartOn(control.page)).toMatchObject({ markers: [], tableLines: [] });
    expect(await control.page.locator('#lag-chart').isVisible()).toBe(true);
    expect([...problems, ...control.problems]).toEqual([]);
    await Promise.all([page.close(), control.page.close()]);
  });

  it('marks the promotion on the new primary and the demotion on the old one, with their durations', async () => {
    for (const [node, kind] of [
      [b, 'promoted'],
      [a, 'demoted'],
    ] as const) {
      const event = (await getHistory(node.httpPort)).events.find((e) => e.kind === kind);
      expect(event?.durationMs, `${kind} has a duration`).toEqual(expect.any(Number));
      const { page, problems } = await open(node.httpPort);
      await expect
        .poll(async () => (await chartOn(page)).markers, { timeout: WAIT_MS })
        .toContainEqual({ kind, durationMs: String(event!.durationMs) });
      expect((await chartOn(page)).legend).toContain(kind);
      const drawn = colourPixels(
        await page.locator('#lag-chart').screenshot(),
        STATUS_PAGE_MARKER_COLOURS[kind]!,
      );
      expect(drawn, `pixels of the ${kind} marker (${drawn})`).toBeGreaterThan(MARKER_PIXELS_MIN);
      expect(await page.locator(`#events li.event-${kind} .duration`).textContent()).toMatch(/^\(\d/);
      expect(problems).toEqual([]);
      await page.close();
    }
  });

  it("every node's page lists every node of the cluster with its role and epoch", async () => {
    for (const viewer of [a, b]) {
      const { page, problems } = await open(viewer.httpPort);
      await expect
        .poll(
          async () =>
            (await clusterOn(page))
              .filter((row) => row.node === a.nodeId || row.node === b.nodeId)
              .sort(byNode),
          { timeout: WAIT_MS },
        )
        .toEqual(
          [
            { node: a.nodeId, role: 'replica', epoch: '2 (applied)', self: viewer === a },
            { node: b.nodeId, role: 'primary', epoch: '2', self: viewer === b },
          ].sort(byNode),
        );
      expect(problems).toEqual([]);
      await page.close();
    }
  });

  it("the router's page shows the router and its cluster view, and asks the router nothing it lacks", async () => {
    const router = await startTestRouter({ store });
    try {
      const cluster = await getCluster(router.port);
      expect(clusterRowsOf(cluster, [a, b])).toEqual(await clusterRowsExpected([a, b], null));
      expect(cluster.primary?.nodeId).toBe(b.nodeId);
      const { page, problems } = await open(router.port);
      expect(await page.locator('#role').textContent()).toBe('router');
      await expect
        .poll(
          async () =>
            (await clusterOn(page))
              .filter((row) => row.node === a.nodeId || row.node === b.nodeId)
              .sort(byNode),
          { timeout: WAIT_MS },
        )
        .toEqual(
          [
            { node: a.nodeId, role: 'replica', epoch: '', self: false },
            { node: b.nodeId, role: 'primary', epoch: '2', self: false },
          ].sort(byNode),
        );
      expect(await page.locator('#router-writes-to').textContent()).toContain(b.nodeId);
      for (const id of ['section-tables', 'section-lag', 'section-events', 'section-node'])
        expect(await page.locator(`#${id}`).isHidden(), id).toBe(true);
      expect(problems, 'no request answered 404, no script error').toEqual([]);
      await page.close();
    } finally {
      await router.close();
    }
  });

  it('shows a table named like markup as text, on both roles', async () => {
    for (const node of [b, a]) {
      const { page, problems } = await open(node.httpPort);
      await expect
        .poll(async () => (await pageTables(page)).map((t) => t.name), { timeout: WAIT_MS })
        .toContain(XSS_TABLE);
      expect(await page.locator('img').count(), 'the name became an element').toBe(0);
      expect(await page.evaluate('typeof window.xss'), 'its onerror ran').toBe('undefined');
      expect(problems).toEqual([]);
      await page.close();
    }
  });

  it('shows the rarer fields of /status: fenced by, divergence, store error, operation, a suspended table', async () => {
    // The node's real /status with those fields set (the browser answers the page's fetch): states
    // that take a fence, a store outage or a corrupt segment to reach for real.
    const { page, problems } = await open(a.httpPort);
    const real = await getStatus(a.httpPort);
    const [first, ...rest] = tablesOf(real);
    const rare = {
      ...real,
      fencedBy: 'node-b (epoch 3) at trades',
      divergence: { epoch: '1', files: [{ file: 'x' }, { file: 'y' }], movedTo: '/data/diverged-epoch-1-5' },
      store: { description: 'fs::root=/s;', lastError: { message: 'connection refused', agoMs: 1500 } },
      operation: {
        name: 'bootstrap',
        phase: 'restore',
        done: 512,
        total: 2048,
        unit: 'bytes',
        startedAgoMs: 2500,
      },
      tables: [
        { ...first, suspended: { code: 'CORRUPT_SEGMENT', message: 'checksum <b>mismatch</b>', key: 'k' } },
        ...rest,
      ],
    };
    await page.route('**/status', (route) =>
      route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(rare) }),
    );
    await expect
      .poll(() => page.locator('#fact-fenced-by').textContent(), { timeout: WAIT_MS })
      .toBe(rare.fencedBy);
    expect(await page.locator('#fact-divergence').textContent()).toBe(
      'epoch 1: 2 divergence file(s); database moved to /data/diverged-epoch-1-5',
    );
    expect(await page.locator('#fact-store-error').textContent()).toBe('connection refused (1.5 s ago)');
    expect(await page.locator('#fact-operation').textContent()).toBe(
      'bootstrap: restore, 512 of 2048 bytes (25%), started 2.5 s ago',
    );
    const rows = await pageTables(page);
    expect(rows.find((t) => t.name === first?.name)?.suspended).toBe(
      'CORRUPT_SEGMENT: checksum <b>mismatch</b>',
    );
    expect(await page.locator('#tables b').count(), 'markup in a message became an element').toBe(0);
    for (const id of ['fenced-by', 'divergence', 'store-error', 'operation'])
      expect(await page.locator(`#fact-row-${id}`).isVisible(), id).toBe(true);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('says "node unreachable" when the node goes away, and keeps the last data', async () => {
    const gone = await startNode('replica', 'gone');
    const { page } = await open(gone.httpPort);
    await expect.poll(() => page.locator('#role').textContent(), { timeout: WAIT_MS }).toBe('replica');
    expect(await page.locator('#unreachable').isHidden()).toBe(true);
    const tablesBefore = await pageTables(page);
    await gone.close();
    await expect.poll(() => page.locator('#unreachable').isVisible(), { timeout: WAIT_MS }).toBe(true);
    expect(await page.locator('#unreachable').textContent()).toMatch(
      /^node unreachable since .*showing the last data$/,
    );
    expect(await page.locator('#role').textContent()).toBe('replica');
    expect(await page.locator('#node-id').textContent()).toBe(gone.nodeId);
    expect(await pageTables(page)).toEqual(tablesBefore);
    expect(tablesBefore.length, 'the replica had followed the tables').toBeGreaterThan(0);
    await page.close();
  });

  it('answers /status, /status/history and the page while the node switches role, then shows the new role', async () => {
    // Held twice: the epoch claim (the promotion), then the new primary's look for a newer epoch,
    // made after its routes are set and before the node takes the role (it answered `{}` there).
    const starting = headGate(store, epochKey(4n));
    const gate = gatedStore(starting.store, (key) => key.startsWith(EPOCHS_PREFIX));
    const candidate = await startNode('replica', 'candidate', { store: gate.store });
    await caughtUp(candidate, b);
    const { page, problems } = await open(candidate.httpPort);
    await expect.poll(() => page.locator('#role').textContent(), { timeout: WAIT_MS }).toBe('replica');
    await expect.poll(async () => (await clusterOn(page)).length, { timeout: WAIT_MS }).toBeGreaterThan(0);
    const tableNames = (await pageTables(page)).map((t) => t.name);
    expect(tableNames.length, 'the replica follows tables').toBeGreaterThan(0);
    const promotion = candidate.promote('held promotion');
    await gate.reached;
    try {
      expect(candidate.role).toBe('switching');
      const status = await getStatus(candidate.httpPort);
      expect(status.role).toBe('switching');
      expect(status.nodeId).toBe(candidate.nodeId);
      expect(status.switching).toMatchObject({ from: 'replica', to: 'primary', forMs: expect.any(Number) });
      const last = status.last as Record<string, unknown>;
      expect(last.role, 'the last role, as it was when the change began').toBe('replica');
      expect(tablesOf(last).map((t) => t.name)).toEqual(tableNames);
      expect((status.events as { kind: string }[]).map((e) => e.kind)).toEqual(['started']);
      const history = await fetch(`http://127.0.0.1:${candidate.httpPort}/status/history`);
      expect(history.status).toBe(200);
      expect(((await history.json()) as { intervalMs: number }).intervalMs).toBe(SAMPLE_MS);
      const html = await fetch(`http://127.0.0.1:${candidate.httpPort}/`);
      expect(html.status).toBe(200);
      expect(await html.text()).toBe(STATUS_PAGE_HTML);
      await expect.poll(() => page.locator('#role').textContent(), { timeout: WAIT_MS }).toBe('switching');
      expect(await page.locator('#tables-note').textContent()).toBe(
        'the node is changing role: tables as last seen',
      );
      // Never blank: who it is, the tables it had, the cluster, and what is going on.
      expect(await page.locator('#node-id').textContent()).toBe(candidate.nodeId);
      expect((await pageTables(page)).map((t) => t.name)).toEqual(tableNames);
      expect(await page.locator('#switching').textContent()).toMatch(
        /^switching role \(replica to primary\) since .*; showing the data of /,
      );
      await expect
        .poll(async () => (await clusterOn(page)).find((row) => row.self)?.role, { timeout: WAIT_MS })
        .toBe('switching');
      const shot = colourPixels(await page.screenshot(), STATUS_PAGE_SWITCHING_COLOUR);
      expect(shot, `pixels of the switching badge and banner (${shot})`).toBeGreaterThan(
        SWITCHING_PIXELS_MIN,
      );
      // A page opened mid-switch has never seen the role: it shows the one the node kept.
      const late = await open(candidate.httpPort);
      expect(await late.page.locator('#node-id').textContent()).toBe(candidate.nodeId);
      expect(await late.page.locator('#role').textContent()).toBe('switching');
      expect((await pageTables(late.page)).map((t) => t.name)).toEqual(tableNames);
      expect(late.problems).toEqual([]);
      await late.page.close();
    } finally {
      gate.release();
    }
    await starting.reached;
    try {
      expect(await getStatus(candidate.httpPort)).toMatchObject({
        role: 'switching',
        nodeId: candidate.nodeId,
      });
      await expect
        .poll(() => page.locator('#updated').textContent(), { timeout: WAIT_MS })
        .toMatch(/^last updated/);
      expect(await page.locator('#role').textContent()).toBe('switching');
      expect((await pageTables(page)).map((t) => t.name)).toEqual(tableNames);
    } finally {
      starting.release();
    }
    expect((await promotion).epoch).toBe(3n);
    await expect.poll(() => page.locator('#fact-epoch').textContent(), { timeout: WAIT_MS }).toBe('3');
    expect(await page.locator('#role').textContent()).toBe('primary');
    expect(await page.locator('#switching').isHidden()).toBe(true);
    const after = colourPixels(await page.screenshot(), STATUS_PAGE_SWITCHING_COLOUR);
    expect(after, 'the same count once the node is primary (control)').toBeLessThan(SWITCHING_PIXELS_MIN);
    await expect
      .poll(() => eventsOn(page), { timeout: WAIT_MS })
      .toContainEqual({
        kind: 'promoted',
        message: 'promoted to primary at epoch 3 (held promotion)',
      });
    expect(problems).toEqual([]);
    await page.close();
  });
});

// --- helpers ------------------------------------------------------------------------------------

interface HistoryJson {
  intervalMs: number;
  nowMs: number;
  samples: { at: number; role: string; epoch: string | null; lagMs: number | null; pendingTxns: number }[];
  tableLines: { name: string; lagMs: (number | null)[] }[];
  events: { at: number; kind: string; message: string; durationMs?: number }[];
}

/** ILP measurement escapes: space, comma and `=` end a name unless escaped. */
function ilpName(name: string): string {
  return name.replace(/[ ,=]/g, (c) => `\\${c}`);
}

async function writeRows(port: number, table: string, ids: number[]): Promise<void> {
  const body = ids.map((id) => `${ilpName(table)} id=${id}i,v=${id}.5\n`).join('');
  const response = await fetch(`http://127.0.0.1:${port}/write`, { method: 'POST', body });
  expect(response.status, await response.text()).toBe(204);
}

async function getStatus(port: number): Promise<Record<string, unknown>> {
  const response = await fetch(`http://127.0.0.1:${port}/status`);
  expect(response.status).toBe(200);
  return (await response.json()) as Record<string, unknown>;
}

async function getHistory(port: number): Promise<HistoryJson> {
  const response = await fetch(`http://127.0.0.1:${port}/status/history`);
  expect(response.status).toBe(200);
  expect(response.headers.get('cache-control')).toBe('no-store');
  return (await response.json()) as HistoryJson;
}

/** `store` whose first HEAD of `key` waits for `release()`; `reached` resolves when it got there. */
function headGate(store: ObjectStore, key: string) {
  let release: () => void = () => {};
  let arrive: () => void = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const reached = new Promise<void>((resolve) => {
    arrive = resolve;
  });
  let held = false;
  const gated: ObjectStore = {
    get description() {
      return store.description;
    },
    put: (k, body, options) => store.put(k, body, options),
    get: (k, options) => store.get(k, options),
    head: async (k) => {
      if (k === key && !held) {
        held = true;
        arrive();
        await released;
      }
      return store.head(k);
    },
    list: (prefix, options) => store.list(prefix, options),
    delete: (k) => store.delete(k),
    deleteMany: (keys) => store.deleteMany(keys),
    close: async () => {},
  };
  return { store: gated, reached, release: () => release() };
}

async function getCluster(port: number): Promise<ClusterStatus> {
  const response = await fetch(`http://127.0.0.1:${port}/status/cluster`);
  expect(response.status).toBe(200);
  expect(response.headers.get('cache-control')).toBe('no-store');
  return (await response.json()) as ClusterStatus;
}

/** What `/status/cluster` should say of `nodes` as seen from `viewer`: what their own `/status` says. */
async function clusterRowsExpected(nodes: WalshipNode[], viewer: WalshipNode | null) {
  return Promise.all(
    nodes.map(async (node) => {
      const status = await getStatus(node.httpPort);
      return {
        nodeId: node.nodeId,
        url: `http://127.0.0.1:${node.httpPort}`,
        role: status.role,
        epoch: status.epoch ?? null,
        self: node === viewer,
        error: null,
      };
    }),
  );
}

function clusterRowsOf(cluster: ClusterStatus, nodes: WalshipNode[]) {
  return nodes.map((node) => {
    const row = cluster.nodes.find((n) => n.nodeId === node.nodeId);
    return row && pick('nodeId', 'url', 'role', 'epoch', 'self', 'error')(row as never);
  });
}

const tablesOf = (status: Record<string, unknown>) => (status.tables ?? []) as Record<string, unknown>[];

/** Until `replica` has applied every table `primary` committed. */
async function caughtUp(replica: WalshipNode, primary: WalshipNode): Promise<void> {
  await waitFor('the replica to catch up', async () => {
    const committed = tablesOf(await getStatus(primary.httpPort));
    const applied = new Map(tablesOf(await getStatus(replica.httpPort)).map((t) => [t.name, t.appliedTxn]));
    return committed.every((t) => applied.get(t.name) === t.committedTxn);
  });
}

async function waitFor(what: string, condition: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The page's table rows as { column: text }, read in one go (the page redraws every second). */
async function pageTables(page: Page): Promise<Record<string, string>[]> {
  return (await page.evaluate(
    `[...document.querySelectorAll('#tables tbody tr')].map((tr) =>
      Object.fromEntries([...tr.cells].map((td) => [td.dataset.col, td.textContent])))`,
  )) as Record<string, string>[];
}

async function eventsOn(page: Page): Promise<{ kind: string; message: string }[]> {
  return (await page.evaluate(
    `[...document.querySelectorAll('#events li')].map((li) =>
      ({ kind: li.querySelector('.kind').textContent, message: li.querySelector('.message').textContent }))`,
  )) as { kind: string; message: string }[];
}

/** The page's cluster table: node id, role, epoch as shown, and whether it is this node. */
async function clusterOn(
  page: Page,
): Promise<{ node: string; role: string; epoch: string; self: boolean }[]> {
  return (await page.evaluate(
    `[...document.querySelectorAll('#cluster tbody tr')].map((tr) => ({ node: tr.dataset.node,
      role: tr.dataset.role, epoch: tr.querySelector('[data-col="epoch"]').textContent,
      self: tr.classList.contains('self') }))`,
  )) as { node: string; role: string; epoch: string; self: boolean }[];
}

const byNode = (x: { node?: string }, y: { node?: string }) => ((x.node ?? '') < (y.node ?? '') ? -1 : 1);

/** The chart's markers (kind, duration) and table lines (table, colour, points drawn). */
async function chartOn(page: Page) {
  return (await page.evaluate(
    `({ markers: [...document.querySelectorAll('#lag-chart g.marker')].map((g) =>
        ({ kind: g.dataset.kind, durationMs: g.dataset.durationMs })),
      tableLines: [...document.querySelectorAll('#lag-chart path.table-line')].map((p) =>
        ({ table: p.dataset.table, stroke: p.getAttribute('stroke'), points: p.getAttribute('d').split('L').length })),
      legend: [...document.querySelectorAll('#lag-legend li')].map((li) => li.textContent) })`,
  )) as {
    markers: { kind: string; durationMs: string }[];
    tableLines: { table: string; stroke: string; points: number }[];
    legend: string[];
  };
}

function pick(...keys: string[]) {
  return (row: Record<string, unknown>) => Object.fromEntries(keys.map((k) => [k, row[k]]));
}

/** Pixels of a PNG within COLOUR_TOLERANCE of the overall lag line's colour on every channel. */
function linePixels(png: Buffer): number {
  return colourPixels(png, STATUS_PAGE_LINE_COLOUR);
}

/** Pixels of a PNG within COLOUR_TOLERANCE of `colour` (`#rrggbb`) on every channel. */
function colourPixels(png: Buffer, colour: string): number {
  return nearColour(png, colour).length;
}

/** Columns (x) of a PNG holding at least one pixel near `colour`, as colourPixels counts them. */
function colourColumns(png: Buffer, colour: string): number {
  return new Set(nearColour(png, colour)).size;
}

/** The x of every pixel of a PNG within COLOUR_TOLERANCE of `colour` on every channel. */
function nearColour(png: Buffer, colour: string): number[] {
  const image = PNG.sync.read(png);
  const hex = colour.slice(1);
  const [r, g, b] = [0, 2, 4].map((i) => Number.parseInt(hex.slice(i, i + 2), 16)) as [
    number,
    number,
    number,
  ];
  const xs: number[] = [];
  for (let i = 0; i < image.data.length; i += 4) {
    const near =
      Math.abs(image.data[i]! - r) <= COLOUR_TOLERANCE &&
      Math.abs(image.data[i + 1]! - g) <= COLOUR_TOLERANCE &&
      Math.abs(image.data[i + 2]! - b) <= COLOUR_TOLERANCE;
    if (near) xs.push((i / 4) % image.width);
  }
  return xs;
}
