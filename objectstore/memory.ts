import { createHash } from 'node:crypto';
import { type Clock, ClosedError, InvalidArgumentError, systemClock } from '../core/index.js';
import {
  assertValidDelimiter,
  assertValidKey,
  assertValidPrefix,
  assertValidWriteId,
  clipRange,
  compareKeys,
  pageLimit,
  rolledUp,
} from './keys.js';
import {
  DELETE_MANY_KEYS_MAX,
  type GetOptions,
  type GetResult,
  LIST_PAGE_KEYS_MAX,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  type PutResult,
} from './object-store.js';

interface StoredObject {
  body: Uint8Array;
  info: ObjectInfo;
}

/**
 * An ObjectStore in a Map. For unit tests only: it is as strict as the contract (create-only
 * and compare-and-swap are exact, listing is ordered and paged) but keeps nothing across
 * processes. Bodies are copied in and out so callers cannot alias stored bytes.
 */
export class MemoryStore implements ObjectStore {
  readonly description: string;
  readonly #objects = new Map<string, StoredObject>();
  readonly #clock: Clock;
  #closed = false;
  #version = 0;

  constructor(options: { name?: string; clock?: Clock } = {}) {
    this.description = `memory::name=${options.name ?? 'default'};`;
    this.#clock = options.clock ?? systemClock;
  }

  async put(key: string, body: Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    this.#checkOpen();
    assertValidKey(key);
    if (options.writeId !== undefined) assertValidWriteId(options.writeId);
    const condition = options.condition ?? { type: 'none' };
    const current = this.#objects.get(key);
    if (condition.type === 'absent' && current !== undefined) return { status: 'precondition-failed' };
    if (condition.type === 'match' && current?.info.etag !== condition.etag)
      return { status: 'precondition-failed' };
    // The version makes two writes of identical bytes distinguishable, as on S3 with versioning
    // off they are not; callers must not rely on either behaviour.
    this.#version++;
    const etag = createHash('md5').update(body).update(String(this.#version)).digest('hex');
    const info: ObjectInfo = {
      key,
      sizeBytes: body.byteLength,
      etag,
      modifiedAtMs: this.#clock.wallMs(),
      ...(options.writeId === undefined ? {} : { writeId: options.writeId }),
    };
    this.#objects.set(key, { body: Uint8Array.from(body), info });
    return { status: 'written', etag };
  }

  async get(key: string, options: GetOptions = {}): Promise<GetResult | null> {
    this.#checkOpen();
    assertValidKey(key);
    const current = this.#objects.get(key);
    if (current === undefined) return null;
    if (options.ifNoneMatch !== undefined && options.ifNoneMatch === current.info.etag) {
      return { status: 'not-modified' };
    }
    const [start, end] = clipRange(options.range, current.body.byteLength);
    return { status: 'ok', body: current.body.slice(start, end), info: { ...current.info } };
  }

  async head(key: string): Promise<ObjectInfo | null> {
    this.#checkOpen();
    assertValidKey(key);
    const current = this.#objects.get(key);
    return current === undefined ? null : { ...current.info };
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    this.#checkOpen();
    assertValidPrefix(prefix);
    assertValidDelimiter(options.delimiter);
    const limit = pageLimit(options.limit, LIST_PAGE_KEYS_MAX);
    const after = maxKey(options.startAfter, options.token);
    const delimited = options.delimiter !== undefined;
    // Each key as the listing reports it (itself, or its common prefix), filtered after rolling up.
    const entries = new Set<string>();
    for (const key of this.#objects.keys()) {
      if (key.startsWith(prefix)) entries.add(delimited ? rolledUp(key, prefix) : key);
    }
    const listed = [...entries]
      .filter((entry) => after === undefined || compareKeys(entry, after) > 0)
      .sort(compareKeys);
    const page = listed.slice(0, limit);
    const objects: ObjectInfo[] = [];
    const prefixes: string[] = [];
    for (const entry of page) {
      // A key never ends with `/` (assertValidKey), a common prefix always does.
      if (entry.endsWith('/')) prefixes.push(entry);
      else objects.push({ ...this.#objects.get(entry)!.info });
    }
    const last = page.at(-1);
    return {
      objects,
      ...(delimited ? { prefixes } : {}),
      ...(listed.length > limit && last !== undefined ? { nextToken: last } : {}),
    };
  }

  async delete(key: string): Promise<void> {
    this.#checkOpen();
    assertValidKey(key);
    this.#objects.delete(key);
  }

  async deleteMany(keys: readonly string[]): Promise<void> {
    this.#checkOpen();
    if (keys.length > DELETE_MANY_KEYS_MAX) {
      throw new InvalidArgumentError(
        `deleteMany takes at most ${DELETE_MANY_KEYS_MAX} keys, got ${keys.length}`,
      );
    }
    for (const key of keys) assertValidKey(key);
    for (const key of keys) this.#objects.delete(key);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError(`${this.description} is closed`);
  }
}

/** The later of two optional keys: listing resumes after whichever is further. */
export function maxKey(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return compareKeys(a, b) >= 0 ? a : b;
}
