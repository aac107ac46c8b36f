import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS } from './config.js';
import { CONFIG_DOC, renderConfigMarkdown, withConfigReference } from './config-reference.js';

const DOC = new URL(`../${CONFIG_DOC}`, import.meta.url);

describe('the configuration reference in docs/configuration.md', () => {
  it('has a row for every key, with its environment variable and default', () => {
    const table = renderConfigMarkdown();
    const rows = table.split('\n').map((line) => line.split(/(?<!\\)\|/).map((cell) => cell.trim()));
    for (const key of Object.keys(CONFIG_KEYS))
      expect(rows.some((cells) => cells[1] === `\`${key}\``)).toBe(true);
    expect(rows.find((cells) => cells[1] === '`replication.replica.poll.interval`')?.slice(2, 5)).toEqual([
      '`WALSHIP_REPLICATION_REPLICA_POLL_INTERVAL`',
      '`1s`',
      'duration (ms, s, m, h; a bare number is ms)',
    ]);
  });

  // WALSHIP_UPDATE_DOCS=1 npx vitest run cli/config-reference.test.ts rewrites the block.
  it('is what cli/config.ts generates (docs/configuration.md never drifts from the keys)', () => {
    const doc = readFileSync(DOC, 'utf8');
    const expected = withConfigReference(doc);
    if (process.env.WALSHIP_UPDATE_DOCS === '1' && expected !== doc) writeFileSync(DOC, expected);
    else expect(doc, 'run WALSHIP_UPDATE_DOCS=1 npx vitest run cli/config-reference.test.ts').toBe(expected);
  });
});
