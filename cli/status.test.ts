import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom, systemClock } from '../core/index.js';
import type { SnapshotManifest } from '../layout/index.js';
import { WalshipNode } from '../node/index.js';
import { FsStore, type GetOptions, MemoryStore, type ObjectStore } from '../objectstore/index.js';
import { type ReplicaNode, restoreSnapshot } from '../replica/index.js';
import { testNodeSettings } from '../tests/helpers/test-node.js';
import type { CommandIo } from './io.js';
import {
  clusterProblems,
  fetchNodeViews,
  lastErrorOf,
  type NodeView,
  nodeViewOf,
  renderNodeTable,
  renderProgress,
  statusCommand,
} from './status.js';

// --- helpers ------------------------------------------------------------------------------------

function captureIo(env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CommandIo = { stdout: (text) => out.push(text), stderr: (text) => err.push(text), env };
  return { io, out, err };
}

function view(overrides: Partial<NodeView>): NodeView {
  return {
    url: 'http://127.0.0.1:9000',
    reachable: true,
    error: null,
    nodeId: 'node-a',
    role: 'primary',
    epoch: '1',
    acceptingWrites: true,
    tables: 2,
    lag: { txns: '0', ms: 35 },
    lastError: null,
    operation: null,
    status: {},
    ...overrides,
  };
}

const primaryStatus = (tables: Record<string, unknown>[], extra: Record<string, unknown> = {}) => ({
  role: 'primary',
  nodeId: 'p1',
  clusterId: 'c',
  epoch: '3',
  acceptingWrites: true,
  fencedBy: null,
  store: { description: 'fs', lastError: null },
  tables,
  ...extra,
});

const replicaStatus = (tables: Record<string, unknown>[], extra: Record<string, unknown> = {}) => ({
  role: 'replica',
  nodeId: 'r1',
  clusterId: 'c',
  acceptingWrites: false,
  stalenessMs: 120,
  store: { description: 'fs', lastError: null },
  following: true,
  snapshot: null,
  tables,
  ...extra,
});

/** The cells of the table row that starts with `url` (columns are separated by two spaces or more). */
function rowOf(text: string, url: string): string[] {
  const line = text.split('\n').find((l) => l.startsWith(`${url} `));
  expect(line, `a row for ${url} in:\n${text}`).toBeDefined();
  return line!.split(/\s{2,}/);
}

