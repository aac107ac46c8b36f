/**
 * `GET /metrics` of real nodes (a primary and a replica in this process over an fs store): every
 * value is checked against `/status`, the store's listing or the rows written, never against a
 * constant. Also: every log line of a node names it (nodeId, role, epoch) through a switchover.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { seededRandom, systemClock } from '../core/index.js';
import { EPOCHS_PREFIX } from '../layout/index.js';
import {
  FsStore,
  listAll,
  MemoryStore,
  type ObjectStore,
  withFaults,
  withMetrics,
  withRetries,
} from '../objectstore/index.js';
import { type Exposition, parseExposition, sum, value, values } from '../tests/helpers/exposition.js';
import { gatedStore } from '../tests/helpers/gated-store.js';
import { testNodeSettings } from '../tests/helpers/test-node.js';
import { NodeMetrics } from './node-metrics.js';
import { WalshipNode } from './walship-node.js';

async function scrape(node: WalshipNode, headers: Record<string, string> = {}) {
  const response = await fetch(`http://127.0.0.1:${node.httpPort}/metrics`, { headers });
  const text = await response.text();
  return { status: response.status, contentType: response.headers.get('content-type'), text };
}

async function metricsOf(node: WalshipNode): Promise<Exposition> {
  const { status, text } = await scrape(node);
  expect(status).toBe(200);
  return parseExposition(text);
}

interface TableStatus {
  name: string;
  committedTxn?: string;
  uploadedTxn?: string;
  pendingTxns?: number;
  appliedTxn?: string;
  txnsBehind?: string;
  segmentsApplied?: number;
  rowsApplied?: number;
}

async function statusOf(node: WalshipNode): Promise<Record<string, unknown> & { tables: TableStatus[] }> {
  const response = await fetch(`http://127.0.0.1:${node.httpPort}/status`);
  return (await response.json()) as Record<string, unknown> & { tables: TableStatus[] };
}

/** Poll until `check` holds; the deadline only keeps a broken build from hanging the run. */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function write(node: WalshipNode, lines: string[]): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${node.httpPort}/write`, {
    method: 'POST',
    body: `${lines.join('\n')}\n`,
  });
  expect(response.status).toBe(204);
}

/** The primary uploaded everything and the replica applied all of it. */
async function converged(primary: WalshipNode, replica: WalshipNode): Promise<void> {
  await until(async () => {
    const p = await statusOf(primary);
    const r = await statusOf(replica);
    return p.tables.every(
      (t) =>
        t.committedTxn === t.uploadedTxn &&
        r.tables.some((rt) => rt.name === t.name && rt.appliedTxn === t.committedTxn),
    );
  }, 'the replica applied everything the primary committed');
}

/** Segment objects in the store, by table key: [count, bytes]. */
async function segmentsInStore(store: ObjectStore): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  for await (const info of listAll(store, 'tables/')) {
    if (!/\/wal\/\d+\.seg$/.test(info.key)) continue;
    count++;
    bytes += info.sizeBytes;
  }
  return { count, bytes };
}

let base = '';
let dirs = 0;
const nodes: WalshipNode[] = [];
const stores: ObjectStore[] = [];

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-metrics-'));
});
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((node) => node.close()));
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(() => rm(base, { recursive: true, force: true }));

async function freshStore(): Promise<{ store: ObjectStore; dir: () => string }> {
  const root = path.join(base, `case-${++dirs}`);
  const store = await FsStore.open({ root: path.join(root, 'store') });
  stores.push(store);
  let n = 0;
  return { store, dir: () => path.join(root, `node-${++n}`) };
}

/** A WalshipNode whose log lines land in `lines` (debug level). */
async function startNode(
  role: 'primary' | 'replica',
  store: ObjectStore,
  dataDir: string,
  options: { lines?: string[]; httpAuth?: { bearer: string[] } } = {},
): Promise<WalshipNode> {
  const lines = options.lines;
  const log =
    lines === undefined
      ? pino({ level: 'silent' })
      : pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  const auth = options.httpAuth === undefined ? {} : { httpAuth: options.httpAuth };
  const node = await WalshipNode.start(
    role,
    testNodeSettings(store, dataDir, { primary: auth, replica: auth }),
    { clock: systemClock, random: seededRandom(11), log },
  );
  nodes.push(node);
  return node;
}

/** Rows written by `writeBatches`, per table. */
const TABLES = ['trades', 'quotes'];

/** Three batches, each uploaded before the next: at least three segments per table. */
async function writeBatches(primary: WalshipNode, replica: WalshipNode): Promise<Record<string, number>> {
  const rows: Record<string, number> = { trades: 0, quotes: 0 };
  for (let batch = 1; batch <= 3; batch++) {
    const lines: string[] = [];
    for (let i = 0; i < batch * 2; i++) {
      lines.push(`trades,sym=S${i} price=${batch}.${i},qty=${i}i`);
      rows.trades = (rows.trades ?? 0) + 1;
    }
    lines.push(`quotes,sym=Q bid=${batch}.5`);
    rows.quotes = (rows.quotes ?? 0) + 1;
    await write(primary, lines);
    await converged(primary, replica);
  }
  return rows;
}

describe('GET /metrics', () => {
  test('watermarks, uploads, applies and store requests agree with /status, the store and the rows written', async () => {
    const { store, dir } = await freshStore();
    const primary = await startNode('primary', store, dir());
    const replica = await startNode('replica', store, dir());
    const rows = await writeBatches(primary, replica);

    const p = await metricsOf(primary);
    const pStatus = await statusOf(primary);
    expect(p.invalid).toEqual([]);
    expect(value(p, 'walship_node_info', { role: 'primary', node_id: String(pStatus.nodeId) })).toBe(1);
    expect(value(p, 'walship_node_info')).toBe(1);
    expect(value(p, 'walship_epoch')).toBe(Number(pStatus.epoch));
    expect(value(p, 'walship_accepting_writes')).toBe(pStatus.acceptingWrites === true ? 1 : 0);
    expect(pStatus.tables.map((t) => t.name).sort()).toEqual([...TABLES].sort());
    for (const t of pStatus.tables) {
      expect(value(p, 'walship_table_committed_txn', { table: t.name })).toBe(Number(t.committedTxn));
      expect(value(p, 'walship_table_uploaded_txn', { table: t.name })).toBe(Number(t.uploadedTxn));
      expect(value(p, 'walship_table_pending_txns', { table: t.name })).toBe(t.pendingTxns);
    }
    // A primary has no replica series.
    expect(values(p, 'walship_table_applied_txn')).toEqual([]);

    const inStore = await segmentsInStore(store);
    expect(inStore.count).toBeGreaterThanOrEqual(TABLES.length * 3);
    expect(sum(p, 'walship_segment_uploads_total', { outcome: 'ok' })).toBe(inStore.count);
    expect(sum(p, 'walship_segment_upload_bytes_total')).toBe(inStore.bytes);
    expect(sum(p, 'walship_segment_uploads_total', { outcome: 'error' })).toBe(0);

    // The histogram: cumulative buckets ending in +Inf = count; a sum; count = upload attempts.
    const buckets = values(p, 'walship_segment_upload_seconds_bucket', { outcome: 'ok' });
    expect(buckets.length).toBeGreaterThan(1);
    expect(buckets.at(-1)!.labels.le).toBe('+Inf');
    for (let i = 1; i < buckets.length; i++)
      expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    const count = value(p, 'walship_segment_upload_seconds_count', { outcome: 'ok' });
    expect(buckets.at(-1)!.value).toBe(count);
    expect(count).toBe(inStore.count);
    expect(value(p, 'walship_segment_upload_seconds_sum', { outcome: 'ok' })).toBeGreaterThan(0);
    expect(sum(p, 'walship_store_requests_total', { op: 'put', outcome: 'ok' })).toBeGreaterThanOrEqual(
      inStore.count,
    );

    const r = await metricsOf(replica);
    const rStatus = await statusOf(replica);
    expect(r.invalid).toEqual([]);
    expect(value(r, 'walship_node_info', { role: 'replica', node_id: String(rStatus.nodeId) })).toBe(1);
    expect(value(r, 'walship_accepting_writes')).toBe(0);
    expect(values(r, 'walship_table_committed_txn')).toEqual([]);
    let applied = 0;
    for (const t of rStatus.tables) {
      expect(value(r, 'walship_table_applied_txn', { table: t.name })).toBe(Number(t.appliedTxn));
      expect(value(r, 'walship_table_txns_behind', { table: t.name })).toBe(Number(t.txnsBehind));
      expect(value(r, 'walship_table_suspended', { table: t.name })).toBe(0);
      expect(value(r, 'walship_segment_applies_total', { table: t.name })).toBe(t.segmentsApplied);
      expect(value(r, 'walship_segment_apply_rows_total', { table: t.name })).toBe(rows[t.name]);
      applied += t.segmentsApplied ?? 0;
    }
    expect(applied).toBe(inStore.count);
    expect(sum(r, 'walship_segment_apply_bytes_total')).toBe(inStore.bytes);
    expect(value(r, 'walship_segment_apply_seconds_count')).toBe(inStore.count);
    expect(value(r, 'walship_replica_staleness_seconds')).toBeGreaterThanOrEqual(0);

    // The replica keeps polling: its GETs grow between two scrapes.
    const getsBefore = sum(r, 'walship_store_requests_total', { op: 'get' });
    expect(getsBefore).toBeGreaterThan(0);
    await until(
      async () => sum(await metricsOf(replica), 'walship_store_requests_total', { op: 'get' }) > getsBefore,
      'the replica polled again',
    );
    const storeCount = sum(r, 'walship_store_request_seconds_count', { op: 'get' });
    expect(storeCount).toBe(getsBefore);
  });

  test('the exposition is valid text format: content type, HELP and TYPE for every family', async () => {
    const { store, dir } = await freshStore();
    const primary = await startNode('primary', store, dir());
    await write(primary, ['valid,sym=A x=1i']);
    const { status, contentType, text } = await scrape(primary);
    expect(status).toBe(200);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const exposition = parseExposition(text);
    expect(exposition.invalid).toEqual([]);
    expect(exposition.samples.length).toBeGreaterThan(10);
    for (const sample of exposition.samples) {
      const family = exposition.type.has(sample.name)
        ? sample.name
        : sample.name.replace(/_(bucket|sum|count)$/, '');
      expect(exposition.type.get(family), sample.name).toMatch(/^(counter|gauge|histogram)$/);
      expect(exposition.help.has(family), sample.name).toBe(true);
      if (exposition.type.get(family) === 'counter') expect(sample.name).toMatch(/_total$/);
    }
    // The request-side families (tests/metrics.test.ts moves them) are declared from the first scrape.
    const families: Record<string, string> = {
      walship_ilp_requests_total: 'counter',
      walship_ilp_rows_total: 'counter',
      walship_ilp_received_bytes_total: 'counter',
      walship_ilp_request_seconds: 'histogram',
      walship_durable_ack_seconds: 'histogram',
      walship_queries_total: 'counter',
      walship_query_seconds: 'histogram',
      walship_reads_refused_total: 'counter',
      walship_promotions_total: 'counter',
      walship_promotion_seconds: 'histogram',
      walship_failover_seconds: 'histogram',
    };
    for (const [name, type] of Object.entries(families)) {
      expect(exposition.type.get(name), name).toBe(type);
      expect(exposition.help.get(name), name).toMatch(/\S/);
    }
  });

  test('a switchover changes the role series and counts fencing events; /metrics answers while switching', async () => {
    const { store, dir } = await freshStore();
    const linesA: string[] = [];
    const linesB: string[] = [];
    const a = await startNode('primary', store, dir(), { lines: linesA });
    // B's store holds the epoch claim of its promotion until released: B stays "switching".
    const gate = gatedStore(store, (key) => key.startsWith(EPOCHS_PREFIX));
    const b = await startNode('replica', gate.store, dir(), { lines: linesB });
    await writeBatches(a, b);
    const before = { a: await metricsOf(a), b: await metricsOf(b) };
    for (const kind of ['promoted', 'demoted', 'fenced']) {
      expect(value(before.a, 'walship_fencing_events_total', { kind })).toBe(0);
      expect(value(before.b, 'walship_fencing_events_total', { kind })).toBe(0);
    }

    const { epoch } = await a.demote();
    const promotion = b.promote('metrics test');
    await gate.reached;
    expect(b.role).toBe('switching');
    const switching = await metricsOf(b);
    expect(switching.invalid).toEqual([]);
    expect(value(switching, 'walship_node_info')).toBe(1);
    expect(values(switching, 'walship_node_info', { role: 'switching' })).toHaveLength(1);
    expect(values(switching, 'walship_table_applied_txn')).toEqual([]);
    gate.release();
    const promoted = await promotion;
    expect(promoted.epoch).toBeGreaterThan(epoch);

    const after = { a: await metricsOf(a), b: await metricsOf(b) };
    expect(values(after.a, 'walship_node_info', { role: 'replica' })).toHaveLength(1);
    expect(values(after.b, 'walship_node_info', { role: 'primary' })).toHaveLength(1);
    expect(value(after.a, 'walship_fencing_events_total', { kind: 'demoted' })).toBe(1);
    expect(value(after.b, 'walship_fencing_events_total', { kind: 'promoted' })).toBe(1);
    expect(value(after.b, 'walship_epoch')).toBe(Number(promoted.epoch));
    expect(value(after.b, 'walship_accepting_writes')).toBe(1);
    // A's replica series replace its primary ones; counters kept across the role change.
    expect(values(after.a, 'walship_table_committed_txn')).toEqual([]);
    expect(values(after.a, 'walship_table_applied_txn').length).toBe(TABLES.length);
    expect(sum(after.a, 'walship_segment_uploads_total', { outcome: 'ok' })).toBe(
      sum(before.a, 'walship_segment_uploads_total', { outcome: 'ok' }),
    );

    // Every log line of both nodes, through the demotion and the promotion, names the node.
    for (const [name, lines, node] of [
      ['A', linesA, a],
      ['B', linesB, b],
    ] as const) {
      const roles = new Set<string>();
      const epochs = new Set<string | null>();
      for (const line of lines) {
        const entry = JSON.parse(line) as Record<string, unknown>;
        expect(entry, line).toHaveProperty('nodeId');
        expect(entry, line).toHaveProperty('role');
        expect(entry, line).toHaveProperty('epoch');
        expect(['primary', 'replica', 'switching']).toContain(entry.role);
        // A primary's epoch is null only before it is claimed; otherwise epochs are null off primaries.
        if (entry.role === 'primary' && entry.epoch !== null) expect(entry.epoch, line).toMatch(/^\d+$/);
        if (entry.role === 'replica') expect(entry.epoch, line).toBeNull();
        if (entry.role !== 'switching' && entry.nodeId !== null) expect(entry.nodeId).toBe(node.nodeId);
        roles.add(entry.role as string);
        epochs.add(entry.epoch as string | null);
      }
      expect([...roles].sort(), name).toEqual(expect.arrayContaining(['primary', 'replica']));
      expect(
        [...epochs].some((e) => e !== null),
        name,
      ).toBe(true);
    }
    expect(
      linesB.some((line) => (JSON.parse(line) as { epoch: unknown }).epoch === promoted.epoch.toString()),
    ).toBe(true);
  });

  test('with HTTP credentials configured, /metrics needs them like queries do', async () => {
    const { store, dir } = await freshStore();
    const primary = await startNode('primary', store, dir(), { httpAuth: { bearer: ['metrics-token'] } });
    expect((await scrape(primary)).status).toBe(401);
    expect((await scrape(primary, { authorization: 'Bearer wrong' })).status).toBe(401);
    const ok = await scrape(primary, { authorization: 'Bearer metrics-token' });
    expect(ok.status).toBe(200);
    expect(parseExposition(ok.text).invalid).toEqual([]);
    // /status stays public (the status page uses it).
    expect((await fetch(`http://127.0.0.1:${primary.httpPort}/status`)).status).toBe(200);
  });

  test('store requests and retries count by operation and outcome (the decorators the CLI wires)', async () => {
    const metrics = new NodeMetrics();
    // Two failures of every put, then the store heals; gets of the "down/" prefix always fail.
    const faulty = withFaults(new MemoryStore(), [
      { fault: { type: 'error' }, operations: ['put'], times: 2 },
      { fault: { type: 'error' }, operations: ['get'], keyPrefix: 'down/' },
    ]);
    const retried = withRetries(faulty, {
      policy: { attempts: 3, baseDelayMs: 1, maxDelayMs: 1 },
      onRetry: (event) => metrics.onRetry(event),
    });
    const store = withMetrics(retried, (event) => metrics.onStoreRequest(event));
    expect((await store.put('a', new Uint8Array(5))).status).toBe('written');
    expect(await store.get('missing')).toBeNull();
    await expect(store.get('down/x')).rejects.toMatchObject({ kind: 'unavailable' });
    const exposition = parseExposition(await metrics.render({ role: 'switching' }));
    expect(exposition.invalid).toEqual([]);
    // 2 failed puts + 2 retried gets of down/x (3 attempts): what the fault plan injected.
    expect(value(exposition, 'walship_store_retries_total', { op: 'put' })).toBe(2);
    expect(value(exposition, 'walship_store_retries_total', { op: 'get' })).toBe(2);
    expect(value(exposition, 'walship_store_requests_total', { op: 'put', outcome: 'ok' })).toBe(1);
    expect(value(exposition, 'walship_store_requests_total', { op: 'get', outcome: 'missing' })).toBe(1);
    expect(value(exposition, 'walship_store_requests_total', { op: 'get', outcome: 'error' })).toBe(1);
    expect(value(exposition, 'walship_store_transferred_bytes_total', { op: 'put' })).toBe(5);
    expect(value(exposition, 'walship_store_request_seconds_count', { op: 'get' })).toBe(2);
  });
});
