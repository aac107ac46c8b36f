import { expect, test } from 'vitest';
import { CorruptSegmentError, isWalshipError, type Random, randomInt, seededRandom } from '../core/index.js';
import { type Codec, decodeSegment, decodeSegmentHeader, encodeSegment, type TxnRecord } from './index.js';
import { HEADER } from './segment-layout.js';
import { randomTxns } from './testing/random-txns.js';
import {
  concatBytes,
  resealRecord,
  resealSegment,
  resealTrailer,
  segmentParts,
  splitRecords,
} from './testing/reseal.js';
import { describeTxnDifference } from './testing/txn-equality.js';

/**
 * Fuzzing the decoder (RFC-0001 §11). Every input must decode — and then re-encode and decode to
 * the same txns — or fail with CorruptSegmentError carrying an offset (or CODEC_UNAVAILABLE for a
 * codec this runtime lacks). Anything else fails the test with the seed and the input in hex.
 * Most inputs are structure-aware: records and header fields are mutated and every checksum is
 * recomputed, so it is the parser, not the checksum gate, that has to reject them.
 */

const seed = Number(process.env.WALSHIP_FUZZ_SEED ?? 0x5eed_0001) >>> 0;
const runs = Number(process.env.WALSHIP_FUZZ_RUNS ?? 100_000);

interface Base {
  segment: Uint8Array;
  header: Uint8Array;
  rawBody: Uint8Array;
  records: Uint8Array[];
  codec: Codec;
}

type Outcome = 'decoded' | 'checksum' | 'header' | 'parser' | 'codec';

async function makeCorpus(random: Random): Promise<Base[]> {
  const corpus: Base[] = [];
  for (let i = 0; i < 48; i++) {
    const codec: Codec = i % 4 === 3 ? 'deflate' : 'none';
    const txns = randomTxns(random, { maxRows: i % 8 === 0 ? 40 : 8, tableOps: true });
    // Every fifth base is a staged segment (header flag bit 1, RFC-0003): the same parser must hold.
    corpus.push(await baseOf(txns, codec, i % 5 === 4));
  }
  const fence: TxnRecord = { txn: 1n, commitTimeUs: 0n, kind: 'fence', rowCount: 0, columns: [] };
  corpus.push(await baseOf([fence], 'none'));
  return corpus;
}

async function baseOf(txns: TxnRecord[], codec: Codec, staged = false): Promise<Base> {
  const segment = await encodeSegment({
    tableName: 'fuzz',
    epoch: 7n,
    writerNodeId: 'w1',
    txns,
    codec,
    staged,
  });
  const { header, rawBody } = segmentParts(segment);
  return { segment, header, rawBody, records: splitRecords(rawBody), codec };
}

const INTERESTING_U32 = [
  0, 1, 2, 3, 4, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff,
];
const INTERESTING_U8 = [0, 1, 2, 3, 4, 7, 8, 9, 32, 33, 76, 77, 0x7f, 0x80, 0xfe, 0xff];

function pick<T>(random: Random, items: readonly T[]): T {
  return items[randomInt(random, items.length)]!;
}

/** An offset biased towards the front, where the structure (lengths, counts, descriptors) is. */
function offsetIn(random: Random, length: number): number {
  if (length === 0) return 0;
  return random.next() < 0.6 ? randomInt(random, Math.min(length, 64)) : randomInt(random, length);
}

function writeInteresting(random: Random, bytes: Uint8Array, remaining: number): void {
  if (bytes.length === 0) return;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = offsetIn(random, bytes.length);
  const width = pick(random, [1, 1, 2, 4, 4, 4, 8]);
  if (at + width > bytes.length) return;
  if (width === 1) view.setUint8(at, pick(random, INTERESTING_U8));
  else if (width === 2) view.setUint16(at, pick(random, [0, 1, 0xff, 0x100, 0x800, 0xffff]), true);
  else if (width === 8) {
    view.setBigUint64(at, pick(random, [0n, 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n]), true);
  } else {
    const old = view.getUint32(at, true);
    const value = pick(random, [...INTERESTING_U32, old + 1, old - 1, remaining, remaining + 1, old * 2]);
    view.setUint32(at, value >>> 0, true);
  }
}