/** Resolves once `check` is true (expect.poll cannot run in hooks); fails after 20 s. */
async function waitUntil(check: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + 20_000;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error('the cluster did not settle within 20 s');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// --- unit: views, lag, last error ----------------------------------------------------------------

describe('nodeViewOf', () => {
  it('a primary: Σ pending txns and the oldest pending txn’s age', () => {
    const v = nodeViewOf(
      'u',
      primaryStatus([
        { name: 'a', epoch: '3', pendingTxns: 4, oldestPendingAgeMs: 700, lastUploadAgoMs: 5_000 },
        { name: 'b', pendingTxns: 3, oldestPendingAgeMs: 1_200, lastUploadAgoMs: 10 },
        { name: 'c', pendingTxns: 0, oldestPendingAgeMs: null, lastUploadAgoMs: 99_000 },
      ]),
    );
    expect(v).toMatchObject({
      reachable: true,
      nodeId: 'p1',
      role: 'primary',
      epoch: '3',
      acceptingWrites: true,
      tables: 3,
      lag: { txns: '7', ms: 1_200 },
      lastError: null,
      operation: null,
    });
  });

  it('a primary that does not report pending ages: lastUploadAgoMs of the tables with pending txns', () => {
    const v = nodeViewOf(
      'u',
      primaryStatus([
        { name: 'a', pendingTxns: 2, lastUploadAgoMs: 400 },
        { name: 'b', pendingTxns: 0, lastUploadAgoMs: 90_000 },
      ]),
    );
    expect(v.lag).toEqual({ txns: '2', ms: 400 });
  });

  it('a primary with nothing pending lags 0 txns / 0 ms', () => {
    expect(nodeViewOf('u', primaryStatus([{ name: 'a', pendingTxns: 0, lastUploadAgoMs: 9 }])).lag).toEqual({
      txns: '0',
      ms: 0,
    });
  });

  it('a replica: Σ txnsBehind without losing precision, its staleness, its newest table epoch', () => {
    const v = nodeViewOf(
      'u',
      replicaStatus([
        { name: 'a', epoch: '2', appliedTxn: '5', txnsBehind: '9007199254740993', suspended: null },
        { name: 'b', epoch: '4', appliedTxn: '5', txnsBehind: '2', suspended: null },
      ]),
    );
    expect(v).toMatchObject({ role: 'replica', epoch: '4', acceptingWrites: false, tables: 2 });
    expect(v.lag).toEqual({ txns: '9007199254740995', ms: 120 });
  });

  it('a switching node shows its operation and an unknown lag', () => {
    const v = nodeViewOf('u', {
      role: 'switching',
      nodeId: null,
      operation: { name: 'bootstrap', phase: 'restore', done: 10, total: 10, unit: 'bytes', startedAgoMs: 5 },
    });
    expect(v).toMatchObject({ role: 'switching', epoch: null, lag: { txns: null, ms: null } });
    expect(v.operation).toEqual({
      name: 'bootstrap',
      phase: 'restore',
      done: 10,
      total: 10,
      unit: 'bytes',
      startedAgoMs: 5,
    });
  });
});

describe('lastErrorOf', () => {
  const suspendedTable = { name: 'trades', suspended: { code: 'CORRUPT_SEGMENT', message: 'bad', key: 'k' } };

  it('prefers being fenced over anything else', () => {
    const status = primaryStatus([suspendedTable], { fencedBy: 'node-b (epoch 4)' });
    expect(lastErrorOf(status, status.tables)).toBe('fenced by node-b (epoch 4)');
  });

  it('names suspended tables with their codes', () => {
    const tables = [
      suspendedTable,
      { name: 'quotes', suspended: { code: 'EPOCH_REGRESSION' } },
      { name: 'ok' },
    ];
    expect(lastErrorOf(replicaStatus(tables), tables)).toBe(
      'suspended: trades (CORRUPT_SEGMENT), quotes (EPOCH_REGRESSION)',
    );
  });

  it("says plainly when a replica's primary stopped renewing its lease (issue 19)", () => {
    const late = replicaStatus([], { primaryLease: { unrenewedMs: 1_500, timeoutMs: 2_000 } });
    expect(lastErrorOf(late, [])).toBe(
      'the primary has not renewed its lease for 1.5 s (failover after 2.0 s)',
    );
    const fine = replicaStatus([], { primaryLease: { unrenewedMs: 400, timeoutMs: 2_000 } });
    expect(lastErrorOf(fine, [])).toBeNull();
  });

  it('says when a replica stopped following, and a divergence', () => {
    expect(lastErrorOf(replicaStatus([], { following: { stopped: 'another cluster' } }), [])).toBe(
      'stopped following: another cluster',
    );
    const diverged = replicaStatus([], { divergence: { epoch: '2', files: [{}, {}], movedTo: null } });
    expect(lastErrorOf(diverged, [])).toBe('diverged at epoch 2: 2 table(s) in divergence files');
  });

  it('falls back to the store’s last error with its age, else null', () => {
    const status = replicaStatus([], { store: { lastError: { message: 'ECONNRESET', agoMs: 4_200 } } });
    expect(lastErrorOf(status, [])).toBe('store: ECONNRESET (4.2 s ago)');
    expect(lastErrorOf(replicaStatus([]), [])).toBeNull();
  });
});

describe('clusterProblems', () => {
  it('is empty for one accepting primary and answering replicas', () => {
    expect(clusterProblems([view({}), view({ role: 'replica', acceptingWrites: false })])).toEqual([]);
  });

  it('says when no primary accepts writes, a node did not answer, or two primaries accept writes', () => {
    const down = view({ reachable: false, role: null, acceptingWrites: null, error: 'connection refused' });
    expect(clusterProblems([view({ role: 'replica', acceptingWrites: false }), down])).toEqual([
      '1 of 2 nodes did not answer',
      'no primary is accepting writes',
    ]);
    const two = clusterProblems([view({ nodeId: 'a', epoch: '1' }), view({ nodeId: 'b', epoch: '2' })]);
    expect(two).toEqual([expect.stringMatching(/^2 primaries accept writes: a \(epoch 1\), b \(epoch 2\)/)]);
  });
});

// --- unit: rendering ----------------------------------------------------------------------------

describe('renderNodeTable', () => {
  const views = [
    view({ url: 'http://10.0.0.1:9000', nodeId: 'primary-1', epoch: '12', lag: { txns: '0', ms: 35 } }),
    view({
      url: 'http://10.0.0.2:9000',
      nodeId: 'r',
      role: 'replica',
      epoch: '12',
      acceptingWrites: false,
      lag: { txns: '1234', ms: null },
      lastError: `suspended: ${'x'.repeat(300)}`,
      operation: {
        name: 'catch-up',
        phase: 'apply',
        done: 100,
        total: 1334,
        unit: 'txns',
        startedAgoMs: 1_000,
      },
    }),
    view({
      url: 'http://10.0.0.3:9000',
      reachable: false,
      nodeId: null,
      role: null,
      epoch: null,
      acceptingWrites: null,
      lag: { txns: null, ms: null },
      lastError: 'unreachable: connection refused',
    }),
  ];

  it('aligns every column under its header', () => {
    const lines = renderNodeTable(views, { width: 200 }).split('\n');
    const header = lines[0]!;
    const rows = lines.filter((l) => l.startsWith('http://'));
    expect(rows).toHaveLength(3);
    for (const name of ['ID', 'ROLE', 'EPOCH', 'WRITES', 'TABLES', 'LAG', 'LAST ERROR']) {
      const column = header.indexOf(`  ${name}`) + 2;
      for (const row of rows) {
        if (row.length < column) continue; // an empty last cell
        expect(row[column - 1], `${name} in ${row}`).toBe(' ');
        if (row.length > column) expect(row[column], `${name} in ${row}`).not.toBe(' ');
      }
    }
    expect(rowOf(lines.join('\n'), 'http://10.0.0.1:9000')).toEqual([
      'http://10.0.0.1:9000',
      'primary-1',
      'primary',
      '12',
      'yes',
      '2',
      '0 txns / 35 ms',
    ]);
    expect(rowOf(lines.join('\n'), 'http://10.0.0.3:9000').slice(2)).toEqual([
      'unreachable',
      '-',
      '-',
      '-',
      '-',
      'unreachable: connection refused',
    ]);
  });

  it('cuts the last error to the width, never a line past it', () => {
    for (const width of [110, 140]) {
      const text = renderNodeTable(views, { width });
      const replicaLine = text.split('\n').find((l) => l.startsWith('http://10.0.0.2'))!;
      expect(replicaLine.length).toBe(width);
      expect(replicaLine.endsWith('…')).toBe(true);
      expect(replicaLine).toContain('1234 txns / -');
    }
  });

  it('puts a progress line under a node with an operation', () => {
    const lines = renderNodeTable(views, { width: 200 }).split('\n');
    const at = lines.findIndex((l) => l.startsWith('http://10.0.0.2'));
    expect(lines[at + 1]).toBe('  catch-up (apply)  [#-------------------]   7%  100/1334 txns  ETA 13 s');
  });

  it('shows what a node reports, never lets the terminal interpret it', () => {
    const hostile = view({ nodeId: 'a\x1b[2Jb', lastError: 'line one\nline two \x1b]0;title\x07 end' });
    const text = renderNodeTable([hostile], { width: 200 });
    expect(text).not.toContain('\x1b');
    expect(text).not.toContain('\x07');
    expect(text.split('\n')).toHaveLength(2);
    expect(text).toContain('line one line two');
  });

  it('colours only when asked', () => {
    expect(renderNodeTable(views)).not.toContain('\x1b[');
    const coloured = renderNodeTable(views, { color: true });
    expect(coloured).toContain('\x1b[32mprimary');
    expect(coloured).toContain('\x1b[31munreachable');
  });
});

describe('renderProgress', () => {
  it('bytes: a bar, a percentage, sizes in the total’s unit and an ETA', () => {
    const MiB = 1024 * 1024;
    expect(
      renderProgress({
        name: 'bootstrap',
        phase: '',
        done: 12.3 * MiB,
        total: 30 * MiB,
        unit: 'bytes',
        startedAgoMs: 2_800,
      }),
    ).toBe('bootstrap  [########------------]  41%  12.3/30.0 MiB  ETA 5 s');
  });

  it('no total: what was done so far, no bar', () => {
    expect(
      renderProgress({
        name: 'restore',
        phase: 'download',
        done: 2048,
        total: null,
        unit: 'bytes',
        startedAgoMs: 1,
      }),
    ).toBe('restore (download)  2.0 KiB');
  });

  it('done: a full bar and no ETA', () => {
    expect(
      renderProgress({
        name: 'bootstrap',
        phase: 'restore',
        done: 10,
        total: 10,
        unit: 'bytes',
        startedAgoMs: 9,
      }),
    ).toBe('bootstrap (restore)  [####################] 100%  10/10 B');
  });
});

// --- unit: fetching -----------------------------------------------------------------------------

describe('fetchNodeViews', () => {
  it('reports every way a node can fail to answer, in the order asked', async () => {
    const fakeFetch = (async (input: URL, init?: RequestInit) => {
      const host = input.host;
      if (host === 'refused:1')
        throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
      if (host === 'error:1') return new Response('{"x":1}', { status: 500 });
      if (host === 'text:1') return new Response('<html>', { status: 200 });
      if (host === 'ok:1') return Response.json(replicaStatus([]));
      return new Promise((_, reject) => {
        init?.signal?.addEventListener('abort', () => reject(init.signal?.reason));
      });
    }) as typeof fetch;
    const views = await fetchNodeViews(
      ['http://refused:1', 'http://error:1', 'text:1', 'http://silent:1', 'http://ok:1/'],
      { fetch: fakeFetch, timeoutMs: 30 },
    );
    expect(views.map((v) => [v.url, v.reachable, v.error])).toEqual([
      ['http://refused:1', false, 'connection refused'],
      ['http://error:1', false, '/status answered HTTP 500'],
      ['text:1', false, '/status answered something that is not JSON'],
      ['http://silent:1', false, 'no answer within 30 ms'],
      ['http://ok:1', true, null],
    ]);
    expect(views[0]!.lastError).toBe('unreachable: connection refused');
    expect(views[4]!.role).toBe('replica');
  });

  it('never shows credentials of a URL', async () => {
    const { io, out, err } = captureIo();
    const fakeFetch = (async () => {
      throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    }) as typeof fetch;
    const code = await statusCommand(['--nodes', 'http://admin:s3cret@127.0.0.1:1'], io, {
      fetch: fakeFetch,
    });
    expect(code).toBe(1);
    expect(out.join('\n')).toContain('http://127.0.0.1:1');
    expect([...out, ...err].join('\n')).not.toContain('s3cret');
  });
});

describe('statusCommand arguments', () => {
  it.each([
    [[], 'give --nodes URL,… or --store CONNSTRING'],
    [['--nodes', 'http://a:1', '--store', 'fs::root=/tmp/x;'], 'not both'],
    [['--nodes', 'http://a:1', '--watch=soon'], '--watch: expected a duration'],
    [['--nodes', ','], 'at least one URL'],
    [['--nodes', 'http://a:1', '--timeout', '0'], '--timeout must be more than 0'],
  ])('%j is a usage error (exit 2)', async (argv, message) => {
    const { io, err } = captureIo();
    expect(await statusCommand(argv, io)).toBe(2);
    expect(err.join('\n')).toContain(message);
  });

  it('--help prints the usage', async () => {
    const { io, out } = captureIo();
    expect(await statusCommand(['--help'], io)).toBe(0);
    expect(out.join('\n')).toMatch(/^walship status --nodes/);
  });

  it('a store that cannot be read is exit 3, and says which store', async () => {
    const { io, out } = captureIo();
    const closed = new MemoryStore({ name: 'the-test-store' });
    await closed.close();
    expect(
      await statusCommand(['--store', 'fs::root=/nowhere;'], io, {
        storeOpen: async () => ({ store: closed }),
      }),
    ).toBe(3);
    expect(out.join('\n')).toMatch(/^cannot read .*the-test-store.*: /);
  });

  it('a store that cannot be opened is exit 3', async () => {
    const { io, err } = captureIo();
    const storeOpen = async () => {
      throw Object.assign(new Error('no route to the store'), {});
    };
    expect(await statusCommand(['--store', 'fs::root=/nowhere;'], io, { storeOpen })).toBe(3);
    expect(err.join('\n')).toContain('no route to the store');
  });
});

// --- integration: real nodes on a filesystem store ----------------------------------------------

const silent = pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' });
const deps = { clock: systemClock, random: seededRandom(3), log: silent };
/** Registrations are written at start and at role changes only (no timer fires during the test). */
const REGISTER_INTERVAL_MS = 3_600_000;

describe('walship status against running nodes', () => {
  let base: string;
  let root: string;
  let store: FsStore;
  let primary: WalshipNode;
  let replica: WalshipNode;
  const started: WalshipNode[] = [];
  let primaryUrl: string;
  let replicaUrl: string;
  let nextId = 0;

  async function start(
    role: 'primary' | 'replica',
    name: string,
    over: { store?: ObjectStore; port?: number } = {},
  ) {
    const settings = testNodeSettings(over.store ?? store, path.join(base, name));
    if (over.port !== undefined) {
      settings.primary = { ...settings.primary, http: { host: '127.0.0.1', port: over.port } };
    }
    const node = await WalshipNode.start(
      role,
      { ...settings, registerIntervalMs: REGISTER_INTERVAL_MS },
      deps,
    );
    started.push(node);
    return node;
  }

  async function writeRows(count: number): Promise<void> {
    let body = '';
    for (let i = 0; i < count; i++) {
      const id = nextId++;
      body += `trades,sym=A price=${id}.5,id=${id}i ${1_700_000_000_000_000_000n + BigInt(id) * 1000n}\n`;
      body += `quotes,sym=B bid=${id}.25 ${1_700_000_000_000_000_000n + BigInt(id) * 1000n}\n`;
    }
    const response = await fetch(`${primaryUrl}/write`, { method: 'POST', body });
    expect(response.status, await response.text()).toBe(204);
  }

  async function statusOf(url: string): Promise<Record<string, unknown>> {
    return (await (await fetch(`${url}/status`)).json()) as Record<string, unknown>;
  }

  /** Everything committed is uploaded, and the replica applied it and knows it is caught up. */
  async function settled(): Promise<void> {
    await waitUntil(async () => {
      const p = await statusOf(primaryUrl);
      const r = await statusOf(replicaUrl);
      const committed = (p.tables as { key: string; committedTxn: string; pendingTxns: number }[]) ?? [];
      const applied = new Map(
        (r.tables as { key: string; appliedTxn: string }[]).map((t) => [t.key, t.appliedTxn]),
      );
      return (
        committed.length > 0 &&
        committed.every((t) => t.pendingTxns === 0 && applied.get(t.key) === t.committedTxn) &&
        r.stalenessMs !== null
      );
    });
  }

  beforeAll(async () => {
    base = await mkdtemp(path.join(tmpdir(), 'walship-status-'));
    root = path.join(base, 'store');
    store = await FsStore.open({ root, clock: systemClock });
    primary = await start('primary', 'a');
    primaryUrl = `http://127.0.0.1:${primary.httpPort}`;
    replica = await start('replica', 'b');
    replicaUrl = `http://127.0.0.1:${replica.httpPort}`;
    await writeRows(20);
    await settled();
  }, 60_000);

  afterAll(async () => {
    for (const node of started.reverse()) await node.close().catch(() => {});
    await store?.close();
    if (base !== undefined) await rm(base, { recursive: true, force: true });
  });

  it('--nodes --json: each view is what the node’s /status says', async () => {
    await writeRows(5); // some lag may be in flight: the view must match the /status it read
    const { io, out } = captureIo();
    const code = await statusCommand(['--nodes', `${primaryUrl},${replicaUrl}`, '--json'], io);
    expect(code).toBe(0);
    expect(out).toHaveLength(1);
    const document = JSON.parse(out[0]!) as { nodes: NodeView[]; problems: string[] };
    expect(document.problems).toEqual([]);
    const [p, r] = document.nodes;

    const fresh = { primary: await statusOf(primaryUrl), replica: await statusOf(replicaUrl) };
    expect(p).toMatchObject({
      url: primaryUrl,
      reachable: true,
      role: 'primary',
      nodeId: fresh.primary.nodeId,
      epoch: fresh.primary.epoch,
      acceptingWrites: true,
      tables: (fresh.primary.tables as unknown[]).length,
    });
    const replicaTables = fresh.replica.tables as { epoch: string }[];
    expect(r).toMatchObject({
      url: replicaUrl,
      reachable: true,
      role: 'replica',
      nodeId: fresh.replica.nodeId,
      epoch: String(Math.max(...replicaTables.map((t) => Number(t.epoch)))),
      acceptingWrites: false,
      tables: replicaTables.length,
    });

    // Lag, recomputed here from the /status each view was built from.
    const pt = p!.status!.tables as {
      pendingTxns: number;
      oldestPendingAgeMs?: number | null;
      lastUploadAgoMs: number | null;
    }[];
    const pending = pt.filter((t) => t.pendingTxns > 0);
    expect(p!.lag).toEqual({
      txns: String(pt.reduce((sum, t) => sum + t.pendingTxns, 0)),
      ms:
        pending.length === 0
          ? 0
          : Math.max(...pending.map((t) => t.oldestPendingAgeMs ?? t.lastUploadAgoMs ?? 0)),
    });
    const rt = r!.status!.tables as { txnsBehind: string }[];
    expect(r!.lag).toEqual({
      txns: rt.reduce((sum, t) => sum + BigInt(t.txnsBehind), 0n).toString(),
      ms: r!.status!.stalenessMs,
    });
  });

  it('--nodes as text: a row per node with its role and epoch', async () => {
    await settled();
    const { io, out } = captureIo();
    expect(await statusCommand(['--nodes', `${primaryUrl},${replicaUrl}`], io)).toBe(0);
    const text = out.join('\n');
    const p = rowOf(text, primaryUrl);
    const r = rowOf(text, replicaUrl);
    expect(p.slice(1, 5)).toEqual([primary.nodeId, 'primary', '1', 'yes']);
    expect(r.slice(1, 5)).toEqual([replica.nodeId, 'replica', '1', 'no']);
    expect(p[6]).toMatch(/^0 txns \/ 0 ms$/);
    expect(r[6]).toMatch(/^0 txns \/ \d/);
    expect(text).not.toContain('\x1b[');
  });

  it('an unreachable node: exit 1 and "unreachable" in its row', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const { io, out } = captureIo();
    expect(await statusCommand(['--nodes', `${primaryUrl},${dead}`, '--timeout=2s'], io)).toBe(1);
    const text = out.join('\n');
    expect(rowOf(text, dead)[1]).toBe('-');
    expect(rowOf(text, dead).join(' ')).toMatch(/unreachable.*unreachable: connection refused/);
    expect(text).toContain('1 of 2 nodes did not answer');
  });

  it('no primary accepting writes is exit 1, said under the table', async () => {
    const { io, out } = captureIo();
    expect(await statusCommand(['--nodes', replicaUrl], io)).toBe(1);
    expect(out.join('\n').split('\n').at(-1)).toBe('no primary is accepting writes');
  });

  it('--store: every registered node, the cluster and the newest epoch; a stopped node shows the age of its registration', async () => {
    const connection = `fs::root=${root};`;
    {
      const { io, out } = captureIo();
      expect(await statusCommand(['--store', connection, '--json'], io)).toBe(0);
      const document = JSON.parse(out[0]!) as {
        cluster: { clusterId: string; newestEpoch: { epoch: string; nodeId: string; url: string } };
        nodes: NodeView[];
      };
      expect(document.cluster.clusterId).toBe((await statusOf(primaryUrl)).clusterId);
      expect(document.cluster.newestEpoch).toMatchObject({ epoch: '1', nodeId: primary.nodeId });
      const byId = new Map(document.nodes.map((n) => [n.nodeId ?? undefined, n]));
      expect(byId.get(primary.nodeId)).toMatchObject({ url: primaryUrl, role: 'primary', reachable: true });
      expect(byId.get(replica.nodeId)).toMatchObject({ url: replicaUrl, role: 'replica', reachable: true });
      expect(byId.get(replica.nodeId)?.registration).toMatchObject({ role: 'replica', epoch: null });
    }

    const stopped = await start('replica', 'c');
    const stoppedId = stopped.nodeId!;
    await expect.poll(async () => (await store.get(`nodes/${stoppedId}.json`)) !== null).toBe(true);
    await stopped.close();
    const record = JSON.parse(
      new TextDecoder().decode(((await store.get(`nodes/${stoppedId}.json`)) as { body: Uint8Array }).body),
    ) as { at: string; url: string };
    // This machine's wall clock 5 minutes after the record was written.
    const clock = { ...systemClock, wallMs: () => Date.parse(record.at) + 300_000 };

    const { io, out } = captureIo();
    expect(await statusCommand(['--store', connection], io, { clock })).toBe(1);
    const text = out.join('\n');
    expect(text.split('\n')[0]).toMatch(
      /^cluster \S+; newest epoch 1: primary \S+ at http:\/\/127\.0\.0\.1:\d+$/,
    );
    expect(rowOf(text, primaryUrl).slice(1, 3)).toEqual([primary.nodeId, 'primary']);
    expect(rowOf(text, replicaUrl).slice(1, 3)).toEqual([replica.nodeId, 'replica']);
    const dead = rowOf(text, record.url);
    expect(dead.slice(1, 3)).toEqual([stoppedId, 'unreachable']);
    expect(dead.at(-1)).toBe('unreachable (registered 5 min ago as replica): connection refused');
    expect(text).toContain('1 of 3 nodes did not answer');
  });

  it('--store with an unparseable registration reports it and goes on', async () => {
    await store.put('nodes/garbage.json', new TextEncoder().encode('not json'));
    try {
      const { io, out } = captureIo();
      await statusCommand(['--store', `fs::root=${root};`], io);
      const text = out.join('\n');
      expect(text).toContain(
        'unreadable registration nodes/garbage.json: node registration nodes/garbage.json is not JSON',
      );
      expect(rowOf(text, primaryUrl)[2]).toBe('primary');
    } finally {
      await store.delete('nodes/garbage.json');
    }
  });

  it('--watch refreshes until its signal ends it (snapshots separated by a blank line)', async () => {
    const controller = new AbortController();
    const out: string[] = [];
    const io: CommandIo = {
      stdout: (text) => {
        out.push(text);
        if (out.length === 3) controller.abort();
      },
      stderr: () => {},
      env: {},
    };
    const code = await statusCommand(['--nodes', `${primaryUrl},${replicaUrl}`, '--watch=20ms'], io, {
      signal: controller.signal,
    });
    expect(code).toBe(0);
    expect(out).toHaveLength(3);
    expect(out[0]).toMatch(/^walship status · every 20 ms · /);
    for (const later of out.slice(1)) expect(later).toMatch(/^\nwalship status · every 20 ms · /);
    for (const snapshot of out) expect(rowOf(snapshot.trim(), primaryUrl)[2]).toBe('primary');
  });

  it('--watch on a terminal redraws in place, in colour', async () => {
    const controller = new AbortController();
    const out: string[] = [];
    const io: CommandIo = {
      stdout: (text) => {
        out.push(text);
        if (out.length === 2) controller.abort();
      },
      stderr: () => {},
      env: {},
    };
    await statusCommand(['--nodes', primaryUrl, '--watch=20ms'], io, {
      signal: controller.signal,
      tty: true,
      width: 120,
    });
    expect(out).toHaveLength(2);
    for (const frame of out) {
      expect(frame.startsWith('\x1b[H\x1b[2J')).toBe(true);
      expect(frame).toContain('\x1b[32mprimary');
    }
  });

  it('bootstrap progress: restoreSnapshot reports growing bytes up to the image size', async () => {
    const manifest = await (replica.current as ReplicaNode).snapshot();
    const calls: [number, number][] = [];
    const dir = await mkdtemp(path.join(base, 'restore-'));
    await restoreSnapshot({
      store,
      manifest,
      destFile: path.join(dir, 'tables.sqlite'),
      tmpDir: dir,
      rangeBytes: Math.max(1, Math.floor(manifest.image.bytes / 5)),
      onProgress: (done, total) => calls.push([done, total]),
    });
    expect(calls.length).toBeGreaterThanOrEqual(6);
    expect(calls[0]).toEqual([0, manifest.image.bytes]);
    expect(calls.at(-1)).toEqual([manifest.image.bytes, manifest.image.bytes]);
    for (let i = 1; i < calls.length; i++) {
      expect(calls[i]![0]).toBeGreaterThan(calls[i - 1]![0]);
      expect(calls[i]![1]).toBe(manifest.image.bytes);
    }
  });

  it('a bootstrapping replica shows its progress while switching, then its catch-up, then none', async () => {
    const manifest: SnapshotManifest = await (replica.current as ReplicaNode).snapshot();
    await writeRows(10); // after the snapshot: the new replica must catch up on these
    await settled();
    const gated = new GatedStore(store);
    const releaseImage = gated.hold(
      (key, options) => key === manifest.image.key && options?.range !== undefined,
    );
    const releaseSegments = gated.hold((key) => key.includes('/wal/'));
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const starting = start('replica', 'd', { store: gated, port });
    try {
      await expect
        .poll(async () => (await fetchNodeViews([url]))[0]!.operation?.name, {
          timeout: 20_000,
          interval: 20,
        })
        .toBe('bootstrap');
      const [switching] = await fetchNodeViews([url]);
      expect(switching).toMatchObject({ role: 'switching', reachable: true });
      expect(switching!.operation).toMatchObject({
        name: 'bootstrap',
        phase: `download snapshot ${manifest.id}`,
        done: 0,
        total: manifest.image.bytes,
        unit: 'bytes',
      });
      expect(renderNodeTable([switching!], { width: 400 })).toContain(
        `  bootstrap (download snapshot ${manifest.id})  [--------------------]   0%`,
      );

      releaseImage();
      const node = await starting;
      expect(node.role).toBe('replica');
      await expect
        .poll(async () => (await fetchNodeViews([url]))[0]!.operation?.name, {
          timeout: 20_000,
          interval: 20,
        })
        .toBe('catch-up');
      const [catchingUp] = await fetchNodeViews([url]);
      expect(catchingUp!.operation).toMatchObject({ name: 'catch-up', done: 0, unit: 'txns' });
      expect(catchingUp!.operation!.total).toBe(Number(catchingUp!.lag.txns));
      expect(catchingUp!.operation!.total).toBeGreaterThan(0);

      releaseSegments();
      await expect
        .poll(
          async () => {
            const [v] = await fetchNodeViews([url]);
            return v!.lag.txns === '0' && v!.operation === null;
          },
          { timeout: 20_000, interval: 20 },
        )
        .toBe(true);
    } finally {
      releaseImage();
      releaseSegments();
      await starting.catch(() => {});
    }
  });
});

