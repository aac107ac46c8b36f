/** What a GC plan deletes and keeps (gc.ts plans the WAL, staged-gc.ts the sequencer's objects). */

export type GcObjectKind =
  | 'segment'
  | 'snapshot-manifest'
  | 'snapshot-image'
  | 'snapshot-orphan'
  /** A sequenced table's exported log entry, `tables/<t>/txnlog/<txnFirst>.json` (RFC-0003). */
  | 'txnlog'
  /** The staged segment a collected txnlog entry names (deleted after the entry). */
  | 'staged'
  /** A staged segment a closed or fenced writer epoch uploaded and never committed. */
  | 'staged-orphan';

/** One object the plan deletes. */
export interface GcDeletion {
  key: string;
  kind: GcObjectKind;
  /** The table's name for a segment; null otherwise. */
  table: string | null;
  sizeBytes: number;
  reason: string;
}

/** What stays, and why: per table (from its first kept segment on), per snapshot, and store-wide blockers. */
export interface GcKept {
  /** The first kept segment of a table, a snapshot's manifest key, or null for a store-wide reason. */
  key: string | null;
  table: string | null;
  /** Objects this entry keeps (a table: its kept segments; a snapshot: manifest and image). */
  objects: number;
  reason: string;
}
