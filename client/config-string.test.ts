import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { CONFIG_DEFAULTS, parseConfigString } from './config-string.js';
import { isClientError } from './errors.js';

/** The INVALID_CONFIG error a config string throws (fails the test when it does not throw). */
function errorOf(conf: string): Error {
  try {
    parseConfigString(conf);
  } catch (error) {
    expect(isClientError(error, 'INVALID_CONFIG'), String(error)).toBe(true);
    return error as Error;
  }
  throw new Error(`expected ${JSON.stringify(conf)} to be refused`);
}

describe('parseConfigString', () => {
  it('fills in QuestDB defaults for a minimal string', () => {
    const config = parseConfigString('http::addr=localhost:9000;');
    expect(config).toEqual({
      scheme: 'http',
      addresses: [{ host: 'localhost', port: 9000 }],
      auth: { kind: 'none' },
      autoFlush: true,
      autoFlushRows: 75_000,
      autoFlushIntervalMs: 1_000,
      requestTimeoutMs: 10_000,
      requestMinThroughputBytesPerS: 102_400,
      retryTimeoutMs: 10_000,
      initBufSizeBytes: 65_536,
      maxBufSizeBytes: 104_857_600,
      maxNameLenBytes: 127,
      protocolVersion: 1,
      tlsVerify: true,
      tlsCaPath: undefined,
      spread: false,
      batchIds: true,
      writerId: undefined,
      sfDir: undefined,
      sfMaxBytes: 1_073_741_824,
      sfAppendDeadlineMs: 30_000,
      sfDurability: 'fsync',
      maxUnackedBatches: 1_000,
    });
    expect(CONFIG_DEFAULTS.port).toBe(9000);
  });

  it('parses the batch identity and store-and-forward keys', () => {
    const config = parseConfigString(
      'http::addr=h;sf_dir=/var/lib/app/sf;;1;writer_id=ingest-7.a_B;sf_max_bytes=4096;' +
        'sf_append_deadline_millis=0;sf_durability=none;max_unacked_batches=3;batch_ids=on;',
    );
    expect(config).toMatchObject({
      batchIds: true,
      writerId: 'ingest-7.a_B',
      sfDir: '/var/lib/app/sf;1',
      sfMaxBytes: 4096,
      sfAppendDeadlineMs: 0,
      sfDurability: 'none',
      maxUnackedBatches: 3,
    });
    expect(parseConfigString('http::addr=h;batch_ids=off;').batchIds).toBe(false);
    expect(parseConfigString(`http::addr=h;sf_dir=d;writer_id=${'w'.repeat(64)};`).writerId).toHaveLength(64);
  });

  it('refuses batch and sf_dir keys that cannot work together', () => {
    const cases: [string, RegExp][] = [
      ['http::addr=h;sf_dir=d;batch_ids=off;', /sf_dir needs batch_ids=on/],
      ['http::addr=h;sf_max_bytes=10;', /"sf_max_bytes" needs sf_dir/],
      ['http::addr=h;sf_durability=none;', /"sf_durability" needs sf_dir/],
      ['http::addr=h;writer_id=w1;', /"writer_id" needs sf_dir.*start again at seq 1/],
      ['http::addr=h;sf_dir=d;writer_id=a:b;', /"writer_id" must be 1–64 characters/],
      [`http::addr=h;sf_dir=d;writer_id=${'w'.repeat(65)};`, /"writer_id" must be 1–64 characters/],
      ['http::addr=h;max_unacked_batches=1001;', /"max_unacked_batches" must be ≤ 1000/],
      ['http::addr=h;max_unacked_batches=0;', /"max_unacked_batches" must be an integer ≥ 1/],
      ['http::addr=h;sf_dir=d;sf_durability=always;', /"sf_durability" must be "fsync" or "none"/],
      ['http::addr=h;batch_ids=yes;', /"batch_ids" must be "on" or "off"/],
      ['http::addr=h;sf_dir=d;sf_max_bytes=0;', /"sf_max_bytes" must be an integer ≥ 1/],
      ['http::addr=h;sf_dir=d;max_buf_size=5000000000;', /with sf_dir, max_buf_size must be ≤ 4294967295/],
    ];
    for (const [conf, message] of cases) expect(errorOf(conf).message, conf).toMatch(message);
  });

  it('parses every key', () => {
    const config = parseConfigString(
      'https::addr=a.example:9001;addr=b.example;addr=[::1]:9002;username=admin;password=quest;' +
        'auto_flush=off;auto_flush_rows=500;auto_flush_interval=250;request_timeout=3000;' +
        'request_min_throughput=2048;retry_timeout=1500;max_buf_size=4096;init_buf_size=1024;' +
        'max_name_len=64;protocol_version=1;tls_verify=unsafe_off;tls_ca=/etc/ca.pem;',
    );
    expect(config.scheme).toBe('https');
    expect(config.addresses).toEqual([
      { host: 'a.example', port: 9001 },
      { host: 'b.example', port: 9000 },
      { host: '::1', port: 9002 },
    ]);
    expect(config.auth.kind).toBe('basic');
    if (config.auth.kind === 'basic') {
      expect(config.auth.username).toBe('admin');
      expect(config.auth.password.reveal()).toBe('quest');
    }
    expect(config).toMatchObject({
      autoFlush: false,
      autoFlushRows: 500,
      autoFlushIntervalMs: 250,
      requestTimeoutMs: 3000,
      requestMinThroughputBytesPerS: 2048,
      retryTimeoutMs: 1500,
      maxBufSizeBytes: 4096,
      initBufSizeBytes: 1024,
      maxNameLenBytes: 64,
      protocolVersion: 1,
      tlsVerify: false,
      tlsCaPath: '/etc/ca.pem',
    });
  });

  it('takes a bearer token', () => {
    const config = parseConfigString('http::addr=h;token=abc');
    expect(config.auth.kind).toBe('token');
    if (config.auth.kind === 'token') expect(config.auth.token.reveal()).toBe('abc');
  });

  it('accepts "off" and 0 for the auto-flush thresholds, and a missing final semicolon', () => {
    const config = parseConfigString('http::addr=h;auto_flush_rows=off;auto_flush_interval=0');
    expect(config.autoFlushRows).toBe(0);
    expect(config.autoFlushIntervalMs).toBe(0);
  });

  it('reads ";;" as a literal semicolon inside a value', () => {
    const config = parseConfigString('http::addr=h;username=u;password=a;;b;;;;c;;;retry_timeout=5;');
    if (config.auth.kind !== 'basic') throw new Error('expected basic auth');
    expect(config.auth.password.reveal()).toBe('a;b;;c;');
    expect(config.retryTimeoutMs).toBe(5);
  });

  it('keeps "=" inside a value', () => {
    const config = parseConfigString('http::addr=h;token=abc==;');
    if (config.auth.kind !== 'token') throw new Error('expected a token');
    expect(config.auth.token.reveal()).toBe('abc==');
  });

  it('refuses tcp and tcps, saying why', () => {
    for (const scheme of ['tcp', 'tcps']) {
      expect(errorOf(`${scheme}::addr=localhost:9009;`).message).toMatch(/HTTP-only.*no acknowledgement/);
    }
  });

  it('refuses a missing or unknown scheme', () => {
    expect(errorOf('addr=localhost:9000;').message).toMatch(/no scheme/);
    expect(errorOf('udp::addr=h;').message).toMatch(/unknown scheme "udp"/);
  });

  it('refuses unknown keys, case-sensitively, with a hint', () => {
    expect(errorOf('http::addr=h;colour=red;').message).toMatch(/unknown key "colour"/);
    expect(errorOf('http::addr=h;ADDR=h2;').message).toMatch(/case-sensitive: did you mean "addr"/);
  });

  it('refuses TCP-only keys with a reason', () => {
    expect(errorOf('http::addr=h;token_x=abc;').message).toMatch(/token_x.*TCP/);
  });

  it('refuses keys given twice, except addr', () => {
    expect(errorOf('http::addr=h;retry_timeout=1;retry_timeout=2;').message).toMatch(
      /"retry_timeout" is given twice/,
    );
  });

  it('refuses malformed settings and values', () => {
    const cases: [string, RegExp][] = [
      ['http::', /"addr" is required/],
      ['http::addr=h;nonsense;', /setting 2 has no "="/],
      ['http::addr=h;=x;', /empty key/],
      ['http::addr=h;retry_timeout=;', /"retry_timeout" has an empty value/],
      ['http::addr=h:0;', /port must be 1..65535/],
      ['http::addr=h:99999;', /port must be 1..65535/],
      ['http::addr=h:x;', /port must be 1..65535/],
      ['http::addr=::1;', /IPv6 host in brackets/],
      ['http::addr=[::1;', /without "\]"/],
      ['http::addr=:9000;', /expected host/],
      ['http::addr=h;auto_flush=yes;', /"auto_flush" must be "on" or "off"/],
      ['http::addr=h;auto_flush_rows=-1;', /integer ≥ 0 or "off"/],
      ['http::addr=h;request_timeout=0;', /integer ≥ 1/],
      ['http::addr=h;request_timeout=1.5;', /integer ≥ 1/],
      [
        'http::addr=h;init_buf_size=2048;max_buf_size=1024;',
        /init_buf_size \(2048\) is larger than max_buf_size/,
      ],
      ['http::addr=h;protocol_version=2;', /protocol_version "2" is not supported.*protocol_version=1/],
      ['http::addr=h;protocol_version=auto;', /protocol_version "auto" is not supported/],
      ['http::addr=h;tls_verify=on;', /"tls_verify" needs the https scheme/],
      ['http::addr=h;tls_ca=/ca.pem;', /"tls_ca" needs the https scheme/],
      ['https::addr=h;tls_verify=off;', /"tls_verify" must be "on" or "unsafe_off"/],
      ['http::addr=h;username=u;', /username= needs password=/],
      ['http::addr=h;password=p;', /password= needs username=/],
      ['http::addr=h;token=t;username=u;password=p;', /either token= or username=/],
      ['http::addr=h;username=a\u0007b;', /control character/],
    ];
    for (const [conf, message] of cases) expect(errorOf(conf).message, conf).toMatch(message);
  });

  it('refuses too many addresses and too long strings', () => {
    expect(errorOf(`http::${'addr=h;'.repeat(65)}`).message).toMatch(/more than 64 addr=/);
    expect(errorOf(`http::addr=h;token=${'x'.repeat(70_000)};`).message).toMatch(/above the limit/);
  });
});

