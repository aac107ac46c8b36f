/**
 * What two nodes must agree on about a table, read through each node's own `/exec` (a primary and
 * a replica are read the same way): its row count, the sum of its `id` column when it has one, and a
 * SHA-256 over every row in one total order (`ORDER BY` every column, in column order, so any
 * schema works), hashed from the node's rendering of each page as sent on the wire — never from
 * `JSON.parse`, which would fold int64s beyond 2^53.
 */
import { createHash } from 'node:crypto';
import { WalshipError } from '../core/index.js';
import { execText, quoteSqlIdentifier } from './node-http.js';

/**
 * Rows per `/exec` page: large, because a node reads (and drops) every row before a page's start
 * again for each page; well below the node's result bounds (1 000 000 rows, 128 MiB).
 */
const DIGEST_PAGE_ROWS = 100_000;

export interface TableDigest {
  rows: number;
  /** The sum of the `id` column; null when the table has no column named `id`. */
  idSum: number | null;
  /** Lower-case hex SHA-256 over the ordered rows' `/exec` text. */
  sha256: string;
}

/**
 * The digest of `table` on the node at `url`; null when the table does not exist there. The table
 * must not change meanwhile (pages are separate queries): call it once writes stopped and the node
 * caught up.
 */
export async function tableDigest(url: string, table: string): Promise<TableDigest | null> {
  const from = quoteSqlIdentifier(table);
  const head = await execText(url, `SELECT * FROM ${from} LIMIT 0`);
  if (head === null) return null;
  const columns = (JSON.parse(head) as { columns: { name: string }[] }).columns;
  const hasId = columns.some((c) => c.name === 'id');
  const totals = await execText(
    url,
    `SELECT count(*), ${hasId ? 'coalesce(sum(id), 0)' : 'NULL'} FROM ${from}`,
  );
  const [[rows, idSum]] = (JSON.parse(totals ?? '{}') as { dataset: [[number, number | null]] }).dataset;
  const order = columns.map((c) => quoteSqlIdentifier(c.name)).join(', ');
  const sql = `SELECT * FROM ${from} ORDER BY ${order}`;
  const hash = createHash('sha256');
  for (let seen = 0; seen < rows; ) {
    // /exec's limit is 1-based and inclusive.
    const body = await execText(url, sql, { limit: `${seen + 1},${seen + DIGEST_PAGE_ROWS}`, nm: 'true' });
    const page = datasetText(body ?? '');
    const count = (JSON.parse(page) as unknown[]).length;
    if (count === 0)
      throw new WalshipError(
        'NODE_READ_FAILED',
        'unavailable',
        `${table} on ${url}: count says ${rows} rows, the pages ended at ${seen}`,
      );
    hash.update(page);
    hash.update('\n');
    seen += count;
  }
  return { rows, idSum, sha256: hash.digest('hex') };
}

/** The `dataset` of an `/exec` body exactly as the node wrote it. */
function datasetText(body: string): string {
  const start = body.indexOf('"dataset":');
  const end = body.lastIndexOf(',"count":');
  if (start < 0 || end < start)
    throw new WalshipError('NODE_READ_FAILED', 'unavailable', `not an /exec body: ${body.slice(0, 200)}`);
  return body.slice(start + '"dataset":'.length, end);
}
