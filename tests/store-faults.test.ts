/**
 * Store faults: a primary (in this process) whose object store fails under it. Through the fault
 * wrapper on fs — lost responses and timeouts after the effect on segment PUTs, intermittent
 * errors on everything — and through a private Ceph RGW that is stopped or hung (SIGSTOP) while
 * writers keep writing:
 * - `local` writes keep getting 204 while the store is down;
 * - `durable` writes get a 503 with QuestDB's JSON error shape after `durableTimeoutMs`, saying
 *   the rows are committed locally (and they are);
 * - `/status` shows the store error;
 * - once the store is back, uploads resume, and then the store holds every committed txn exactly
 *   once, in order, with exactly the rows SQLite holds, each exactly once.
 * A primary is always started while its store is healthy: it runs the conformance probe first.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Random, randomInt, seededRandom } from '../core/index.js';
import {
  type FaultRule,
  FsStore,
  type ObjectStore,
  openStore,
  withFaults,
  withRetries,
} from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import { type CephRgw, cephRgwAvailable, startCephRgw } from './helpers/ceph-rgw.js';
import { createTestBucket } from './helpers/s3-test-env.js';
import { auditTable, duplicates, missingFromStore, type StoredSegment } from './helpers/store-audit.js';
import { getJson, startTestPrimary } from './helpers/test-primary.js';

const SEED = Number(process.env.WALSHIP_FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(`[store-faults] seed ${SEED} (replay the fault draws with WALSHIP_FAULT_SEED=${SEED})`);

const TABLES = ['fault_a', 'fault_b'] as const;
/** Small segments and a short window: many uploads, so many chances for a fault. */
const PRIMARY_SETTINGS = { windowMs: 20, rolloverSizeBytes: 8 * 1024, tcp: undefined } as const;
/** Faults that must have hit before a fault-wrapper run stops writing, and its bound on rounds. */
const FAULTS_MIN = 5;
const FAULT_ROUNDS_MAX = 40;
/**
 * How long uploads may take to get through under faults, and to catch up once the store is
 * healthy again. A table's backoff reaches 10 s after a few failed uploads, so this allows several
 * 10 s rounds (seed 791923006: every table had a segment only after ~27 s, past the 25 s this was).
 */
const CATCH_UP_MS = 50_000;

let base = '';
beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-store-faults-'));
});
afterAll(() => rm(base, { recursive: true, force: true }));

interface FaultVariant {
  name: string;
  rules: FaultRule[];
  /** Wrap the faulty store with the retries production wiring adds (openStore). */
  retries?: boolean;
}

/**
 * Each failed upload doubles the uploader's backoff (250 ms, up to 10 s) until one succeeds, so
 * the rates stay at a quarter or below: a long run of failures would stall a run for seconds.
 */
const FAULT_VARIANTS: FaultVariant[] = [
  {
    name: 'lost responses on segment PUTs',
    rules: [
      { fault: { type: 'lost-response' }, operations: ['put'], keyPrefix: 'tables/', probability: 0.25 },
    ],
  },
  {
    name: 'segment PUTs timing out after taking effect',
    rules: [
      {
        fault: { type: 'timeout', ms: 30, afterEffect: true },
        operations: ['put'],
        keyPrefix: 'tables/',
        probability: 0.25,
      },
    ],
  },
  {
    name: 'intermittent errors on every operation',
    rules: [{ fault: { type: 'error' }, probability: 0.25 }],
  },
  {
    name: 'all of these behind the store retries',
    retries: true,
    rules: [
      { fault: { type: 'lost-response' }, operations: ['put'], keyPrefix: 'tables/', probability: 0.2 },
      {
        fault: { type: 'timeout', ms: 30, afterEffect: true },
        operations: ['put'],
        keyPrefix: 'tables/',
        probability: 0.2,
      },
      { fault: { type: 'error' }, probability: 0.15 },
    ],
  },
];

