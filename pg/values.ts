import { formatTimestampUs, PG_OID, parseTimestampUs } from '../table/index.js';
import { PgProtocolError } from './wire.js';

/**
 * Values between PostgreSQL's wire formats and walship's: results from the query host's canonical
 * text (table/query-pg.ts) to the text or binary format a client asked for, and parameters from the
 * client's format to what SQLite binds.
 */

/** µs from the Unix epoch to PostgreSQL's (2000-01-01), where binary timestamps count from. */
const PG_EPOCH_US = 946_684_800_000_000n;

/** Parameter type OIDs a client may name, beside PG_OID's. */
const OID_INT2 = 21;
const OID_INT4 = 23;
const OID_FLOAT4 = 700;
const OID_VARCHAR = 1043;
const OID_TIMESTAMPTZ = 1184;

/** A result value (canonical text) in format 0 (text) or 1 (binary) for type `oid`. */
export function encodeResultValue(oid: number, canonical: string, format: number): Buffer {
  if (format === 0)
    return Buffer.from(oid === PG_OID.timestamp ? timestampText(BigInt(canonical)) : canonical, 'utf8');
  switch (oid) {
    case PG_OID.bool:
      return Buffer.from([canonical === 't' ? 1 : 0]);
    case PG_OID.int8: {
      const b = Buffer.allocUnsafe(8);
      b.writeBigInt64BE(BigInt(canonical));
      return b;
    }
    case PG_OID.float8: {
      const b = Buffer.allocUnsafe(8);
      b.writeDoubleBE(Number(canonical));
      return b;
    }
    case PG_OID.timestamp: {
      const b = Buffer.allocUnsafe(8);
      b.writeBigInt64BE(BigInt(canonical) - PG_EPOCH_US);
      return b;
    }
    case PG_OID.bytea:
      return Buffer.from(canonical.slice(2), 'hex');
    case PG_OID.text:
      return Buffer.from(canonical, 'utf8');
    default:
      throw new PgProtocolError(`binary format is not supported for type ${oid}; ask for text`, '0A000');
  }
}

/** PostgreSQL's text form of a timestamp: `2026-01-02 03:04:05.5`, trailing zeros of the fraction dropped. */
export function timestampText(us: bigint): string {
  const [whole, fraction = ''] = formatTimestampUs(us).slice(0, -1).replace('T', ' ').split('.');
  const trimmed = fraction.replace(/0+$/, '');
  return trimmed === '' ? whole! : `${whole}.${trimmed}`;
}

/** A parameter value as SQLite binds it: from `format` (0 text, 1 binary) and the type the client named (0: unknown). */
export function decodeParam(oid: number, format: number, bytes: Buffer | null): unknown {
  if (bytes === null) return null;
  if (format === 0) return decodeTextParam(oid, bytes.toString('utf8'));
  if (format !== 1) throw new PgProtocolError(`unknown parameter format ${format}`);
  switch (oid) {
    case OID_INT2:
      return BigInt(sized(bytes, 2).readInt16BE());
    case OID_INT4:
      return BigInt(sized(bytes, 4).readInt32BE());
    case PG_OID.int8:
      return sized(bytes, 8).readBigInt64BE();
    case OID_FLOAT4:
      return sized(bytes, 4).readFloatBE();
    case PG_OID.float8:
      return sized(bytes, 8).readDoubleBE();
    case PG_OID.bool:
      return sized(bytes, 1)[0] === 0 ? 0n : 1n;
    case PG_OID.timestamp:
    case OID_TIMESTAMPTZ:
      return sized(bytes, 8).readBigInt64BE() + PG_EPOCH_US;
    case PG_OID.bytea:
      return Buffer.from(bytes);
    case 0:
    case PG_OID.text:
    case OID_VARCHAR:
      return bytes.toString('utf8');
    default:
      throw new PgProtocolError(`binary parameters of type ${oid} are not supported; send text`, '0A000');
  }
}

function decodeTextParam(oid: number, text: string): unknown {
  switch (oid) {
    case OID_INT2:
    case OID_INT4:
    case PG_OID.int8:
      if (!/^\s*[+-]?\d+\s*$/.test(text)) throw invalidText(text, 'integer');
      return BigInt(text.trim());
    case OID_FLOAT4:
    case PG_OID.float8: {
      const value = Number(text.trim());
      if (Number.isNaN(value) && text.trim() !== 'NaN') throw invalidText(text, 'double precision');
      return value;
    }
    case PG_OID.bool: {
      const t = text.trim().toLowerCase();
      if (['t', 'true', 'yes', 'on', '1'].includes(t)) return 1n;
      if (['f', 'false', 'no', 'off', '0'].includes(t)) return 0n;
      throw invalidText(text, 'boolean');
    }
    case PG_OID.timestamp:
    case OID_TIMESTAMPTZ: {
      const us = parseTimestampUs(text);
      if (us === undefined) throw invalidText(text, 'timestamp');
      return us;
    }
    default:
      return text;
  }
}

/** An input that does not read as its type: SQLSTATE 22P02 invalid_text_representation. */
export class PgValueError extends Error {
  readonly sqlState = '22P02';
}

function invalidText(text: string, type: string): PgValueError {
  return new PgValueError(`invalid input syntax for type ${type}: ${JSON.stringify(text.slice(0, 100))}`);
}

function sized(bytes: Buffer, length: number): Buffer {
  if (bytes.length !== length) {
    throw new PgProtocolError(`a binary parameter of ${bytes.length} bytes where ${length} were expected`);
  }
  return bytes;
}

/**
 * DataRow messages for rows [from, to) of a page, written into one buffer: a message and a few
 * small buffers per value would be tens of thousands of allocations for a 10 000-row result.
 * `formats` holds each column's format (0 text, 1 binary).
 */
export function encodeDataRows(
  rows: readonly (readonly (string | null)[])[],
  oids: readonly number[],
  formats: readonly number[],
  from: number,
  to: number,
): Buffer {
  const cells: (string | Buffer | null)[] = [];
  let size = 0;
  for (let r = from; r < to; r++) {
    const row = rows[r]!;
    size += 7;
    for (let i = 0; i < row.length; i++) {
      const value = row[i]!;
      size += 4;
      if (value === null) cells.push(null);
      else if (formats[i] === 0) {
        const text = oids[i] === PG_OID.timestamp ? timestampText(BigInt(value)) : value;
        cells.push(text);
        size += Buffer.byteLength(text);
      } else {
        const bytes = encodeResultValue(oids[i]!, value, formats[i]!);
        cells.push(bytes);
        size += bytes.length;
      }
    }
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  let cell = 0;
  for (let r = from; r < to; r++) {
    const columns = rows[r]!.length;
    const start = at;
    out[at] = 0x44; // 'D'
    at = out.writeInt16BE(columns, at + 5);
    for (let i = 0; i < columns; i++) {
      const value = cells[cell++];
      if (value === null || value === undefined) {
        at = out.writeInt32BE(-1, at);
      } else if (typeof value === 'string') {
        const length = out.write(value, at + 4, 'utf8');
        out.writeInt32BE(length, at);
        at += 4 + length;
      } else {
        out.writeInt32BE(value.length, at);
        at += 4 + value.copy(out, at + 4);
      }
    }
    out.writeInt32BE(at - start - 1, start + 1);
  }
  return out;
}
