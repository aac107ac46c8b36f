/**
 * The seam between a replica node and whatever applies txns to its tables: the store's `Follower`
 * (replica/follower.ts, the `wal/` chains) or the sequencer's `SequencedFollower`
 * (sequencer/follower.ts, the txn log, RFC-0003). Both implement `TableFollower` and report the
 * status below natively; a field that does not apply to one of them is null, never a made-up value.
 */

/** Why a table stopped being applied, until an operator resumes it. */
export interface Suspension {
  /** The WalshipError code that suspended it (SEGMENT_MISSING, CORRUPT_SEGMENT, SEGMENTS_COLLECTED …). */
  code: string;
  /** What happened and what to do next (the resume command, or the re-bootstrap). */
  message: string;
  /** The object the error names; null when it names none. */
  objectKey: string | null;
  /** When it was suspended: this node's monotonic ms. */
  atMs: number;
}

/** One followed table, for `/status`. Txn numbers are bigint; durations are whole ms. */
export interface FollowedTableStatus {
  name: string;
  key: string;
  appliedTxn: bigint;
  /**
   * The newest epoch among the segments applied (RFC-0002); null when the follower applies no
   * epoch-numbered chain: a sequenced cluster's txns come from many writers, each with its own
   * writer epoch, and its tables have no epoch of their own.
   */
  epoch: bigint | null;
  /**
   * The newest txn the follower knows exists: for the store follower head.json's claim (a hint;
   * 0n when it said nothing); for the sequenced follower its source's known head, null when the
   * source does not say (the store's `txnlog/`) or has not said yet.
   */
  headTxn: bigint | null;
  /** `headTxn - appliedTxn` (0n when not ahead); null when `headTxn` is: unknown, not zero. */
  txnsBehind: bigint | null;
  /** Since the follower last found nothing newer than what it applied; null when never. */
  sinceCaughtUpMs: number | null;
  /** Since the last apply; null when nothing was applied since this process started. */
  lastAppliedAgoMs: number | null;
  /**
   * Segments applied since this process started: `wal/` segments for the store follower, staged
   * segments (one per txn log entry) for the sequenced follower.
   */
  segmentsApplied: number;
  /** Rows applied since this process started. */
  rowsApplied: number;
  suspended: Suspension | null;
}

/** A follower's state for `/status`: its tables, its staleness and its failures. */
export interface FollowerStatus<Table extends FollowedTableStatus = FollowedTableStatus> {
  /** Every followed table, by key. */
  tables: Table[];
  /** TableFollower.stalenessMs(). */
  stalenessMs: number | null;
  /**
   * Milliseconds since the primary last announced an upload (head.json changed): how long it has
   * been silent, idle or gone; null before one was read, and for the sequenced follower (no head.json).
   */
  headUnchangedMs: number | null;
  /**
   * Polls of the store since start; null for a follower that does not poll: the sequenced
   * follower waits on its source, which reports changes.
   */
  polls: number | null;
  /** The last failure of a poll or round (the store's, or the sequencer's) and how long ago; null when none. */
  lastError: { message: string; agoMs: number } | null;
  /**
   * Why the follower stopped following for good (CLUSTER_MISMATCH: the store holds another
   * cluster); null while it follows. The sequenced follower never stops on its own: always null.
   */
  fatal: string | null;
}

/** What a replica node needs of whatever applies txns to its tables (ReplicaNode, ReplicaDeps.follower). */
export interface TableFollower {
  /** Start following. Idempotent. */
  start(): void;
  /** Stop following: an apply in progress finishes, none starts. Idempotent. */
  stop(): Promise<void>;
  /** The applied watermark of table `key` (store key); 0n when unknown. */
  appliedTxn(key: string): bigint;
  /** Every followed table's applied watermark, by store key. */
  appliedAll(): Map<string, bigint>;
  /**
   * Milliseconds since this node last confirmed it held everything there was to apply, over all
   * tables (a suspended table stops confirming); null when it never has. This node's monotonic clock.
   */
  stalenessMs(): number | null;
  /**
   * A reader waits for these tables (store keys): look for their next txns now rather than at the
   * next poll. A follower that learns of every change from its source as it happens may do nothing.
   */
  probeNow(keys: readonly string[]): void;
  /**
   * Look at everything there is to apply now (the reader asked for freshness); resolves when done,
   * or at once when the follower stopped, or has nothing more to look at than what it waits on.
   */
  refresh(): Promise<void>;
  /** Lift the suspension of table `nameOrKey` (name or store key); false when it was not suspended or is unknown. */
  resume(nameOrKey: string): boolean;
  /**
   * The node's table filter changed: tables it no longer admits are forgotten at once (no apply of
   * theirs starts after this returns), and the ones it admits now are looked for.
   */
  tablesChanged(): void;
  /** Per-table and follower state for `/status`. */
  status(): FollowerStatus;
}