/** One random edit of a byte array: flips, sets, interesting values, inserts, deletes, duplicates. */
function mutateBytes(random: Random, bytes: Uint8Array): Uint8Array {
  const copy = bytes.slice();
  const at = offsetIn(random, copy.length);
  switch (randomInt(random, 8)) {
    case 0:
      if (copy.length > 0) copy[at] = copy[at]! ^ (1 << randomInt(random, 8));
      return copy;
    case 1:
      if (copy.length > 0) copy[at] = randomInt(random, 256);
      return copy;
    case 2:
    case 3:
      writeInteresting(random, copy, copy.length - at);
      return copy;
    case 4:
      return concatBytes([
        copy.subarray(0, at),
        randomBytes(random, 1 + randomInt(random, 8)),
        copy.subarray(at),
      ]);
    case 5:
      return concatBytes([
        copy.subarray(0, at),
        copy.subarray(Math.min(copy.length, at + 1 + randomInt(random, 8))),
      ]);
    case 6: {
      const end = Math.min(copy.length, at + 1 + randomInt(random, 16));
      return concatBytes([copy.subarray(0, end), copy.subarray(at, end), copy.subarray(end)]);
    }
    default:
      return copy.subarray(0, at);
  }
}

function randomBytes(random: Random, length: number): Uint8Array {
  return Uint8Array.from({ length }, () => randomInt(random, 256));
}

/** Structure-aware: edit one record's payload, reseal it (usually fixing its length), reseal the segment. */
function mutateRecord(random: Random, base: Base): Uint8Array {
  const records = base.records.slice();
  const index = randomInt(random, records.length);
  const record = records[index]!;
  // Edit the payload (between the length prefix and the checksum) so resealing keeps the frame.
  let payload = record.subarray(4, record.length - 4);
  const edits = 1 + randomInt(random, 3);
  for (let i = 0; i < edits; i++) payload = mutateBytes(random, payload);
  const framed = concatBytes([record.subarray(0, 4), payload, new Uint8Array(4)]);
  records[index] = resealRecord(framed, random.next() < 0.15);
  return resealSegment(base.header, concatBytes(records));
}

/** Structure-aware at the body level: drop, duplicate, swap records, or add garbage. */
function mutateBody(random: Random, base: Base): Uint8Array {
  const records = base.records.slice();
  const a = randomInt(random, records.length);
  const b = randomInt(random, records.length);
  switch (randomInt(random, 4)) {
    case 0:
      records.splice(a, 1);
      break;
    case 1:
      records.splice(a, 0, records[a]!);
      break;
    case 2:
      [records[a], records[b]] = [records[b]!, records[a]!];
      break;
    default:
      records.push(randomBytes(random, 1 + randomInt(random, 40)));
  }
  return resealSegment(base.header, concatBytes(records));
}

const HEADER_FIELDS = Object.values(HEADER);

/** Header fields set to interesting values, header checksum and trailer recomputed. */
function mutateHeader(random: Random, base: Base): Uint8Array {
  const header = base.header.slice();
  const view = new DataView(header.buffer);
  const at = pick(random, HEADER_FIELDS);
  if (random.next() < 0.5) writeInteresting(random, header.subarray(at, header.length - 4), 0);
  else if (at < header.length - 4) view.setUint8(at, pick(random, INTERESTING_U8));
  return resealSegment(header, base.rawBody, random.next() < 0.7);
}

/** Truncation at structural positions: header fields, header end, record boundaries, trailer. */
function truncate(random: Random, base: Base): Uint8Array {
  const { segment, header } = base;
  const positions = [
    ...HEADER_FIELDS,
    header.length - 4,
    header.length,
    segment.length - 4,
    segment.length - 1,
    1,
  ];
  if (base.codec === 'none') {
    let at = header.length;
    for (const record of base.records) {
      positions.push(at, at + 4, at + 28, at + record.length - 4);
      at += record.length;
    }
  }
  const position = pick(random, positions) + pick(random, [-1, 0, 0, 1]);
  return segment.subarray(0, Math.max(0, Math.min(segment.length - 1, position)));
}

function garbage(random: Random, base: Base): Uint8Array {
  switch (randomInt(random, 3)) {
    case 0:
      return randomBytes(random, randomInt(random, 300));
    case 1:
      return concatBytes([base.segment.subarray(0, 8), randomBytes(random, randomInt(random, 300))]);
    default:
      // A valid header over a random stored body, trailer resealed.
      return resealSegment(
        base.header,
        randomBytes(random, 32 + randomInt(random, 200)),
        base.codec === 'deflate',
      );
  }
}