describe.each(['local', 'durable'] as const)('a %s-ack primary over a faulty fs store', (ackMode) => {
  it.each(FAULT_VARIANTS)(
    '$name: every write acknowledged, nothing lost or duplicated',
    async (variant) => {
      const dir = path.join(base, randomUUID());
      const raw = await FsStore.open({ root: path.join(dir, 'store') });
      const random = seededRandom(SEED ^ variant.name.length);
      const faulty = withFaults(raw, [], { random });
      const store = variant.retries
        ? withRetries(faulty, { policy: { baseDelayMs: 5, maxDelayMs: 50 }, random })
        : faulty;
      const node = await startTestPrimary(store, path.join(dir, 'data'), { ...PRIMARY_SETTINGS, ackMode });
      try {
        // Every failed upload backs off (250 ms, doubling), and a durable writer waits through it: at
        // half the fault rate the durable runs stay short and still see many faults.
        const scale = ackMode === 'durable' ? 0.5 : 1;
        faulty.setRules(
          variant.rules.map((rule) => ({ ...rule, probability: (rule.probability ?? 1) * scale })),
        );
        const writes = new Writes(seededRandom(SEED));
        const durableCheck = ackMode === 'durable' ? storeHolds(raw) : undefined;
        const injected = () => Object.values(faulty.injected).reduce((sum, n) => sum + n, 0);
        // Rounds of concurrent writers until the faults have hit a few times: local writes outrun
        // the uploader, so each round leaves it a moment to upload (and fail) under them.
        for (let round = 0; round < FAULT_ROUNDS_MAX && injected() < FAULTS_MIN; round++) {
          await Promise.all(
            Array.from({ length: 3 }, () =>
              writes.writer(node.httpPort, { requests: ackMode === 'local' ? 10 : 4, durableCheck }),
            ),
          );
          if (ackMode === 'local') await sleep(50);
        }
        expect(injected(), `faults injected (seed ${SEED})`).toBeGreaterThanOrEqual(FAULTS_MIN);
        expect(writes.refused, `seed ${SEED}`).toEqual([]);
        expect(writes.durableViolations, `seed ${SEED}`).toEqual([]);
        // Uploads get through while the faults go on: every table has segments in the store. (Not
        // all of them: a run of failed attempts backs a table off up to 10 s at a time, so a wait
        // for the last segment under faults is a wait for luck; at seed 775719057 one segment
        // failed 8 attempts in a row, 28 s.)
        await expect.poll(() => uploadedSome(node), { timeout: CATCH_UP_MS, interval: 50 }).toBe(true);
        // The uploader saw the faults the store retries did not hide, and /status says so.
        if (variant.retries !== true) {
          expect((await status(node)).store.lastError?.message).toMatch(/injected fault/);
        }
        // Healed, the store takes the rest: verifyCaughtUp waits for every txn, then checks it.
        faulty.setRules([]);
        await verifyCaughtUp(node, raw, writes);
      } finally {
        await node.close();
      }
    },
    90_000,
  );
});

const ceph = cephRgwAvailable();
// Without Ceph the tests are skipped with the reason; with CI set they fail instead (at boot).
const skipRgw = !ceph.ok && process.env.CI === undefined;
if (!ceph.ok && skipRgw)
  console.warn(`[walship tests] skipping the private-RGW store-fault tests: ${ceph.reason}`);

