/**
 * End to end with the official `@questdb/nodejs-client`, unmodified, against a real in-process
 * primary on the filesystem store: every column type, over every way that client can talk to a node
 * (HTTP with the protocol negotiated through /settings, v1 and v2 forced, a chunked body; TCP plain,
 * with binary fields, and with the ECDSA challenge), read back through `GET /exec` and `GET /exp`
 * and compared exactly with what was sent, rendered the way QuestDB renders it
 * (table/query-format.ts). int64 extremes, which the client cannot send (its intColumn takes JS
 * numbers), go in a raw request.
 */
import { generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sender } from '@questdb/nodejs-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore } from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import {
  formatCsvHeader,
  formatCsvRow,
  formatDoubleArrayJson,
  formatJsonRow,
  type RenderKind,
} from '../table/query-format.js';
import { getJson, startTestPrimary } from './helpers/test-primary.js';

/** What a test sends for one cell; undefined = the row leaves the column out (it reads back null). */
type Nested = number[] | Nested[];
interface BinaryDecimal {
  unscaled: bigint | Int8Array;
  scale: number;
  /** QuestDB's text of the value, or null for the null decimal. */
  text: string | null;
}
type Sent = string | number | bigint | boolean | Nested | BinaryDecimal | null | undefined;

/** How a column is written with the client, and what it reads back as. */
type WriteKind =
  | 'symbol'
  | 'long'
  | 'double'
  | 'string'
  | 'boolean'
  | 'ts_us'
  | 'ts_ns'
  | 'ts_ms'
  | 'array'
  | 'decimal_text'
  | 'decimal_bin';

