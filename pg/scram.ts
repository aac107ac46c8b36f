import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { PgProtocolError } from './wire.js';

/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677), the server side, as PostgreSQL speaks it in SASL messages:
 * the client proves it knows the password without sending it, and the server proves it knows it
 * too. No channel binding (the mechanism offered is `SCRAM-SHA-256`, not `-PLUS`), so the client
 * says `n,,` or `y,,`. The user name inside SCRAM is ignored, as PostgreSQL does: the startup
 * message's user is the one checked.
 */

export const SCRAM_MECHANISM = 'SCRAM-SHA-256';
/** PostgreSQL's default iteration count. */
const ITERATIONS = 4096;

/** What the server keeps of a password: derived once per user (PBKDF2 is slow on purpose). */
export interface ScramSecret {
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

export function scramSecret(
  password: string,
  salt: Buffer = randomBytes(16),
  iterations = ITERATIONS,
): ScramSecret {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = hmac(salted, 'Client Key');
  return { salt, iterations, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
}

/** One exchange: the client's first message in, the server's first out; then the final pair. */
export class ScramExchange {
  #clientFirstBare = '';
  #serverFirst = '';
  #nonce = '';
  #gs2 = '';

  /** `serverNonce`: the server's part of the nonce (random; fixed only by tests). */
  constructor(
    private readonly secret: ScramSecret,
    private readonly serverNonce: string = randomBytes(18).toString('base64'),
  ) {}

  /** The server-first-message for the client-first-message. */
  first(clientFirst: string): string {
    const m = /^([ny]),(?:a=[^,]*)?,((?:m=[^,]*,)?n=[^,]*,r=([!-+\--~]+)(?:,.*)?)$/.exec(clientFirst);
    if (m === null) {
      throw new PgProtocolError(
        clientFirst.startsWith('p=')
          ? 'channel binding is not offered: use SCRAM-SHA-256'
          : 'malformed SCRAM client-first-message',
        '08P01',
      );
    }
    this.#gs2 = clientFirst.slice(0, clientFirst.length - m[2]!.length);
    this.#clientFirstBare = m[2]!;
    this.#nonce = m[3]! + this.serverNonce;
    const { salt, iterations } = this.secret;
    this.#serverFirst = `r=${this.#nonce},s=${salt.toString('base64')},i=${iterations}`;
    return this.#serverFirst;
  }

  /** The server-final-message when the client's proof holds, else undefined (wrong password). */
  final(clientFinal: string): string | undefined {
    const m = /^c=([A-Za-z0-9+/=]+),r=([^,]+)((?:,[^,]*)*),p=([A-Za-z0-9+/=]+)$/.exec(clientFinal);
    if (m === null) throw new PgProtocolError('malformed SCRAM client-final-message', '08P01');
    if (Buffer.from(m[1]!, 'base64').toString('latin1') !== this.#gs2) {
      throw new PgProtocolError('SCRAM channel binding does not match the client-first-message', '08P01');
    }
    if (m[2] !== this.#nonce) throw new PgProtocolError('SCRAM nonce does not match', '08P01');
    const withoutProof = clientFinal.slice(0, clientFinal.length - m[4]!.length - 3);
    const authMessage = `${this.#clientFirstBare},${this.#serverFirst},${withoutProof}`;
    const proof = Buffer.from(m[4]!, 'base64');
    const signature = hmac(this.secret.storedKey, authMessage);
    if (proof.length !== signature.length) return undefined;
    const clientKey = Buffer.alloc(proof.length);
    for (let i = 0; i < proof.length; i++) clientKey[i] = proof[i]! ^ signature[i]!;
    if (!timingSafeEqual(sha256(clientKey), this.secret.storedKey)) return undefined;
    return `v=${hmac(this.secret.serverKey, authMessage).toString('base64')}`;
  }
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text).digest();
}

function sha256(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest();
}