describe.skipIf(skipRgw)('a primary over a private Ceph RGW that stops and hangs', () => {
  let rgw: CephRgw;
  let bucket = '';
  beforeAll(async () => {
    rgw = await startCephRgw();
    bucket = await createTestBucket(
      {
        endpoint: rgw.endpoint,
        region: rgw.region,
        accessKeyId: rgw.accessKeyId,
        secretAccessKey: rgw.secretAccessKey,
      },
      'store-faults',
    );
  }, 180_000);
  afterAll(() => rgw?.stop());

  /** The production wiring (openStore: retries), with short time limits so a hung gateway cannot stall. */
  const openRgwStore = (root: string) =>
    openStore(
      `s3::bucket=${bucket};root=${root};region=${rgw.region};endpoint=${rgw.endpoint};` +
        `access_key_id=${rgw.accessKeyId};secret_access_key=${rgw.secretAccessKey};` +
        'request_timeout_ms=500;connect_timeout_ms=500;retry_attempts=2;retry_interval_ms=50;',
    );

  it('local: writes go on while the gateway is stopped; uploads resume once it is back', async () => {
    const opened = await openRgwStore(`local-${randomUUID()}`);
    const node = await startTestPrimary(opened.store, path.join(base, randomUUID()), PRIMARY_SETTINGS);
    const writes = new Writes(seededRandom(SEED));
    try {
      await writes.writer(node.httpPort, { requests: 5 });
      await expect.poll(() => uploadedAll(node), { timeout: CATCH_UP_MS }).toBe(true);

      await rgw.stopGateway();
      try {
        const startedMs = performance.now();
        await Promise.all([0, 1].map(() => writes.writer(node.httpPort, { requests: 20 })));
        expect(writes.refused, 'local writes while the store is down').toEqual([]);
        // Local acks wait for SQLite only: an unreachable store must not slow them down.
        expect(writes.slowestMs).toBeLessThan(2_000);
        console.log(
          `[store-faults] 40 requests with the gateway down in ${Math.round(performance.now() - startedMs)} ms`,
        );
        await expect
          .poll(async () => (await status(node)).store.lastError, { timeout: 10_000 })
          .not.toBeNull();
        const down = await status(node);
        expect(down.tables.some((t) => t.lastError !== null && t.uploadedTxn !== t.committedTxn)).toBe(true);
      } finally {
        await rgw.startGateway();
      }
      await verifyCaughtUp(node, opened.raw, writes);
    } finally {
      await node.close();
      await opened.store.close();
    }
  }, 60_000);

  it('durable: a hung gateway gets writers a clear 503 after the timeout; nothing lost once it resumes', async () => {
    const durableTimeoutMs = 400;
    const opened = await openRgwStore(`durable-${randomUUID()}`);
    const node = await startTestPrimary(opened.store, path.join(base, randomUUID()), {
      ...PRIMARY_SETTINGS,
      ackMode: 'durable',
      durableTimeoutMs,
    });
    const writes = new Writes(seededRandom(SEED));
    const durableCheck = storeHolds(opened.raw);
    try {
      await writes.writer(node.httpPort, { requests: 5, durableCheck });
      expect(writes.refused).toEqual([]);

      await rgw.pauseGateway();
      try {
        // The gateway really hangs (else a 204 below would be the harness's fault, not the node's).
        await expect(opened.raw.head('hung')).rejects.toMatchObject({ code: 'STORE_TIMEOUT' });
        const startedMs = performance.now();
        const answer = await writes.post(node.httpPort, writes.nextRows());
        const elapsedMs = performance.now() - startedMs;
        const seen = `after ${Math.round(elapsedMs)} ms, X-Walship-Txn ${answer.txnHeader}, ${JSON.stringify(await status(node))}`;
        expect(answer.status, seen).toBe(503);
        expect(elapsedMs).toBeGreaterThanOrEqual(durableTimeoutMs - 5);
        expect(elapsedMs).toBeLessThan(durableTimeoutMs + 2_000);
        const error = JSON.parse(answer.body) as Record<string, unknown>;
        expect(Object.keys(error).sort()).toEqual(['code', 'errorId', 'line', 'message']);
        expect(error).toMatchObject({ code: 'internal error', line: 0 });
        expect(error.message).toMatch(
          /committed locally as fault_[ab] txn \d+ but not in the object store after 400 ms.*retrying this request would write the rows again/,
        );
        // The store's own error names its endpoint and bucket: that stays in the server's log.
        expect(error.message).not.toMatch(new RegExp(`${bucket}|127\\.0\\.0\\.1`));
        // More writers time out the same way, and their rows are committed all the same.
        await Promise.all([0, 1].map(() => writes.writer(node.httpPort, { requests: 2 })));
        expect(writes.refused.map((r) => r.status)).toEqual([503, 503, 503, 503, 503]);
        await expect
          .poll(async () => (await status(node)).store.lastError, { timeout: 10_000 })
          .not.toBeNull();
      } finally {
        await rgw.resumeGateway();
      }
      await verifyCaughtUp(node, opened.raw, writes);
      // And durable writes are answered 204 again, their rows in the store before the answer.
      const before = writes.acked.size;
      await writes.writer(node.httpPort, { requests: 3, durableCheck });
      expect(writes.acked.size).toBeGreaterThan(before);
      expect(writes.refused).toHaveLength(5);
      expect(writes.durableViolations).toEqual([]);
      await verifyCaughtUp(node, opened.raw, writes);
    } finally {
      await node.close();
      await opened.store.close();
    }
  }, 60_000);
});

/** A request's rows: fresh ids, spread over the tables. */
type Rows = Map<string, number[]>;

/**
 * The writers' ledger: every row has a fresh id and no request is ever resent, so any id found
 * twice is a duplicate made by the node. A request refused with 503 is committed all the same
 * (DURABLE_TIMEOUT), so its rows count as written.
 */
class Writes {
  readonly sent = new Set<number>();
  readonly acked = new Set<number>();
  readonly refused: { status: number; body: string }[] = [];
  readonly durableViolations: string[] = [];
  slowestMs = 0;
  #nextId = 1;
  readonly #random: Random;

  constructor(random: Random) {
    this.#random = random;
  }

