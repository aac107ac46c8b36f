import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { decodeBatchFrame, encodeBatchFrame, FRAME_HEADER_BYTES, frameBytesFor } from './batch-frame.js';
import { formatBatchId, generateWriterId, WRITER_ID_PATTERN } from './batch-identity.js';

describe('batch frame', () => {
  const payload = Buffer.from('trades,sym=ETH price=1.5 1000\ntrades,sym=BTC price=2 2000\n');

  it('round-trips seq and payload, with the documented layout', () => {
    const frame = encodeBatchFrame(2n ** 63n - 1n, payload);
    expect(frame.length).toBe(frameBytesFor(payload.length));
    expect(frame.subarray(0, 4).toString('latin1')).toBe('WSBF');
    expect(frame.readUInt16BE(4)).toBe(1);
    expect(frame.readUInt32BE(16)).toBe(payload.length);
    const decoded = decodeBatchFrame(frame);
    expect(decoded.ok && decoded.seq).toBe(2n ** 63n - 1n);
    expect(decoded.ok && decoded.payload.equals(payload)).toBe(true);
    const empty = decodeBatchFrame(encodeBatchFrame(1n, Buffer.alloc(0)));
    expect(empty.ok && empty.payload.length).toBe(0);
  });

  it('refuses every single flipped bit, a cut or grown file, and an unknown version or magic', () => {
    const frame = encodeBatchFrame(7n, payload);
    for (let bit = 0; bit < frame.length * 8; bit++) {
      const damaged = Buffer.from(frame);
      damaged[bit >> 3]! ^= 1 << (bit & 7);
      expect(decodeBatchFrame(damaged).ok, `bit ${bit}`).toBe(false);
    }
    for (const cut of [0, 10, FRAME_HEADER_BYTES, frame.length - 1]) {
      expect(decodeBatchFrame(frame.subarray(0, cut)).ok, `cut at ${cut}`).toBe(false);
    }
    expect(decodeBatchFrame(Buffer.concat([frame, Buffer.from([0])]))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/header says 58 payload bytes but the file holds 59/),
    });
    const version2 = Buffer.from(frame);
    version2.writeUInt16BE(2, 4);
    expect(decodeBatchFrame(version2)).toEqual({ ok: false, reason: 'unknown format version 2' });
  });
});

describe('batch identity', () => {
  it('generates w- and 20 base32 characters from the random bytes given', () => {
    const id = generateWriterId((length) => new Uint8Array(length).fill(33));
    expect(id).toBe(`w-${'b'.repeat(20)}`);
    expect(WRITER_ID_PATTERN.test(id)).toBe(true);
  });

  it('formats writerId:seq and asserts the ranges', () => {
    expect(formatBatchId('w-a', 42n)).toBe('w-a:42');
    expect(() => formatBatchId('w-a', 0n)).toThrow(/out of 1/);
    expect(() => formatBatchId('w-a', 2n ** 63n)).toThrow(/out of 1/);
    expect(() => formatBatchId('a:b', 1n)).toThrow(/bad writer id/);
  });
});
