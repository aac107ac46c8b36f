import { type TableKey, tableKey } from '../table/index.js';

/**
 * `head.json` (DESIGN §3): the primary's hint of how far each table is uploaded, so an idle replica
 * can poll one object instead of listing every table. Written by the uploader (rate-limited), read
 * by followers; never required for correctness: a missing, stale or malformed one only costs a
 * LIST. UTF-8 JSON, one line: `epoch` (decimal string), `nodeId`, `tables` (`{ <table name>:
 * "<uploaded txn>" }`, decimal strings: int64 does not fit a JSON number), `at` (ISO 8601,
 * informational).
 */
export interface HeadRecord {
  epoch: bigint;
  nodeId: string;
  /** Table name → its uploaded txn; tables with nothing uploaded are left out. */
  tables: ReadonlyMap<string, bigint>;
  at: string;
}

export function encodeHead(record: HeadRecord): Uint8Array {
  const tables: Record<string, string> = {};
  for (const [name, txn] of record.tables) if (txn > 0n) tables[name] = txn.toString();
  const json = { epoch: record.epoch.toString(), nodeId: record.nodeId, tables, at: record.at };
  return new TextEncoder().encode(`${JSON.stringify(json)}\n`);
}

/** head.json as the replica reads it: a hint of each table's uploaded txn, by table key. */
export interface HeadHint {
  epoch: bigint | null;
  tables: Map<TableKey, { name: string; txn: bigint }>;
}

/** Parses head.json defensively; undefined when it is not the shape the uploader writes (it is only a hint). */
export function parseHeadHint(bytes: Uint8Array): HeadHint | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { epoch, tables } = parsed as { epoch?: unknown; tables?: unknown };
  if (typeof tables !== 'object' || tables === null) return undefined;
  const result: HeadHint = { epoch: decimal(epoch) ?? null, tables: new Map() };
  for (const [name, value] of Object.entries(tables)) {
    const txn = decimal(value);
    if (txn === undefined || name === '') continue;
    try {
      result.tables.set(tableKey(name), { name, txn });
    } catch {
      // not a name any table could have: ignore this entry of the hint
    }
  }
  return result;
}

function decimal(value: unknown): bigint | undefined {
  if (typeof value !== 'string' || !/^\d{1,20}$/.test(value)) return undefined;
  return BigInt(value);
}
