/**
 * The store audit (`walship verify --store`) on a genuine chain: a real primary writes six tables
 * in several uploads, a switchover to a replica fences them (two epochs), the new primary writes
 * once more. The clean store must audit OK with the primary's own watermarks; then one fault per
 * table — a removed segment, a flipped byte, a truncated segment, orphans, a segment moved to
 * another slot — must each be found on its table alone, and `walship verify` must exit 1.
 * On the filesystem store and on Ceph RGW.
 *
 * A sequenced cluster (RFC-0003) is built directly — staged segments sealed and put, txn-log
 * entries and sequencer.json encoded — with one table continuing an adopted wal/ chain and one
 * numbered from txn 1: clean it audits clean, an uncommitted staged object is only a warning, and
 * each fault (a gap, a corrupt entry, a missing or mismatched or flipped staged object, a batch
 * numbered twice, a log starting off its start, strays) is found on its own table.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyCommand } from '../cli/verify.js';
import {
  CLUSTER_KEY,
  encodeClusterRecord,
  encodeEpoch,
  encodeSequencerRecord,
  encodeTxnLogEntry,
  epochKey,
  SEQUENCER_RECORD_KEY,
  type SequencerRecord,
  segmentKey,
  segmentPrefix,
  stagedKey,
  TABLES_REGISTRY_KEY,
  txnLogKey,
} from '../layout/index.js';
import type { WalshipNode } from '../node/index.js';
import { listAll, type ObjectStore } from '../objectstore/index.js';
import type { LogEntry } from '../sequencer/index.js';
import { tableKey } from '../table/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from '../tests/helpers/s3-test-env.js';
import { type StoreUnderTest, storesUnderTest } from '../tests/helpers/store-under-test.js';
import { startTestNode } from '../tests/helpers/test-node.js';
import {
  decodeSegmentHeader,
  encodeSegment,
  encodeTxnRecord,
  sealSegment,
  type TxnRecord,
} from '../wal/index.js';
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

// --- A sequenced cluster (RFC-0003), built object by object -------------------------------------

const CLUSTER_ID = 'c-sequenced';
/** The cluster epoch of the adoption (epochs/2.json, held by the sequencer). */
const ADOPTION_EPOCH = 2n;
const WRITER_EPOCH = 1n;
const T0 = 1_700_000_000_000_000n;

function txnRecord(txn: bigint, value: bigint): TxnRecord {
  const rows = 3;
  return {
    txn,
    commitTimeUs: T0 + txn,
    kind: 'data',
    rowCount: rows,
    columns: [
      {
        name: 'timestamp',
        addedInTxn: false,
        nulls: null,
        data: { type: 'timestamp', values: BigInt64Array.from({ length: rows }, (_, i) => T0 + BigInt(i)) },
      },
      {
        name: 'v',
        addedInTxn: false,
        nulls: null,
        data: { type: 'long', values: BigInt64Array.from({ length: rows }, (_, i) => value + BigInt(i)) },
      },
    ],
  };
}

/** cluster.json, epochs 1 (a single primary) and 2 (the adoption), tables.json and sequencer.json. */
async function sequencedRoot(
  store: ObjectStore,
  startAfter: Map<string, bigint>,
  registered: string[],
): Promise<void> {
  const at = '2025-01-01T00:00:00.000Z';
  await store.put(
    CLUSTER_KEY,
    encodeClusterRecord({ clusterId: CLUSTER_ID, formatVersion: 1, createdAt: at, createdBy: 'p0' }),
  );
  await store.put(epochKey(1n), encodeEpoch({ epoch: 1n, nodeId: 'p0', url: '', reason: 'bootstrap', at }));
  await store.put(
    epochKey(ADOPTION_EPOCH),
    encodeEpoch({ epoch: ADOPTION_EPOCH, nodeId: 'sequencer', url: '', reason: 'sequencer', at }),
  );
  await store.put(
    TABLES_REGISTRY_KEY,
    new TextEncoder().encode(JSON.stringify({ epoch: '1', tables: registered.map((t) => tableKey(t)) })),
  );
  const record: SequencerRecord = {
    version: 1,
    clusterId: CLUSTER_ID,
    epoch: ADOPTION_EPOCH,
    startAfter,
    at,
  };
  await store.put(SEQUENCER_RECORD_KEY, encodeSequencerRecord(record));
}

/** Writes what writers and the sequencer would: staged segments, then (when committed) their entries. */
class SequencedStoreBuilder {
  readonly #nextTxn = new Map<string, bigint>();
  readonly #nextLocal = new Map<string, bigint>();
  readonly #nextBatch = new Map<string, bigint>();

  constructor(
    readonly store: ObjectStore,
    readonly startAfter: Map<string, bigint>,
  ) {}

