import { InvalidConfigError } from '../core/index.js';

/**
 * Object-store connection strings in QuestDB's format (`replication.object.store`):
 *
 *     fs::root=/mnt/nfs/final;atomic_write_dir=/mnt/nfs/scratch;
 *     s3::bucket=B;root=NAME;region=R;endpoint=URL;access_key_id=…;secret_access_key=…;
 *
 * `scheme::` then `key=value` pairs separated by `;` (the last `;` optional). As in QuestDB
 * there is no escaping: a value cannot contain `;`. Keys are case-sensitive; unknown keys,
 * repeated keys and missing required keys are errors that name the key. No error message ever
 * contains the value of a secret key.
 */
export type StoreConfig = FsStoreConfig | S3StoreConfig;

export interface CommonStoreConfig {
  /** Tries per request, the first included (`retry_attempts`). Default 4. */
  retryAttempts?: number;
  /** Backoff before the first retry, doubling with jitter (`retry_interval_ms`). Default 200. */
  retryIntervalMs?: number;
}

export interface FsStoreConfig extends CommonStoreConfig {
  scheme: 'fs';
  root: string;
  atomicWriteDir?: string;
}

export interface S3StoreConfig extends CommonStoreConfig {
  scheme: 's3';
  bucket: string;
  root: string;
  region: string;
  endpoint?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  forcePathStyle: boolean;
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  maxConcurrentRequests?: number;
}

/** Keys whose values never appear in messages or logs. */
const SECRET_KEYS = new Set(['secret_access_key', 'session_token']);

const COMMON_KEYS = ['retry_attempts', 'retry_interval_ms'] as const;
const FS_KEYS = ['root', 'atomic_write_dir', ...COMMON_KEYS] as const;
const S3_KEYS = [
  'bucket',
  'root',
  'region',
  'endpoint',
  'access_key_id',
  'secret_access_key',
  'session_token',
  'force_path_style',
  'request_timeout_ms',
  'connect_timeout_ms',
  'max_concurrent_requests',
  ...COMMON_KEYS,
] as const;

/** Parse and validate a connection string. Throws InvalidConfigError naming the offending key. */
export function parseConnectionString(text: string): StoreConfig {
  // The text itself is never quoted back: a mistyped secret could sit anywhere in it.
  const where = 'object store connection string';
  const separator = text.indexOf('::');
  if (separator < 0) {
    throw new InvalidConfigError(
      `${where}: expected "scheme::key=value;…", e.g. "fs::root=/var/lib/walship/store;"`,
    );
  }
  const scheme = text.slice(0, separator).trim();
  const pairs = parsePairs(text.slice(separator + 2), where);
  if (scheme === 'fs') return fsConfig(pairs, where);
  if (scheme === 's3') return s3Config(pairs, where);
  // Only a short lower-case word is echoed: real secrets are longer and mixed-case.
  const shown = /^[a-z][a-z0-9]{0,7}$/.test(scheme) ? ` ${JSON.stringify(scheme)}` : '';
  throw new InvalidConfigError(`${where}: unknown scheme${shown}; supported: fs, s3`);
}

/** The connection string with every secret value replaced by `****`; safe to log. */
export function redactConnectionString(text: string): string {
  return text.replace(/(^|;|::)([^=;:]+)=([^;]*)/g, (whole, lead: string, key: string) =>
    SECRET_KEYS.has(key.trim()) ? `${lead}${key}=****` : whole,
  );
}

/** A config rendered back as a connection string, secrets redacted. */
export function describeStoreConfig(config: StoreConfig): string {
  if (config.scheme === 'fs') {
    const atomic = config.atomicWriteDir === undefined ? '' : `atomic_write_dir=${config.atomicWriteDir};`;
    return `fs::root=${config.root};${atomic}`;
  }
  const endpoint = config.endpoint === undefined ? '' : `endpoint=${config.endpoint};`;
  const secret = config.secretAccessKey === undefined ? '' : 'secret_access_key=****;';
  const keyId = config.accessKeyId === undefined ? '' : `access_key_id=${config.accessKeyId};`;
  return `s3::bucket=${config.bucket};root=${config.root};region=${config.region};${endpoint}${keyId}${secret}`;
}

