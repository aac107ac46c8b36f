import { describe, expect, it } from 'vitest';
import { systemClock } from '../core/index.js';
import {
  CLUSTER_KEY,
  type EpochRecord,
  encodeEpoch,
  epochKey,
  newestEpoch,
  parseEpochRecord,
} from '../layout/index.js';
import { MemoryStore, withFaults } from '../objectstore/index.js';
import { claimPrimary, type NodeMeta } from './cluster-bootstrap.js';

function memoryMeta(initial: Record<string, string> = {}): NodeMeta & { values: Record<string, string> } {
  const values = { ...initial };
  return {
    values,
    get: (k) => values[k],
    set: (k, v) => {
      values[k] = v;
    },
  };
}

const claim = (store: MemoryStore | ReturnType<typeof withFaults>, meta: NodeMeta, nodeId: string) =>
  claimPrimary({ store, meta, nodeId, url: `http://${nodeId}:9000`, clock: systemClock });

describe('claiming the primary role', () => {
  it('a fresh root gets cluster.json and epoch 1, and the node remembers both', async () => {
    const store = new MemoryStore();
    const meta = memoryMeta();
    const result = await claim(store, meta, 'a');
    expect(result).toMatchObject({ epoch: 1n, created: true });
    expect(meta.values).toEqual({
      'cluster.id': result.clusterId,
      epoch: '1',
      'claim.id': expect.any(String),
    });
    expect((await newestEpoch(store))?.claimId).toBe(meta.values['claim.id']);
    expect(await newestEpoch(store)).toMatchObject({
      epoch: 1n,
      nodeId: 'a',
      reason: 'bootstrap',
      url: 'http://a:9000',
    });
    expect(await store.head(CLUSTER_KEY)).not.toBeNull();
  });

  it('the same node restarting with its data dir keeps the role', async () => {
    const store = new MemoryStore();
    const meta = memoryMeta();
    const first = await claim(store, meta, 'a');
    const again = await claim(store, meta, 'a');
    expect(again).toEqual({ clusterId: first.clusterId, epoch: 1n, created: false });
  });

  it('of two racing first primaries exactly one wins; the other is refused', async () => {
    const store = new MemoryStore();
    const results = await Promise.allSettled([
      claim(store, memoryMeta(), 'a'),
      claim(store, memoryMeta(), 'b'),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const loser = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(loser.reason).toMatchObject({ code: 'PRIMARY_REFUSED' });
    expect(String(loser.reason.message)).toMatch(/became the first primary|belongs to|held by node/);
  });

  it('two data dirs that share a node id racing for a fresh root: exactly one wins', async () => {
    const store = new MemoryStore();
    const results = await Promise.allSettled([
      claim(store, memoryMeta(), 'same'),
      claim(store, memoryMeta(), 'same'),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const loser = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(String(loser.reason.message)).toMatch(/same node.id/);
  });

  it('refuses a node with an empty data dir on a root that holds a cluster with an epoch', async () => {
    const store = new MemoryStore();
    await claim(store, memoryMeta(), 'a');
    await expect(claim(store, memoryMeta(), 'b')).rejects.toThrow(
      /newest epoch of cluster .* is 1, held by node a/,
    );
    await expect(claim(store, memoryMeta(), 'a')).rejects.toThrow(/does not hold that primary's state/);
  });

  it("refuses a data dir of another cluster, and a root that lost its cluster (QuestDB's ER001)", async () => {
    const store = new MemoryStore();
    await claim(store, memoryMeta(), 'a');
    await expect(claim(store, memoryMeta({ 'cluster.id': 'other', epoch: '1' }), 'a')).rejects.toThrow(
      /holds cluster .* but this node's data dir belongs to cluster other/,
    );
    await expect(
      claim(new MemoryStore(), memoryMeta({ 'cluster.id': 'c1', epoch: '1' }), 'a'),
    ).rejects.toThrow(/holds no cluster/);
  });

  it('steps down when a newer epoch belongs to another node', async () => {
    const store = new MemoryStore();
    const meta = memoryMeta();
    await claim(store, meta, 'a');
    const promoted = {
      epoch: 2n,
      nodeId: 'b',
      url: 'http://b:9000',
      reason: 'promote',
      at: new Date().toISOString(),
    };
    await store.put(epochKey(2n), encodeEpoch(promoted), { condition: { type: 'absent' } });
    await expect(claim(store, meta, 'a')).rejects.toThrow(/newest epoch .* is 2, held by node b \(promote/);
  });

  it('store outages surface as unavailable errors, not as a refusal', async () => {
    const store = withFaults(new MemoryStore(), [{ fault: { type: 'error' } }]);
    await expect(claim(store, memoryMeta(), 'a')).rejects.toMatchObject({ kind: 'unavailable' });
  });
});

describe('the epoch record codec (issue 13 item 10)', () => {
  const good = {
    epoch: 3n,
    nodeId: 'a',
    url: 'http://a:9000',
    reason: 'promote',
    at: '2026-01-01T00:00:00Z',
  };
  const source = { key: epochKey(3n), epoch: 3n, where: 'memory' };
  const bytes = (text: string) => new TextEncoder().encode(text);

  it('decodes what encodeEpoch wrote, claimId and later fields included', () => {
    expect(parseEpochRecord(encodeEpoch(good), source)).toEqual(good);
    const withMore = { ...good, claimId: 'c1', extra: 'kept' } as EpochRecord;
    expect(parseEpochRecord(encodeEpoch(withMore), source)).toEqual(withMore);
  });

  it.each([
    ['garbage{', 'not valid JSON'],
    ['\u00ff', 'not valid JSON'],
    ['null', 'not a JSON object'],
    ['[1]', 'not a JSON object'],
    ['{"epoch":"3","nodeId":"a","url":"u","reason":"r"}', 'at is missing or not a string'],
    ['{"epoch":3,"nodeId":"a","url":"u","reason":"r","at":"t"}', 'epoch is missing or not a string'],
    ['{"epoch":"3x","nodeId":"a","url":"u","reason":"r","at":"t"}', 'epoch is not a whole number'],
    ['{"epoch":"4","nodeId":"a","url":"u","reason":"r","at":"t"}', "epoch differs from the key's 3"],
    ['{"epoch":"3","nodeId":"a","url":"u","reason":"r","at":"t","claimId":7}', 'claimId is not a string'],
  ])('%j is CORRUPT_EPOCH_RECORD (data) naming the key: %s', (text, why) => {
    const raw = text === '\u00ff' ? new Uint8Array([0xff]) : bytes(text);
    let error: unknown;
    try {
      parseEpochRecord(raw, source);
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({ code: 'CORRUPT_EPOCH_RECORD', kind: 'data', details: { key: source.key } });
    expect((error as Error).message).toContain(`${source.key} in memory is not an epoch record (${why})`);
  });

  it('newestEpoch on a store with a garbage record rejects with the typed error, not a SyntaxError', async () => {
    const store = new MemoryStore();
    await store.put(epochKey(1n), bytes('garbage{'));
    await expect(newestEpoch(store)).rejects.toMatchObject({ code: 'CORRUPT_EPOCH_RECORD', kind: 'data' });
  });
});
