import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { InvalidArgumentError, WalshipError } from '../core/index.js';
import { ASYNC_CODEC_THRESHOLD_BYTES } from './limits.js';

/**
 * Body codecs (RFC-0001 §4). deflate is node:zlib's raw DEFLATE and always present; zstd exists
 * only where node:zlib has it (Node >= 22.15), so it is looked up at run time.
 */
export type Codec = 'none' | 'deflate' | 'zstd';

/** The codec id written in the header. */
export const CODEC_IDS: Readonly<Record<Codec, number>> = Object.freeze({ none: 0, deflate: 1, zstd: 2 });

/** The codec for a codec id, or undefined for an id this format version does not define. */
export function codecOfId(codecId: number): Codec | undefined {
  if (codecId === CODEC_IDS.none) return 'none';
  if (codecId === CODEC_IDS.deflate) return 'deflate';
  if (codecId === CODEC_IDS.zstd) return 'zstd';
  return undefined;
}

type SyncFn = (input: Uint8Array, options: object) => Buffer;
type AsyncFn = (input: Uint8Array, options: object) => Promise<Buffer>;
interface CodecFns {
  compressSync: SyncFn;
  compressAsync: AsyncFn;
  decompressSync: SyncFn;
  decompressAsync: AsyncFn;
  levels: { min: number; max: number; default: number };
  levelOptions(level: number): object;
}

// node:zlib's zstd functions are absent from Node 20's types and runtime; look them up loosely.
const zlibAny = zlib as unknown as Record<string, unknown>;
const zstdConstants = zlib.constants as unknown as Record<string, number>;

function zstdFns(): CodecFns | undefined {
  const compress = zlibAny.zstdCompress;
  const compressSync = zlibAny.zstdCompressSync;
  const decompress = zlibAny.zstdDecompress;
  const decompressSync = zlibAny.zstdDecompressSync;
  const levelParam = zstdConstants.ZSTD_c_compressionLevel;
  if (
    typeof compress !== 'function' ||
    typeof compressSync !== 'function' ||
    typeof decompress !== 'function' ||
    typeof decompressSync !== 'function' ||
    levelParam === undefined
  ) {
    return undefined;
  }
  return {
    compressSync: compressSync as SyncFn,
    compressAsync: promisify(compress) as AsyncFn,
    decompressSync: decompressSync as SyncFn,
    decompressAsync: promisify(decompress) as AsyncFn,
    levels: { min: 1, max: 22, default: 1 },
    levelOptions: (level) => ({ params: { [levelParam]: level } }),
  };
}

const deflateFns: CodecFns = {
  compressSync: zlib.deflateRawSync,
  compressAsync: promisify(zlib.deflateRaw),
  decompressSync: zlib.inflateRawSync,
  decompressAsync: promisify(zlib.inflateRaw),
  levels: { min: 0, max: 9, default: 1 },
  levelOptions: (level) => ({ level }),
};

const CODEC_FNS: Readonly<Partial<Record<Codec, CodecFns>>> = Object.freeze({
  deflate: deflateFns,
  zstd: zstdFns(),
});

/**
 * zlib's output chunk. Its default (16 KiB) makes the async API do one threadpool round trip per
 * chunk — 128 for a 2 MiB body, which made async inflate 3x slower than sync. One chunk of the
 * expected output size (plus slack for incompressible data), capped so a huge body does not
 * allocate its whole size up front, makes it one round trip for a rollover-sized segment.
 */
const MAX_CHUNK_BYTES = 8 * 1024 * 1024;
const MIN_CHUNK_BYTES = 64; // zlib.constants.Z_MIN_CHUNK

function chunkSizeFor(expectedOutputBytes: number): number {
  return Math.min(MAX_CHUNK_BYTES, Math.max(MIN_CHUNK_BYTES, expectedOutputBytes + 1024));
}

/** The codecs this runtime can encode and decode, always including 'none' and 'deflate'. */
export function availableCodecs(): Codec[] {
  const codecs: Codec[] = ['none', 'deflate'];
  if (CODEC_FNS.zstd !== undefined) codecs.push('zstd');
  return codecs;
}

/** The error for a codec this runtime lacks: the bytes may be fine, this process cannot use them. */
export function codecUnavailableError(codec: Codec): WalshipError {
  return new WalshipError(
    'CODEC_UNAVAILABLE',
    'unavailable',
    `codec '${codec}' is not available in this runtime (Node ${process.versions.node}); ` +
      `available: ${availableCodecs().join(', ')}. Upgrade Node (zstd needs >= 22.15) or write with another codec`,
    { details: { codec } },
  );
}

function fnsOf(codec: Exclude<Codec, 'none'>): CodecFns {
  const fns = CODEC_FNS[codec];
  if (fns === undefined) throw codecUnavailableError(codec);
  return fns;
}

/**
 * Throws InvalidArgumentError unless `level` is an integer within `codec`'s range; returns the
 * level to use (the codec's default when undefined). 'none' accepts and ignores any level.
 */
export function checkCompressionLevel(codec: Codec, level: number | undefined): number {
  if (codec === 'none') return 0;
  const { levels } = fnsOf(codec);
  if (level === undefined) return levels.default;
  if (!Number.isInteger(level) || level < levels.min || level > levels.max) {
    throw new InvalidArgumentError(
      `compressionLevel for ${codec} must be an integer in ${levels.min}..${levels.max}, got ${level}`,
    );
  }
  return level;
}

/**
 * Compresses a raw body with `codec` at `level` (already checked). Large bodies use the async API
 * (threadpool), small ones the sync API. Throws CODEC_UNAVAILABLE for a codec this runtime lacks.
 */
export async function compressBody(codec: Codec, level: number, raw: Uint8Array): Promise<Uint8Array> {
  if (codec === 'none') return raw;
  const fns = fnsOf(codec);
  const options = { ...fns.levelOptions(level), chunkSize: chunkSizeFor(raw.length) };
  if (raw.length > ASYNC_CODEC_THRESHOLD_BYTES) return fns.compressAsync(raw, options);
  return fns.compressSync(raw, options);
}

/**
 * Decompresses a stored body that must expand to exactly `rawBytes` bytes. Output is capped at
 * `rawBytes` (zlib's maxOutputLength), so a decompression bomb stops there. Throws
 * CODEC_UNAVAILABLE for a codec this runtime lacks and CorruptSegmentError (through `corrupt`)
 * for anything the codec rejects or a length mismatch.
 */
export async function decompressBody(
  codec: Codec,
  stored: Uint8Array,
  rawBytes: number,
  corrupt: (message: string, cause?: unknown) => Error,
): Promise<Uint8Array> {
  if (codec === 'none') return stored;
  const fns = fnsOf(codec);
  const options = { maxOutputLength: rawBytes, chunkSize: chunkSizeFor(rawBytes) };
  let raw: Uint8Array;
  try {
    raw =
      rawBytes > ASYNC_CODEC_THRESHOLD_BYTES
        ? await fns.decompressAsync(stored, options)
        : fns.decompressSync(stored, options);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw corrupt(`${codec} body does not decompress to the declared ${rawBytes} bytes: ${reason}`, error);
  }
  if (raw.length !== rawBytes) {
    throw corrupt(`${codec} body decompressed to ${raw.length} bytes, header declares ${rawBytes}`);
  }
  return raw;
}
