import { describe, expect, it } from 'vitest';
import { clientAddressOf, FORWARDED_HOPS_MAX, TrustedProxies } from './client-address.js';
import { isWalshipError } from './walship-error.js';

describe('TrustedProxies', () => {
  it('matches addresses and CIDR blocks, IPv4 (also IPv4-mapped IPv6) and IPv6', () => {
    const trusted = new TrustedProxies(['10.0.0.5', '192.168.0.0/16', ' ::1 ', 'fd00::/8']);
    const seen = Object.fromEntries(
      ['10.0.0.5', '10.0.0.6', '192.168.44.1', '::ffff:192.168.1.1', '::1', 'fd12::1', 'fe80::1', 'x'].map(
        (a) => [a, trusted.has(a)],
      ),
    );
    expect(seen).toEqual({
      '10.0.0.5': true,
      '10.0.0.6': false,
      '192.168.44.1': true,
      '::ffff:192.168.1.1': true,
      '::1': true,
      'fd12::1': true,
      'fe80::1': false,
      x: false,
    });
  });

  it.each(['router.example', '10.0.0.0/33', '10.0.0.0/', '10.0.0.0/8x', '::1/129', ''])(
    'refuses %j naming the key',
    (entry) => {
      let error: unknown;
      try {
        new TrustedProxies([entry]);
      } catch (caught) {
        error = caught;
      }
      expect(isWalshipError(error, 'INVALID_CONFIG')).toBe(true);
      expect((error as Error).message).toMatch(/^http\.trusted\.proxies: .* is not an IP address or CIDR/);
    },
  );
});

describe('clientAddressOf', () => {
  const trusted = new TrustedProxies(['127.0.0.1', '10.1.0.0/16']);

  it('an untrusted peer is the client: its X-Forwarded-For is ignored', () => {
    expect(clientAddressOf('203.0.113.7', '198.51.100.1', trusted)).toBe('203.0.113.7');
    expect(clientAddressOf('::ffff:203.0.113.7', '198.51.100.1', trusted)).toBe('203.0.113.7');
  });

  it('without trusted proxies the peer is the client whatever the header says', () => {
    expect(clientAddressOf('127.0.0.1', '198.51.100.1', new TrustedProxies([]))).toBe('127.0.0.1');
    expect(clientAddressOf('127.0.0.1', '198.51.100.1', undefined)).toBe('127.0.0.1');
  });

  it('a trusted peer names the client in the last entry; entries left of the first untrusted one are ignored', () => {
    expect(clientAddressOf('127.0.0.1', '198.51.100.1', trusted)).toBe('198.51.100.1');
    // The client sent "1.1.1.1" itself to dodge its budget: the router appended its real address.
    expect(clientAddressOf('127.0.0.1', '1.1.1.1, 198.51.100.1', trusted)).toBe('198.51.100.1');
    // Two trusted hops (a load balancer, then the router).
    expect(clientAddressOf('127.0.0.1', '1.1.1.1, 198.51.100.1, 10.1.2.3', trusted)).toBe('198.51.100.1');
    expect(clientAddressOf('127.0.0.1', ['1.1.1.1', '198.51.100.1'], trusted)).toBe('198.51.100.1');
  });

  it('accepts entries with ports and brackets; a malformed entry stops at the trusted hop that passed it', () => {
    expect(clientAddressOf('127.0.0.1', '198.51.100.1:4711', trusted)).toBe('198.51.100.1');
    expect(clientAddressOf('127.0.0.1', '[2001:db8::1]:4711', trusted)).toBe('2001:db8::1');
    expect(clientAddressOf('127.0.0.1', '2001:db8::1', trusted)).toBe('2001:db8::1');
    expect(clientAddressOf('127.0.0.1', 'unknown', trusted)).toBe('127.0.0.1');
    expect(clientAddressOf('127.0.0.1', '198.51.100.1, garbage', trusted)).toBe('127.0.0.1');
    expect(clientAddressOf('127.0.0.1', '', trusted)).toBe('127.0.0.1');
  });

  it(`reads at most ${FORWARDED_HOPS_MAX} entries`, () => {
    const chain = ['198.51.100.1', ...Array(FORWARDED_HOPS_MAX).fill('10.1.0.1')].join(', ');
    expect(clientAddressOf('127.0.0.1', chain, trusted)).toBe('10.1.0.1');
    const shorter = ['198.51.100.1', ...Array(FORWARDED_HOPS_MAX - 1).fill('10.1.0.1')].join(', ');
    expect(clientAddressOf('127.0.0.1', shorter, trusted)).toBe('198.51.100.1');
  });
});