function makeInput(random: Random, corpus: Base[]): { strategy: string; input: Uint8Array } {
  const base = pick(random, corpus);
  const roll = random.next();
  if (roll < 0.5) return { strategy: 'record', input: mutateRecord(random, base) };
  if (roll < 0.6) return { strategy: 'body', input: mutateBody(random, base) };
  if (roll < 0.72) return { strategy: 'header', input: mutateHeader(random, base) };
  if (roll < 0.82) return { strategy: 'truncate', input: truncate(random, base) };
  if (roll < 0.87) return { strategy: 'garbage', input: garbage(random, base) };
  if (roll < 0.93) return { strategy: 'stored', input: resealTrailer(mutateBytes(random, base.segment)) };
  return { strategy: 'flip', input: mutateBytes(random, base.segment) };
}

function classify(error: CorruptSegmentError): Outcome {
  if (/checksum mismatch/.test(error.message)) return 'checksum';
  return (error.details as { region?: string }).region === 'body' ? 'parser' : 'header';
}

/** Runs one input; returns its outcome or a description of what went wrong. */
async function check(input: Uint8Array): Promise<Outcome | string> {
  let decoded: Awaited<ReturnType<typeof decodeSegment>>;
  try {
    decoded = await decodeSegment(input);
  } catch (error) {
    if (isWalshipError(error, 'CODEC_UNAVAILABLE')) return 'codec';
    if (!(error instanceof CorruptSegmentError)) {
      return `threw ${String(error)}\n${(error as Error)?.stack ?? ''}`;
    }
    if (!/at (object|body) offset \d+/.test(error.message)) {
      return `CorruptSegmentError without an offset: ${error.message}`;
    }
    return classify(error);
  }
  return checkDecoded(input, decoded);
}

/** A decoded input must re-encode (the encoder accepts what the decoder returns) and decode to itself. */
async function checkDecoded(
  input: Uint8Array,
  decoded: Awaited<ReturnType<typeof decodeSegment>>,
): Promise<Outcome | string> {
  const { header, txns } = decoded;
  try {
    const again = await encodeSegment({
      tableName: header.tableName,
      epoch: header.epoch,
      writerNodeId: header.writerNodeId,
      txns,
      codec: 'none',
      staged: header.staged,
    });
    const difference = describeTxnDifference(txns, (await decodeSegment(again)).txns);
    if (difference !== null) return `decoded txns do not survive a re-encode: ${difference}`;
  } catch (error) {
    return `decoded txns do not re-encode: ${String(error)}`;
  }
  const headerOnly = decodeSegmentHeader(input);
  if (headerOnly.objectChecksum !== header.objectChecksum) {
    return 'decodeSegmentHeader disagrees with decodeSegment';
  }
  return 'decoded';
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex');
}

test(`decoder fuzz: ${runs} inputs, seed ${seed}`, async () => {
  console.log(`wal fuzz: seed=${seed} runs=${runs} (override with WALSHIP_FUZZ_SEED / WALSHIP_FUZZ_RUNS)`);
  const random = seededRandom(seed);
  const corpus = await makeCorpus(random);
  const outcomes: Record<Outcome, number> = { decoded: 0, checksum: 0, header: 0, parser: 0, codec: 0 };
  for (let i = 0; i < runs; i++) {
    const { strategy, input } = makeInput(random, corpus);
    const outcome = await check(input);
    if (!(outcome in outcomes)) {
      throw new Error(
        `fuzz failure at input ${i} (seed ${seed}, strategy ${strategy}): ${outcome}\ninput (${input.length} bytes): ${hex(input)}`,
      );
    }
    outcomes[outcome as Outcome] += 1;
  }
  console.log(`wal fuzz outcomes: ${JSON.stringify(outcomes)}`);
  // The structure-aware half must reach the parser, or this has degraded into a checksum test.
  expect(outcomes.parser).toBeGreaterThan(runs * 0.2);
  expect(outcomes.header).toBeGreaterThan(runs * 0.05);
  expect(outcomes.decoded).toBeGreaterThan(0);
}, 300_000);