interface ColumnSpec {
  name: string;
  kind: WriteKind;
  /** The lowest ILP protocol version that carries the type (arrays: 2, decimals: 3). */
  since: 1 | 2 | 3;
  /** Rows A, B and C of the table (row D is `atNow` and sets only `sym`). */
  rows: readonly [Sent, Sent, Sent];
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const MIN_SAFE = Number.MIN_SAFE_INTEGER;

/**
 * The table every variant writes. Row A sets every column so the table's column order is this
 * list's (symbols first: the client refuses a symbol after a field). Names exercise the escapes the
 * client must apply in names (space, `=`) and non-ASCII.
 */
const COLUMNS: readonly ColumnSpec[] = [
  { name: 'sym', kind: 'symbol', since: 1, rows: ['ETH-USD', 'BTC-USD', 'SOL-USD'] },
  { name: 'side', kind: 'symbol', since: 1, rows: ['sell x,y=z\\w', '', undefined] },
  { name: 'sym ünï', kind: 'symbol', since: 1, rows: ['🚀 𝄞 ünï "q"', undefined, 'a=b c,d'] },
  { name: 'qty', kind: 'long', since: 1, rows: [42, MAX_SAFE, MIN_SAFE] },
  { name: 'neg', kind: 'long', since: 1, rows: [-1, 0, undefined] },
  // -0 is left out here: see the `it.fails` below.
  { name: 'price', kind: 'double', since: 1, rows: [2615.54, -2.5, 1e21] },
  { name: 'special', kind: 'double', since: 1, rows: [Number.NaN, Infinity, -Infinity] },
  { name: 'extreme', kind: 'double', since: 1, rows: [5e-324, Number.MAX_VALUE, 2] },
  { name: 'frac', kind: 'double', since: 1, rows: [0.1 + 0.2, -1.5e-300, 123456789.123] },
  {
    name: 'note x=y',
    kind: 'string',
    since: 1,
    rows: ['he said "hi"\nbye', '', 'back\\slash \\\\ two \\"'],
  },
  {
    name: 'ünï_名前',
    kind: 'string',
    since: 1,
    rows: ['ünï 🚀 𝄞 ✓ \u0001', 'comma, equals= space  two', 'cr\r\nlf\ttab # not a comment'],
  },
  { name: 'ok', kind: 'boolean', since: 1, rows: [true, false, undefined] },
  { name: 'ts_us', kind: 'ts_us', since: 1, rows: [1700000000123456n, 0n, -1n] },
  { name: 'ts_ns', kind: 'ts_ns', since: 1, rows: [1700000000123456789n, 999n, undefined] },
  { name: 'ts_ms', kind: 'ts_ms', since: 1, rows: [1700000000123, undefined, -1] },
  {
    name: 'matrix',
    kind: 'array',
    since: 2,
    rows: [
      [
        [1.5, 2.5],
        [3.5, 4.5],
      ],
      [
        [-0.25, Number.NaN],
        [Infinity, 2],
      ],
      null,
    ],
  },
  { name: 'vector', kind: 'array', since: 2, rows: [[1, -0.25, 1e-300, 1e21], [], null] },
  { name: 'dec_text', kind: 'decimal_text', since: 3, rows: ['123.4500', '-0.001', '0'] },
  {
    name: 'dec_bin',
    kind: 'decimal_bin',
    since: 3,
    rows: [
      { unscaled: 12345n, scale: 2, text: '123.45' },
      {
        unscaled: -(2n ** 200n),
        scale: 76,
        text: '-0.0000000000000001606938044258990275541962092341162602522202993782792835301376',
      },
      { unscaled: new Int8Array(0), scale: 0, text: null },
    ],
  },
];

/** Designated timestamps of rows A, B, C: ns, µs and ms, all read back in µs. */
const DESIGNATED_US = [1700000000123456n, 1700000001000001n, 1700000002123000n] as const;

interface Variant {
  /** Also the table name's suffix. */
  name: string;
  protocol: 1 | 2 | 3;
  transport: 'http' | 'tcp';
  /** The client's configuration string for a node. */
  config: (node: PrimaryNode) => string;
}

let tcpKey: JsonWebKey;
const HTTP = (node: PrimaryNode) => `http::addr=127.0.0.1:${node.httpPort};auto_flush=off;`;
const TCP = (node: PrimaryNode) => `tcp::addr=127.0.0.1:${node.tcpPort};auto_flush=off;`;

const VARIANTS: readonly Variant[] = [
  // The default: /settings offers [1,2,3], the client picks 3.
  { name: 'http_auto', protocol: 3, transport: 'http', config: HTTP },
  { name: 'http_v1', protocol: 1, transport: 'http', config: (n) => `${HTTP(n)}protocol_version=1;` },
  { name: 'http_v2', protocol: 2, transport: 'http', config: (n) => `${HTTP(n)}protocol_version=2;` },
  // node:http instead of undici: Transfer-Encoding chunked (ilp/http-handler.test.ts checks the header).
  { name: 'http_chunked', protocol: 3, transport: 'http', config: (n) => `${HTTP(n)}stdlib_http=on;` },
  // TCP has no /settings: the client defaults to v1.
  { name: 'tcp_v1', protocol: 1, transport: 'tcp', config: TCP },
  { name: 'tcp_v3', protocol: 3, transport: 'tcp', config: (n) => `${TCP(n)}protocol_version=3;` },
  {
    name: 'tcp_auth',
    protocol: 1,
    transport: 'tcp',
    config: (n) => `${TCP(n)}username=walship_test;token=${tcpKey.d};`,
  },
];

/** The client logs every TCP connection to the console; nothing to learn from that here. */
const QUIET = { log: () => {} };

let base = '';
/** HTTP and TCP without auth. */
let open: PrimaryNode;
/** TCP with the ECDSA challenge (key id `walship_test`). */
let secured: PrimaryNode;

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-clients-'));
  tcpKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const store = (name: string) => FsStore.open({ root: path.join(base, `store-${name}`) });
  [open, secured] = await Promise.all([
    startTestPrimary(await store('open'), path.join(base, 'open')),
    startTestPrimary(await store('secured'), path.join(base, 'secured'), {
      tcp: {
        host: '127.0.0.1',
        port: 0,
        authKeys: [{ keyId: 'walship_test', publicKeyX: tcpKey.x!, publicKeyY: tcpKey.y! }],
      },
    }),
  ]);
});

afterAll(async () => {
  await Promise.all([open?.close(), secured?.close()]);
  await rm(base, { recursive: true, force: true });
});

async function write(variant: Variant, node: PrimaryNode, table: string) {
  const sender = await Sender.fromConfig(variant.config(node), QUIET);
  try {
    if (variant.transport === 'tcp') await sender.connect();
    const columns = COLUMNS.filter((c) => c.since <= variant.protocol);
    for (let row = 0; row < 3; row++) {
      sender.table(table);
      for (const column of columns) writeCell(sender, column, column.rows[row]);
      if (row === 0) await sender.at(1700000000123456789n, 'ns');
      if (row === 1) await sender.at(1700000001000001n, 'us');
      if (row === 2) await sender.at(1700000002123, 'ms');
    }
    await sender.table(table).symbol('sym', 'now').atNow();
    await sender.flush();
  } finally {
    await sender.close();
  }
}

