/**
 * Bad input against a real in-process primary: a seeded corpus of malformed ILP requests (random
 * bytes, mutated valid lines, truncated binary fields, huge lines, invalid UTF-8, type conflicts
 * within and across tables, bad names, bad values), each with VALID lines for existing tables
 * before the bad one so that "commits nothing" means something. After every request: the answer is
 * 400 or 413 with exactly QuestDB's JSON error shape (or 204 when a random mutation happens to be
 * valid — and then its rows are there), no table's txn moved unless the answer was 204, the main
 * table's row count moved only on 204, and the node still answers /ping. At the end /status is
 * sane, every txn reached the store, and a valid write still works.
 *
 * WALSHIP_FUZZ_SEED replays a run (the seed is printed); WALSHIP_FUZZ_REQUESTS sets its length.
 */
import { Buffer } from 'node:buffer';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, type IncomingHttpHeaders, request } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Random, randomInt, seededRandom } from '../core/index.js';
import { FsStore } from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import { startTestPrimary } from './helpers/test-primary.js';

const SEED = Number(process.env.WALSHIP_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const REQUESTS = Number(process.env.WALSHIP_FUZZ_REQUESTS ?? 3000);
/** The corpus stops early past this, so a slow machine still finishes inside the test timeout. */
const TIME_BUDGET_MS = Number(process.env.WALSHIP_FUZZ_BUDGET_MS ?? 25_000);
/** Small, so a 413 costs one MiB of traffic rather than the default 100 MiB. */
const MAX_REQUEST_BYTES = 1024 * 1024;

const MAIN = 'fuzz_main';
const SIDE = 'fuzz_side';

let base = '';
let node: PrimaryNode;
/** One connection at a time, kept alive across requests (a 413 closes it; the agent reconnects). */
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const sockets = new Set<Socket>();

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-ilp-fuzz-'));
  const store = await FsStore.open({ root: path.join(base, 'store') });
  node = await startTestPrimary(store, path.join(base, 'node'), { maxRequestBytes: MAX_REQUEST_BYTES });
  // The tables the corpus writes into, with every column type its valid lines use.
  const setup = await send({
    method: 'POST',
    path: '/write',
    body: Buffer.from(`${MAIN},k=a l=1i,d=1.5,s="x",b=t,ts=1t\n${SIDE} v=1i\n`),
  });
  expect(setup.status, setup.body).toBe(204);
});

afterAll(async () => {
  agent.destroy();
  await node?.close();
  await rm(base, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// HTTP

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request on the shared keep-alive agent; `chunks` sends a chunked body, else Content-Length. */
function send(options: { method: string; path: string; body?: Buffer; chunks?: Buffer[] }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> =
      options.body === undefined ? {} : { 'Content-Length': String(options.body.length) };
    const req = request(
      { host: '127.0.0.1', port: node.httpPort, method: options.method, path: options.path, agent, headers },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (chunk: Buffer) => parts.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts).toString() }),
        );
        res.on('error', reject);
      },
    );
    req.on('socket', (socket) => sockets.add(socket));
    req.on('error', reject);
    if (options.chunks !== undefined) {
      for (const chunk of options.chunks) req.write(chunk);
      req.end();
    } else {
      req.end(options.body);
    }
  });
}

const get = (path: string) => send({ method: 'GET', path });

interface TableState {
  name: string;
  key: string;
  committedTxn: string;
  uploadedTxn: string;
  lastError: unknown;
}

async function status(): Promise<{ role: string; acceptingWrites: boolean; tables: TableState[] }> {
  const answer = await get('/status');
  expect(answer.status).toBe(200);
  return JSON.parse(answer.body);
}

/** Committed txn per table key: the whole of what "committed something" can mean. */
async function txnsByKey(): Promise<Map<string, bigint>> {
  return new Map((await status()).tables.map((t) => [t.key, BigInt(t.committedTxn)]));
}