  /** Txns 1..count of `table` as numbered wal/ segments of epoch 1, one per txn: its chain before adoption. */
  async walChain(table: string, count: number): Promise<void> {
    for (let txn = 1n; txn <= BigInt(count); txn++) {
      const bytes = await encodeSegment({
        tableName: table,
        epoch: 1n,
        writerNodeId: 'p0',
        txns: [txnRecord(txn, txn * 100n)],
      });
      await this.store.put(segmentKey(tableKey(table), txn), bytes);
    }
  }

  /** One batch of `writer` with `count` txns of `table` (local numbers); numbered unless `commit` is false. */
  async batch(writer: string, table: string, count: number, commit = true): Promise<LogEntry> {
    const key = tableKey(table);
    const batchSeq = this.#nextBatch.get(writer) ?? 1n;
    this.#nextBatch.set(writer, batchSeq + 1n);
    const localFirst = this.#nextLocal.get(`${writer}/${key}`) ?? 1001n;
    this.#nextLocal.set(`${writer}/${key}`, localFirst + BigInt(count));
    const bytes = await this.seal(writer, table, localFirst, count, 7n);
    const staged = stagedKey(key, writer, WRITER_EPOCH, batchSeq);
    await this.store.put(staged, bytes);
    const txnFirst = this.#nextTxn.get(key) ?? (this.startAfter.get(key) ?? 0n) + 1n;
    const entry: LogEntry = {
      table: key,
      txnFirst,
      txnLast: txnFirst + BigInt(count) - 1n,
      staged,
      bytes: bytes.length,
      crc32: decodeSegmentHeader(bytes).objectChecksum,
      writer,
      writerEpoch: WRITER_EPOCH,
      batchSeq,
      committedAtMs: 1_767_225_600_000,
    };
    if (commit) await this.number(entry);
    return entry;
  }

  /** Writes `entry` (its txns moved to the table's next ones) as the next txn-log entry. */
  async number(entry: LogEntry): Promise<LogEntry> {
    const txnFirst = this.#nextTxn.get(entry.table) ?? (this.startAfter.get(entry.table) ?? 0n) + 1n;
    const numbered = { ...entry, txnFirst, txnLast: txnFirst + entry.txnLast - entry.txnFirst };
    await this.store.put(txnLogKey(entry.table, txnFirst), encodeTxnLogEntry(numbered));
    this.#nextTxn.set(entry.table, numbered.txnLast + 1n);
    return numbered;
  }

  /** Skips txns of `table` (as if their entry were never written). */
  skip(table: string, txns: bigint): void {
    const key = tableKey(table);
    const next = this.#nextTxn.get(key) ?? (this.startAfter.get(key) ?? 0n) + 1n;
    this.#nextTxn.set(key, next + txns);
  }

  seal(writer: string, table: string, localFirst: bigint, count: number, value: bigint): Promise<Uint8Array> {
    const records = Array.from({ length: count }, (_, i) =>
      encodeTxnRecord(txnRecord(localFirst + BigInt(i), value + BigInt(i))),
    );
    return sealSegment({
      tableName: table,
      epoch: WRITER_EPOCH,
      writerNodeId: writer,
      records,
      // Not 'none': uncompressed, the object checksum is blind to the records' contents (each
      // record and the header end with their own CRC-32), so a swapped object of one shape passes.
      codec: 'deflate',
      staged: true,
    });
  }
}

function findingsOf(report: StoreAuditReport, table: string) {
  return report.tables
    .find((t) => t.name === table)!
    .findings.map((f) => ({ severity: f.severity, code: f.code, key: f.key }));
}

