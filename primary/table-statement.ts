import { InvalidArgumentError } from '../core/index.js';
import { tokenizeSql } from '../table/index.js';
import { type TableTtl, TTL_UNITS, type TtlUnit } from '../wal/index.js';

/**
 * What one of QuestDB's table statements asks for (`POST /admin/sql`, `walship admin sql`): each
 * is committed on the primary as a txn of the table, so every node applies it at the same point of
 * the table's history.
 */
export type TableStatement =
  /** Upsert keys (RFC-0011); none: deduplication off. */
  | { kind: 'dedup'; table: string; keys: string[] }
  /** A time to live (RFC-0007 "Retention of rows"); a count of 0: none. */
  | { kind: 'ttl'; table: string; ttl: TableTtl }
  | { kind: 'drop'; table: string; ifExists: boolean };

/** The statements, as the error for anything else names them. */
export const TABLE_STATEMENTS = [
  'ALTER TABLE <table> DEDUP ENABLE UPSERT KEYS(<column>, …)',
  'ALTER TABLE <table> DEDUP DISABLE',
  'ALTER TABLE <table> SET TTL <n> HOURS|DAYS|WEEKS|MONTHS|YEARS',
  'DROP TABLE [IF EXISTS] <table>',
];

/** QuestDB's TTL unit words: singular, plural and the one-letter shorthand (`2w`, `1M`). */
const UNIT_WORDS = new Map<string, TtlUnit>([
  ...TTL_UNITS.flatMap((unit): [string, TtlUnit][] => [
    [unit, unit],
    [`${unit}S`, unit],
  ]),
  ['H', 'HOUR'],
  ['D', 'DAY'],
  ['W', 'WEEK'],
  ['M', 'MONTH'],
  ['Y', 'YEAR'],
]);

/**
 * Reads one of TABLE_STATEMENTS, case-insensitive, names bare or double-quoted, an optional `;`:
 *
 *   ALTER TABLE trades DEDUP ENABLE UPSERT KEYS(timestamp, symbol)
 *   ALTER TABLE trades SET TTL 2 WEEKS          (or 2w; SET TTL 0 removes it)
 *   DROP TABLE IF EXISTS trades
 *
 * Throws InvalidArgumentError (saying what was expected) for anything else.
 */
export function parseTableStatement(sql: string): TableStatement {
  const words = tokenizeSql(sql)
    .filter((t) => t.kind !== 'x')
    .map((t) => ({ text: sql.slice(t.start, t.end), kind: t.kind }));
  let at = 0;
  const fail = (): never => {
    throw new InvalidArgumentError(`expected ${TABLE_STATEMENTS.join(', or ')}`);
  };
  const is = (word: string) => words[at]?.kind === 'i' && words[at]!.text.toUpperCase() === word;
  const keyword = (word: string) => {
    if (!is(word)) fail();
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
  const end = <T extends TableStatement>(statement: T): T => {
    if (words[at]?.text === ';') at++;
    if (at !== words.length) fail();
    return statement;
  };
  if (is('DROP')) {
    at++;
    keyword('TABLE');
    const ifExists = is('IF');
    if (ifExists) {
      at++;
      keyword('EXISTS');
    }
    return end({ kind: 'drop', table: name(), ifExists });
  }
  keyword('ALTER');
  keyword('TABLE');
  const table = name();
  if (is('SET')) {
    at++;
    keyword('TTL');
    return end({
      kind: 'ttl',
      table,
      ttl: ttlOf(words[at++]?.text, () => (words[at]?.kind === 'i' ? words[at++]!.text : undefined), fail),
    });
  }
  keyword('DEDUP');
  const keys: string[] = [];
  if (is('DISABLE')) at++;
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
  return end({ kind: 'dedup', table, keys });
}

/**
 * A TTL from its count token (`2`, or `2w` with the unit attached) and, when the unit is not
 * attached, the next word. A count of 0 needs no unit.
 */
function ttlOf(
  countText: string | undefined,
  nextWord: () => string | undefined,
  fail: () => never,
): TableTtl {
  const match = /^(\d{1,10})([A-Za-z]*)$/.exec(countText ?? '');
  if (match === null) return fail();
  const count = Number(match[1]);
  if (count > 0xffff_ffff) return fail();
  const word = match[2] !== '' ? match[2]! : nextWord();
  if (word === undefined) return count === 0 ? { count, unit: 'HOUR' } : fail();
  // `M` is months and `m` would be minutes in QuestDB's shorthand, which a TTL does not take.
  const unit = word.length === 1 && word === 'm' ? undefined : UNIT_WORDS.get(word.toUpperCase());
  return unit === undefined ? fail() : { count, unit };
}
