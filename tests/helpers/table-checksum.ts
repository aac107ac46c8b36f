/**
 * What two nodes must agree on about a table, read through the node's own `/exec` (so a primary and
 * a replica are read the same way): its columns as `/exec` names them, its row count, and a SHA-256
 * over every row in one total order (`ORDER BY` every column), hashed from the node's rendering of
 * each cell as sent on the wire — never from `JSON.parse`, which would fold int64s beyond 2^53 and
 * so miss a changed digit. Rows are read in pages, each its own query.
 */
import { createHash } from 'node:crypto';

export interface TableColumn {
  name: string;
  type: string;
  dim?: number;
  elemType?: string;
}

export interface TableChecksum {
  table: string;
  columns: TableColumn[];
  rowCount: number;
  /** Lower-case hex SHA-256 over the pages' `dataset` text, in order. */
  sha256: string;
}

/**
 * Rows per `/exec` page: large, because a node reads (and drops) every row before a page's start
 * again for each page; still well below the node's result bounds (1 000 000 rows, 128 MiB).
 */
export const CHECKSUM_PAGE_ROWS = 100_000;

/** A SQL identifier, double-quoted (a `"` inside doubled). */
export function quoteSqlIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** GET `/exec` and return the raw body; throws with the body on any status but 200. */
export async function execText(
  port: number,
  sql: string,
  params: Record<string, string> = {},
): Promise<string> {
  const query = new URLSearchParams({ query: sql, ...params });
  const response = await fetch(`http://127.0.0.1:${port}/exec?${query}`);
  const text = await response.text();
  if (response.status !== 200) throw new Error(`/exec ${sql} on port ${port}: ${response.status} ${text}`);
  return text;
}

/** The `dataset` of an `/exec` body exactly as the node wrote it. */
export function datasetText(body: string): string {
  const start = body.indexOf('"dataset":');
  const end = body.lastIndexOf(',"count":');
  if (start < 0 || end < start) throw new Error(`not an /exec body: ${body.slice(0, 200)}`);
  return body.slice(start + '"dataset":'.length, end);
}

/**
 * Columns, count and content hash of `table` on the node at `port`. The table must not change while
 * this runs (pages are separate queries): call it once the node has caught up and writes stopped.
 */
export async function tableChecksum(
  port: number,
  table: string,
  pageRows = CHECKSUM_PAGE_ROWS,
): Promise<TableChecksum> {
  const from = quoteSqlIdentifier(table);
  const head = JSON.parse(await execText(port, `SELECT * FROM ${from} LIMIT 0`)) as {
    columns: TableColumn[];
  };
  const columns = head.columns;
  const counted = JSON.parse(await execText(port, `SELECT count(*) FROM ${from}`)) as { dataset: [[number]] };
  const rowCount = counted.dataset[0][0];
  const order = columns.map((c) => quoteSqlIdentifier(c.name)).join(', ');
  const sql = `SELECT * FROM ${from} ORDER BY ${order}`;
  const hash = createHash('sha256');
  let seen = 0;
  while (seen < rowCount) {
    // /exec's limit is 1-based and inclusive.
    const page = datasetText(
      await execText(port, sql, { limit: `${seen + 1},${seen + pageRows}`, nm: 'true' }),
    );
    const rows = (JSON.parse(page) as unknown[]).length;
    if (rows === 0)
      throw new Error(`${table} on port ${port}: count says ${rowCount} rows, pages ended at ${seen}`);
    hash.update(page);
    hash.update('\n');
    seen += rows;
  }
  return { table, columns, rowCount, sha256: hash.digest('hex') };
}
