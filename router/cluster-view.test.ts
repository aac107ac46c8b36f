import { describe, expect, it } from 'vitest';
import {
  choosePrimary,
  type EpochFacts,
  type NodeView,
  orderReplicas,
  parseNodeStatus,
} from './cluster-view.js';
import { tablesOfQuery } from './sql-tables.js';

function node(url: string, status: Record<string, unknown>, seen: { atMs: number } = { atMs: 0 }): NodeView {
  return { ...parseNodeStatus(url, status), seenAtMs: seen.atMs, lastSeenAt: null, error: null };
}

const table = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  key: name,
  appliedTxn: '5',
  ...extra,
});
const record = (epoch: bigint, nodeId: string): EpochFacts => ({
  epoch,
  nodeId,
  url: `http://${nodeId}`,
  reason: 'promote',
  at: '2026-01-01T00:00:00Z',
});

describe('choosePrimary', () => {
  const a = node('http://a', { role: 'primary', nodeId: 'a', epoch: '1', acceptingWrites: true });
  const b = node('http://b', { role: 'primary', nodeId: 'b', epoch: '2', acceptingWrites: true });
  const bDemoted = node('http://b', { role: 'primary', nodeId: 'b', epoch: '2', acceptingWrites: false });

  it('is the node the newest epoch record names, once its /status accepts writes', () => {
    const choice = choosePrimary([a, b], record(2n, 'b'));
    expect(choice.url).toBe('http://b');
    expect(choice.why).toContain('the newest epoch record (epoch 2');
  });

  it('never gives writes to a node claiming an older epoch (a deposed primary that has not noticed)', () => {
    const choice = choosePrimary([a, bDemoted], record(2n, 'b'));
    expect(choice.url).toBeNull();
    expect(choice.why).toContain('not accepting writes');
    expect(choice.why).toContain('a (http://a) claim older epochs');
  });

  it('takes a node at a newer epoch than the record read (a promotion right after the read)', () => {
    expect(choosePrimary([a, b], record(1n, 'a')).url).toBe('http://a');
    const c = node('http://c', { role: 'primary', nodeId: 'c', epoch: '3', acceptingWrites: true });
    const choice = choosePrimary([a, c], record(2n, 'b'));
    expect(choice.url).toBe('http://c');
    expect(choice.why).toContain('newer than the newest epoch record read (2)');
  });

  it('without a record, the accepting primary with the highest epoch; every writer of a sequenced cluster', () => {
    expect(choosePrimary([a, b], null).url).toBe('http://b');
    expect(choosePrimary([bDemoted], null).url).toBeNull();
    const w1 = node('http://w1', {
      role: 'primary',
      nodeId: 'w1',
      acceptingWrites: true,
      sequenced: { writer: {} },
    });
    const w2 = node('http://w2', {
      role: 'primary',
      nodeId: 'w2',
      acceptingWrites: true,
      sequenced: { writer: {} },
    });
    expect(choosePrimary([w1, w2], null).writers).toEqual(['http://w1', 'http://w2']);
  });
});

describe('orderReplicas', () => {
  const fresh1 = node('http://r1', {
    role: 'replica',
    nodeId: 'r1',
    stalenessMs: 10,
    tables: [table('t'), table('u')],
  });
  const fresh2 = node('http://r2', {
    role: 'replica',
    nodeId: 'r2',
    stalenessMs: 20,
    tables: [table('t'), table('u')],
  });
  const stale = node('http://r3', {
    role: 'replica',
    nodeId: 'r3',
    stalenessMs: 60_000,
    tables: [table('t'), table('u')],
  });
  const onlyT = node('http://r4', {
    role: 'replica',
    nodeId: 'r4',
    stalenessMs: 0,
    tables: [table('t')],
    servedTables: { include: ['t'], exclude: [] },
  });

  it('orders least stale first and rotates among equally fresh ones', () => {
    const order = (turn: number) =>
      orderReplicas([stale, fresh1, fresh2], tablesOfQuery('select * from t'), 0, turn).replicas.map(
        (c) => c.nodeId,
      );
    expect(order(0)).toEqual(['r1', 'r2', 'r3']);
    expect(order(1)).toEqual(['r2', 'r1', 'r3']);
    // Idle replicas between sweeps (12 s and 22 s stale, both caught up) still take turns.
    const idle = [
      node('http://r1', { role: 'replica', nodeId: 'r1', stalenessMs: 12_000, tables: [table('t')] }),
      node('http://r2', { role: 'replica', nodeId: 'r2', stalenessMs: 22_000, tables: [table('t')] }),
    ];
    const first = (turn: number) =>
      orderReplicas(idle, tablesOfQuery('select * from t'), 0, turn).replicas[0]!.nodeId;
    expect([first(0), first(1)]).toEqual(['r1', 'r2']);
  });

  it('takes only replicas that serve every table of the query', () => {
    const onT = orderReplicas([fresh1, onlyT], tablesOfQuery('select * from T'), 0, 0);
    expect(onT.replicas.map((c) => c.nodeId).sort()).toEqual(['r1', 'r4']);
    const onU = orderReplicas([fresh1, onlyT], tablesOfQuery('select * from t join u on (id)'), 0, 0);
    expect(onU.replicas.map((c) => c.nodeId)).toEqual(['r1']);
    expect(onU.excluded).toEqual([{ node: 'r4 (http://r4)', why: 'does not serve u' }]);
    const all = orderReplicas([fresh1, onlyT], tablesOfQuery('show tables'), 0, 0);
    expect(all.replicas.map((c) => c.nodeId)).toEqual(['r1']);
    expect(all.excluded[0]!.why).toContain('serves chosen tables only');
  });

  it('leaves out suspended tables, stopped followers and primaries', () => {
    const suspended = node('http://r5', {
      role: 'replica',
      nodeId: 'r5',
      tables: [table('t', { suspended: { code: 'CORRUPT_SEGMENT' } })],
    });
    const stopped = node('http://r6', {
      role: 'replica',
      nodeId: 'r6',
      following: { stopped: 'x' },
      tables: [table('t')],
    });
    const primary = node('http://p', {
      role: 'primary',
      nodeId: 'p',
      acceptingWrites: true,
      tables: [table('t')],
    });
    const result = orderReplicas([suspended, stopped, primary], tablesOfQuery('select * from t'), 0, 0);
    expect(result.replicas).toEqual([]);
    expect(result.excluded.map((e) => e.why)).toEqual(['does not serve t', 'its follower stopped']);
  });
});
