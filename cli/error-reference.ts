import { ERROR_CODES, ERROR_KINDS, HTTP_ANSWER_CODES, renderMarkdownTable } from '../core/index.js';

/** A code of the client library (client/errors.ts), which imports nothing of ours on purpose. */
export interface ClientCodeDoc {
  code: string;
  meaning: string;
}

/** The command that rewrites docs/errors.md from the registry. */
export const ERRORS_REGENERATE = 'WALSHIP_UPDATE_DOCS=1 npx vitest run cli/error-reference.test.ts';

const cell = (text: string) => text.replaceAll('|', '\\|');

/**
 * The README's troubleshooting table: what an operator sees, and the code it comes with. Meanings
 * and actions are the registry's, so the table stays true as they change.
 */
export const TROUBLESHOOTING: readonly { symptom: string; code: string }[] = [
  { symptom: 'A write answers 421', code: 'not accepting writes' },
  { symptom: 'A write answers 503 after a while and the store is down', code: 'PENDING_FULL' },
  { symptom: 'A durable write answers 503', code: 'DURABLE_TIMEOUT' },
  { symptom: 'A write answers 400 naming a column type', code: 'TYPE_CONFLICT' },
  { symptom: 'A node refuses to start as primary', code: 'PRIMARY_REFUSED' },
  { symptom: 'Every store request fails (logs, `/status` `store.lastError`)', code: 'STORE_UNAVAILABLE' },
  { symptom: 'The old primary stops taking writes after a promotion', code: 'FENCED' },
  { symptom: 'A read with `X-Walship-Min-Txn` answers 504', code: 'MIN_TXN_TIMEOUT' },
  { symptom: 'A read with `max_staleness_ms` answers 503', code: 'STALE_REPLICA' },
  { symptom: 'A read with a token answers 409 after a failover', code: 'TXN_NOT_IN_CLUSTER' },
  { symptom: 'A replica refuses the store it is pointed at', code: 'CLUSTER_MISMATCH' },
  { symptom: 'A replica that was down for long cannot follow', code: 'SEGMENTS_COLLECTED' },
  { symptom: 'A query answers 503 when it runs too long', code: 'QUERY_TIMEOUT' },
  { symptom: '`ALTER TABLE … SET TTL 36 HOURS` is refused', code: 'TTL_INVALID' },
];

/** The README's troubleshooting table (between its `troubleshooting` markers), from the registry. */
export function renderTroubleshooting(): string {
  const specs: Record<string, { meaning: string; action: string }> = { ...ERROR_CODES, ...HTTP_ANSWER_CODES };
  return renderMarkdownTable(
    ['you see', 'code', 'what it means', 'what to do'],
    TROUBLESHOOTING.map(({ symptom, code }) => {
      const spec = specs[code];
      if (spec === undefined) throw new Error(`troubleshooting names ${code}, which is in no registry`);
      return [symptom, `\`${code}\``, cell(spec.meaning), cell(spec.action)];
    }),
  );
}

/**
 * docs/errors.md: every error code of walship (core/error-codes.ts), the codes of HTTP error
 * answers, and the client library's codes (passed in: the client is kept free of our imports).
 */
export function renderErrorReference(clientCodes: readonly ClientCodeDoc[]): string {
  const sorted = <T>(table: Record<string, T>) =>
    Object.entries(table).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const kinds = renderMarkdownTable(
    ['kind', 'what to do'],
    Object.entries(ERROR_KINDS).map(([kind, doc]) => [`\`${kind}\``, cell(doc)]),
  );
  const codes = renderMarkdownTable(
    ['code', 'kind', 'meaning', 'what to do'],
    sorted(ERROR_CODES).map(([code, spec]) => [
      `\`${code}\``,
      spec.kinds.map((kind) => `\`${kind}\``).join(', '),
      cell(spec.meaning),
      cell(spec.action),
    ]),
  );
  const answers = renderMarkdownTable(
    ['code', 'HTTP status', 'sent by', 'meaning', 'what to do'],
    sorted(HTTP_ANSWER_CODES).map(([code, spec]) => [
      `\`${code}\``,
      spec.status.map((s) => (s === 0 ? '—' : String(s))).join(', '),
      cell(spec.sentBy),
      cell(spec.meaning),
      cell(spec.action),
    ]),
  );
  const client = renderMarkdownTable(
    ['code', 'meaning'],
    clientCodes.map(({ code, meaning }) => [`\`${code}\``, cell(meaning)]),
  );
  return [
    `<!-- generated from core/error-codes.ts by cli/error-reference.ts; cli/error-reference.test.ts checks it. Regenerate: ${ERRORS_REGENERATE} -->`,
    '',
    '# Error codes',
    '',
    'Every error walship raises is a `WalshipError` with a stable `code` (what happened) and a `kind`',
    '(what to do about it). Match on the code, never on the message: messages are for people and may',
    'change. Logs carry both; the admin endpoints and the sequencer answer `{"code", "message"}` (the',
    'sequencer adds `"kind"`) with the code below.',
    '',
    '## Kinds',
    '',
    kinds,
    '',
    `## Codes (${Object.keys(ERROR_CODES).length})`,
    '',
    'A code listed with several kinds is thrown with the later ones in some places (the first is the usual one).',
    '',
    codes,
    '',
    '## Codes of HTTP error answers',
    '',
    'Answers of the HTTP listeners that are no `WalshipError`. ILP over HTTP answers as QuestDB does:',
    '`{"code", "message", "line", "errorId"}` with the lower-case codes below.',
    '',
    answers,
    '',
    '## Client library codes',
    '',
    'The client (`walship/client`, client/errors.ts) throws `WalshipClientError` with its own codes:',
    '',
    client,
    '',
  ].join('\n');
}
