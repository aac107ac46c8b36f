import { Buffer } from 'node:buffer';
import { crc32 } from 'node:zlib';

/**
 * The file format of one sealed batch in an sf_dir (`<seq, 20 digits>.batch`):
 *
 *   offset  size  field
 *        0     4  magic "WSBF" (walship sealed batch frame)
 *        4     2  format version, u16 big-endian (1)
 *        6     2  reserved, 0
 *        8     8  seq, u64 big-endian (the X-Walship-Batch seq; equals the file name's)
 *       16     4  payload length in bytes, u32 big-endian
 *       20     n  payload: the ILP text exactly as sent
 *     20+n     4  CRC-32 (zlib.crc32) of bytes 0 … 20+n−1, u32 big-endian
 *
 * A file is accepted only whole: right magic and version, the length matching the file size, the
 * CRC matching. Anything else is corrupt and is never sent.
 */

const MAGIC = Buffer.from('WSBF', 'latin1');
export const FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 20;
const FRAME_TRAILER_BYTES = 4;
/** The largest payload a frame can describe (u32 length). */
export const FRAME_PAYLOAD_MAX_BYTES = 0xffff_ffff;

/** Bytes on disk of a batch of `payloadBytes`. */
export function frameBytesFor(payloadBytes: number): number {
  return FRAME_HEADER_BYTES + payloadBytes + FRAME_TRAILER_BYTES;
}

/** The frame of batch `seq` holding `payload`. Pure. */
export function encodeBatchFrame(seq: bigint, payload: Uint8Array): Buffer {
  if (payload.length > FRAME_PAYLOAD_MAX_BYTES)
    throw new Error(`batch of ${payload.length} bytes: too large`);
  const frame = Buffer.allocUnsafe(frameBytesFor(payload.length));
  MAGIC.copy(frame, 0);
  frame.writeUInt16BE(FRAME_VERSION, 4);
  frame.writeUInt16BE(0, 6);
  frame.writeBigUInt64BE(seq, 8);
  frame.writeUInt32BE(payload.length, 16);
  frame.set(payload, FRAME_HEADER_BYTES);
  const crcAt = FRAME_HEADER_BYTES + payload.length;
  frame.writeUInt32BE(crc32(frame.subarray(0, crcAt)), crcAt);
  return frame;
}

/** A decoded frame, or why it is corrupt. */
export type DecodedFrame = { ok: true; seq: bigint; payload: Buffer } | { ok: false; reason: string };

/** Checks and decodes a whole file's bytes. Pure. */
export function decodeBatchFrame(frame: Buffer): DecodedFrame {
  if (frame.length < frameBytesFor(0)) {
    return { ok: false, reason: `${frame.length} bytes, shorter than a header and a CRC` };
  }
  if (!frame.subarray(0, 4).equals(MAGIC)) return { ok: false, reason: 'bad magic' };
  const version = frame.readUInt16BE(4);
  if (version !== FRAME_VERSION) return { ok: false, reason: `unknown format version ${version}` };
  const payloadBytes = frame.readUInt32BE(16);
  if (frame.length !== frameBytesFor(payloadBytes)) {
    return {
      ok: false,
      reason: `the header says ${payloadBytes} payload bytes but the file holds ${frame.length - frameBytesFor(0)}`,
    };
  }
  const crcAt = FRAME_HEADER_BYTES + payloadBytes;
  const stored = frame.readUInt32BE(crcAt);
  const computed = crc32(frame.subarray(0, crcAt));
  if (stored !== computed)
    return { ok: false, reason: `CRC mismatch (stored ${stored}, computed ${computed})` };
  return { ok: true, seq: frame.readBigUInt64BE(8), payload: frame.subarray(FRAME_HEADER_BYTES, crcAt) };
}
