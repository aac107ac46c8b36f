/**
 * `walship verify`: the text reports (unit), argument and reachability exit codes, and
 * `verify --nodes` against a real primary and replicas (in-process WalshipNodes on the filesystem
 * store): equal when caught up, the tampered node named when one row of its SQLite is changed, and
 * "not comparable" when a replica never reaches the primary's watermark. The store audit itself is
 * tested on both stores in replica/store-audit.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../core/index.js';
import { txnFirstOfSegmentKey } from '../layout/index.js';
import type { StoreAuditReport } from '../maintenance/index.js';
import type { WalshipNode } from '../node/index.js';
import { FsStore, type ObjectStore } from '../objectstore/index.js';
import { tableKey } from '../table/index.js';
import { startTestNode } from '../tests/helpers/test-node.js';
import { type NodesReport, renderNodesReport, renderStoreAudit, verifyCommand } from './verify.js';

/** A generous bound for waits (a replica to catch up): never a performance check. */
const WAIT_MS = 30_000;

let base = '';
const nodes: WalshipNode[] = [];
const stores: ObjectStore[] = [];
beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-verify-'));
});
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((node) => node.close()));
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(() => rm(base, { recursive: true, force: true }));

async function run(argv: string[], deps = {}): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await verifyCommand(
    argv,
    { stdout: (t) => out.push(t), stderr: (t) => err.push(t), env: {} },
    deps,
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

// --- Rendering ----------------------------------------------------------------------------------

function report(overrides: Partial<StoreAuditReport> = {}): StoreAuditReport {
  return {
    ok: true,
    deep: true,
    cluster: { clusterId: 'c-1', createdAt: '2024-01-01T00:00:00.000Z', createdBy: 'a' },
    epochs: [
      { epoch: '1', nodeId: 'a', url: 'http://a:9000', reason: 'bootstrap', at: 'x' },
      { epoch: '2', nodeId: 'b', url: 'http://b:9000', reason: 'switchover', at: 'y' },
    ],
    registry: { epoch: '2', tables: 2 },
    sequencer: null,
    tables: [
      {
        name: 'trades',
        key: tableKey('trades'),
        registered: true,
        segments: 12,
        txns: { first: '1', last: '40' },
        bytes: 3 * 1024 * 1024,
        epochs: ['1', '2'],
        fences: 1,
        changes: {
          ttl: '2 DAYS',
          trims: 3,
          trimmedBefore: '2026-12-05T00:00:00.000000Z',
          drops: ['9'],
          upsertKeyChanges: 0,
        },
        txnLog: null,
        findings: [],
      },
      {
        name: 'q',
        key: tableKey('q'),
        registered: true,
        segments: 0,
        txns: null,
        bytes: 0,
        epochs: [],
        fences: 0,
        changes: { ttl: null, trims: 0, trimmedBefore: null, drops: [], upsertKeyChanges: 0 },
        txnLog: null,
        findings: [],
      },
    ],
    snapshots: [],
    registrations: { nodes: 2, unreadable: 0 },
    findings: [],
    findingsDropped: 0,
    ...overrides,
  };
}

describe('renderStoreAudit', () => {
  it('prints the cluster, one line per table and an OK summary', () => {
    const text = renderStoreAudit(report(), 'fs::root=/s');
    expect(text.split('\n')).toEqual([
      'store fs::root=/s: cluster c-1, 2 epochs (newest 2: b http://b:9000), 0 snapshots, 2 registered nodes',
      '  trades  12 segments, txns 1..40, epochs 1,2, 1 fence, dropped at txn 9, TTL 2 DAYS, 3 trims (below 2026-12-05T00:00:00.000000Z), 3.0 MiB  OK',
      '  q       0 segments, no txns, 0 B  OK',
      '',
      'OK: 2 tables, 12 segments, 3.0 MiB fully decoded; 0 errors, 0 warnings',
    ]);
  });

  it('lists the findings by severity and fails the summary on an error', () => {
    const missing = {
      severity: 'error' as const,
      code: 'SEGMENT_MISSING',
      key: 'tables/trades/wal/00000000000000000007.seg',
      table: 'trades',
      message:
        'table trades: txns 7..9 are in no segment (expected tables/trades/wal/00000000000000000007.seg)',
    };
    const stray = { severity: 'warning' as const, code: 'ORPHAN', key: 'junk/x', message: 'junk/x is stray' };
    const base = report();
    base.tables[0]!.findings = [missing];
    const text = renderStoreAudit(
      { ...base, ok: false, deep: false, findings: [missing, stray], findingsDropped: 3 },
      'fs::root=/s',
    );
    expect(text).toContain(
      '  trades  12 segments, txns 1..40, epochs 1,2, 1 fence, dropped at txn 9, TTL 2 DAYS, 3 trims (below 2026-12-05T00:00:00.000000Z), 3.0 MiB  1 finding(s): SEGMENT_MISSING',
    );
    expect(text).toContain(
      `findings:\n  ERROR   SEGMENT_MISSING: ${missing.message}\n  warning ORPHAN: junk/x is stray`,
    );
    expect(text).toContain('  … and 3 more');
    expect(text.split('\n').at(-1)).toBe(
      'FAILED: 2 tables, 12 segments, 3.0 MiB headers only (--shallow); 1 error, 1 warning (+3 not kept)',
    );
  });
});

describe('renderStoreAudit of a sequenced cluster', () => {
  it('prints the txnlog/ chain beside the wal/ chain, or alone, and counts log entries', () => {
    const base = report({
      sequencer: { clusterId: 'c-1', epoch: '2', tables: 1, at: '2025-01-01T00:00:00.000Z' },
    });
    base.tables[0]!.txnLog = {
      entries: 5,
      txns: { first: '41', last: '52' },
      bytes: 1024 * 1024,
      writers: ['p1', 'p2'],
      staged: 6,
      uncommitted: 1,
    };
    base.tables[1]!.txnLog = {
      entries: 1,
      txns: { first: '1', last: '3' },
      bytes: 512,
      writers: ['p2'],
      staged: 1,
      uncommitted: 0,
    };
    expect(renderStoreAudit(base, 'fs::root=/s').split('\n')).toEqual([
      'store fs::root=/s: cluster c-1, 2 epochs (newest 2: b http://b:9000), 0 snapshots, 2 registered nodes, sequenced since epoch 2',
      '  trades  12 segments, txns 1..40, epochs 1,2, 1 fence, dropped at txn 9, TTL 2 DAYS, 3 trims (below 2026-12-05T00:00:00.000000Z); txnlog 5 entries, txns 41..52, writers p1,p2, 1 uncommitted staged, 4.0 MiB  OK',
      '  q       txnlog 1 entry, txns 1..3, writers p2, 512 B  OK',
      '',
      'OK: 2 tables, 12 segments, 6 log entries, 4.0 MiB fully decoded; 0 errors, 0 warnings',
    ]);
  });
});

describe('renderNodesReport', () => {
  it('prints one line per table and the verdict', () => {
    const nodesReport: NodesReport = {
      ok: false,
      unreachable: [],
      tables: [
        {
          table: 'a',
          verdict: 'equal',
          watermark: '3',
          watermarks: {},
          digests: {},
          divergent: [],
          message: 'equal at txn 3',
        },
        {
          table: 'bb',
          verdict: 'diverges',
          watermark: '3',
          watermarks: {},
          digests: {},
          divergent: ['u'],
          message: 'DIVERGES',
        },
      ],
    };
    expect(renderNodesReport(nodesReport)).toBe(
      '  a      equal at txn 3\n  bb     DIVERGES\n\nFAILED: 1 of 2 tables differ or are not comparable',
    );
    expect(renderNodesReport({ ok: false, unreachable: ['http://x:1'], tables: [] })).toBe(
      'unreachable: http://x:1',
    );
  });
});

// --- Arguments and reachability -----------------------------------------------------------------

describe('walship verify arguments', () => {
  it('exits 2 on bad arguments and prints the usage', async () => {
    expect((await run([])).code).toBe(2);
    expect((await run(['--store', 'fs::root=/x;', '--nodes', 'a'])).code).toBe(2);
    expect((await run(['--nodes', 'a', '--wait', 'soon'])).code).toBe(2);
    expect((await run(['--nodes', 'a', '--shallow'])).code).toBe(2);
    const unknown = await run(['--store', 'fs::root=/x;', '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain('unknown option --bogus');
    expect((await run(['--help'])).out).toContain('walship verify --store CONNSTRING');
  });

  it('exits 3 when the store cannot be reached', async () => {
    const store = await FsStore.open({ root: path.join(base, 'unreachable') });
    stores.push(store);
    const failing: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
      get: async () => {
        throw new StoreUnavailableError('the store is down (test)');
      },
      close: async () => {},
    });
    const result = await run(['--store', 'fs::root=/ignored;'], {
      storeOpen: async () => ({ store: failing }),
    });
    expect(result.code).toBe(3);
    expect(result.err).toContain('the store is down (test)');
  });

  it('exits 3 when a node does not answer', async () => {
    const result = await run(['--nodes', 'http://127.0.0.1:1', '--wait', '0s']);
    expect(result.code).toBe(3);
    expect(result.out).toBe('unreachable: http://127.0.0.1:1');
  });
});

// --- verify --nodes -----------------------------------------------------------------------------

const urlOf = (node: WalshipNode) => `http://127.0.0.1:${node.httpPort}`;

async function write(node: WalshipNode, lines: string): Promise<void> {
  const response = await fetch(`${urlOf(node)}/write`, { method: 'POST', body: lines });
  await response.arrayBuffer();
  expect(response.status).toBe(204);
}

function txnOf(node: WalshipNode, table: string): string | undefined {
  const status = node.status() as {
    role?: string;
    tables?: { name: string; committedTxn?: string; appliedTxn?: string }[];
  };
  const entry = status.tables?.find((t) => t.name === table);
  return status.role === 'primary' ? entry?.committedTxn : entry?.appliedTxn;
}

async function until(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A view of `store` in which segments after txn `txnMax` do not exist (a replica that never gets them). */
function hidingSegmentsAfter(store: ObjectStore, txnMax: bigint): ObjectStore {
  const hidden = (key: string) => (txnFirstOfSegmentKey(key) ?? 0n) > txnMax;
  return Object.assign(Object.create(store) as ObjectStore, {
    description: store.description,
    get: async (key: string, options?: Parameters<ObjectStore['get']>[1]) =>
      hidden(key) ? null : store.get(key, options),
    head: async (key: string) => (hidden(key) ? null : store.head(key)),
    list: async (prefix: string, options?: Parameters<ObjectStore['list']>[1]) => {
      const page = await store.list(prefix, options);
      return { ...page, objects: page.objects.filter((o) => !hidden(o.key)) };
    },
    put: store.put.bind(store),
    delete: store.delete.bind(store),
    deleteMany: store.deleteMany.bind(store),
    close: async () => {},
  });
}

describe('walship verify --nodes', () => {
  it('finds a caught-up replica equal, names a tampered one, and calls drifting watermarks not comparable', async () => {
    const store = await FsStore.open({ root: path.join(base, 'store-nodes') });
    stores.push(store);
    const primary = await startTestNode('primary', store, path.join(base, 'p'));
    nodes.push(primary);
    const replicaDir = path.join(base, 'r');
    let replica = await startTestNode('replica', store, replicaDir);
    nodes.push(replica);
    const ts = 1_700_000_000_000_000_000n;
    await write(
      primary,
      `trades id=1i,v=1.5 ${ts}\ntrades id=2i,v=2.5 ${ts + 1000n}\nquotes bid=3.25 ${ts}\n`,
    );
    await write(primary, `trades id=3i,v=3.5 ${ts + 2000n}\n`);
    await until(
      () => txnOf(replica, 'trades') === '2' && txnOf(replica, 'quotes') === '1',
      'the replica applied every txn',
    );

    const lines: string[] = [];
    const progress = { inPlace: true, draw: (line: string) => void lines.push(line) };
    const equal = await run(['--nodes', `${urlOf(primary)},${urlOf(replica)}`, '--wait', '10s', '--json'], {
      progress,
    });
    expect(equal.code).toBe(0);
    // Progress on stderr (here: drawn), the report alone on stdout.
    expect(lines[0]).toMatch(/^walship verify: 0\/2 tables compared, now quotes · /);
    expect(lines.at(-1)).toMatch(/^walship verify: 2\/2 tables compared; done · /);
    lines.length = 0;
    const audit = await run(['--store', `fs::root=${path.join(base, 'store-nodes')};`], { progress });
    expect(audit.code).toBe(0);
    expect(lines.at(-1)).toMatch(/^walship verify: 2\/2 tables, \d+ segments, [\d.]+ \w*B; done · /);
    const equalReport = JSON.parse(equal.out) as NodesReport;
    expect(equalReport.tables.map((t) => [t.table, t.verdict, t.watermark])).toEqual([
      ['quotes', 'equal', '1'],
      ['trades', 'equal', '2'],
    ]);
    // quotes has no id column: it is compared all the same.
    expect(equalReport.tables[0]!.digests[urlOf(primary)]).toMatchObject({ rows: 1, idSum: null });
    expect(equalReport.tables[1]!.digests[urlOf(replica)]).toMatchObject({ rows: 3, idSum: 6 });

    // One value changed in the replica's own SQLite while it is stopped.
    nodes.splice(nodes.indexOf(replica), 1);
    await replica.close();
    const db = new Database(path.join(replicaDir, 'tables.sqlite'));
    try {
      expect(db.prepare('UPDATE trades SET v = v + 1 WHERE id = 2').run().changes).toBe(1);
    } finally {
      db.close();
    }
    replica = await startTestNode('replica', store, replicaDir);
    nodes.push(replica);
    await until(() => txnOf(replica, 'trades') === '2', 'the restarted replica serves its tables');
    const tampered = await run(['--nodes', `${urlOf(primary)},${urlOf(replica)}`, '--wait', '10s']);
    expect(tampered.code).toBe(1);
    expect(tampered.out).toMatch(/^ {2}quotes +equal at txn 1 on 2 nodes/m);
    expect(tampered.out).toContain(
      `  trades  DIVERGES at txn 2: ${urlOf(replica)} (3 rows, id sum 6, sha256 `,
    );
    expect(tampered.out).toContain(`differs from the primary: ${urlOf(primary)} (3 rows, id sum 6, sha256 `);

    // A replica that never sees trades' txn 3 while the primary has it: never comparable.
    const behind = await startTestNode('replica', hidingSegmentsAfter(store, 2n), path.join(base, 'behind'));
    nodes.push(behind);
    await until(() => txnOf(behind, 'trades') === '2', 'the lagging replica applied what it can see');
    await write(primary, `trades id=4i,v=4.5 ${ts + 3000n}\n`);
    const drifting = await run([
      '--nodes',
      `${urlOf(primary)},${urlOf(behind)}`,
      '--table',
      'trades',
      '--wait',
      '300ms',
    ]);
    expect(drifting.code).toBe(1);
    expect(drifting.out).toContain(
      `trades  not comparable: watermarks differ (${urlOf(primary)}: 3, ${urlOf(behind)}: 2)`,
    );
  }, 60_000);
});
