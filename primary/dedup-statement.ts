import { InvalidArgumentError } from '../core/index.js';
import { tokenizeSql } from '../table/index.js';

/** What `ALTER TABLE … DEDUP …` asks for: the table, and its upsert keys (none: off). */
export interface DedupStatement {
  table: string;
  keys: string[];
}

/**
 * QuestDB's statements for deduplicated tables (RFC-0011), case-insensitive, names bare or
 * double-quoted, an optional `;`:
 *
 *   ALTER TABLE trades DEDUP ENABLE UPSERT KEYS(timestamp, symbol)
 *   ALTER TABLE trades DEDUP DISABLE
 *
 * Throws InvalidArgumentError (saying what was expected) for anything else.
 */
export function parseDedupStatement(sql: string): DedupStatement {
  const words = tokenizeSql(sql)
    .filter((t) => t.kind !== 'x')
    .map((t) => ({ text: sql.slice(t.start, t.end), kind: t.kind }));
  let at = 0;
  const fail = (): never => {
    throw new InvalidArgumentError(
      'expected ALTER TABLE <table> DEDUP ENABLE UPSERT KEYS(<column>, …) or ALTER TABLE <table> DEDUP DISABLE',
    );
  };
  const keyword = (word: string) => {
    if (words[at]?.kind !== 'i' || words[at]!.text.toUpperCase() !== word) fail();
    at++;
  };
  const punctuation = (text: string) => {
    if (words[at]?.text !== text) fail();
    at++;
  };
  const name = (): string => {
    const word = words[at++];
    if (word === undefined || word.kind !== 'i') return fail();
    const quoted = word.text.startsWith('"');
    if (!quoted && !/^[A-Za-z_][\w$]*$/.test(word.text)) return fail();
    return quoted ? word.text.slice(1, -1).replaceAll('""', '"') : word.text;
  };
  keyword('ALTER');
  keyword('TABLE');
  const table = name();
  keyword('DEDUP');
  const keys: string[] = [];
  if (words[at]?.text.toUpperCase() === 'DISABLE') at++;
  else {
    keyword('ENABLE');
    keyword('UPSERT');
    keyword('KEYS');
    punctuation('(');
    keys.push(name());
    while (words[at]?.text === ',') {
      at++;
      keys.push(name());
    }
    punctuation(')');
  }
  if (words[at]?.text === ';') at++;
  if (at !== words.length) fail();
  return { table, keys };
}
