import { crc32 } from 'node:zlib';

/**
 * CRC-32 (IEEE) of `bytes[start, end)`: the format's only checksum (RFC-0001 §5). It detects
 * accidental corruption — bit flips, truncation, mixed-up objects — and nothing more: anyone can
 * forge a matching value, so it is no defence against malice.
 */
export function checksum(bytes: Uint8Array, start = 0, end = bytes.length): number {
  return crc32(bytes.subarray(start, end)) >>> 0;
}
