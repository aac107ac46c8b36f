/**
 * The shape every benchmark returns, and how `npm run bench` prints it: one JSON document on
 * stdout (machine-readable) followed by a table per suite (human-readable). Every suite measures
 * its baseline in the same run, so each row that has one also carries `ratio` = value / baseline
 * (oriented so that the meaning of "bigger" is stated in `better`).
 */
import { renderMarkdownTable } from '../core/index.js';

export interface BenchRow {
  /** What was measured, e.g. "fs PUT 4 KiB p50". */
  name: string;
  value: number;
  /** Unit of `value` and `baseline`, e.g. "ms", "MB/s", "ratio". */
  unit: string;
  /** Whether a larger or a smaller value is better. */
  better: 'higher' | 'lower';
  /** The same-run baseline this figure is judged against, if any. */
  baselineName?: string;
  baseline?: number;
  /** Free text: sample sizes, settings. */
  note?: string;
  /**
   * The published QuestDB figure this row answers, from ../shared/reference/questdb-replication.md
   * (text: their setup differs, so it is quoted, not divided by).
   */
  reference?: string;
}

export interface BenchSuiteResult {
  suite: string;
  /** Environment facts that matter for reading the figures (node version, store, sizes). */
  context: Record<string, string | number>;
  rows: BenchRow[];
}

/** Percentile (0..100) of a list of samples, by nearest rank. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 1) return value.toFixed(2);
  return value.toPrecision(3);
}

function ratioOf(row: BenchRow): string {
  if (row.baseline === undefined || row.baseline === 0) return '';
  return `${(row.value / row.baseline).toFixed(2)}x`;
}

/** Render the suites as plain-text tables. */
export function renderTables(results: readonly BenchSuiteResult[]): string {
  const out: string[] = [];
  for (const result of results) {
    const context = Object.entries(result.context)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    out.push(`\n## ${result.suite}  (${context})`);
    const header = ['measure', 'value', 'unit', 'baseline', 'baseline value', 'ratio', 'QuestDB', 'note'];
    const lines = result.rows.map((row) => [
      row.name,
      formatNumber(row.value),
      row.unit,
      row.baselineName ?? '',
      row.baseline === undefined ? '' : formatNumber(row.baseline),
      ratioOf(row),
      row.reference ?? '',
      row.note ?? '',
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
    const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ');
    out.push(fmt(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...lines.map(fmt));
  }
  return out.join('\n');
}

/**
 * The suites as one Markdown table a row per figure: value, same-run baseline, ratio, and the
 * published QuestDB figure where there is one. `npm run bench -- --docs` puts it in docs/benchmarks.md.
 */
export function renderMarkdown(results: readonly BenchSuiteResult[]): string {
  const cell = (text: string) => text.replaceAll('|', '\\|');
  const rows: string[][] = [];
  for (const result of results)
    for (const row of result.rows) {
      const value = `${formatNumber(row.value)} ${row.unit}`;
      const baseline =
        row.baseline === undefined
          ? '—'
          : `${row.baselineName ?? ''}: ${formatNumber(row.baseline)} ${row.unit}`;
      rows.push(
        [result.suite, row.name, value, baseline, ratioOf(row) || '—', row.reference ?? '—'].map(cell),
      );
    }
  return renderMarkdownTable(
    ['suite', 'measure', 'walship', 'same-run baseline', 'ratio', 'published QuestDB figure'],
    rows,
  );
}

/** The page that holds the benchmark table, from the repository root. */
export const BENCH_DOC = 'docs/benchmarks.md';
const BENCH_BEGIN = '<!-- bench:begin (npm run bench -- --docs rewrites this block) -->';
const BENCH_END = '<!-- bench:end -->';

/** `doc` (docs/benchmarks.md's text) with the block between the bench markers replaced by `table` (and when it ran). */
export function replaceBenchBlock(doc: string, table: string, heading: string): string {
  const begin = doc.indexOf(BENCH_BEGIN);
  const end = doc.indexOf(BENCH_END);
  if (begin < 0 || end < begin)
    throw new Error(`${BENCH_DOC} has no '${BENCH_BEGIN}' … '${BENCH_END}' block to rewrite`);
  return `${doc.slice(0, begin + BENCH_BEGIN.length)}\n${heading}\n\n${table}\n${doc.slice(end)}`;
}

/**
 * docs/benchmarks.md's text whose bench block holds `results`' rows in place of the same suites' rows,
 * the other suites' rows kept as they were: `npm run bench -- --docs failover` refreshes one suite
 * without a whole run. `heading` says what this run measured; the last whole run's heading line
 * (`Generated by …`) is kept for the other rows.
 */
export function mergeBenchBlock(doc: string, results: readonly BenchSuiteResult[], heading: string): string {
  const begin = doc.indexOf(BENCH_BEGIN);
  const end = doc.indexOf(BENCH_END);
  if (begin < 0 || end < begin)
    throw new Error(`${BENCH_DOC} has no '${BENCH_BEGIN}' … '${BENCH_END}' block to rewrite`);
  const block = doc.slice(begin + BENCH_BEGIN.length, end).split('\n');
  const oldRows = block
    .filter((line) => line.startsWith('|'))
    .slice(2)
    .map(cellsOf);
  const fresh = renderMarkdown(results).split('\n').slice(2).map(cellsOf);
  const measured = new Set(results.map((r) => r.suite));
  const rows: string[][] = [];
  for (const row of oldRows) {
    const suite = row[0]!;
    if (!measured.has(suite)) rows.push(row);
    else if (!rows.some((r) => r[0] === suite)) rows.push(...fresh.filter((r) => r[0] === suite));
  }
  for (const suite of measured)
    if (!rows.some((r) => r[0] === suite)) rows.push(...fresh.filter((r) => r[0] === suite));
  const table = renderMarkdownTable(
    ['suite', 'measure', 'walship', 'same-run baseline', 'ratio', 'published QuestDB figure'],
    rows,
  );
  const headingLine = block.find((line) => line.includes('Generated by'));
  const wholeRun = headingLine?.slice(headingLine.indexOf('Generated by'));
  const others = wholeRun === undefined ? '' : ` Other rows: ${wholeRun}`;
  return replaceBenchBlock(doc, table, `${heading}${others}`);
}

/** The cells of one Markdown table line, `\|` kept escaped. */
function cellsOf(line: string): string[] {
  return line
    .slice(1, line.lastIndexOf('|'))
    .split(/(?<!\\)\|/)
    .map((cell) => cell.trim());
}

/**
 * `WALSHIP_BENCH_SCALE`: a fraction in (0, 1] scaling rows and durations down for a quick run; 1
 * when unset; NaN when it is not one (a suite that uses it refuses to run then).
 */
export function scaleFromEnv(): number {
  const text = process.env.WALSHIP_BENCH_SCALE;
  if (text === undefined || text === '') return 1;
  const value = Number(text);
  return value > 0 && value <= 1 ? value : Number.NaN;
}
