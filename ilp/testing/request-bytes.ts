/**
 * Helpers shared by the ILP tests (not part of the module's surface): building requests with
 * binary fields, and the binary encodings of ILP v2/v3 exactly as the official clients write them.
 */
import { Buffer } from 'node:buffer';

/** Concatenates text (UTF-8), raw byte lists and buffers into one request body. */
export function bytes(...parts: (string | number[] | Uint8Array)[]): Buffer {
  return Buffer.concat(
    parts.map((part) =>
      typeof part === 'string' ? Buffer.from(part, 'utf8') : Buffer.from(part as number[]),
    ),
  );
}

/** `==` + the v2 binary double. */
export function binaryDouble(value: number): Buffer {
  const out = Buffer.alloc(11);
  out.write('==', 0, 'latin1');
  out[2] = 16;
  out.writeDoubleLE(value, 3);
  return out;
}

/** `==` + the v2 binary array of doubles with `shape`, row-major `values`. */
export function binaryArray(shape: number[], values: number[]): Buffer {
  const header = 5 + 4 * shape.length;
  const out = Buffer.alloc(header + 8 * values.length);
  out.write('==', 0, 'latin1');
  out[2] = 14;
  out[3] = 10;
  out[4] = shape.length;
  for (let i = 0; i < shape.length; i++) out.writeInt32LE(shape[i]!, 5 + 4 * i);
  for (let i = 0; i < values.length; i++) out.writeDoubleLE(values[i]!, header + 8 * i);
  return out;
}

/** `==` + the null array. */
export function binaryNullArray(): Buffer {
  return Buffer.from([0x3d, 0x3d, 14, 33]);
}

/** Minimal big-endian two's complement of `value` (as the Node client's bigintToTwosComplementBytes). */
export function twosComplement(value: bigint): number[] {
  let length = 1;
  while (BigInt.asIntN(length * 8, value) !== value) length++;
  const hex = BigInt.asUintN(length * 8, value)
    .toString(16)
    .padStart(length * 2, '0');
  return [...Buffer.from(hex, 'hex')];
}

/** `==` + the v3 binary decimal; `unscaled` null writes the null decimal (length 0). */
export function binaryDecimal(unscaled: bigint | null, scale: number): Buffer {
  const digits = unscaled === null ? [] : twosComplement(unscaled);
  return Buffer.from([0x3d, 0x3d, 23, scale, digits.length, ...digits]);
}

/** JSON.stringify replacer that makes bigints, typed arrays and non-finite numbers printable. */
export function printable(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return `${value}n`;
  if (value instanceof Float64Array) return Array.from(value);
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return value;
}
