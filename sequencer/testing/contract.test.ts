/**
 * The SequencerStore contract (contract.ts) on the embedded SQLite backend: each test gets its own
 * file in a temporary directory; reopen closes the store and opens the same file again.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { SqliteSequencerStore } from '../sqlite-store.js';
import { describeSequencerContract } from './contract.js';

let directory = '';
beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'walship-sequencer-contract-'));
});
afterAll(() => rm(directory, { recursive: true, force: true }));

describeSequencerContract('SQLite', {
  open: async () => SqliteSequencerStore.open({ path: path.join(directory, `${randomUUID()}.sqlite`) }),
  reopen: async (store) => {
    if (!(store instanceof SqliteSequencerStore))
      throw new Error('reopen expects the SQLite store it opened');
    await store.close();
    return SqliteSequencerStore.open({ path: store.path });
  },
});
