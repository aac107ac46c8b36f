/**
 * `lease.json` for automatic failover (RFC-0002 W4 and "Automatic failover"). The primary renews
 * it by compare-and-swap; candidates watch its ETag with conditional GETs and measure, on their own
 * monotonic clocks, how long it has not changed. No clock is compared across nodes: only "has
 * this object changed in the last T ms of MY time".
 */
export interface LeaseRecord {
  epoch: bigint;
  nodeId: string;
  renewal: number;
  at: string;
}

export function encodeLease(record: LeaseRecord): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify({ ...record, epoch: record.epoch.toString() })}\n`);
}

export function parseLease(bytes: Uint8Array): LeaseRecord | undefined {
  try {
    const value = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
    if (
      typeof value.epoch !== 'string' ||
      !/^\d{1,20}$/.test(value.epoch) ||
      typeof value.nodeId !== 'string'
    ) {
      return undefined;
    }
    return {
      epoch: BigInt(value.epoch),
      nodeId: value.nodeId,
      renewal: typeof value.renewal === 'number' ? value.renewal : 0,
      at: typeof value.at === 'string' ? value.at : '',
    };
  } catch {
    return undefined;
  }
}
