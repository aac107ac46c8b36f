import { describe, expect, test } from 'vitest';
import { isWalshipError } from '../core/index.js';
import { MemoryStore } from '../objectstore/index.js';
import { tableKey } from '../table/index.js';
import { TABLES_REGISTRY_KEY } from './keys.js';
import { closeRegistration, readRegistry, registerTable } from './tables-registry.js';

const encoder = new TextEncoder();

describe('tables.json', () => {
  test('closeRegistration raises the epoch and returns the registered keys', async () => {
    const store = new MemoryStore();
    expect(await registerTable(store, tableKey('trades'), 1n)).toBe('registered');
    expect(await registerTable(store, tableKey('a/b'), 1n)).toBe('registered');
    expect(await closeRegistration(store, 2n)).toEqual(['trades', 'a%2Fb']);
    expect((await readRegistry(store))?.registry).toEqual({ epoch: 2n, tables: ['trades', 'a%2Fb'] });
  });

  test.each(['a/b', '..', 'Trades'])(
    'closeRegistration refuses a registry listing %j (no table key) before writing: INVALID_TABLE_KEY',
    async (bad) => {
      const store = new MemoryStore();
      await store.put(
        TABLES_REGISTRY_KEY,
        encoder.encode(`${JSON.stringify({ epoch: '1', tables: ['trades', bad] })}\n`),
      );
      const error = await closeRegistration(store, 2n).catch((e: unknown) => e);
      expect(isWalshipError(error, 'INVALID_TABLE_KEY'), String(error)).toBe(true);
      expect((await readRegistry(store))?.registry.epoch).toBe(1n);
    },
  );
});