describe.each(STORES)('the store audit of a sequenced cluster on %s', (_name, skipReason, make) => {
  const opened: ObjectStore[] = [];
  afterAll(async () => Promise.all(opened.map((store) => store.close())));

  async function fresh(startAfter: Map<string, bigint>, registered: string[]) {
    const under = make();
    const store = await under.open();
    opened.push(store);
    await sequencedRoot(store, startAfter, registered);
    return { under, store, build: new SequencedStoreBuilder(store, startAfter) };
  }

  /** `adopted`: wal/ txns 1..3, then txnlog/ 4..9 by p1 and p2; `fresh`: txnlog/ 1..5 from the start. */
  async function cleanCluster() {
    const built = await fresh(new Map([[tableKey('adopted'), 3n]]), ['adopted']);
    await built.build.walChain('adopted', 3);
    await built.build.batch('p1', 'adopted', 2);
    await built.build.batch('p2', 'fresh', 3);
    await built.build.batch('p2', 'adopted', 1);
    await built.build.batch('p1', 'fresh', 2);
    await built.build.batch('p1', 'adopted', 3);
    return built;
  }

  it.skipIf(skipReason !== null)(
    'finds nothing wrong with a clean one, and only warns of an uncommitted staged object',
    async () => {
      const { under, store, build } = await cleanCluster();
      for (const deep of [true, false]) {
        const report = await auditStore(store, { deep });
        expect(report.findings).toEqual([]);
        expect(report.ok).toBe(true);
        expect(report.sequencer).toEqual({
          clusterId: CLUSTER_ID,
          epoch: '2',
          tables: 1,
          at: '2025-01-01T00:00:00.000Z',
        });
        const adopted = report.tables.find((t) => t.name === 'adopted')!;
        expect(adopted.txns).toEqual({ first: '1', last: '3' });
        expect(adopted.txnLog).toMatchObject({
          entries: 3,
          txns: { first: '4', last: '9' },
          writers: ['p1', 'p2'],
          staged: 3,
          uncommitted: 0,
        });
        const freshTable = report.tables.find((t) => t.name === 'fresh')!;
        expect([freshTable.segments, freshTable.txns]).toEqual([0, null]);
        expect(freshTable.txnLog).toMatchObject({
          entries: 2,
          txns: { first: '1', last: '5' },
          writers: ['p2', 'p1'],
        });
        expect(freshTable.txnLog!.bytes).toBeGreaterThan(0);
      }
      const cli = await runVerify(under.connectionString);
      expect(cli.code).toBe(0);
      expect(cli.out).toMatch(/sequenced since epoch 2$/m);
      expect(cli.out).toMatch(
        /^ {2}adopted {2}3 segments, txns 1\.\.3, epochs 1; txnlog 3 entries, txns 4\.\.9, writers p1,p2, .* OK$/m,
      );
      expect(cli.out).toMatch(/^ {2}fresh {4}txnlog 2 entries, txns 1\.\.5, writers p2,p1, .* OK$/m);
      expect(cli.out).toMatch(/^OK: 2 tables, 3 segments, 5 log entries, /m);

      // A writer's batch in flight: staged, not yet numbered.
      const inFlight = await build.batch('p2', 'fresh', 1, false);
      const report = await auditStore(store);
      expect(report.ok).toBe(true);
      expect(report.findings.map((f) => [f.severity, f.code, f.key])).toEqual([
        ['warning', 'STAGED_UNCOMMITTED', inFlight.staged],
      ]);
      expect(report.findings[0]!.message).toContain(
        'uncommitted staged segment (an orphan once its writer epoch is closed: walship gc --sequencer collects it)',
      );
      expect(report.tables.find((t) => t.name === 'fresh')!.txnLog).toMatchObject({
        staged: 3,
        uncommitted: 1,
      });
      const warned = await runVerify(under.connectionString);
      expect(warned.code).toBe(0);
      expect(warned.out).toMatch(/warning STAGED_UNCOMMITTED: /);
      expect(warned.out).toMatch(
        /^ {2}fresh .*, 1 uncommitted staged, .* 1 finding\(s\): STAGED_UNCOMMITTED$/m,
      );
    },
  );

  it.skipIf(skipReason !== null)(
    'names a gap, a corrupt entry, missing, mismatched and flipped staged objects, a batch numbered twice and bad starts, each on its own table',
    async () => {
      const tables = ['clean', 'gap', 'corrupt', 'nostaged', 'mismatch', 'flipped', 'twice', 'late', 'early'];
      const startAfter = new Map([
        [tableKey('late'), 2n],
        [tableKey('early'), 2n],
      ]);
      const { under, store, build } = await fresh(startAfter, ['late', 'early']);
      for (const table of tables.slice(0, 7)) for (let i = 0; i < 3; i++) await build.batch('p1', table, 2);
      // gap: the second entry (txns 3..4) is gone.
      await store.delete(txnLogKey(tableKey('gap'), 3n));
      // corrupt: one byte of the second entry flipped.
      const corruptKey = txnLogKey(tableKey('corrupt'), 3n);
      const corrupt = await body(store, corruptKey);
      corrupt[corrupt.length >> 1]! ^= 0x01;
      await store.put(corruptKey, corrupt);
      // nostaged: the second entry's staged object is gone.
      const nostaged = await build.batch('p2', 'nostaged', 1);
      await store.delete(nostaged.staged);
      // mismatch: the entry's staged object replaced by another well-formed one of the same writer.
      const mismatch = await build.batch('p2', 'mismatch', 2);
      await store.put(mismatch.staged, await build.seal('p2', 'mismatch', 1001n, 2, 999n));
      // flipped: one byte of a staged object's body flipped (its header, and trailer, intact).
      const flipped = await build.batch('p2', 'flipped', 2);
      const flippedBytes = await body(store, flipped.staged);
      flippedBytes[flippedBytes.length - 4 - 2]! ^= 0x01; // the body's end, before the 4-byte trailer
      await store.put(flipped.staged, flippedBytes);
      // twice: its last batch (txns 7..8) numbered again as txns 9..10.
      const last = await build.batch('p2', 'twice', 2);
      const again = await build.number(last);
      // late: wal/ 1..2, the txnlog/ starts at 4 instead of 3. early: it starts at 2, inside wal/.
      await build.walChain('late', 2);
      build.skip('late', 1n);
      await build.batch('p1', 'late', 2);
      await build.walChain('early', 2);
      build.skip('early', -1n);
      await build.batch('p1', 'early', 2);
      // Strays beside a table's folders: before staged/ and after wal/.
      await store.put('tables/clean/notes.txt', new Uint8Array([1]));
      await store.put('tables/clean/zz/x', new Uint8Array([2]));

      const report = await auditStore(store);
      expect(report.ok).toBe(false);
      expect(findingsOf(report, 'clean')).toEqual([
        { severity: 'error', code: 'ORPHAN', key: 'tables/clean/notes.txt' },
        { severity: 'error', code: 'ORPHAN', key: 'tables/clean/zz/x' },
      ]);
      expect(findingsOf(report, 'gap')).toEqual([
        { severity: 'error', code: 'TXN_LOG_MISSING', key: txnLogKey(tableKey('gap'), 3n) },
        // Its staged object is still there, named by nothing now.
        { severity: 'warning', code: 'STAGED_UNCOMMITTED', key: stagedKey(tableKey('gap'), 'p1', 1n, 5n) },
      ]);
      expect(findingsOf(report, 'corrupt')).toEqual([
        { severity: 'error', code: 'TXN_LOG_ENTRY_CORRUPT', key: corruptKey },
        {
          severity: 'warning',
          code: 'STAGED_UNCOMMITTED',
          key: stagedKey(tableKey('corrupt'), 'p1', 1n, 8n),
        },
      ]);
      expect(findingsOf(report, 'nostaged')).toEqual([
        { severity: 'error', code: 'STAGED_MISSING', key: nostaged.staged },
      ]);
      expect(findingsOf(report, 'mismatch')).toEqual([
        { severity: 'error', code: 'SEGMENT_ENTRY_MISMATCH', key: mismatch.staged },
      ]);
      expect(findingsOf(report, 'flipped')).toEqual([
        { severity: 'error', code: 'SEGMENT_CORRUPT', key: flipped.staged },
      ]);
      expect(findingsOf(report, 'twice')).toEqual([
        { severity: 'error', code: 'TXN_LOG_BATCH_ORDER', key: txnLogKey(tableKey('twice'), again.txnFirst) },
      ]);
      expect(again.txnFirst).toBe(9n);
      expect(findingsOf(report, 'late')).toEqual([
        { severity: 'error', code: 'TXN_LOG_MISSING', key: txnLogKey(tableKey('late'), 3n) },
      ]);
      expect(findingsOf(report, 'early')).toEqual([
        { severity: 'error', code: 'TXN_LOG_OVERLAP', key: txnLogKey(tableKey('early'), 2n) },
      ]);
      expect(report.tables.find((t) => t.name === 'twice')!.txnLog!.txns).toEqual({ first: '1', last: '10' });

      // Headers only: the flipped body goes unseen, the rest is found the same.
      const shallow = await auditStore(store, { deep: false });
      expect(findingsOf(shallow, 'flipped')).toEqual([]);
      expect(findingsOf(shallow, 'mismatch')).toEqual(findingsOf(report, 'mismatch'));
      expect(findingsOf(shallow, 'nostaged')).toEqual(findingsOf(report, 'nostaged'));

      const cli = await runVerify(under.connectionString);
      expect(cli.code).toBe(1);
      expect(cli.out).toMatch(/ERROR {3}TXN_LOG_MISSING: table gap: txns 3\.\.4 are in no log entry/);
      // --table: the strays beside a table's folders are that table's.
      expect((await runVerify(under.connectionString, ['--table', 'clean'])).code).toBe(1);
    },
  );

  it.skipIf(skipReason !== null)('refuses a corrupt sequencer.json, and a txn log without one', async () => {
    const { store } = await cleanCluster();
    const record = await body(store, SEQUENCER_RECORD_KEY);
    record[record.length >> 1]! ^= 0x01;
    await store.put(SEQUENCER_RECORD_KEY, record);
    const corrupt = await auditStore(store);
    expect(corrupt.sequencer).toBeNull();
    expect(corrupt.findings.map((f) => [f.severity, f.code, f.key])).toEqual([
      ['error', 'SEQUENCER_RECORD_CORRUPT', SEQUENCER_RECORD_KEY],
    ]);
    await store.delete(SEQUENCER_RECORD_KEY);
    const absent = await auditStore(store);
    expect(absent.findings.map((f) => [f.severity, f.code, f.key])).toEqual([
      ['error', 'SEQUENCER_RECORD_MISSING', SEQUENCER_RECORD_KEY],
    ]);
  });
});