async function countRows(table: string): Promise<number> {
  const answer = await get(`/exec?query=${encodeURIComponent(`SELECT count(*) FROM "${table}"`)}`);
  expect(answer.status, answer.body).toBe(200);
  return (JSON.parse(answer.body) as { dataset: [[number]] }).dataset[0][0];
}

/** MAIN's columns as /exec describes them (names and types), as text to compare. */
async function mainColumns(): Promise<string> {
  const answer = await get(`/exec?query=${encodeURIComponent(`SELECT * FROM "${MAIN}" LIMIT 0`)}`);
  expect(answer.status, answer.body).toBe(200);
  return JSON.stringify((JSON.parse(answer.body) as { columns: unknown }).columns);
}

// ---------------------------------------------------------------------------------------------
// The corpus

/** One generated request and what is known about it in advance. */
interface FuzzCase {
  category: string;
  path: string;
  body: Buffer;
  /** True when no server may accept it (a constructed error); random mutations may turn out valid. */
  mustFail: boolean;
  /** The status when it is known in advance. */
  status?: 400 | 413;
  /** The line the error must name, when known (the line numbering counts every line, from 1). */
  line?: number;
  /** Valid lines before the bad part: an error must never name one of them. */
  prefixLines: number;
  /** Rows those valid lines add to MAIN when the request commits. */
  prefixMainRows: number;
}

/** Bytes the grammar cares about, drawn more often than their share of random bytes. */
const INTERESTING = [...' ,="\\\n\r#=.-itnmdTfFe0123456789']
  .map((c) => c.charCodeAt(0))
  .concat([0, 0x80, 0xff]);
const BAD_UTF8 = [[0xc3], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xff], [0xe2, 0x82], [0x80]];

const pick = <T>(random: Random, items: readonly T[]): T => items[randomInt(random, items.length)]!;

function randomByte(random: Random): number {
  return random.next() < 0.5 ? pick(random, INTERESTING) : randomInt(random, 256);
}

function randomBytes(random: Random, maxLength: number): Buffer {
  return Buffer.from(Array.from({ length: randomInt(random, maxLength + 1) }, () => randomByte(random)));
}

/**
 * A valid line for MAIN (k symbol, l long, d double, s string, b boolean, ts timestamp) or SIDE
 * (v long), with a random subset of columns; designated timestamps stay small so that every
 * precision keeps them in range.
 */
function validLine(random: Random, table = random.next() < 0.8 ? MAIN : SIDE): string {
  if (table === SIDE) return `${SIDE} v=${randomInt(random, 1000) - 500}i`;
  const fields = [
    `l=${randomInt(random, 2 ** 31) - 2 ** 30}i`,
    `d=${(random.next() * 1e6 - 5e5).toString()}`,
    `s="${pick(random, ['', 'plain', 'quote \\" and \\\\ back', 'ünï 🚀', 'line\\\nbreak'])}"`,
    `b=${pick(random, ['t', 'f', 'true', 'FALSE'])}`,
    `ts=${randomInt(random, 2 ** 40)}t`,
  ].filter((_, i) => i === 0 || random.next() < 0.6);
  const tag = random.next() < 0.7 ? `,k=${pick(random, ['a', 'b\\ c', 'ü', 'x\\,y\\=z'])}` : '';
  const timestamp = random.next() < 0.5 ? ` ${randomInt(random, 1_000_000)}` : '';
  return `${MAIN}${tag} ${fields.join(',')}${timestamp}`;
}

/** 1..4 valid lines; counts how many of them go to MAIN. */
function validPrefix(random: Random): { text: string; lines: number; mainRows: number } {
  const lines = Array.from({ length: 1 + randomInt(random, 4) }, () => validLine(random));
  const eol = random.next() < 0.8 ? '\n' : '\r\n';
  return {
    text: lines.map((l) => l + eol).join(''),
    lines: lines.length,
    mainRows: lines.filter((l) => l.startsWith(`${MAIN} `) || l.startsWith(`${MAIN},`)).length,
  };
}