function parsePairs(body: string, where: string): Map<string, string> {
  const pairs = new Map<string, string>();
  const entries = body.split(';');
  if (entries.at(-1)?.trim() === '') entries.pop();
  for (const [index, entry] of entries.entries()) {
    const equals = entry.indexOf('=');
    if (equals < 0) {
      throw new InvalidConfigError(
        `${where}: entry ${index + 1} is not key=value (values cannot contain ';')`,
      );
    }
    const key = entry.slice(0, equals).trim();
    const value = entry.slice(equals + 1).trim();
    if (key === '') throw new InvalidConfigError(`${where}: an entry has an empty key`);
    if (pairs.has(key)) throw new InvalidConfigError(`${where}: key ${key} is given twice`);
    if (value === '') throw new InvalidConfigError(`${where}: key ${key} has an empty value`);
    pairs.set(key, value);
  }
  return pairs;
}

function checkKeys(pairs: Map<string, string>, known: readonly string[], where: string): void {
  let afterSecret = false;
  for (const key of pairs.keys()) {
    if (!known.includes(key)) {
      // Only echo what looks like a key name, and never what follows a secret: with a `;` inside
      // a secret value, the rest of the secret parses as the next "key".
      const shown = !afterSecret && /^[a-z_]{1,40}$/.test(key) ? ` ${JSON.stringify(key)}` : '';
      throw new InvalidConfigError(`${where}: unknown key${shown}; known keys: ${known.join(', ')}`);
    }
    afterSecret = SECRET_KEYS.has(key);
  }
}

function required(pairs: Map<string, string>, key: string, where: string): string {
  const value = pairs.get(key);
  if (value === undefined) throw new InvalidConfigError(`${where}: required key ${key} is missing`);
  return value;
}

function positiveInt(pairs: Map<string, string>, key: string, where: string): number | undefined {
  const value = pairs.get(key);
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new InvalidConfigError(
      `${where}: key ${key} must be a positive integer, got ${JSON.stringify(value)}`,
    );
  }
  return Number(value);
}

function common(pairs: Map<string, string>, where: string): CommonStoreConfig {
  const attempts = positiveInt(pairs, 'retry_attempts', where);
  const interval = positiveInt(pairs, 'retry_interval_ms', where);
  return {
    ...(attempts === undefined ? {} : { retryAttempts: attempts }),
    ...(interval === undefined ? {} : { retryIntervalMs: interval }),
  };
}

function fsConfig(pairs: Map<string, string>, where: string): FsStoreConfig {
  checkKeys(pairs, FS_KEYS, where);
  const atomicWriteDir = pairs.get('atomic_write_dir');
  return {
    scheme: 'fs',
    root: required(pairs, 'root', where),
    ...(atomicWriteDir === undefined ? {} : { atomicWriteDir }),
    ...common(pairs, where),
  };
}

function s3Config(pairs: Map<string, string>, where: string): S3StoreConfig {
  checkKeys(pairs, S3_KEYS, where);
  const root = required(pairs, 'root', where);
  if (
    root.startsWith('/') ||
    root.endsWith('/') ||
    root.split('/').some((s) => s === '' || s === '.' || s === '..')
  ) {
    throw new InvalidConfigError(
      `${where}: key root must be a relative path like "prod/cluster-1", got ${JSON.stringify(root)}`,
    );
  }
  const endpoint = pairs.get('endpoint');
  if (endpoint !== undefined && !/^https?:\/\/[^\s]+$/.test(endpoint)) {
    throw new InvalidConfigError(
      `${where}: key endpoint must be an http:// or https:// URL, got ${JSON.stringify(endpoint)}`,
    );
  }
  const accessKeyId = pairs.get('access_key_id');
  const secretAccessKey = pairs.get('secret_access_key');
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new InvalidConfigError(
      `${where}: access_key_id and secret_access_key go together; give both, or neither to use the default credential chain`,
    );
  }
  const forcePathStyle = pairs.get('force_path_style') ?? 'true';
  if (forcePathStyle !== 'true' && forcePathStyle !== 'false') {
    throw new InvalidConfigError(`${where}: key force_path_style must be true or false`);
  }
  const optional = (key: string, value: string | number | undefined) =>
    value === undefined ? {} : { [key]: value };
  const sessionToken = pairs.get('session_token');
  return {
    scheme: 's3',
    bucket: required(pairs, 'bucket', where),
    root,
    region: pairs.get('region') ?? 'us-east-1',
    forcePathStyle: forcePathStyle === 'true',
    ...optional('endpoint', endpoint),
    ...optional('accessKeyId', accessKeyId),
    ...optional('secretAccessKey', secretAccessKey),
    ...optional('sessionToken', sessionToken),
    ...optional('requestTimeoutMs', positiveInt(pairs, 'request_timeout_ms', where)),
    ...optional('connectTimeoutMs', positiveInt(pairs, 'connect_timeout_ms', where)),
    ...optional('maxConcurrentRequests', positiveInt(pairs, 'max_concurrent_requests', where)),
    ...common(pairs, where),
  };
}
