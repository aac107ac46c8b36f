/**
 * What the GC tests (failover/gc.test.ts, failover/staged-gc.test.ts) do to real in-process nodes
 * around one table: write ILP rows, wait until a node applied or registered a txn, take a snapshot,
 * list keys. Every wait polls and is bounded by the test's timeout, never by a sleep of its own.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { listNodeRegistrations } from '../../layout/index.js';
import type { WalshipNode } from '../../node/index.js';
import { listAll, type ObjectStore } from '../../objectstore/index.js';
import { tableKey } from '../../table/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from './s3-test-env.js';
import { storesUnderTest } from './store-under-test.js';
import { getJson } from './test-primary.js';
import { postAdmin } from './test-replica.js';

/** The pause between two reads of a condition a wait polls. */
const POLL_MS = 20;
/** The first designated timestamp written, ns; rows are 1 ns apart. */
const FIRST_TIMESTAMP_NS = 1_700_000_000_000_000_000n;

export interface TableStatus {
  appliedTxn?: string;
  committedTxn?: string;
}

export interface GcFixtures {
  /** One ILP request of `rows` rows (the next ones of this table's sequence) to `port`; resolves the committed txn. */
  write(port: number, rows?: number): Promise<bigint>;
  /** `requests` calls of `write` one after another; the last one's txn. */
  writeRequests(port: number, requests: number): Promise<bigint>;
  /** The table's entry in the node's GET /status, if it lists the table. */
  tableStatus(node: WalshipNode): Promise<TableStatus | undefined>;
  /** Until the node applied `txn`. */
  waitApplied(node: WalshipNode, txn: bigint): Promise<void>;
  /** Until `nodeId`'s registration in the store says it holds `txn` of the table (nodes rewrite it every register interval). */
  waitRegistered(store: ObjectStore, nodeId: string, txn: bigint): Promise<void>;
  /**
   * Leaves `node` behind at `txn`: until it applied `txn` and its registration says so, then closes
   * it. Its registration stays in the store, saying `txn`, until it expires.
   */
  leaveBehind(store: ObjectStore, node: WalshipNode, txn: bigint): Promise<void>;
  /** POST /admin/snapshot to the node: the snapshot's id and the last txn of the table it holds. */
  snapshot(node: WalshipNode): Promise<{ id: string; lastTxn: bigint }>;
}

/**
 * A test file's scratch space, made before its tests: a temp dir (removed after them) and, when
 * an S3 server is provided, a bucket. `name` (letters and digits) names all three: the dir, the
 * bucket and the stores' root prefix. Call at the top level of the file.
 */
export function gcTestRoot(name: string): {
  /** The temp dir; '' until the file's beforeAll ran. */
  base(): string;
  /** The fs and S3 stores under it, for `describe.each`. */
  stores: ReturnType<typeof storesUnderTest>;
} {
  const s3 = s3TestEnvOrSkipReason();
  let base = '';
  let bucket = '';
  beforeAll(async () => {
    base = await mkdtemp(path.join(tmpdir(), `walship-${name}-`));
    if (s3.env !== null) bucket = await createTestBucket(s3.env, name);
  });
  afterAll(() => rm(base, { recursive: true, force: true }));
  return {
    base: () => base,
    stores: storesUnderTest({ s3, baseDir: () => base, bucket: () => bucket, rootPrefix: name }),
  };
}

const pause = () => new Promise((resolve) => setTimeout(resolve, POLL_MS));

/** The helpers for table `table`; `write` sends `rowsPerWrite` rows unless told otherwise. */
export function gcFixtures(options: { table: string; rowsPerWrite: number }): GcFixtures {
  const { table, rowsPerWrite } = options;
  const key = tableKey(table);
  let row = 0;

  async function write(port: number, rows = rowsPerWrite): Promise<bigint> {
    const lines: string[] = [];
    for (let i = 0; i < rows; i++, row++)
      lines.push(`${table},sym=S${row % 7} price=${row}.5,n=${row}i ${FIRST_TIMESTAMP_NS + BigInt(row)}`);
    const response = await fetch(`http://127.0.0.1:${port}/write`, {
      method: 'POST',
      body: `${lines.join('\n')}\n`,
    });
    expect(response.status, await response.clone().text()).toBe(204);
    const token = response.headers.get('x-walship-txn') ?? '';
    return BigInt(token.split('=')[1]!.split('@')[0]!);
  }

  async function writeRequests(port: number, requests: number): Promise<bigint> {
    let txn = 0n;
    for (let i = 0; i < requests; i++) txn = await write(port);
    return txn;
  }

  async function tableStatus(node: WalshipNode): Promise<TableStatus | undefined> {
    const { body } = await getJson(node.httpPort, '/status');
    return (body as { tables?: ({ name: string } & TableStatus)[] }).tables?.find((t) => t.name === table);
  }

  async function waitApplied(node: WalshipNode, txn: bigint): Promise<void> {
    for (;;) {
      const t = await tableStatus(node);
      if (t?.appliedTxn !== undefined && BigInt(t.appliedTxn) >= txn) return;
      await pause();
    }
  }

  async function waitRegistered(store: ObjectStore, nodeId: string, txn: bigint): Promise<void> {
    for (;;) {
      const { nodes } = await listNodeRegistrations(store);
      const listed = nodes.find((n) => n.record.nodeId === nodeId)?.record.tables[table];
      if (listed !== undefined && BigInt(listed) >= txn) return;
      await pause();
    }
  }

  async function leaveBehind(store: ObjectStore, node: WalshipNode, txn: bigint): Promise<void> {
    await waitApplied(node, txn);
    await waitRegistered(store, node.nodeId!, txn);
    await node.close();
  }

  async function snapshot(node: WalshipNode): Promise<{ id: string; lastTxn: bigint }> {
    const taken = await postAdmin(node.httpPort, 'snapshot');
    expect(taken.status, JSON.stringify(taken.body)).toBe(200);
    const body = taken.body as { id: string; tables: { key: string; lastTxn: string }[] };
    return { id: body.id, lastTxn: BigInt(body.tables.find((t) => t.key === key)!.lastTxn) };
  }

  return { write, writeRequests, tableStatus, waitApplied, waitRegistered, leaveBehind, snapshot };
}

/** Every key under `prefix` (the whole store by default), in listing order. */
export async function keysUnder(store: ObjectStore, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of listAll(store, prefix)) keys.push(o.key);
  return keys;
}