/** Delegates to `inner`; GETs matching a held predicate wait until it is released. */
class GatedStore implements ObjectStore {
  readonly description: string;
  readonly #inner: ObjectStore;
  readonly #holds = new Set<{
    matches: (key: string, options?: GetOptions) => boolean;
    released: Promise<void>;
  }>();

  constructor(inner: ObjectStore) {
    this.#inner = inner;
    this.description = inner.description;
  }

  /** Hold GETs that match until the returned function is called (idempotent). */
  hold(matches: (key: string, options?: GetOptions) => boolean): () => void {
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const entry = { matches, released };
    this.#holds.add(entry);
    return () => {
      this.#holds.delete(entry);
      release();
    };
  }

  async get(key: string, options?: GetOptions) {
    for (const hold of this.#holds) if (hold.matches(key, options)) await hold.released;
    return this.#inner.get(key, options);
  }
  put: ObjectStore['put'] = (key, body, options) => this.#inner.put(key, body, options);
  head: ObjectStore['head'] = (key) => this.#inner.head(key);
  list: ObjectStore['list'] = (prefix, options) => this.#inner.list(prefix, options);
  delete: ObjectStore['delete'] = (key) => this.#inner.delete(key);
  deleteMany: ObjectStore['deleteMany'] = (keys) => this.#inner.deleteMany(keys);
  /** The inner store is the test's: closing a node never closes it. */
  close: ObjectStore['close'] = async () => {};
}
