import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidConfigError } from '../core/index.js';
import { describeStoreConfig, parseConnectionString, redactConnectionString } from './connection-string.js';

describe('connection strings', () => {
  it('parses QuestDB-style fs strings', () => {
    expect(parseConnectionString('fs::root=/mnt/nfs/final;atomic_write_dir=/mnt/nfs/scratch;')).toEqual({
      scheme: 'fs',
      root: '/mnt/nfs/final',
      atomicWriteDir: '/mnt/nfs/scratch',
    });
    expect(parseConnectionString('fs::root=./data')).toEqual({ scheme: 'fs', root: './data' });
  });

  it('parses s3 strings with defaults', () => {
    expect(
      parseConnectionString(
        's3::bucket=b;root=prod/c1;region=eu-west-1;endpoint=http://127.0.0.1:7480;access_key_id=AK;secret_access_key=SK;retry_attempts=6;',
      ),
    ).toEqual({
      scheme: 's3',
      bucket: 'b',
      root: 'prod/c1',
      region: 'eu-west-1',
      endpoint: 'http://127.0.0.1:7480',
      accessKeyId: 'AK',
      secretAccessKey: 'SK',
      forcePathStyle: true,
      retryAttempts: 6,
    });
    expect(parseConnectionString('s3::bucket=b;root=r;')).toMatchObject({
      region: 'us-east-1',
      forcePathStyle: true,
    });
  });

  it.each([
    ['root=/x;', 'expected "scheme::key=value'],
    ['ftp::root=/x;', 'unknown scheme "ftp"'],
    ['fs::', 'required key root is missing'],
    ['fs::root=/x;bogus=1;', 'unknown key "bogus"'],
    ['fs::root=/x;root=/y;', 'key root is given twice'],
    ['fs::root=;', 'key root has an empty value'],
    ['fs::root=/x;junk;', 'entry 2 is not key=value'],
    ['s3::root=r;', 'required key bucket is missing'],
    ['s3::bucket=b;', 'required key root is missing'],
    ['s3::bucket=b;root=/abs;', 'key root must be a relative path'],
    ['s3::bucket=b;root=r;endpoint=127.0.0.1:9000;', 'key endpoint must be an http:// or https:// URL'],
    ['s3::bucket=b;root=r;access_key_id=AK;', 'access_key_id and secret_access_key go together'],
    ['s3::bucket=b;root=r;retry_attempts=0;', 'key retry_attempts must be a positive integer'],
    ['s3::bucket=b;root=r;force_path_style=yes;', 'key force_path_style must be true or false'],
  ])('rejects %j with a message naming the problem', (input, message) => {
    expect(() => parseConnectionString(input)).toThrow(InvalidConfigError);
    expect(() => parseConnectionString(input)).toThrow(message);
  });

  it('never puts a secret in an error message, however the string is broken', () => {
    const secret = fc.stringMatching(/^[A-Za-z0-9/+]{16,40}$/);
    const broken = fc.constantFrom(
      (s: string) => `s3::bucket=b;root=r;access_key_id=AK;secret_access_key=${s};bogus=1;`,
      (s: string) => `s3::bucket=b;root=r;secret_access_key=${s};`,
      (s: string) => `s3::bucket=b;root=r;access_key_id=AK;secret_access_key=${s.slice(0, 8)};${s.slice(8)};`,
      (s: string) =>
        `s3::bucket=b;root=r;access_key_id=AK;secret_access_key=${s.slice(0, 8)};${s.slice(8)}=x;`,
      (s: string) => `s3::bucket=b;root=r;session_token=${s};session_token=${s};`,
      (s: string) => `${s}::secret_access_key=${s};`,
      (s: string) => `s3::bucket=b;root=/abs;access_key_id=AK;secret_access_key=${s};`,
    );
    fc.assert(
      fc.property(secret, broken, (s, make) => {
        let message = '';
        try {
          parseConnectionString(make(s));
        } catch (error) {
          message = (error as Error).message;
        }
        expect(message).not.toBe('');
        expect(message).not.toContain(s.slice(0, 8));
      }),
    );
  });

  it('redacts secrets for logs and describes parsed configs without them', () => {
    expect(redactConnectionString('s3::bucket=b;root=r;secret_access_key=SEKRIT;session_token=TOK;')).toBe(
      's3::bucket=b;root=r;secret_access_key=****;session_token=****;',
    );
    const config = parseConnectionString('s3::bucket=b;root=r;access_key_id=AK;secret_access_key=SEKRIT;');
    expect(describeStoreConfig(config)).toBe(
      's3::bucket=b;root=r;region=us-east-1;access_key_id=AK;secret_access_key=****;',
    );
    expect(describeStoreConfig(config)).not.toContain('SEKRIT');
  });
});
