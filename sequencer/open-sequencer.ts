/**
 * `replication.sequencer` → a SequencerStore: `http::`/`https::` (the `walship sequencer serve`
 * service, connection-string.ts) or `fdb::[cluster_file=PATH;]` (FoundationDB, loaded only here,
 * FDB_CLIENT_MISSING where its client library is absent). Errors never quote the string (it may
 * hold a token).
 */
import { InvalidConfigError } from '../core/index.js';
import { openFdbSequencer } from './fdb-store.js';
import { openHttpSequencer } from './http-client.js';
import type { SequencerStore } from './sequencer-store.js';

export async function openSequencer(connection: string): Promise<SequencerStore> {
  const scheme = connection.slice(0, Math.max(0, connection.indexOf('::'))).trim();
  if (scheme !== 'fdb') return openHttpSequencer(connection);
  const body = connection.slice(connection.indexOf('::') + 2);
  const pairs = body.split(';').filter((pair) => pair.trim() !== '');
  let clusterFile: string | undefined;
  for (const pair of pairs) {
    const [key, value] = [pair.slice(0, pair.indexOf('=')).trim(), pair.slice(pair.indexOf('=') + 1)];
    if (key === 'cluster_file' && value !== '' && clusterFile === undefined) clusterFile = value;
    else
      throw new InvalidConfigError(
        `sequencer connection string: fdb:: takes one key, cluster_file (got ${JSON.stringify(key.slice(0, 32))})`,
      );
  }
  return openFdbSequencer(clusterFile === undefined ? {} : { clusterFile });
}
