import {
  type Clock,
  type Random,
  StoreTimeoutError,
  StoreUnavailableError,
  systemClock,
  systemRandom,
} from '../core/index.js';
import { compareKeys } from './keys.js';
import type {
  GetOptions,
  GetResult,
  ListOptions,
  ListPage,
  ObjectInfo,
  ObjectStore,
  PutOptions,
  PutResult,
} from './object-store.js';

export type StoreOperation = 'put' | 'get' | 'head' | 'list' | 'delete' | 'deleteMany';

/**
 * What can go wrong. Faults that fail an operation fail it *before* it reaches the store
 * (`error`, `timeout`), or *after* it took effect (`lost-response`, `timeout` with
 * `afterEffect`), which is the case a writer must recognise by reading back.
 */
export type Fault =
  /** Fail with StoreUnavailableError; nothing happens in the store. */
  | { type: 'error'; message?: string }
  /** Wait, then carry on normally. */
  | { type: 'latency'; ms: number }
  /** Wait `ms`, then fail with StoreTimeoutError; with `afterEffect` the operation was performed first. */
  | { type: 'timeout'; ms: number; afterEffect?: boolean }
  /** Perform the operation, then fail with StoreUnavailableError as if the response were lost. */
  | { type: 'lost-response' }
  /**
   * List pages hold at most `keys` entries and say more may follow (an honest short page). Here
   * and below, an entry is a key or, in a delimiter listing, a common prefix.
   */
  | { type: 'truncate-list'; keys: number }
  /** List pages silently lose their last `drop` entries and claim to be complete (a lying listing). */
  | { type: 'stale-list'; drop: number }
  /**
   * List pages silently lose the entry at position `index` (0-based) when a later entry follows it:
   * a torn listing, as one readdir() of a directory being written can be (issue 13 item 1).
   */
  | { type: 'skip-list'; index: number }
  /** Puts ignore their condition and always overwrite (a store like s3rver, unsafe for fencing). */
  | { type: 'ignore-conditions' }
  /** Bodies returned by get have one byte flipped (a store, disk or network that corrupts data). */
  | { type: 'corrupt-read' };

export interface FaultRule {
  fault: Fault;
  /** Operations the rule applies to; default all. */
  operations?: StoreOperation[];
  /** Only keys (or list prefixes) starting with this. */
  keyPrefix?: string;
  /** Chance that a matching operation is hit, 0..1. Default 1. */
  probability?: number;
  /** The rule is spent after hitting this many times. Default unlimited. */
  times?: number;
}

export interface FaultyStore extends ObjectStore {
  /** Replace the rules (e.g. to heal the store mid-test). */
  setRules(rules: FaultRule[]): void;
  /** How many times each fault type was injected so far. */
  readonly injected: Readonly<Record<Fault['type'], number>>;
}

/**
 * Wrap a store so that operations fail, slow down or lie according to rules, driven by an
 * injected (seedable) random source and clock. For tests and simulations of every later step;
 * never in production wiring.
 */
