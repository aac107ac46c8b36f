/**
 * The store audit (`walship verify --store`) on a genuine chain: a real primary writes six tables
 * in several uploads, a switchover to a replica fences them (two epochs), the new primary writes
 * once more. The clean store must audit OK with the primary's own watermarks; then one fault per
 * table — a removed segment, a flipped byte, a truncated segment, orphans, a segment moved to
 * another slot — must each be found on its table alone, and `walship verify` must exit 1.
 * On the filesystem store and on Ceph RGW.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyCommand } from '../cli/verify.js';
import type { WalshipNode } from '../failover/index.js';
import { listAll, type ObjectStore } from '../objectstore/index.js';
import { tableKey } from '../table/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from '../tests/helpers/s3-test-env.js';
import { type StoreUnderTest, storesUnderTest } from '../tests/helpers/store-under-test.js';
import { startTestNode } from '../tests/helpers/test-node.js';
import { decodeSegmentHeader, segmentKey, segmentPrefix } from '../wal/index.js';
import { auditStore, type StoreAuditReport } from './store-audit.js';

/** A generous bound for waits (uploads, a role change): never a performance check. */
const WAIT_MS = 30_000;
const TABLES = ['clean', 'missing', 'flipped', 'truncated', 'orphaned', 'moved'] as const;
/** Write rounds at epoch 1, each uploaded before the next: one segment per table per round. */
const ROUNDS = 3;

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';
beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-store-audit-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'store-audit');
});
afterAll(() => rm(base, { recursive: true, force: true }));

const STORES = storesUnderTest({ s3, baseDir: () => base, bucket: () => bucket, rootPrefix: 'store-audit' });

async function until(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface StatusTable {
  name: string;
  committedTxn: string;
  uploadedTxn: string;
}

function tablesOf(node: WalshipNode): StatusTable[] {
  return ((node.status() as { tables?: StatusTable[] }).tables ?? []).filter((t) => t.name in TABLE_SET);
}
const TABLE_SET = Object.fromEntries(TABLES.map((t) => [t, true]));

/** One request to every table (one txn each), then waits until the primary uploaded it. */
async function writeRound(node: WalshipNode, round: number): Promise<void> {
  const body = TABLES.map(
    (t, i) => `${t} id=${round * 10 + i}i,v=${round}.5 ${1_700_000_000_000 + round}000000\n`,
  );
  const response = await fetch(`http://127.0.0.1:${node.httpPort}/write`, {
    method: 'POST',
    body: body.join(''),
  });
  await response.arrayBuffer();
  expect(response.status).toBe(204);
  await until(
    () =>
      tablesOf(node).length === TABLES.length &&
      tablesOf(node).every((t) => t.uploadedTxn === t.committedTxn),
    'the primary uploaded every table',
  );
}

async function segmentKeys(store: ObjectStore, table: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of listAll(store, segmentPrefix(tableKey(table)))) keys.push(info.key);
  return keys;
}

async function body(store: ObjectStore, key: string): Promise<Uint8Array> {
  const got = await store.get(key);
  if (got === null || got.status !== 'ok') throw new Error(`${key} cannot be read`);
  return got.body;
}

function codesOf(report: StoreAuditReport, table: string): string[] {
  return report.tables.find((t) => t.name === table)!.findings.map((f) => f.code);
}

