import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { assert } from '../../core/index.js';
import { checksum } from '../checksum.js';
import { CODEC_IDS } from '../codecs.js';
import { DEFAULT_SEGMENT_LIMITS } from '../limits.js';
import { parseHeader } from '../segment-header.js';
import { CHECKSUM_BYTES, HEADER, RECORD, TRAILER_BYTES } from '../segment-layout.js';

/**
 * Segment surgery for tests and repair tools: split a segment into its header and raw records,
 * and recompute lengths and checksums after changing bytes. Fuzz tests use it so that mutated
 * bytes get past the checksums and reach the parser (RFC-0001 §11). Never used to write data.
 */

/** The header bytes and the raw (decompressed) body of a valid segment; codecs none and deflate only. */
export function segmentParts(segment: Uint8Array): { header: Uint8Array; rawBody: Uint8Array } {
  const { header, headerBytes } = parseHeader(segment, DEFAULT_SEGMENT_LIMITS);
  const stored = segment.subarray(headerBytes, segment.length - TRAILER_BYTES);
  assert(header.codec !== 'zstd', 'segmentParts handles codecs none and deflate');
  const rawBody = header.codec === 'deflate' ? new Uint8Array(inflateRawSync(stored)) : stored.slice();
  return { header: segment.slice(0, headerBytes), rawBody };
}

/** The records of a well-formed raw body, each a copy including its length prefix and checksum. */
export function splitRecords(rawBody: Uint8Array): Uint8Array[] {
  const view = new DataView(rawBody.buffer, rawBody.byteOffset, rawBody.byteLength);
  const records: Uint8Array[] = [];
  for (let at = 0; at < rawBody.length; ) {
    const recordBytes = 4 + view.getUint32(at + RECORD.payloadBytes, true) + CHECKSUM_BYTES;
    assert(at + recordBytes <= rawBody.length, 'splitRecords needs a well-formed body');
    records.push(rawBody.slice(at, at + recordBytes));
    at += recordBytes;
  }
  return records;
}

/**
 * A copy of `record` with a recomputed checksum (its last 4 bytes) and, unless `keepLength`,
 * a payload length that matches its size.
 */
export function resealRecord(record: Uint8Array, keepLength = false): Uint8Array {
  const copy = record.slice();
  const view = new DataView(copy.buffer);
  if (!keepLength) view.setUint32(RECORD.payloadBytes, copy.length - 4 - CHECKSUM_BYTES, true);
  view.setUint32(copy.length - CHECKSUM_BYTES, checksum(copy, 0, copy.length - CHECKSUM_BYTES), true);
  return copy;
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * A segment built from `header` (its last 4 bytes are its checksum slot) and `rawBody`: the body
 * is compressed by the codec the header names (deflate level 1; anything else is stored raw), the
 * header's body lengths are set unless `keepLengths`, and the header and trailer checksums are
 * recomputed.
 */
export function resealSegment(header: Uint8Array, rawBody: Uint8Array, keepLengths = false): Uint8Array {
  const head = header.slice();
  const view = new DataView(head.buffer);
  const stored =
    head[HEADER.codec] === CODEC_IDS.deflate
      ? new Uint8Array(deflateRawSync(rawBody, { level: 1 }))
      : rawBody;
  if (!keepLengths && head.length >= HEADER.bodyBytesRaw + 4) {
    view.setUint32(HEADER.bodyBytesStored, stored.length, true);
    view.setUint32(HEADER.bodyBytesRaw, rawBody.length, true);
  }
  return resealTrailer(concatBytes([resealHeaderChecksum(head), stored, new Uint8Array(TRAILER_BYTES)]));
}

/** `header` with its checksum (last 4 bytes) recomputed in place; returns it. */
export function resealHeaderChecksum(header: Uint8Array): Uint8Array {
  if (header.length >= CHECKSUM_BYTES) {
    const at = header.length - CHECKSUM_BYTES;
    new DataView(header.buffer, header.byteOffset).setUint32(at, checksum(header, 0, at), true);
  }
  return header;
}

/** `segment` with its trailer checksum (last 4 bytes) recomputed in place; returns it. */
export function resealTrailer(segment: Uint8Array): Uint8Array {
  if (segment.length >= TRAILER_BYTES) {
    const at = segment.length - TRAILER_BYTES;
    new DataView(segment.buffer, segment.byteOffset).setUint32(at, checksum(segment, 0, at), true);
  }
  return segment;
}