describe('secrets in config errors and printing', () => {
  const SECRET = 'hunter2-S3cr3t';

  it('never repeats a password or token in an error message', () => {
    const cases = [
      `http::addr=h;password=${SECRET};`, // password without username
      `http::addr=h;username=u;password=${SECRET};password=${SECRET};`, // twice
      `http::addr=h;token=${SECRET};username=u;password=${SECRET};`,
      `http::addr=h;token=${SECRET}\u0001;`, // control character
      `http::addr=h;passwrd=${SECRET};`, // a mistyped key: its value may be a secret
      `http::addr=h;${SECRET};`, // a secret that lost its key
      `http::addr=h;token_x=${SECRET};`,
      `tcp::addr=h;password=${SECRET};`,
    ];
    for (const conf of cases) {
      const error = errorOf(conf);
      expect(error.message, conf).not.toContain(SECRET);
      expect(JSON.stringify((error as unknown as { details: unknown }).details), conf).not.toContain(SECRET);
    }
  });

  it('prints parsed secrets as [secret]', () => {
    const config = parseConfigString(`http::addr=h;username=u;password=${SECRET};`);
    expect(JSON.stringify(config)).not.toContain(SECRET);
    expect(inspect(config, { depth: 5 })).not.toContain(SECRET);
    expect(String(config.auth.kind === 'basic' ? config.auth.password : '')).toBe('[secret]');
  });
});
