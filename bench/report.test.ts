import { describe, expect, it } from 'vitest';
import { type BenchSuiteResult, renderMarkdown, replaceReadmeBlock } from './report.js';

const results: BenchSuiteResult[] = [
  {
    suite: 'failover',
    context: { node: 'v20' },
    rows: [
      {
        name: 'switchover write pause p50',
        value: 940,
        unit: 'ms',
        better: 'lower',
        baselineName: 'fs PUT p50',
        baseline: 2,
        reference: 'QuestDB: about 30 s',
      },
      { name: 'a | b', value: 1.5, unit: 'ratio', better: 'lower' },
    ],
  },
];

describe('the README benchmark table', () => {
  it('puts each figure beside its baseline, ratio and published figure, escaping pipes', () => {
    const lines = renderMarkdown(results).split('\n');
    const cells = (line: string) =>
      line
        .split(/(?<!\\)\|/)
        .slice(1, -1)
        .map((cell) => cell.trim());
    expect(cells(lines[2]!)).toEqual([
      'failover',
      'switchover write pause p50',
      '940 ms',
      'fs PUT p50: 2.00 ms',
      '470.00x',
      'QuestDB: about 30 s',
    ]);
    expect(cells(lines[3]!)).toEqual(['failover', 'a \\| b', '1.50 ratio', '—', '—', '—']);
    // Laid out as the formatter would: every line as wide as the header.
    expect(new Set(lines.map((line) => line.length)).size).toBe(1);
  });

  it('rewrites only the block between the markers, and refuses a README without them', () => {
    const readme = [
      'intro',
      '<!-- bench:begin (npm run bench -- --readme rewrites this block) -->',
      'old table',
      '<!-- bench:end -->',
      'outro',
    ].join('\n');
    const updated = replaceReadmeBlock(readme, '| new |', 'Generated today.');
    expect(updated).toBe(
      [
        'intro',
        '<!-- bench:begin (npm run bench -- --readme rewrites this block) -->',
        'Generated today.',
        '',
        '| new |',
        '<!-- bench:end -->',
        'outro',
      ].join('\n'),
    );
    expect(replaceReadmeBlock(updated, '| newer |', 'Again.')).toContain(
      'Again.\n\n| newer |\n<!-- bench:end -->',
    );
    expect(() => replaceReadmeBlock('no markers', '|', 'h')).toThrow(/no '<!-- bench:begin/);
  });
});
