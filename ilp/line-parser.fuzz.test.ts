import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { type Random, randomInt, seededRandom } from '../core/index.js';
import type { IlpLine } from './ilp-line.js';
import { IlpParseError } from './ilp-parse-error.js';
import type { IlpLimits } from './limits.js';
import { parseCompleteIlpLines, parseIlp, parseIlpInWindows } from './line-parser.js';
import { binaryArray, binaryDecimal, binaryDouble, binaryNullArray } from './testing/request-bytes.js';

/**
 * Fuzz: every input either parses or throws IlpParseError — never another error, never a hang.
 * WALSHIP_FUZZ_SEED and WALSHIP_FUZZ_RUNS replay or extend a run; a failure prints the seed, the
 * case number and the input as hex.
 */

const SEED = Number(process.env.WALSHIP_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const RUNS = Number(process.env.WALSHIP_FUZZ_RUNS ?? 100_000);
/** ~4 s per 100 000 runs on a laptop; generous so a slow CI machine or a long run does not time out. */
const TIMEOUT_MS = Math.max(30_000, (RUNS / 100_000) * 20_000);

/** Small limits for a share of the cases, so "too long / too many" paths run often. */
const SMALL_LIMITS: Partial<IlpLimits> = {
  maxLineBytes: 96,
  maxColumnsPerLine: 4,
  maxLinesPerRequest: 3,
  maxNameBytes: 8,
  maxArrayDims: 2,
  maxArrayElements: 5,
};

const VALID_LINES: Buffer[] = [
  Buffer.from(
    'trades,sym=ETH-USD,side=sell\\ x\\,y\\=z qty=42i,price=2615.54,note="he said \\"hi\\"\\\nbye",ok=t,' +
      'ts_col=1700000000123456t 1700000000123456789',
  ),
  Buffer.from(
    'm\u00e9t\u00e9o,ville=Z\u00fcrich temp=-1.5e-3,flag=FALSE,n=-9223372036854775808i 1700000000123456t',
  ),
  Buffer.from('t a=NaN,b=Infinity,c=-Infinity,d=1e+21,e=123.45d,f=NaNd,g=1700000000123m 1700000000123m'),
  Buffer.from('t,only=symbols'),
  Buffer.from('t,only=symbols -1n'),
  Buffer.from('# a comment'),
  Buffer.concat([
    Buffer.from('t d'),
    binaryDouble(1.5),
    Buffer.from(',a'),
    binaryArray([2, 2], [1, 2, 3, 4]),
  ]),
  Buffer.concat([
    Buffer.from('t n'),
    binaryNullArray(),
    Buffer.from(',x'),
    binaryDecimal(-12345n, 3),
    Buffer.from(' 1n'),
  ]),
  Buffer.concat([Buffer.from('t z'), binaryDecimal(null, 0), Buffer.from(',e'), binaryArray([0, 3], [])]),
];

/** Bytes the grammar cares about, drawn more often than their share of random bytes. */
const INTERESTING = [...' ,="\\\n\r#=.-itnmdTfFe0123456789']
  .map((c) => c.charCodeAt(0))
  .concat([0, 0x80, 0xc3, 0xff]);
const BAD_UTF8 = [
  [0xc3],
  [0xc3, 0x28],
  [0xed, 0xa0, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xff],
  [0xe2, 0x82],
];

function randomByte(random: Random): number {
  return random.next() < 0.5 ? INTERESTING[randomInt(random, INTERESTING.length)]! : randomInt(random, 256);
}

function randomBytes(random: Random, maxLength: number): Buffer {
  return Buffer.from(Array.from({ length: randomInt(random, maxLength + 1) }, () => randomByte(random)));
}

function validRequest(random: Random): Buffer {
  const lines = Array.from(
    { length: 1 + randomInt(random, 4) },
    () => VALID_LINES[randomInt(random, VALID_LINES.length)]!,
  );
  const eol = random.next() < 0.5 ? '\n' : '\r\n';
  return Buffer.concat(lines.flatMap((line) => [line, Buffer.from(eol)]));
}

function mutate(random: Random, input: Buffer): Buffer {
  let bytes = [...input];
  const mutations = 1 + randomInt(random, 4);
  for (let m = 0; m < mutations; m++) {
    const at = randomInt(random, bytes.length + 1);
    switch (randomInt(random, 6)) {
      case 0: // flip a byte
        if (bytes.length > 0) bytes[Math.min(at, bytes.length - 1)] = randomByte(random);
        break;
      case 1: // insert bytes
        bytes.splice(at, 0, ...randomBytes(random, 4));
        break;
      case 2: // delete a range
        bytes.splice(at, 1 + randomInt(random, 8));
        break;
      case 3: // duplicate a range
        bytes.splice(at, 0, ...bytes.slice(at, at + 1 + randomInt(random, 16)));
        break;
      case 4: // insert invalid UTF-8
        bytes.splice(at, 0, ...BAD_UTF8[randomInt(random, BAD_UTF8.length)]!);
        break;
      default: // truncate (cuts binary fields anywhere)
        bytes = bytes.slice(0, at);
    }
  }
  return Buffer.from(bytes);
}

/** A binary field header with random (often huge or negative) counts and too few bytes after it. */
function hostileBinary(random: Random): Buffer {
  const header: number[] = [...Buffer.from('t a==')];
  switch (randomInt(random, 3)) {
    case 0: {
      header.push(14, random.next() < 0.9 ? 10 : randomByte(random), randomInt(random, 40));
      const dims = Buffer.alloc(4 * randomInt(random, 6));
      for (let i = 0; i + 4 <= dims.length; i += 4) dims.writeInt32LE((random.next() * 2 ** 32) | 0, i);
      header.push(...dims);
      break;
    }
    case 1:
      header.push(23, randomInt(random, 256), randomInt(random, 256));
      break;
    default:
      header.push(randomInt(random, 256));
  }
  return Buffer.concat([Buffer.from(header), randomBytes(random, 64)]);
}

function hugeLine(random: Random): Buffer {
  const size = 64 + randomInt(random, 512);
  const filler = random.next() < 0.5 ? 'x' : '\\ ';
  return Buffer.from(`t s="${filler.repeat(size)}${random.next() < 0.5 ? '"' : ''} 1\n`);
}

function generate(random: Random): Buffer {
  const kind = randomInt(random, 10);
  if (kind < 2) return randomBytes(random, 96);
  // Unmutated requests feed the differential check between the whole and the stream parse.
  if (kind === 2) return validRequest(random);
  if (kind < 7) return mutate(random, validRequest(random));
  if (kind < 9) return hostileBinary(random);
  return hugeLine(random);
}

/** Parses `body` as a TCP connection would, batch after batch; undefined if it stops short of the end. */
function streamAll(body: Buffer, limits: Partial<IlpLimits> | undefined): IlpLine[] | undefined {
  const lines: IlpLine[] = [];
  let offset = 0;
  let firstLineNumber = 1;
  while (offset < body.length) {
    const batch = parseCompleteIlpLines(body.subarray(offset), { precision: 'n', limits, firstLineNumber });
    if (batch.consumedBytes === 0) return undefined;
    lines.push(...batch.lines);
    offset += batch.consumedBytes;
    firstLineNumber = batch.nextLineNumber;
  }
  return lines;
}

/** Outcome counts, to see that the generators reach both sides of the grammar. */
const outcomes = { parsed: 0, refused: 0 };

/** The lines, or the message of the IlpParseError; rethrows anything else. */
function outcome(parse: () => IlpLine[]): IlpLine[] | string {
  try {
    return parse();
  } catch (error) {
    if (!(error instanceof IlpParseError)) throw error;
    return error.message;
  }
}

/**
 * Checks one input; returns the first problem: anything thrown that is not an IlpParseError, or
 * the parse modes disagreeing. Parsing in the smallest windows the limits allow must give the same
 * lines or the same error as parsing whole; a body that parses whole must parse the same, line for
 * line, as a stream once a final LF is added.
 */
function check(input: Buffer, limits: Partial<IlpLimits> | undefined): unknown {
  try {
    const whole = outcome(() => parseIlp(input, { precision: 'n', limits }));
    if (typeof whole === 'string') outcomes.refused++;
    else outcomes.parsed++;
    expect(outcome(() => parseIlpInWindows(input, { precision: 'n', limits }, 0))).toStrictEqual(whole);
    const partial = outcome(() => parseCompleteIlpLines(input, { precision: 'n', limits }).lines);
    if (typeof whole !== 'string') {
      if (typeof partial === 'string' && !(limits !== undefined && partial.includes('too many lines'))) {
        return new Error(`the stream parse refused a body the whole parse accepted: ${partial}`);
      }
      const streamed = streamAll(Buffer.concat([input, Buffer.from('\n')]), limits);
      if (streamed === undefined) return new Error('a whole body was not consumed as a stream');
      expect(streamed).toStrictEqual(whole);
    }
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('parseIlp fuzz', () => {
  it(
    `parses or throws IlpParseError for ${RUNS} inputs (seed ${SEED})`,
    () => {
      process.stdout.write(
        `ilp fuzz: seed ${SEED}, ${RUNS} runs (WALSHIP_FUZZ_SEED / WALSHIP_FUZZ_RUNS to change)\n`,
      );
      const random = seededRandom(SEED);
      for (let run = 0; run < RUNS; run++) {
        const input = generate(random);
        const limits = random.next() < 0.3 ? SMALL_LIMITS : undefined;
        const failure = check(input, limits);
        if (failure !== undefined) {
          const what = failure instanceof Error ? (failure.stack ?? failure.message) : String(failure);
          throw new Error(
            `ilp fuzz failure: seed ${SEED}, run ${run}, limits ${limits ? 'small' : 'default'}, ` +
              `input hex ${input.toString('hex')}\n${what}`,
          );
        }
      }
      process.stdout.write(`ilp fuzz: ${outcomes.parsed} inputs parsed, ${outcomes.refused} refused\n`);
      // Both sides of the grammar must be reached, or the generators have gone stale.
      expect(outcomes.parsed).toBeGreaterThan(RUNS / 20);
      expect(outcomes.refused).toBeGreaterThan(RUNS / 20);
    },
    TIMEOUT_MS,
  );

  it('huge inputs: a 4 MiB line, a line past the default limit, and 200 000 tiny lines', () => {
    const big = Buffer.from(`t s="${'x'.repeat(4 * 1024 * 1024)}"\n`);
    expect(() => parseIlp(big, { precision: 'n' })).toThrow(/line too long/);
    const justOver = Buffer.from(`t s="${'x'.repeat(1024 * 1024)}"`);
    expect(() => parseIlp(justOver, { precision: 'n' })).toThrow(/line too long/);
    const justUnder = Buffer.from(`t s="${'x'.repeat(1024 * 1024 - 6)}"`);
    expect(parseIlp(justUnder, { precision: 'n' })).toHaveLength(1);
    expect(parseIlp(Buffer.from('t a=1\n'.repeat(200_000)), { precision: 'n' })).toHaveLength(200_000);
  });
});