async function runVerify(
  connection: string,
  extra: string[] = [],
): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await verifyCommand(['--store', connection, ...extra], {
    stdout: (t) => out.push(t),
    stderr: (t) => err.push(t),
    env: {},
  });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe.each(STORES)('the store audit on %s', (_name, skipReason, make) => {
  let under: StoreUnderTest;
  let store: ObjectStore;
  /** The new primary's committed txn of each table, after the switchover and one more round. */
  const committed = new Map<string, string>();

  beforeAll(async () => {
    if (skipReason !== null) return;
    under = make();
    store = await under.open();
    const a = await startTestNode('primary', store, path.join(base, `a-${_name}`));
    const b = await startTestNode('replica', store, path.join(base, `b-${_name}`));
    try {
      for (let round = 1; round <= ROUNDS; round++) await writeRound(a, round);
      const { epoch } = await a.demote();
      await b.promote('switchover', epoch);
      await writeRound(b, ROUNDS + 1);
      for (const t of tablesOf(b)) committed.set(t.name, t.committedTxn);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  }, 120_000);
  afterAll(async () => store?.close());

  it.skipIf(skipReason !== null)('finds nothing wrong with a genuine chain of two epochs', async () => {
    let progressCalls = 0;
    const report = await auditStore(store, { onProgress: () => progressCalls++, concurrency: 3 });
    expect(report.findings).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.epochs.map((e) => e.epoch)).toEqual(['1', '2']);
    expect(report.registry?.tables).toBe(TABLES.length);
    expect(report.tables.map((t) => t.name).sort()).toEqual([...TABLES].sort());
    for (const table of report.tables) {
      // The primary's own watermark: rounds at epoch 1, the fence, one round at epoch 2.
      expect(table.txns).toEqual({ first: '1', last: committed.get(table.name) });
      expect(committed.get(table.name)).toBe(String(ROUNDS + 2));
      expect(table.segments).toBe(ROUNDS + 2);
      expect(table.epochs).toEqual(['1', '2']);
      expect(table.fences).toBe(1);
      expect(table.registered).toBe(true);
    }
    expect(progressCalls).toBeGreaterThanOrEqual(TABLES.length * (ROUNDS + 2));
    const shallow = await auditStore(store, { deep: false });
    expect(shallow.findings).toEqual([]);
    expect(shallow.tables.map((t) => t.fences)).toEqual(TABLES.map(() => 1));
    const cli = await runVerify(under.connectionString);
    expect(cli.code).toBe(0);
    expect(cli.out).toMatch(/^OK: 6 tables, 30 segments/m);
  });

  it.skipIf(skipReason !== null)(
    'names a removed, a corrupted, a truncated and a moved segment and orphans, each on its own table',
    async () => {
      // Removed: the second segment of `missing` (txn 2).
      const [, removed] = await segmentKeys(store, 'missing');
      await store.delete(removed!);
      // One byte flipped in the middle of the second segment of `flipped`.
      const [, flippedKey] = await segmentKeys(store, 'flipped');
      const flipped = await body(store, flippedKey!);
      flipped[flipped.length >> 1]! ^= 0x01;
      await store.put(flippedKey!, flipped);
      // The second segment of `truncated` loses its last 7 bytes.
      const [, truncatedKey] = await segmentKeys(store, 'truncated');
      const truncated = await body(store, truncatedKey!);
      await store.put(truncatedKey!, truncated.subarray(0, truncated.length - 7));
      // Orphans: a stray file among `orphaned`'s segments, and objects of no table at all.
      const orphanInWal = `${segmentPrefix(tableKey('orphaned'))}upload.tmp`;
      await store.put(orphanInWal, new Uint8Array([1, 2, 3]));
      const orphanOfNoTable = 'tables/NOT-A-TABLE-KEY/wal/00000000000000000001.seg';
      await store.put(orphanOfNoTable, new Uint8Array([4]));
      // Moved: the second segment of `moved` (txn 2) now sits in the slot of txn 9.
      const movedKeys = await segmentKeys(store, 'moved');
      const second = await body(store, movedKeys[1]!);
      expect(decodeSegmentHeader(second).txnFirst).toBe(2n);
      await store.delete(movedKeys[1]!);
      await store.put(segmentKey(tableKey('moved'), 9n), second);

      const report = await auditStore(store);
      expect(report.ok).toBe(false);
      expect(codesOf(report, 'clean')).toEqual([]);
      expect(codesOf(report, 'missing')).toEqual(['SEGMENT_MISSING']);
      const gap = report.findings.find(
        (f) => f.code === 'SEGMENT_MISSING' && f.table === tableKey('missing'),
      )!;
      expect(gap.key).toBe(removed);
      expect(gap.message).toContain('txn 2 ');
      expect(codesOf(report, 'flipped')).toEqual(['SEGMENT_CORRUPT']);
      expect(report.tables.find((t) => t.name === 'flipped')!.findings[0]!.key).toBe(flippedKey);
      expect(codesOf(report, 'truncated')).toEqual(['SEGMENT_CORRUPT']);
      expect(report.tables.find((t) => t.name === 'truncated')!.findings[0]!.message).toMatch(/truncated/);
      expect(codesOf(report, 'orphaned')).toEqual(['ORPHAN']);
      expect(report.findings.filter((f) => f.code === 'ORPHAN').map((f) => f.key)).toEqual([
        orphanOfNoTable,
        orphanInWal,
      ]);
      // Slot 2 is empty and slot 9 holds txn 2.
      expect(codesOf(report, 'moved')).toEqual(['SEGMENT_MISSING', 'SEGMENT_MISPLACED']);
      expect(report.tables.find((t) => t.name === 'moved')!.txns).toEqual({ first: '1', last: '5' });
      expect(report.findings.every((f) => f.severity === 'error')).toBe(true);

      const cli = await runVerify(under.connectionString);
      expect(cli.code).toBe(1);
      expect(cli.out).toMatch(/^ {2}clean\s+5 segments, txns 1\.\.5, epochs 1,2, 1 fence, .* OK$/m);
      expect(cli.out).toMatch(/ERROR {3}SEGMENT_CORRUPT: tables\/flipped\/wal\/0+2\.seg is corrupt/);
      expect(cli.out).toMatch(/^FAILED: /m);
      // --table limits the audit: the clean table alone passes.
      expect((await runVerify(under.connectionString, ['--table', 'clean'])).code).toBe(0);
      expect((await runVerify(under.connectionString, ['--table', 'missing'])).code).toBe(1);
    },
  );
});
