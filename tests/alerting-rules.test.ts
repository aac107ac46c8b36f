/**
 * The docs name only metrics that exist, and list every one that does: each `walship_*` name in
 * docs/alerting.md (its rules and panels) and in the Monitoring section of docs/operations.md is a
 * family of a node's or the router's registry (or a histogram's `_bucket`, `_sum`, `_count`), and
 * every family of both registries is listed in that section. A renamed metric breaks this, not an
 * operator's alert.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { systemClock } from '../core/index.js';
import { NodeMetrics } from '../node/index.js';
import { RouterMetrics } from '../router/index.js';

const DOCS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'docs');

/** Every metric family a node and a router declare, with its type. */
async function families(): Promise<Map<string, string>> {
  const router = new RouterMetrics({
    clock: systemClock,
    snapshot: () => ({
      nodes: [],
      primary: { url: null, nodeId: null, epoch: null, writers: [], why: 'none' },
      epochRecord: null,
      refreshedAtMs: null,
      storeError: null,
      nodesFrom: 'router.nodes',
    }),
  });
  const declared = new Map<string, string>();
  for (const registry of [new NodeMetrics().registry, router.registry])
    for (const metric of await registry.getMetricsAsJSON()) declared.set(metric.name, String(metric.type));
  return declared;
}

/** The `walship_*` names in `text` (a trailing `_`, as in `walship_router_*`, is a wildcard, not a name). */
function namesIn(text: string): Set<string> {
  return new Set(
    [...text.matchAll(/\bwalship_[a-z0-9_]+/g)].map((m) => m[0]).filter((n) => !n.endsWith('_')),
  );
}

/** The family a series name belongs to, or undefined. */
function familyOf(name: string, declared: Map<string, string>): string | undefined {
  if (declared.has(name)) return name;
  const base = name.replace(/_(bucket|sum|count)$/, '');
  return declared.get(base) === 'histogram' ? base : undefined;
}

async function monitoringSection(): Promise<string> {
  const text = await readFile(path.join(DOCS, 'operations.md'), 'utf8');
  const start = text.indexOf('\n## Monitoring\n');
  expect(start).toBeGreaterThan(0);
  const end = text.indexOf('\n## ', start + 1);
  return text.slice(start, end < 0 ? undefined : end);
}

describe('the metrics the docs name', () => {
  it('every metric of docs/alerting.md exists, and its rules use most of the request families', async () => {
    const declared = await families();
    const text = await readFile(path.join(DOCS, 'alerting.md'), 'utf8');
    const names = namesIn(text);
    expect(names.size).toBeGreaterThan(10);
    expect([...names].filter((name) => familyOf(name, declared) === undefined)).toEqual([]);
    for (const name of [
      'walship_accepting_writes',
      'walship_router_primary_known',
      'walship_fencing_events_total',
      'walship_table_suspended',
      'walship_replica_staleness_seconds',
      'walship_table_oldest_pending_seconds',
      'walship_ilp_requests_total',
      'walship_reads_refused_total',
    ])
      expect(names, name).toContain(name);
  });

  it('the Monitoring section of docs/operations.md lists exactly the families there are', async () => {
    const declared = await families();
    const names = namesIn(await monitoringSection());
    expect([...names].filter((name) => familyOf(name, declared) === undefined)).toEqual([]);
    expect([...declared.keys()].filter((family) => !names.has(family))).toEqual([]);
  });
});
