/**
 * Reading a Prometheus exposition (text format 0.0.4) in tests: strictly enough to catch a
 * malformed line, and the few look-ups the metrics tests make.
 */
import { expect } from 'vitest';

/** One sample of the exposition: `name{labels} value`. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  help: Map<string, string>;
  type: Map<string, string>;
  /** Lines that are neither a comment nor a sample (must stay empty). */
  invalid: string[];
}

const SAMPLE_LINE =
  /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?(?:\d+(?:\.\d+)?(?:e[+-]?\d+)?|NaN|\+Inf|-Inf))$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** The text format 0.0.4, strictly enough to catch a malformed line. */
export function parseExposition(text: string): Exposition {
  const out: Exposition = { samples: [], help: new Map(), type: new Map(), invalid: [] };
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const comment = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (comment !== null) {
      (comment[1] === 'HELP' ? out.help : out.type).set(comment[2]!, comment[3]!);
      continue;
    }
    const sample = SAMPLE_LINE.exec(line);
    if (sample === null) {
      out.invalid.push(line);
      continue;
    }
    const labels: Record<string, string> = {};
    const body = sample[2] ?? '';
    let consumed = 0;
    for (const match of body.matchAll(LABEL)) {
      labels[match[1]!] = match[2]!;
      consumed += match[0].length;
    }
    // Every character of the braces is a label or a separating comma.
    if (consumed + Math.max(0, Object.keys(labels).length - 1) !== body.length) out.invalid.push(line);
    out.samples.push({ name: sample[1]!, labels, value: Number(sample[3]) });
  }
  return out;
}

export function values(exposition: Exposition, name: string, where: Record<string, string> = {}): Sample[] {
  return exposition.samples.filter(
    (s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v),
  );
}

/** The single value of `name` with labels `where` (fails when there is none or several). */
export function value(exposition: Exposition, name: string, where: Record<string, string> = {}): number {
  const found = values(exposition, name, where);
  expect(found, `${name} ${JSON.stringify(where)}`).toHaveLength(1);
  return found[0]!.value;
}

/** The sum of the samples of `name` with labels `where` (0 when there is none). */
export function sum(exposition: Exposition, name: string, where: Record<string, string> = {}): number {
  return values(exposition, name, where).reduce((total, s) => total + s.value, 0);
}

/** `GET <baseUrl>/metrics`, parsed; fails unless it answers 200 with a valid exposition. */
export async function scrapeMetrics(
  baseUrl: string,
  headers: Record<string, string> = {},
): Promise<Exposition> {
  const response = await fetch(`${baseUrl}/metrics`, { headers });
  const text = await response.text();
  expect(response.status, text).toBe(200);
  const exposition = parseExposition(text);
  expect(exposition.invalid).toEqual([]);
  return exposition;
}

/** The type of the family a sample belongs to (`_bucket`, `_sum`, `_count` of a histogram included). */
export function typeOf(exposition: Exposition, name: string): string | undefined {
  return exposition.type.get(name) ?? exposition.type.get(name.replace(/_(bucket|sum|count)$/, ''));
}