export function withFaults(
  store: ObjectStore,
  rules: FaultRule[],
  options: { random?: Random; clock?: Clock } = {},
): FaultyStore {
  const random = options.random ?? systemRandom;
  const clock = options.clock ?? systemClock;
  let active = rules.map((rule) => ({ rule, hits: 0 }));
  const injected = {
    error: 0,
    latency: 0,
    timeout: 0,
    'lost-response': 0,
    'truncate-list': 0,
    'stale-list': 0,
    'skip-list': 0,
    'ignore-conditions': 0,
    'corrupt-read': 0,
  } satisfies Record<Fault['type'], number>;

  /** The faults that hit this call, at most one per rule. */
  function draw(operation: StoreOperation, key: string): Fault[] {
    const hits: Fault[] = [];
    for (const entry of active) {
      const { rule } = entry;
      if (rule.operations !== undefined && !rule.operations.includes(operation)) continue;
      if (rule.keyPrefix !== undefined && !key.startsWith(rule.keyPrefix)) continue;
      if (rule.times !== undefined && entry.hits >= rule.times) continue;
      if (random.next() >= (rule.probability ?? 1)) continue;
      entry.hits++;
      injected[rule.fault.type]++;
      hits.push(rule.fault);
    }
    return hits;
  }

  /** Apply the generic faults around `perform`. */
  async function around<T>(
    operation: StoreOperation,
    key: string,
    faults: Fault[],
    perform: () => Promise<T>,
  ) {
    for (const fault of faults) {
      if (fault.type === 'latency') await clock.sleep(fault.ms);
      if (fault.type === 'error') {
        throw new StoreUnavailableError(fault.message ?? `injected fault: ${operation} ${key} failed`);
      }
      if (fault.type === 'timeout' && fault.afterEffect !== true) {
        await clock.sleep(fault.ms);
        throw new StoreTimeoutError(
          `injected fault: ${operation} ${key} timed out before reaching the store`,
        );
      }
    }
    const result = await perform();
    for (const fault of faults) {
      if (fault.type === 'lost-response') {
        throw new StoreUnavailableError(
          `injected fault: ${operation} ${key} succeeded but its response was lost`,
        );
      }
      if (fault.type === 'timeout' && fault.afterEffect === true) {
        await clock.sleep(fault.ms);
        throw new StoreTimeoutError(`injected fault: ${operation} ${key} timed out after taking effect`);
      }
    }
    return result;
  }

  return {
    description: store.description,
    injected,
    setRules(next: FaultRule[]) {
      active = next.map((rule) => ({ rule, hits: 0 }));
    },
    async put(key: string, body: Uint8Array, options: PutOptions = {}): Promise<PutResult> {
      const faults = draw('put', key);
      const ignore = faults.some((f) => f.type === 'ignore-conditions');
      const effective = ignore ? { ...options, condition: { type: 'none' as const } } : options;
      return around('put', key, faults, () => store.put(key, body, effective));
    },
    async get(key: string, options?: GetOptions): Promise<GetResult | null> {
      const faults = draw('get', key);
      const result = await around('get', key, faults, () => store.get(key, options));
      if (
        result?.status === 'ok' &&
        result.body.byteLength > 0 &&
        faults.some((f) => f.type === 'corrupt-read')
      ) {
        const body = Uint8Array.from(result.body);
        const at = Math.floor(random.next() * body.byteLength);
        body[at] = body[at]! ^ (1 << Math.floor(random.next() * 8));
        return { ...result, body };
      }
      return result;
    },
    head: (key: string): Promise<ObjectInfo | null> =>
      around('head', key, draw('head', key), () => store.head(key)),
    async list(prefix: string, options?: ListOptions): Promise<ListPage> {
      const faults = draw('list', prefix);
      let page = await around('list', prefix, faults, () => store.list(prefix, options));
      for (const fault of faults) {
        const entries = entriesOf(page);
        if (fault.type === 'truncate-list' && entries.length > fault.keys) {
          const kept = entries.slice(0, Math.max(1, fault.keys));
          page = pageOf(kept, page, kept.at(-1)!.name);
        }
        if (fault.type === 'stale-list') {
          page = pageOf(entries.slice(0, Math.max(0, entries.length - fault.drop)), page, undefined);
        }
        if (fault.type === 'skip-list' && entries.length > fault.index + 1) {
          page = pageOf(
            entries.filter((_, i) => i !== fault.index),
            page,
            page.nextToken,
          );
        }
      }
      return page;
    },
    delete: (key: string): Promise<void> =>
      around('delete', key, draw('delete', key), () => store.delete(key)),
    deleteMany: (keys: readonly string[]): Promise<void> =>
      around('deleteMany', keys[0] ?? '', draw('deleteMany', keys[0] ?? ''), () => store.deleteMany(keys)),
    close: () => store.close(),
  };
}

/** One entry of a list page: a key (with its info) or a common prefix (without). */
interface PageEntry {
  name: string;
  object?: ObjectInfo;
}

/** A page's keys and prefixes as one sequence, in listing order. */
function entriesOf(page: ListPage): PageEntry[] {
  const entries: PageEntry[] = page.objects.map((object) => ({ name: object.key, object }));
  for (const name of page.prefixes ?? []) entries.push({ name });
  return entries.sort((a, b) => compareKeys(a.name, b.name));
}

/** The page holding `entries`, with prefixes when `like` had them (a delimiter listing). */
function pageOf(entries: PageEntry[], like: ListPage, nextToken: string | undefined): ListPage {
  return {
    objects: entries.flatMap((e) => (e.object === undefined ? [] : [e.object])),
    ...(like.prefixes === undefined
      ? {}
      : { prefixes: entries.flatMap((e) => (e.object === undefined ? [e.name] : [])) }),
    ...(nextToken === undefined ? {} : { nextToken }),
  };
}