function writeCell(sender: Sender, column: ColumnSpec, value: Sent): void {
  if (value === undefined) return;
  const { name } = column;
  switch (column.kind) {
    case 'symbol':
      sender.symbol(name, value as string);
      return;
    case 'long':
      sender.intColumn(name, value as number);
      return;
    case 'double':
      sender.floatColumn(name, value as number);
      return;
    case 'string':
      sender.stringColumn(name, value as string);
      return;
    case 'boolean':
      sender.booleanColumn(name, value as boolean);
      return;
    case 'ts_us':
      sender.timestampColumn(name, value as bigint, 'us');
      return;
    case 'ts_ns':
      sender.timestampColumn(name, value as bigint, 'ns');
      return;
    case 'ts_ms':
      sender.timestampColumn(name, value as number, 'ms');
      return;
    case 'array':
      sender.arrayColumn(name, value as unknown[]);
      return;
    case 'decimal_text':
      sender.decimalColumnText(name, value as string);
      return;
    case 'decimal_bin': {
      const { unscaled, scale } = value as BinaryDecimal;
      sender.decimalColumn(name, unscaled, scale);
      return;
    }
  }
}

/** The render kind of a written column (as the node declares it in SQLite). */
function renderKind(kind: WriteKind): RenderKind {
  if (kind === 'ts_us' || kind === 'ts_ns' || kind === 'ts_ms') return 'timestamp';
  if (kind === 'array') return 'double_array';
  if (kind === 'decimal_text' || kind === 'decimal_bin') return 'decimal';
  return kind;
}

/** QuestDB's type name in `/exec` columns, written out here rather than taken from the product. */
const QUESTDB_TYPE: Record<Exclude<WriteKind, 'array'>, string> = {
  symbol: 'SYMBOL',
  long: 'LONG',
  double: 'DOUBLE',
  string: 'STRING',
  boolean: 'BOOLEAN',
  ts_us: 'TIMESTAMP',
  ts_ns: 'TIMESTAMP',
  ts_ms: 'TIMESTAMP',
  decimal_text: 'DECIMAL',
  decimal_bin: 'DECIMAL',
};

/**
 * The value a cell must read back as, in the form the query host sees it (INTEGER → bigint, REAL →
 * number, TEXT → string, NULL → null): the exact sent value, with ns truncated to µs and ms scaled.
 */
function storedValue(kind: WriteKind, value: Sent): unknown {
  if (value === undefined || value === null) return null;
  switch (kind) {
    case 'long':
      return BigInt(value as number);
    case 'ts_ns':
      // Floor, not truncation; every ns value here is positive so v1 (the client divides) agrees.
      return (value as bigint) / 1000n;
    case 'ts_ms':
      return BigInt(value as number) * 1000n;
    case 'array':
      // JSON has no NaN or ±Infinity: QuestDB treats them as null elements.
      return JSON.stringify(value);
    case 'decimal_bin':
      return (value as BinaryDecimal).text;
    default:
      return value;
  }
}

function expectedColumns(columns: readonly ColumnSpec[]) {
  return [
    { name: 'timestamp', type: 'TIMESTAMP' },
    ...columns.map((c) => {
      if (c.kind !== 'array') return { name: c.name, type: QUESTDB_TYPE[c.kind] };
      const dim = formatDoubleArrayJson(JSON.stringify(c.rows[0])).dim;
      return { name: c.name, type: 'ARRAY', dim, elemType: 'DOUBLE' };
    }),
  ];
}

/** Rows A..C as the query host would see them: designated timestamp first. */
function expectedRows(columns: readonly ColumnSpec[]): unknown[][] {
  return DESIGNATED_US.map((ts, row) => [ts, ...columns.map((c) => storedValue(c.kind, c.rows[row]))]);
}

async function getText(node: PrimaryNode, endpoint: '/exec' | '/exp', sql: string) {
  const response = await fetch(
    `http://127.0.0.1:${node.httpPort}${endpoint}?query=${encodeURIComponent(sql)}`,
  );
  const text = await response.text();
  expect(response.status, text).toBe(200);
  return text;
}

