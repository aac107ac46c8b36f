import { BlockList, isIP } from 'node:net';
import { InvalidConfigError } from './walship-error.js';

/**
 * Which client a request comes from, for the failed-authentication limiter (http-auth.ts).
 *
 * Behind a proxy (`walship router`, a load balancer) every request arrives from the proxy's
 * address, so counting failures per TCP peer makes one client's bad guesses lock out every client
 * of that proxy (issue 13 item 9). A proxy names the client in `X-Forwarded-For`, but any client
 * can send that header too: it is believed only from the peers listed in `http.trusted.proxies`.
 *
 * The rule (the usual one for X-Forwarded-For, read right to left): each trusted hop appended the
 * address of its own peer to the header, so start at the TCP peer; while the current hop is a
 * trusted proxy, step to the entry it appended; the first address that is not a trusted proxy is
 * the client. Entries left of it were written by that client and are never believed. A malformed
 * entry ends the walk at the trusted hop that passed it on.
 */

/** X-Forwarded-For entries examined at most (a bound on work per request; real chains are 1–3 hops). */
export const FORWARDED_HOPS_MAX = 16;

/** The addresses and CIDR blocks of `http.trusted.proxies`, IPv4 and IPv6. */
export class TrustedProxies {
  readonly #list = new BlockList();
  readonly #count: number;

  /**
   * `entries`: IP addresses (`10.0.0.5`, `::1`) or CIDR blocks (`10.0.0.0/8`, `fd00::/8`).
   * Throws InvalidConfigError naming `key` and the entry for anything else.
   */
  constructor(entries: readonly string[], key = 'http.trusted.proxies') {
    for (const entry of entries) this.#add(entry.trim(), key);
    this.#count = entries.length;
  }

  /** True when no proxy is trusted: every request is counted by its TCP peer. */
  get empty(): boolean {
    return this.#count === 0;
  }

  /** True when `address` (a plain IP; IPv4-mapped IPv6 counts as its IPv4) is a trusted proxy. */
  has(address: string): boolean {
    const plain = unmapped(address);
    const family = isIP(plain);
    if (family === 0) return false;
    return this.#list.check(plain, family === 4 ? 'ipv4' : 'ipv6');
  }

  #add(entry: string, key: string): void {
    const slash = entry.indexOf('/');
    const address = unmapped(slash < 0 ? entry : entry.slice(0, slash));
    const family = isIP(address);
    const prefixText = slash < 0 ? undefined : entry.slice(slash + 1);
    const prefix = prefixText === undefined ? undefined : Number(prefixText);
    const prefixMax = family === 4 ? 32 : 128;
    if (
      family === 0 ||
      (prefix !== undefined && (!/^\d{1,3}$/.test(prefixText ?? '') || (prefix ?? 0) > prefixMax))
    ) {
      throw new InvalidConfigError(
        `${key}: ${JSON.stringify(entry.slice(0, 64))} is not an IP address or CIDR block (e.g. 10.0.0.5, 10.0.0.0/8, ::1)`,
      );
    }
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefix === undefined) this.#list.addAddress(address, type);
    else this.#list.addSubnet(address, prefix, type);
  }
}

/**
 * The client address of a request whose TCP peer is `peer` and whose `X-Forwarded-For` header is
 * `forwardedFor`, believing the header only as far as `trusted` proxies vouch for it (see above).
 */
export function clientAddressOf(
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
  trusted: TrustedProxies | undefined,
): string {
  let client = unmapped(peer ?? 'unknown');
  if (trusted === undefined || trusted.empty || forwardedFor === undefined) return client;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
  for (let i = hops.length - 1; i >= 0 && hops.length - i <= FORWARDED_HOPS_MAX; i--) {
    if (!trusted.has(client)) return client;
    const hop = forwardedAddress(hops[i] ?? '');
    if (hop === undefined) return client;
    client = hop;
  }
  return client;
}

/** One X-Forwarded-For entry as a plain IP (`1.2.3.4`, `1.2.3.4:567`, `::1`, `[::1]:567`), else undefined. */
function forwardedAddress(entry: string): string | undefined {
  let text = entry.trim();
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    text = end < 0 ? '' : text.slice(1, end);
  } else if (/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(text)) {
    text = text.slice(0, text.lastIndexOf(':'));
  }
  const plain = unmapped(text);
  return isIP(plain) === 0 ? undefined : plain;
}

/** `::ffff:10.0.0.5` (how a dual-stack listener sees an IPv4 peer) as `10.0.0.5`. */
function unmapped(address: string): string {
  const match = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  return match === null ? address : (match[1] ?? address);
}
