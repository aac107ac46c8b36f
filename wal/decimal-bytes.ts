import { Buffer } from 'node:buffer';

/**
 * Decimal unscaled values travel as big-endian two's complement (RFC-0001 §3). These helpers go
 * through hex strings, which V8 converts to and from BigInt natively, instead of byte-by-byte
 * BigInt shifts.
 */

/** Bytes of the shortest two's-complement form of `value` (at least 1). */
export function decimalByteLength(value: bigint): number {
  // The bits a magnitude needs, plus a sign bit; a negative v needs as many as -v - 1.
  const magnitude = value < 0n ? -value - 1n : value;
  if (magnitude === 0n) return 1;
  const hexDigits = magnitude.toString(16);
  const bits = (hexDigits.length - 1) * 4 + (32 - Math.clz32(Number.parseInt(hexDigits[0]!, 16)));
  return (bits + 1 + 7) >>> 3;
}

/** `value` as `byteLength` bytes of big-endian two's complement; the caller sized it with decimalByteLength. */
export function encodeDecimalBytes(value: bigint, byteLength: number): Uint8Array {
  const unsigned = BigInt.asUintN(byteLength * 8, value);
  return Buffer.from(unsigned.toString(16).padStart(byteLength * 2, '0'), 'hex');
}

/** The signed value of `bytes` read as big-endian two's complement (1 or more bytes). */
export function decodeDecimalBytes(bytes: Uint8Array): bigint {
  const hexDigits = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex');
  return BigInt.asIntN(bytes.length * 8, BigInt(`0x${hexDigits}`));
}
