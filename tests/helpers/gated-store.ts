/**
 * Store wrappers for tests. gatedStore: the first PUT of a key matching `match` waits for `release()`;
 * `reached` resolves when it got there. Closing it leaves `store` to its opener.
 */
import type { ObjectStore } from '../../objectstore/index.js';

/** `store` with `before(key)` awaited ahead of every PUT; closing it leaves `store` to its opener. */
export function withPutHook(store: ObjectStore, before: (key: string) => Promise<void> | void): ObjectStore {
  return {
    get description() {
      return store.description;
    },
    async put(key, body, options) {
      await before(key);
      return store.put(key, body, options);
    },
    get: (key, options) => store.get(key, options),
    head: (key) => store.head(key),
    list: (prefix, options) => store.list(prefix, options),
    delete: (key) => store.delete(key),
    deleteMany: (keys) => store.deleteMany(keys),
    close: async () => {},
  };
}

export function gatedStore(store: ObjectStore, match: (key: string) => boolean) {
  let release: () => void = () => {};
  let arrive: () => void = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const reached = new Promise<void>((resolve) => {
    arrive = resolve;
  });
  let held = false;
  const wrapped = withPutHook(store, async (key) => {
    if (held || !match(key)) return;
    held = true;
    arrive();
    await released;
  });
  return { store: wrapped, reached, release: () => release() };
}