/** The `dataset` of an /exec body as raw text, so int64s, `2.0` and `-0.0` are compared exactly. */
function datasetText(body: string): string {
  return body.slice(body.indexOf('"dataset":') + '"dataset":'.length, body.lastIndexOf(',"count":'));
}

async function rowCount(node: PrimaryNode, table: string): Promise<number> {
  const { status, body } = await getJson(node.httpPort, '/status');
  expect(status).toBe(200);
  const tables = (body as { tables: { name: string; committedTxn: string }[] }).tables;
  if (!tables.some((t) => t.name === table)) return 0;
  const result = await getText(node, '/exec', `SELECT count(*) FROM "${table}"`);
  return (JSON.parse(result) as { dataset: [[number]] }).dataset[0][0];
}

describe('the official client, every type, read back exactly', () => {
  it.each(VARIANTS)('$name', async (variant) => {
    const node = variant.name === 'tcp_auth' ? secured : open;
    const table = `types_${variant.name}`;
    const columns = COLUMNS.filter((c) => c.since <= variant.protocol);
    const beforeMs = Date.now();
    await write(variant, node, table);
    // TCP has no acknowledgement: the rows are there once the node has committed them.
    await expect.poll(() => rowCount(node, table), { timeout: 10_000, interval: 20 }).toBe(4);
    const afterMs = Date.now();

    const sql = `SELECT * FROM "${table}" WHERE sym <> 'now' ORDER BY timestamp`;
    const kinds: RenderKind[] = ['timestamp', ...columns.map((c) => renderKind(c.kind))];
    const rows = expectedRows(columns);

    const exec = await getText(node, '/exec', sql);
    const parsed = JSON.parse(exec) as { columns: unknown[]; timestamp: number; count: number };
    expect(parsed.columns).toEqual(expectedColumns(columns));
    expect(parsed.timestamp).toBe(0);
    expect(parsed.count).toBe(3);
    expect(datasetText(exec)).toBe(`[${rows.map((r) => formatJsonRow(kinds, r)).join(',')}]`);

    const csv = await getText(node, '/exp', sql);
    const header = formatCsvHeader(['timestamp', ...columns.map((c) => c.name)]);
    expect(csv).toBe(header + rows.map((r) => formatCsvRow(kinds, r)).join(''));

    // atNow: the node stamps the row with its own clock, in µs.
    const now = JSON.parse(
      await getText(node, '/exec', `SELECT timestamp FROM "${table}" WHERE sym = 'now'`),
    ) as { dataset: [[string]] };
    const stampedMs = Date.parse(now.dataset[0][0]);
    expect(now.dataset[0][0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(stampedMs).toBeGreaterThanOrEqual(beforeMs - 1);
    expect(stampedMs).toBeLessThanOrEqual(afterMs);
  });

  // The oracle above is the product's own renderer; these cells are QuestDB's text written out by
  // hand, so a renderer that drifted from QuestDB would not pass unnoticed.
  it('renders the hard cells as QuestDB does (hand-written text)', async () => {
    const table = 'types_literal';
    await write(VARIANTS[0]!, open, table);
    const cells = async (column: string) =>
      datasetText(
        await getText(
          open,
          '/exec',
          `SELECT "${column}" FROM "${table}" WHERE sym <> 'now' ORDER BY timestamp`,
        ),
      );
    expect(await cells('timestamp')).toBe(
      '[["2023-11-14T22:13:20.123456Z"],["2023-11-14T22:13:21.000001Z"],["2023-11-14T22:13:22.123000Z"]]',
    );
    expect(await cells('qty')).toBe('[[42],[9007199254740991],[-9007199254740991]]');
    expect(await cells('price')).toBe('[[2615.54],[-2.5],[1e+21]]');
    expect(await cells('special')).toBe('[[null],[null],[null]]');
    expect(await cells('extreme')).toBe('[[5e-324],[1.7976931348623157e+308],[2.0]]');
    expect(await cells('ok')).toBe('[[true],[false],[false]]');
    expect(await cells('ts_us')).toBe(
      '[["2023-11-14T22:13:20.123456Z"],["1970-01-01T00:00:00.000000Z"],["1969-12-31T23:59:59.999999Z"]]',
    );
    expect(await cells('ts_ns')).toBe(
      '[["2023-11-14T22:13:20.123456Z"],["1970-01-01T00:00:00.000000Z"],[null]]',
    );
    expect(await cells('matrix')).toBe('[[[[1.5,2.5],[3.5,4.5]]],[[[-0.25,null],[null,2.0]]],[null]]');
    expect(await cells('vector')).toBe('[[[1.0,-0.25,1e-300,1e+21]],[[]],[null]]');
    expect(await cells('dec_text')).toBe('[["123.4500"],["-0.001"],["0"]]');
    expect(await cells('note x=y')).toBe(
      String.raw`[["he said \"hi\"\nbye"],[""],["back\\slash \\\\ two \\\""]]`,
    );
    // CSV: text always quoted with `""` for a quote, nulls empty, decimals bare, arrays as quoted JSON.
    const csv = await getText(
      open,
      '/exp',
      `SELECT sym, "note x=y", special, ok, dec_text, vector FROM "${table}" WHERE sym <> 'now' ORDER BY timestamp`,
    );
    expect(csv).toBe(
      '"sym","note x=y","special","ok","dec_text","vector"\r\n' +
        '"ETH-USD","he said ""hi""\nbye",,true,123.4500,"[1.0,-0.25,1e-300,1e+21]"\r\n' +
        '"BTC-USD","",,false,-0.001,"[]"\r\n' +
        String.raw`"SOL-USD","back\slash \\ two \""",,false,0,` +
        '\r\n',
    );
  });
});

describe('known deviations', () => {
  // BUG (left for the table/ owners): doubles are stored in a column of REAL affinity
  // (table/sql-types.ts `DOUBLE`), and SQLite writes an integral REAL as an integer on disk, so -0.0
  // reads back as 0.0; QuestDB keeps the sign and renders `-0.0` (query-format.ts formatDouble also
  // would). The txn built from the request still holds -0 (a Float64Array); SQLite, on the primary
  // and on replicas alike, is what loses it. `it.fails` keeps the suite green and turns red once this is fixed: then drop `.fails`.
  it.fails('a -0 double reads back as -0.0, as QuestDB renders it', async () => {
    const sender = await Sender.fromConfig(HTTP(open));
    await sender.table('negative_zero').floatColumn('d', -0).at(1n, 'us');
    await sender.flush();
    await sender.close();
    const body = await getText(open, '/exec', 'SELECT d FROM negative_zero');
    expect(datasetText(body)).toBe('[[-0.0]]');
  });
});

describe('reads right after a write that adds columns', () => {
  // Regression: the query host's SQLite connection cached the schema, and a statement prepared
  // from a stale cache describes the old columns until its first step re-prepares it; /exec then
  // named one column fewer than each row held, and rendered the new column by storage class
  // (a boolean as 1, a timestamp as a bare integer). Fixed in table/query-runner.ts.
  it('the first /exec and /exp after new columns name and render them', async () => {
    const sender = await Sender.fromConfig(HTTP(open));
    const sql = 'SELECT * FROM widening ORDER BY timestamp';
    await sender.table('widening').intColumn('a', 1).at(1n, 'us');
    await sender.flush();
    expect(datasetText(await getText(open, '/exec', sql))).toBe('[["1970-01-01T00:00:00.000001Z",1]]');
    await sender.table('widening').intColumn('a', 2).booleanColumn('b', true).at(2n, 'us');
    await sender.flush();
    const exec = JSON.parse(await getText(open, '/exec', sql)) as {
      columns: unknown[];
      dataset: unknown[][];
    };
    expect(exec.columns).toEqual([
      { name: 'timestamp', type: 'TIMESTAMP' },
      { name: 'a', type: 'LONG' },
      { name: 'b', type: 'BOOLEAN' },
    ]);
    expect(exec.dataset).toEqual([
      ['1970-01-01T00:00:00.000001Z', 1, false],
      ['1970-01-01T00:00:00.000002Z', 2, true],
    ]);
    await sender.table('widening').intColumn('a', 3).timestampColumn('c', 5n, 'us').at(3n, 'us');
    await sender.flush();
    await sender.close();
    expect(await getText(open, '/exp', sql)).toBe(
      '"timestamp","a","b","c"\r\n' +
        '"1970-01-01T00:00:00.000001Z",1,false,\r\n' +
        '"1970-01-01T00:00:00.000002Z",2,true,\r\n' +
        '"1970-01-01T00:00:00.000003Z",3,false,"1970-01-01T00:00:00.000005Z"\r\n',
    );
  });
});

describe('int64 extremes, which the client cannot send (raw HTTP)', () => {
  it('−2^63 and 2^63−1 round-trip exactly through /exec and /exp; the 204 names the txn', async () => {
    const body =
      'int64_extremes v=-9223372036854775808i 1000\n' +
      'int64_extremes v=9223372036854775807i 2000\n' +
      'int64_extremes v=9007199254740993i 3000\n' +
      'int64_extremes v=0i 4000\n';
    const post = (text: string) =>
      fetch(`http://127.0.0.1:${open.httpPort}/write`, { method: 'POST', body: text });
    const first = await post(body);
    expect(first.status).toBe(204);
    expect(await first.text()).toBe('');
    expect(first.headers.get('x-walship-txn')).toBe('int64_extremes=1@1');
    const second = await post('int64_extremes v=-1i 5000\nother_table v=1i\n');
    expect(second.headers.get('x-walship-txn')).toBe('int64_extremes=2@1,other_table=1@1');

    const sql = 'SELECT * FROM int64_extremes ORDER BY timestamp';
    expect(datasetText(await getText(open, '/exec', sql))).toBe(
      '[["1970-01-01T00:00:00.000001Z",-9223372036854775808],' +
        '["1970-01-01T00:00:00.000002Z",9223372036854775807],' +
        '["1970-01-01T00:00:00.000003Z",9007199254740993],' +
        '["1970-01-01T00:00:00.000004Z",0],' +
        '["1970-01-01T00:00:00.000005Z",-1]]',
    );
    expect(await getText(open, '/exp', sql)).toBe(
      '"timestamp","v"\r\n' +
        '"1970-01-01T00:00:00.000001Z",-9223372036854775808\r\n' +
        '"1970-01-01T00:00:00.000002Z",9223372036854775807\r\n' +
        '"1970-01-01T00:00:00.000003Z",9007199254740993\r\n' +
        '"1970-01-01T00:00:00.000004Z",0\r\n' +
        '"1970-01-01T00:00:00.000005Z",-1\r\n',
    );
    expect(datasetText(await getText(open, '/exec', 'SELECT min(v), max(v) FROM int64_extremes'))).toBe(
      '[[-9223372036854775808,9223372036854775807]]',
    );
  });
});

describe('the node as the client sees it', () => {
  it('/settings offers writes over HTTP and TCP and protocols 1..3', async () => {
    const { status, body } = await getJson(open.httpPort, '/settings');
    expect(status).toBe(200);
    const config = (body as { config: Record<string, unknown> }).config;
    expect(config['accepting.writes']).toEqual(['http', 'tcp']);
    expect(config['line.proto.support.versions']).toEqual([1, 2, 3]);
  });

  it('TCP with a wrong private key: the connection is refused and nothing is committed', async () => {
    const wrong = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
    const sender = await Sender.fromConfig(
      `tcp::addr=127.0.0.1:${secured.tcpPort};username=walship_test;token=${wrong.d};auto_flush=off;`,
      QUIET,
    );
    try {
      // The client does not wait for a verdict: it sends its rows, which must go nowhere.
      await sender.connect();
      await sender.table('auth_wrong').intColumn('i', 1).atNow();
      await sender.flush().catch(() => {});
    } finally {
      await sender.close().catch(() => {});
    }
    // A later, rightly signed connection commits; by then the wrong one's rows have long arrived.
    const right = await Sender.fromConfig(
      `tcp::addr=127.0.0.1:${secured.tcpPort};username=walship_test;token=${tcpKey.d};auto_flush=off;`,
      QUIET,
    );
    await right.connect();
    await right.table('auth_right').intColumn('i', 1).atNow();
    await right.flush();
    await right.close();
    await expect.poll(() => rowCount(secured, 'auth_right'), { timeout: 10_000 }).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await rowCount(secured, 'auth_wrong')).toBe(0);
    const { body } = await getJson(secured.httpPort, '/status');
    expect((body as { tables: { name: string }[] }).tables.map((t) => t.name)).not.toContain('auth_wrong');
  });
});
