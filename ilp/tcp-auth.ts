import { createPublicKey, type KeyObject, randomBytes, verify } from 'node:crypto';
import { InvalidConfigError } from '../core/index.js';

/**
 * QuestDB's optional ILP/TCP authentication (LineTcpAuthConnectionContext): the client sends
 * `keyId\n`; the server answers CHALLENGE_BYTES random printable ASCII bytes and `\n`; the client
 * answers the base64 of an ECDSA P-256 / SHA-256 signature of those bytes and `\n`. A key is the
 * public point of an entry of QuestDB's auth file, `keyId ec-p-256-sha256 <x> <y>` (base64url).
 */

export interface IlpTcpAuthKey {
  keyId: string;
  /** base64url of the P-256 public point's x coordinate. */
  publicKeyX: string;
  /** base64url of the P-256 public point's y coordinate. */
  publicKeyY: string;
}

/** Bytes of a challenge, as QuestDB. */
export const CHALLENGE_BYTES = 512;
/** Bytes of a key id or signature line: a DER P-256 signature is ~96 base64 chars. */
export const MAX_AUTH_LINE_BYTES = 1024;

/** The public keys by key id; throws InvalidConfigError naming a key that is not a P-256 point. */
export function loadTcpAuthKeys(keys: readonly IlpTcpAuthKey[]): Map<string, KeyObject> {
  const byId = new Map<string, KeyObject>();
  for (const { keyId, publicKeyX, publicKeyY } of keys) {
    try {
      byId.set(
        keyId,
        createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: publicKeyX, y: publicKeyY }, format: 'jwk' }),
      );
    } catch (cause) {
      throw new InvalidConfigError(`ILP TCP auth key '${keyId}' is not a valid P-256 public key`, { cause });
    }
  }
  return byId;
}

/** A fresh challenge: CHALLENGE_BYTES bytes of printable ASCII ('!'..'~'), unpredictable. */
export function createChallenge(): Buffer {
  const challenge = randomBytes(CHALLENGE_BYTES);
  // The slight modulo bias does not matter: the challenge must be unpredictable, not uniform.
  for (let i = 0; i < challenge.length; i++) challenge[i] = 0x21 + (challenge[i]! % 94);
  return challenge;
}

/**
 * True when `signatureBase64` is a valid signature of `challenge` by `key`, in DER or 64-byte IEEE
 * P1363 form. Never throws: garbage is simply not a valid signature.
 */
export function verifyChallenge(key: KeyObject, challenge: Buffer, signatureBase64: string): boolean {
  const signature = Buffer.from(signatureBase64, 'base64');
  if (signature.length === 0) return false;
  const check = (dsaEncoding: 'der' | 'ieee-p1363') => {
    try {
      return verify('sha256', challenge, { key, dsaEncoding }, signature);
    } catch {
      return false;
    }
  };
  return (signature.length === 64 && check('ieee-p1363')) || check('der');
}