const binaryDouble = (value: number) => {
  const out = Buffer.alloc(9);
  out[0] = 16;
  out.writeDoubleLE(value, 1);
  return out;
};

/** A binary field cut short, at the very end of the body (so nothing after it can complete it). */
function truncatedBinary(random: Random): Buffer {
  const dims = 1 + randomInt(random, 3);
  const lengths = Buffer.alloc(4 * dims);
  for (let i = 0; i < dims; i++) lengths.writeInt32LE(1 + randomInt(random, 3), 4 * i);
  const elements = Array.from({ length: dims }, (_, i) => lengths.readInt32LE(4 * i)).reduce((a, b) => a * b);
  const candidates: [string, Buffer][] = [
    ['d', binaryDouble(random.next()).subarray(0, 1 + randomInt(random, 8))],
    [
      'arr',
      Buffer.concat([Buffer.from([14, 10, dims]), lengths]).subarray(0, 1 + randomInt(random, 3 + 4 * dims)),
    ],
    [
      'arr',
      Buffer.concat([
        Buffer.from([14, 10, dims]),
        lengths,
        Buffer.alloc(8 * elements - 1 - randomInt(random, 8)),
      ]),
    ],
    ['dec', Buffer.from([23, randomInt(random, 10), 2 + randomInt(random, 30), 1])],
    ['dec', Buffer.from([23])],
    ['x', Buffer.alloc(0)],
  ];
  const [name, bytes] = pick(random, candidates);
  return Buffer.concat([Buffer.from(`${MAIN} ${name}==`), bytes]);
}

