import { describe, expect, it } from 'vitest';
import { switchoverReadiness } from './switchover-check.js';

const urls = { fromUrl: 'http://a:9000', toUrl: 'http://b:9000', maxLagTxns: 100n };

function primary(tables: Record<string, string>) {
  return {
    role: 'primary',
    clusterId: 'c1',
    acceptingWrites: true,
    tables: Object.entries(tables).map(([key, committedTxn]) => ({ key, name: key, committedTxn })),
  };
}

function replica(tables: Record<string, string>, extra: Record<string, unknown> = {}) {
  return {
    role: 'replica',
    clusterId: 'c1',
    following: true,
    operation: null,
    servedTables: { include: ['*'], exclude: [] },
    tables: Object.entries(tables).map(([key, appliedTxn]) => ({
      key,
      name: key,
      appliedTxn,
      suspended: null,
    })),
    ...extra,
  };
}

describe('switchoverReadiness', () => {
  it('is ready for a caught-up replica of the same cluster, and counts the lag over every table', () => {
    expect(switchoverReadiness(primary({ t: '10', u: '5' }), replica({ t: '10', u: '5' }), urls)).toEqual({
      ready: true,
      lagTxns: 0n,
    });
    // A table the replica does not have yet counts whole.
    expect(switchoverReadiness(primary({ t: '10', u: '5' }), replica({ t: '8' }), urls)).toEqual({
      ready: true,
      lagTxns: 7n,
    });
  });

  it('refuses a replica more than the bound behind, naming the table most behind', () => {
    const result = switchoverReadiness(primary({ t: '1000', u: '5' }), replica({ t: '800', u: '5' }), urls);
    expect(result.ready).toBe(false);
    expect(result.lagTxns).toBe(200n);
    expect(result.ready ? [] : result.reasons).toEqual([
      expect.stringMatching(
        /^http:\/\/b:9000 is 200 txns behind http:\/\/a:9000 \(most in t\), more than --max-lag-txns 100/,
      ),
    ]);
  });

  it('refuses a replica with a suspended table, one that is bootstrapping, stopped or filtered, with every reason', () => {
    const target = replica(
      { t: '10' },
      {
        operation: { name: 'bootstrap', phase: 'download snapshot s1' },
        following: { stopped: 'CLUSTER_MISMATCH' },
        servedTables: { include: ['t'], exclude: [] },
      },
    );
    (target.tables[0] as { suspended: unknown }).suspended = { code: 'CORRUPT_SEGMENT', message: 'bad crc' };
    const result = switchoverReadiness(primary({ t: '10' }), target, urls);
    expect(result.ready ? [] : result.reasons).toEqual([
      'http://b:9000 is still bootstrapping (download snapshot s1)',
      'http://b:9000 stopped following the store: {"stopped":"CLUSTER_MISMATCH"}',
      expect.stringContaining('replicates chosen tables only'),
      expect.stringContaining('has table t suspended (CORRUPT_SEGMENT: bad crc)'),
    ]);
  });

  it('refuses when a node does not answer, the source is no primary, the target no replica, or the clusters differ', () => {
    expect(switchoverReadiness(new Error('ECONNREFUSED'), replica({}), urls)).toEqual({
      ready: false,
      reasons: ['http://a:9000 did not answer /status: ECONNREFUSED'],
      lagTxns: null,
    });
    const notPrimary = switchoverReadiness(replica({}), replica({}), urls);
    expect(notPrimary.ready ? [] : notPrimary.reasons).toEqual([
      'http://a:9000 is not an accepting primary (role replica)',
    ]);
    const notReplica = switchoverReadiness(primary({}), { ...primary({}), clusterId: 'c2' }, urls);
    expect(notReplica.ready ? [] : notReplica.reasons).toEqual([
      'http://b:9000 is not a replica (role primary)',
      'http://b:9000 belongs to cluster c2, http://a:9000 to c1',
    ]);
    const fenced = switchoverReadiness({ ...primary({}), acceptingWrites: false }, replica({}), urls);
    expect(fenced.ready).toBe(false);
  });
});
