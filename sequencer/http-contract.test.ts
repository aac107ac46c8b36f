/**
 * The SequencerStore contract (contract.ts) on SQLite through `walship sequencer serve`'s HTTP API:
 * each backend is its own SQLite file, served on port 0, reached by an HttpSequencerClient. Closing
 * the client stops its server and closes its store; reopen does that and serves the same file again
 * on a new port with a new client.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll } from 'vitest';
import { HttpSequencerClient } from './http-client.js';
import { type RunningSequencerServer, startSequencerServer } from './http-service.js';
import type { SequencerStore } from './sequencer-store.js';
import { SqliteSequencerStore } from './sqlite-store.js';
import { describeSequencerContract } from './testing/contract.js';

const TOKEN = 'contract-admin-token';

/** A client that owns the service it talks to: close() stops the server and closes the file. */
class ServedClient extends HttpSequencerClient {
  constructor(
    readonly file: string,
    readonly server: RunningSequencerServer,
    readonly backend: SqliteSequencerStore,
  ) {
    super({ origin: `http://127.0.0.1:${server.port}`, token: TOKEN });
  }

  override async close(): Promise<void> {
    await super.close();
    await this.server.close();
    await this.backend.close();
  }
}

async function serve(file: string): Promise<ServedClient> {
  const backend = SqliteSequencerStore.open({ path: file });
  const server = await startSequencerServer(backend, {
    listen: { host: '127.0.0.1', port: 0 },
    auth: { admin: TOKEN },
    log: pino({ level: 'silent' }),
  });
  return new ServedClient(file, server, backend);
}

let directory = '';
beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'walship-sequencer-http-contract-'));
});
afterAll(() => rm(directory, { recursive: true, force: true }));

describeSequencerContract('SQLite over HTTP', {
  open: async () => serve(path.join(directory, `${randomUUID()}.sqlite`)),
  reopen: async (store: SequencerStore) => {
    if (!(store instanceof ServedClient)) throw new Error('reopen expects the client it opened');
    await store.close();
    return serve(store.file);
  },
});