  nextRows(): Rows {
    const rows: Rows = new Map();
    for (let n = 1 + randomInt(this.#random, 20); n > 0; n--) {
      const table = TABLES[randomInt(this.#random, TABLES.length)]!;
      rows.set(table, [...(rows.get(table) ?? []), this.#nextId++]);
    }
    return rows;
  }

  /** One writer: `requests` requests one after the other; in durable mode each 204 is checked first. */
  async writer(
    port: number,
    options: { requests: number; durableCheck?: (txnHeader: string, rows: Rows) => Promise<string[]> },
  ): Promise<void> {
    for (let i = 0; i < options.requests; i++) {
      const rows = this.nextRows();
      const answer = await this.post(port, rows);
      if (answer.status === 204 && options.durableCheck !== undefined) {
        this.durableViolations.push(...(await options.durableCheck(answer.txnHeader, rows)));
      }
    }
  }

  async post(port: number, rows: Rows): Promise<{ status: number; body: string; txnHeader: string }> {
    const ids = [...rows.values()].flat();
    for (const id of ids) this.sent.add(id);
    let body = '';
    for (const [table, tableIds] of rows)
      for (const id of tableIds) body += `${table} id=${id}i,v=${id % 7}.5\n`;
    const startedMs = performance.now();
    const response = await fetch(`http://127.0.0.1:${port}/write`, { method: 'POST', body });
    const answer = {
      status: response.status,
      body: await response.text(),
      txnHeader: response.headers.get('x-walship-txn') ?? '',
    };
    this.slowestMs = Math.max(this.slowestMs, performance.now() - startedMs);
    if (answer.status === 204) for (const id of ids) this.acked.add(id);
    else this.refused.push({ status: answer.status, body: answer.body });
    return answer;
  }
}

/** A durable writer's check of each 204, against the store itself (see missingFromStore). */
function storeHolds(store: ObjectStore): (txnHeader: string, rows: Rows) => Promise<string[]> {
  const cache = new Map<string, StoredSegment>();
  return (txnHeader, rows) => missingFromStore(store, txnHeader, rows, cache);
}

interface NodeStatus {
  store: { lastError: { message: string } | null };
  tables: {
    name: string;
    key: string;
    committedTxn: string;
    uploadedTxn: string;
    lastError: string | null;
  }[];
}

async function status(node: PrimaryNode): Promise<NodeStatus> {
  const { status: code, body } = await getJson(node.httpPort, '/status');
  expect(code).toBe(200);
  return body as NodeStatus;
}

/** Every table has uploaded some of its txns. */
async function uploadedSome(node: PrimaryNode): Promise<boolean> {
  const { tables } = await status(node);
  return tables.length > 0 && tables.every((t) => BigInt(t.uploadedTxn) > 0n);
}

async function uploadedAll(node: PrimaryNode): Promise<boolean> {
  const { tables } = await status(node);
  return tables.length > 0 && tables.every((t) => t.uploadedTxn === t.committedTxn);
}

/**
 * Once uploads caught up: SQLite holds every row sent exactly once (each request was answered,
 * 204 or a durable 503, so each is committed); the store holds txns 1..N of each table exactly
 * once, in order, N = the committed txn, with exactly SQLite's rows.
 */
async function verifyCaughtUp(node: PrimaryNode, store: ObjectStore, writes: Writes): Promise<void> {
  await expect.poll(() => uploadedAll(node), { timeout: CATCH_UP_MS, interval: 50 }).toBe(true);
  const { tables } = await status(node);
  const present: number[] = [];
  for (const table of tables) {
    const query = encodeURIComponent(`SELECT id FROM ${table.name}`);
    const { body } = await getJson(node.httpPort, `/exec?query=${query}`);
    const ids = (body as { dataset: [number][] }).dataset.map((row) => row[0]);
    present.push(...ids);
    const audit = await auditTable(store, table.key);
    expect(audit.problems, `${table.name} in the store (seed ${SEED})`).toEqual([]);
    expect(audit.txnLast.toString(), `${table.name}: last txn in the store`).toBe(table.committedTxn);
    expect(sorted(audit.ids), `${table.name}: rows in the store and in SQLite`).toEqual(sorted(ids));
  }
  expect([...duplicates(present)], 'ids present more than once').toEqual([]);
  expect(sorted(present), 'every row sent is committed, exactly once').toEqual(sorted([...writes.sent]));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function sorted(values: number[]): number[] {
  return [...values].sort((a, b) => a - b);
}
