import {
  type CommitTokenEntry,
  formatCommitToken,
  mergeCommitToken,
  parseCommitToken,
} from '../client/index.js';
import { tableKey } from '../table/index.js';
import type { QueryTables } from './sql-tables.js';

/**
 * Read-your-writes through the router (issue 17 item 5): the commit tokens (`X-Walship-Txn`) of
 * the writes the router forwarded, merged per table (the later entry wins: client/commit-token.ts).
 * A read that names no commit token of its own is sent to a replica with the router's tokens for
 * the tables it reads (all of them when the router cannot tell which), so it sees every write
 * the router forwarded before it, whichever client sent it. Bounded by the number of tables.
 */
export class RouterTokens {
  readonly #token = new Map<string, CommitTokenEntry>();

  /** Notes the `X-Walship-Txn` of a write's answer; a malformed one is ignored. */
  note(header: string | string[] | undefined): void {
    const text = Array.isArray(header) ? header.join(',') : header;
    if (text === undefined || text.trim() === '') return;
    const token = parseCommitToken(text);
    if (token !== undefined) mergeCommitToken(this.#token, token);
  }

  /** The token a read of `tables` waits for, or undefined when the router forwarded no write to them. */
  forRead(tables: QueryTables): string | undefined {
    if (tables.kind === 'all') return formatCommitToken(this.#token);
    const wanted = new Map<string, CommitTokenEntry>();
    for (const name of tables.names) {
      let key: string;
      try {
        key = tableKey(name);
      } catch {
        continue; // not a table name walship could hold: the node answers for it
      }
      const entry = this.#token.get(key);
      if (entry !== undefined) wanted.set(key, entry);
    }
    return formatCommitToken(wanted);
  }
}