/** A complete binary field no server may accept: unknown type, bad element type, bad shape. */
function hostileBinary(random: Random): Buffer {
  const negative = Buffer.alloc(4);
  negative.writeInt32LE(-1 - randomInt(random, 2 ** 30));
  const fields = [
    Buffer.from([pick(random, [0, 1, 15, 17, 22, 24, 99, 255])]),
    // Element type other than double (10); 33 is the null array, which is valid.
    Buffer.from([14, pick(random, [0, 1, 9, 11, 255]), 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.concat([Buffer.from([14, 10, 1]), negative]),
    // More dimensions than QuestDB allows (32).
    Buffer.concat([Buffer.from([14, 10, 33 + randomInt(random, 200)]), Buffer.alloc(4 * 40, 0)]),
    // 2^31-1 elements announced: far past every limit, with a few bytes after.
    Buffer.from([14, 10, 1, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3]),
    // Decimal scale past 76, or more than 32 bytes of unscaled value.
    Buffer.from([23, 77 + randomInt(random, 100), 1, 1]),
    Buffer.concat([Buffer.from([23, 2, 33]), Buffer.alloc(33, 1)]),
  ];
  return Buffer.concat([Buffer.from(`${MAIN} h==`), pick(random, fields), Buffer.from('\n')]);
}

/** A line with invalid UTF-8 in a table name, a column name, a symbol, a string or a comment. */
function badUtf8(random: Random): Buffer {
  const bad = Buffer.from(pick(random, BAD_UTF8));
  const templates: [string, string][] = [
    [`${MAIN}`, ' l=1i'],
    [`${MAIN} l`, '=1i'],
    [`${MAIN},k=`, ' l=1i'],
    [`${MAIN} s="ok`, 'ok"'],
    ['# comment ', ''],
  ];
  const [before, after] = pick(random, templates);
  return Buffer.concat([Buffer.from(before), bad, Buffer.from(`${after}\n`)]);
}

/** Lines that each parse but cannot be committed: the line number is the last line's. */
function typeConflict(random: Random): string[] {
  const fresh = `n${randomInt(random, 1e9)}`;
  const cases: string[][] = [
    [`${MAIN} l="text"`],
    [`${MAIN} l=1.5`],
    [`${MAIN} l=t`],
    [`${MAIN} s=1i`],
    [`${MAIN} b=1i`],
    [`${MAIN} d=t`],
    [`${MAIN} d="1.0"`],
    // A long that a double cannot hold exactly is not cast into the double column.
    [`${MAIN} d=9007199254740993i`],
    [`${MAIN} ts=1i`],
    [`${MAIN} timestamp=1i`],
    [`${MAIN},timestamp=x l=1i`],
    [`${MAIN} l=1i,${fresh}=1i`, `${MAIN} l=2i,${fresh}="x"`],
    // Across tables: SIDE's good line comes first, MAIN's good line between, the conflict last.
    [`${SIDE} v=1i`, `${MAIN} l=3i`, `${SIDE} v="x"`],
    [`fuzz_new_${fresh} a=1i`, `fuzz_new_${fresh} a=t`],
  ];
  return pick(random, cases);
}

/** A table or column name no server may accept (the escapes are ILP's, the names QuestDB's rules). */
function badName(random: Random): string {
  const tables = [
    'fuzz\\,comma',
    'q?mark',
    "quote'x",
    'slash/x',
    'colon:x',
    'paren(x',
    'paren)x',
    'plus+x',
    'star*x',
    'pct%x',
    'tilde~x',
    'ctl\u0001x',
    '.hidden',
    'a..b',
    'trailing.',
    '\\ lead',
    'trail\\ ',
    '_walship_meta',
    'sqlite_master',
    'bom\uFEFFx',
    'x'.repeat(128),
    'é'.repeat(64),
  ];
  const columns = ['dot.x', 'dash-x', 'q?x', 'ctl\u0002x', '_walship_x', 'y'.repeat(128), '\\"quoted\\"'];
  if (random.next() < 0.5) return `${pick(random, tables)} l=1i`;
  return `${MAIN} ${pick(random, columns)}=1i`;
}

/** A value no server may accept. */
function badValue(random: Random): string {
  const values = [
    'l=1.2.3',
    'l=99999999999999999999i',
    'l=9223372036854775808i',
    'l=--1i',
    'b=maybe',
    's="unterminated',
    'ts=abct',
    'ts=99999999999999999999t',
    'l=1i 99999999999999999999',
    'l=1i 1x',
    'l=1i,l',
    'l',
    'l=1i,',
    'dec=1.2.3d',
  ];
  return `${MAIN} ${pick(random, values)}`;
}

/** A random mutation of a valid request; it may well still be valid. */
function mutate(random: Random, input: Buffer): Buffer {
  let bytes = [...input];
  for (let m = 1 + randomInt(random, 3); m > 0; m--) {
    const at = randomInt(random, bytes.length + 1);
    switch (randomInt(random, 5)) {
      case 0:
        if (bytes.length > 0) bytes[Math.min(at, bytes.length - 1)] = randomByte(random);
        break;
      case 1:
        bytes.splice(at, 0, ...randomBytes(random, 4));
        break;
      case 2:
        bytes.splice(at, 1 + randomInt(random, 8));
        break;
      case 3:
        bytes.splice(at, 0, ...pick(random, BAD_UTF8));
        break;
      default:
        bytes = bytes.slice(0, at);
    }
  }
  return Buffer.from(bytes);
}

/** A body over MAX_REQUEST_BYTES whose last line is one huge string. */
function huge(random: Random, prefix: string): Buffer {
  const size = MAX_REQUEST_BYTES + randomInt(random, 64 * 1024);
  return Buffer.concat([Buffer.from(`${prefix}${MAIN} s="`), Buffer.alloc(size, 'x'), Buffer.from('"\n')]);
}

const PATHS = [
  '/write',
  '/api/v2/write',
  '/write?precision=n',
  '/write?precision=us',
  '/api/v2/write?precision=ms',
];

/** One case of the corpus: a valid prefix, then one kind of bad input. */
function generate(random: Random): FuzzCase {
  const prefix = validPrefix(random);
  const path = pick(random, PATHS);
  const at = prefix.lines + 1;
  const known = (
    category: string,
    body: Buffer | string,
    line: number,
    status: 400 | 413 = 400,
  ): FuzzCase => ({
    category,
    path,
    body: Buffer.from(body),
    mustFail: true,
    status,
    line,
    prefixLines: prefix.lines,
    prefixMainRows: prefix.mainRows,
  });
  const unknown = (category: string, body: Buffer): FuzzCase => ({
    category,
    path,
    body,
    mustFail: false,
    prefixLines: prefix.lines,
    prefixMainRows: prefix.mainRows,
  });
  // A valid line after the bad one: the error must still name the bad one.
  const suffix = random.next() < 0.5 ? `${validLine(random)}\n` : '';
  const roll = randomInt(random, 1000);
  if (roll < 150)
    return unknown('random bytes', Buffer.concat([Buffer.from(prefix.text), randomBytes(random, 200)]));
  if (roll < 400) {
    const valid = Buffer.from(prefix.text + validLine(random) + (random.next() < 0.5 ? '\n' : ''));
    // The mutation may land in the prefix too, so any line may be the one blamed.
    return { ...unknown('mutated', mutate(random, valid)), prefixLines: 0, prefixMainRows: 0 };
  }
  if (roll < 480)
    return known('truncated binary', Buffer.concat([Buffer.from(prefix.text), truncatedBinary(random)]), at);
  if (roll < 540)
    return known(
      'hostile binary',
      Buffer.concat([Buffer.from(prefix.text), hostileBinary(random), Buffer.from(suffix)]),
      at,
    );
  if (roll < 620)
    return known(
      'invalid UTF-8',
      Buffer.concat([Buffer.from(prefix.text), badUtf8(random), Buffer.from(suffix)]),
      at,
    );
  if (roll < 760) {
    const lines = typeConflict(random);
    return known(
      'type conflict',
      `${prefix.text}${lines.join('\n')}\n${suffix}`,
      prefix.lines + lines.length,
    );
  }
  if (roll < 860) return known('bad name', `${prefix.text}${badName(random)}\n${suffix}`, at);
  if (roll < 980) return known('bad value', `${prefix.text}${badValue(random)}\n${suffix}`, at);
  if (roll < 990) {
    const bad = known('bad precision', `${prefix.text}`, 0);
    return { ...bad, path: `/write?precision=${pick(random, ['days', 'x', 'NS', 'd'])}` };
  }
  // 413: the declared (or, chunked, the counted) size is over the limit; nothing is parsed.
  return known('huge line', huge(random, prefix.text), 0, 413);
}

/** A body as random chunks (splitting UTF-8 sequences and binary fields anywhere). */
function chunksOf(random: Random, body: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < body.length; ) {
    const size =
      1 + randomInt(random, Math.max(1, Math.min(body.length - at, random.next() < 0.5 ? 16 : 65536)));
    chunks.push(body.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

// ---------------------------------------------------------------------------------------------
// The checks

/** The `code` QuestDB's clients expect (shared/reference/ilp-http.md): only a bad precision is `not supported`. */
function expectedCode(status: number, fuzz: FuzzCase): string {
  if (status === 413) return 'request too large';
  return fuzz.category === 'bad precision' ? 'not supported' : 'invalid';
}

function describeCase(index: number, fuzz: FuzzCase): string {
  const shown =
    fuzz.body.length > 600 ? `${fuzz.body.subarray(0, 600).toString('hex')}…` : fuzz.body.toString('hex');
  return `seed ${SEED} case ${index} (${fuzz.category}) POST ${fuzz.path}, ${fuzz.body.length} bytes: ${shown}`;
}

/** An error answer: exactly QuestDB's four keys, a code for the status, and a line past the valid prefix. */
function checkError(answer: Answer, fuzz: FuzzCase, context: string): void {
  expect(answer.headers['content-type'], context).toBe('application/json');
  const body = JSON.parse(answer.body) as Record<string, unknown>;
  expect(Object.keys(body), context).toEqual(['code', 'message', 'line', 'errorId']);
  expect(body.code, context).toBe(expectedCode(answer.status, fuzz));
  expect(typeof body.message === 'string' && body.message.length > 0, context).toBe(true);
  expect(body.errorId, context).toMatch(/^[0-9a-f]{8}-\d+$/);
  const line = body.line as number;
  expect(Number.isSafeInteger(line) && line >= 0, context).toBe(true);
  if (fuzz.line !== undefined) expect(line, `${context}\n${answer.body}`).toBe(fuzz.line);
  else if (line !== 0) expect(line, `${context}\n${answer.body}`).toBeGreaterThan(fuzz.prefixLines);
}

/** The txns a 204 committed, from its X-Walship-Txn (`key=txn@epoch,…`). */
function committedBy(answer: Answer): Map<string, bigint> {
  const header = answer.headers['x-walship-txn'];
  if (header === undefined || header === '') return new Map();
  return new Map(
    String(header)
      .split(',')
      .map((entry) => {
        const [key, txn] = entry.split('@')[0]!.split('=');
        return [key!, BigInt(txn!)] as const;
      }),
  );
}

/** Every table's txn is what it was, except the ones the 204 names, which moved by exactly one. */
function checkTxns(
  before: Map<string, bigint>,
  after: Map<string, bigint>,
  moved: Map<string, bigint>,
  context: string,
) {
  for (const [key, txn] of after) {
    const previous = before.get(key) ?? 0n;
    expect(txn, `${context}\ntable ${key}`).toBe(moved.has(key) ? previous + 1n : previous);
    if (moved.has(key)) expect(moved.get(key), `${context}\ntable ${key}`).toBe(txn);
  }
  for (const key of before.keys()) expect(after.has(key), `${context}\ntable ${key} vanished`).toBe(true);
}

// ---------------------------------------------------------------------------------------------

/** What the node held after the last request: every table's txn, MAIN's rows and columns. */
interface Observed {
  txns: Map<string, bigint>;
  mainRows: number;
  mainColumns: string;
}

async function observe(): Promise<Observed> {
  return { txns: await txnsByKey(), mainRows: await countRows(MAIN), mainColumns: await mainColumns() };
}

/** Sends one case and checks the answer and what it did; returns what the node holds now. */
async function runCase(
  random: Random,
  index: number,
  before: Observed,
): Promise<{ category: string; status: number; now: Observed }> {
  const fuzz = generate(random);
  const context = describeCase(index, fuzz);
  const chunked = random.next() < 0.3;
  const answer = await send({
    method: 'POST',
    path: fuzz.path,
    ...(chunked ? { chunks: chunksOf(random, fuzz.body) } : { body: fuzz.body }),
  });
  const shown = `${context}\n${answer.status} ${answer.body}`;
  expect([204, 400, 413], shown).toContain(answer.status);
  if (fuzz.mustFail) expect(answer.status, shown).toBe(fuzz.status);
  if (answer.status === 204) expect(answer.body, shown).toBe('');
  else checkError(answer, fuzz, context);

  const now = await observe();
  const moved = answer.status === 204 ? committedBy(answer) : new Map<string, bigint>();
  checkTxns(before.txns, now.txns, moved, shown);
  if (answer.status === 204) {
    // The valid prefix is all there (a mutation may have added rows to MAIN as well).
    expect(now.mainRows - before.mainRows, shown).toBeGreaterThanOrEqual(fuzz.prefixMainRows);
    expect(moved.has(MAIN) || now.mainRows === before.mainRows, shown).toBe(true);
  } else {
    expect(now.mainRows, shown).toBe(before.mainRows);
    // Not even a column: the schema changes in the same SQLite transaction as the rows.
    expect(now.mainColumns, shown).toBe(before.mainColumns);
  }
  expect((await get('/ping')).status, shown).toBe(204);
  return { category: fuzz.category, status: answer.status, now };
}

/** After the corpus: the same primary, accepting writes, every txn in the store, writes still work. */
async function checkStillSane(last: Observed): Promise<void> {
  const final = await status();
  expect(final).toMatchObject({ role: 'primary', acceptingWrites: true });
  for (const table of final.tables) {
    expect(BigInt(table.committedTxn)).toBeGreaterThanOrEqual(1n);
    expect(table.lastError, table.name).toBeNull();
  }
  const notUploaded = async () =>
    (await status()).tables.filter((t) => t.uploadedTxn !== t.committedTxn).map((t) => t.name);
  await expect.poll(notUploaded, { timeout: 20_000 }).toEqual([]);
  const ok = await send({
    method: 'POST',
    path: '/write',
    body: Buffer.from(`${MAIN} l=42i\n${SIDE} v=42i\n`),
  });
  expect(ok.status, ok.body).toBe(204);
  expect(committedBy(ok).get(MAIN)).toBe(last.txns.get(MAIN)! + 1n);
  expect(await countRows(MAIN)).toBe(last.mainRows + 1);
}

describe('ILP over HTTP: a fuzz corpus of malformed requests', () => {
  // The corpus draws this case only now and then; here it is every time, with a new table and a
  // new column in the refused request, which must not appear either.
  it('a type conflict in the last table of a request leaves every table as it was', async () => {
    const before = await observe();
    const lines = [`${SIDE} v=7i`, `${MAIN} l=7i,brand_new=1.5`, 'fuzz_brand_new a=1i', `${SIDE} v="seven"`];
    const refused = await send({
      method: 'POST',
      path: '/write',
      body: Buffer.from(`${lines.join('\n')}\n`),
    });
    expect(refused.status).toBe(400);
    const error = JSON.parse(refused.body) as { code: string; message: string; line: number };
    expect(error).toMatchObject({ code: 'invalid', line: 4 });
    expect(error.message).toMatch(/fuzz_side.*v/);
    expect(await observe()).toEqual(before);

    // Without the conflicting line the same request commits all three tables at once.
    const accepted = await send({
      method: 'POST',
      path: '/write',
      body: Buffer.from(`${lines.slice(0, 3).join('\n')}\n`),
    });
    expect(accepted.status, accepted.body).toBe(204);
    expect(committedBy(accepted)).toEqual(
      new Map([
        [SIDE, before.txns.get(SIDE)! + 1n],
        [MAIN, before.txns.get(MAIN)! + 1n],
        ['fuzz_brand_new', 1n],
      ]),
    );
    expect(await mainColumns()).toContain('brand_new');
  });

  it(
    'never kills the node, answers 400/413 with the JSON shape, and commits nothing it refused',
    async () => {
      console.log(
        `ilp-server-fuzz: seed ${SEED} (replay with WALSHIP_FUZZ_SEED=${SEED}), ${REQUESTS} requests`,
      );
      const random = seededRandom(SEED);
      let observed = await observe();
      const outcomes = new Map<string, number>();
      const started = Date.now();
      let done = 0;
      for (; done < REQUESTS && Date.now() - started < TIME_BUDGET_MS; done++) {
        const { category, status, now } = await runCase(random, done, observed);
        observed = now;
        const label = `${category} → ${status}`;
        outcomes.set(label, (outcomes.get(label) ?? 0) + 1);
      }
      const summary = [...outcomes].sort().map(([label, n]) => `${label}: ${n}`);
      console.log(
        `ilp-server-fuzz: ${done} requests in ${Date.now() - started} ms over ${sockets.size} connections\n  ` +
          summary.join('\n  '),
      );
      // A run cut short by the time budget must still have done a meaningful amount.
      expect(done).toBeGreaterThanOrEqual(Math.min(REQUESTS, 500));
      // Keep-alive: a 400 keeps the connection; only a 413 (Connection: close) costs a new one.
      const tooLarge = [...outcomes]
        .filter(([label]) => label.endsWith('413'))
        .reduce((n, [, c]) => n + c, 0);
      expect(sockets.size).toBeLessThanOrEqual(tooLarge + 2);
      await checkStillSane(observed);
    },
    TIME_BUDGET_MS + 35_000,
  );
});
