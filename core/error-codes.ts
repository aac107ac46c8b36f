/**
 * What a caller should do about an error. Callers branch on `kind` to decide *how* to react
 * and on `code` to decide *what* happened; messages are for people.
 *
 * - `invalid`:     the request or configuration is wrong; retrying the same thing fails again.
 * - `unavailable`: a dependency (the object store, the network) failed; retrying may succeed.
 * - `data`:        stored bytes are wrong (corrupt, truncated, not ours); do not apply them.
 * - `conflict`:    a conditional operation lost to another writer; re-read and decide.
 * - `fenced`:      this node lost its role to a newer epoch; stop writing.
 * - `closed`:      the component was closed; the operation was not performed.
 * - `internal`:    a bug or a broken invariant.
 */
export type ErrorKind = 'invalid' | 'unavailable' | 'data' | 'conflict' | 'fenced' | 'closed' | 'internal';

/** What a caller should do about each kind (the doc of ErrorKind above, as data). */
export const ERROR_KINDS = {
  invalid: 'The request or configuration is wrong; retrying the same thing fails again.',
  unavailable: 'A dependency (the object store, the network, the sequencer) failed; retrying may succeed.',
  data: 'Stored bytes are wrong (corrupt, truncated, not ours); they are not applied.',
  conflict: 'A conditional operation lost to another writer; re-read and decide.',
  fenced: 'This node lost its role to a newer epoch (or does not have it); stop writing here.',
  closed: 'The component was closed; the operation was not performed.',
  internal: 'A bug or a broken invariant; report it.',
} as const satisfies Record<ErrorKind, string>;

/** One registered error code: the kind(s) it is thrown with, what happened, and what to do about it. */
export interface ErrorCodeSpec {
  /**
   * The kinds it is thrown with. Almost always one; a second kind is listed where a code is thrown
   * (or re-thrown) with another kind somewhere: the first is the usual one.
   */
  readonly kinds: readonly [ErrorKind, ...ErrorKind[]];
  /** What happened, in one sentence a user understands. */
  readonly meaning: string;
  /** What to do about it. */
  readonly action: string;
}

/**
 * Every code a WalshipError is thrown with: `new WalshipError(code, …)` takes an `ErrorCode`, so an
 * unregistered code does not compile, and docs/errors.md is generated from this table
 * (cli/error-reference.ts; cli/error-reference.test.ts checks the page and scans the source for
 * codes the compiler cannot see). Admin and sequencer HTTP answers carry these codes as `code`.
 */
export const ERROR_CODES = {
  ADOPTION_UNSUPPORTED: {
    kinds: ['invalid'],
    meaning:
      'A sequenced cluster was to be initialised on a store root that already holds a single-primary cluster with data, or a primary took epoch 1 of the root meanwhile.',
    action: 'Initialise the sequenced cluster on a new, empty store root.',
  },
  ASSERTION_FAILED: {
    kinds: ['internal'],
    meaning: 'An internal invariant broke: this is a bug in walship.',
    action: 'Report it with the message and the log; restart the node.',
  },
  ASYNC_TRANSACTION: {
    kinds: ['internal'],
    meaning: 'Code passed an async function where the table store needs a synchronous transaction: a bug.',
    action: 'Report it with the message and the log.',
  },
  BATCH_CONFLICT: {
    kinds: ['conflict'],
    meaning:
      'A write carried a batch identity (X-Walship-Batch) that was already committed with other content: the client reused a writer id and sequence.',
    action:
      'Give every batch a new sequence; a batch is retried only with its exact bytes. The committed batch stands; nothing of this request was written.',
  },
  BATCH_ID_INVALID: {
    kinds: ['invalid'],
    meaning:
      'An X-Walship-Batch header is not `<writer>:<seq>` (writer 1..64 of [A-Za-z0-9._-], seq 1..2^63-1).',
    action: 'Fix the client; the request was not written.',
  },
  BATCH_OUTSIDE_WINDOW: {
    kinds: ['conflict'],
    meaning:
      "A write's batch sequence is older than the window of batches remembered for its writer (the newest 1 000), so whether it was committed can no longer be told.",
    action:
      'Nothing was written. Check the rows with a query before sending them again without the identity; keep fewer unacknowledged batches per writer.',
  },
  CATCH_UP_INCOMPLETE: {
    kinds: ['data'],
    meaning:
      'A replica could not catch up with every table (for a promotion) because some tables are suspended on bad data in the store.',
    action:
      'Read the suspended tables and their reasons in /status; repair or restore them, or promote another replica.',
  },
  CLOSED: {
    kinds: ['closed'],
    meaning:
      'The component (node, writer, queue) was closed or is shutting down; the operation was not done.',
    action: 'Nothing if you are stopping it; otherwise retry on a running node.',
  },
  CLUSTER_MISMATCH: {
    kinds: ['invalid'],
    meaning: "The store root holds another cluster than the one this replica's data dir follows.",
    action: 'Point replication.object.store at the right root, or use a new data dir for this cluster.',
  },
  CLUSTER_START_FAILED: {
    kinds: ['unavailable'],
    meaning: 'A node of the local demo or drill cluster failed to start or exited before it listened.',
    action: 'Read the node output in the message (often a port in use) and fix its cause.',
  },
  CLUSTER_STOPPED: {
    kinds: ['closed'],
    meaning: 'The local demo or drill cluster is stopping, so a node could not be started.',
    action: 'Nothing: the command is ending.',
  },
  CODEC_UNAVAILABLE: {
    kinds: ['unavailable'],
    meaning: 'A segment uses a compression codec this Node.js runtime does not have.',
    action: 'Upgrade Node.js (zstd needs a newer Node) or choose an available codec.',
  },
  CORRUPT_EPOCH_RECORD: {
    kinds: ['data'],
    meaning:
      'An object where an epoch record belongs is not a valid epoch record; epoch records decide who may be primary, so walship will not guess.',
    action: 'Inspect that object in the store (walship verify) and repair or remove it by hand.',
  },
  CORRUPT_SEGMENT: {
    kinds: ['data'],
    meaning: 'Bytes that should be a WAL segment are not a valid one (truncated, wrong checksum, not ours).',
    action:
      'Nothing from it is applied; find the object named in the message (walship verify) and restore it from its source.',
  },
  DEDUP_KEYS_INVALID: {
    kinds: ['invalid'],
    meaning:
      'Upsert keys (DEDUP UPSERT KEYS) name a column the table lacks, name one twice, or leave out the designated timestamp.',
    action: 'Name existing columns of the table, `timestamp` among them; nothing was changed.',
  },
  TTL_INVALID: {
    kinds: ['invalid'],
    meaning:
      'A TTL in hours that is not a whole number of days: walship tables are partitioned by day for TTL, as QuestDB tables made by ILP are.',
    action:
      'Give the TTL in days, weeks, months or years, or in hours that make whole days (48 HOURS); nothing was changed.',
  },
  DATA_DIR_NOT_EMPTY: {
    kinds: ['invalid'],
    meaning: 'A restore was asked to write into a data dir that is not empty.',
    action: 'Give a new or empty directory to restore into.',
  },
  DEMOTE_FAILED: {
    kinds: ['unavailable'],
    meaning:
      'A primary being demoted could not upload all its txns to the object store within the time limit.',
    action: 'Fix the object store (see the message), then retry the switchover; the node keeps its role.',
  },
  DEMO_STUCK: {
    kinds: ['unavailable'],
    meaning: 'The demo waited too long for a step (a primary answering, a replica catching up).',
    action: 'Run it again; if it keeps happening, read the node output for the cause.',
  },
  DIVERGENCE_WRITE_FAILED: {
    kinds: ['unavailable'],
    meaning: 'A demoted primary could not save its divergent (never uploaded) txns to the data dir.',
    action: 'Fix the disk problem in the message (space, permissions) and retry.',
  },
  DRILL_NO_PRIMARY: {
    kinds: ['unavailable'],
    meaning:
      'The failover drill did not find exactly one accepting primary, or the primary does not report its ackMode in /status.',
    action: 'Check the node URLs given to walship drill and that one node is primary; then run it again.',
  },
  DRILL_NO_REPLICA: {
    kinds: ['unavailable'],
    meaning: 'The failover drill found no replica to fail over to.',
    action: 'Start a replica (or list its URL) and run the drill again.',
  },
  DRILL_NO_WRITES: {
    kinds: ['unavailable'],
    meaning: 'The failover drill gave up waiting for its writes to be taken or replicated.',
    action: 'Check that the primary accepts writes and the replicas follow, then run the drill again.',
  },
  DURABLE_TIMEOUT: {
    kinds: ['unavailable'],
    meaning:
      'A write was committed locally but did not reach the object store (or sequencer) within the durable-ack time limit.',
    action:
      'Do not resend it: it stays committed and will be uploaded. Check the object store; retrying would write the rows twice.',
  },
  EPOCH_REGRESSION: {
    kinds: ['data'],
    meaning:
      'A segment was written in an older epoch than the table already applied: a replaced primary wrote it after it was fenced.',
    action:
      'It is never applied; the table is suspended. Remove the stray segment (walship verify names it).',
  },
  FDB_CLIENT_MISSING: {
    kinds: ['invalid'],
    meaning: 'The FoundationDB client library is not installed on this machine.',
    action: 'Install foundationdb-clients 7.2+ matching your cluster, or use the SQLite sequencer.',
  },
  FENCED: {
    kinds: ['fenced'],
    meaning: 'This node lost the primary role: a newer promotion (epoch) replaced it.',
    action: 'Stop writing to this node; write to the new primary (the message names the epoch).',
  },
  FENCE_BELOW_CHAIN: {
    kinds: ['data'],
    meaning:
      'During a promotion the store held txns past this node that catching up did not reach, so a fence would land below the chain.',
    action: 'Check the table in the store (walship verify) and promote a replica that is caught up.',
  },
  FENCE_CONTENDED: {
    kinds: ['unavailable'],
    meaning: 'A promotion lost the fence slot of a table to the old primary too many times in a row.',
    action: 'Retry the promotion; stop the old primary if it is still writing.',
  },
  ILP_PARSE: {
    kinds: ['invalid'],
    meaning:
      'An ILP request is not valid line protocol (the message names the line); nothing of it was committed.',
    action: 'Fix the line and resend the request.',
  },
  ILP_PRECISION: {
    kinds: ['invalid'],
    meaning: 'An ILP request asked for a timestamp precision walship does not know.',
    action: 'Use one of n, ns, u, us, ms, s, m, h.',
  },
  INTERNAL: {
    kinds: ['internal'],
    meaning: 'The sequenced writer stopped on an unexpected error; waiting writes are refused with it.',
    action: 'Read the log for the cause, report it, and restart the node.',
  },
  INTERRUPTED: {
    kinds: ['closed'],
    meaning: 'The demo was interrupted by SIGINT or SIGTERM.',
    action: 'Nothing.',
  },
  INVALID_ARGUMENT: {
    kinds: ['invalid', 'internal'],
    meaning: 'An argument or request parameter broke a documented rule (a bad value, a missing parameter).',
    action: 'Fix the argument named in the message and retry.',
  },
  INVALID_COMMIT_TOKEN: {
    kinds: ['invalid'],
    meaning: 'A read carried a commit token (min_txn or X-Walship-Min-Txn) that cannot be parsed.',
    action: "Pass the primary's X-Walship-Txn value as it was given, e.g. trades=42,quotes=17.",
  },
  INVALID_CONFIG: {
    kinds: ['invalid'],
    meaning: 'A configuration value or command-line argument is wrong; the message names the key.',
    action: 'Fix that key (walship help config lists them all) and start again.',
  },
  INVALID_NAME: {
    kinds: ['invalid', 'data'],
    meaning:
      'A table or column name is not allowed (empty, too long, control or reserved characters); as kind data, a segment carries such a name.',
    action:
      'Rename the table or column in the write; for kind data, inspect the segment named in the message.',
  },
  INVALID_NODE_ID: {
    kinds: ['invalid'],
    meaning: 'node.id is not 1 to 64 characters of A-Z a-z 0-9 . _ -.',
    action: 'Set a valid node.id.',
  },
  INVALID_STATE: {
    kinds: ['internal'],
    meaning: 'A replica follower was asked to catch up after its poll loop had run: a bug.',
    action: 'Report it with the message and the log.',
  },
  INVALID_TABLE_KEY: {
    kinds: ['invalid'],
    meaning: 'A table key (the encoded table name in object keys) is malformed.',
    action: 'Check the object key or --table argument named in the message.',
  },
  MIN_TXN_TIMEOUT: {
    kinds: ['unavailable'],
    meaning: 'A read with a commit token waited, but this replica did not apply that txn in time (HTTP 504).',
    action: 'Retry, read from the primary, or allow a longer wait; the primary may not have uploaded it yet.',
  },
  NESTED_TRANSACTION: {
    kinds: ['internal'],
    meaning: 'A sliced table-store transaction was started inside another: a bug.',
    action: 'Report it with the message and the log.',
  },
  NODE_ID_MISMATCH: {
    kinds: ['invalid'],
    meaning: 'node.id differs from the id stored in this data dir; a node keeps its id for life.',
    action: 'Set node.id back to the stored id, or use a new data dir for the new id.',
  },
  NODE_READ_FAILED: {
    kinds: ['unavailable'],
    meaning:
      'A command (verify, drill, demo) could not read a table from a node over HTTP, or got a malformed answer.',
    action: 'Check that the node is up and reachable and retry.',
  },
  NODE_REGISTRATION_CORRUPT: {
    kinds: ['data'],
    meaning: "A node's registration object in the store is not valid.",
    action: 'Inspect the object named in the message; restarting that node writes it again.',
  },
  NOTHING_TO_PROMOTE: {
    kinds: ['invalid'],
    meaning: 'A promotion was asked for, but the store holds no cluster or epoch yet.',
    action: 'Start a primary instead.',
  },
  NOTHING_TO_SNAPSHOT: {
    kinds: ['unavailable'],
    meaning: 'A snapshot was asked of a replica that has not seen a cluster in the store yet.',
    action: 'Wait until the replica follows a cluster, then retry.',
  },
  NOT_ACCEPTING_WRITES: {
    kinds: ['fenced'],
    meaning: 'This node does not take writes now: it is a replica, not started yet, or changing role.',
    action: 'Write to the primary (ILP over HTTP answers 421); retry shortly during a role change.',
  },
  NOT_IN_TRANSACTION: {
    kinds: ['internal'],
    meaning: 'A sliced apply ran outside its transaction: a bug.',
    action: 'Report it with the message and the log.',
  },
  NOT_READY: {
    kinds: ['unavailable'],
    meaning: 'The replica is still starting.',
    action: 'Retry shortly.',
  },
  INFLIGHT_FULL: {
    kinds: ['unavailable'],
    meaning:
      'An ILP HTTP request waited longer than line.http.inflight.wait.timeout for room among line.http.max.inflight.size bytes of request bodies in flight; its body was not read (HTTP 503, Retry-After).',
    action:
      'Retry (the official clients do); if it is frequent, send smaller requests, use fewer concurrent senders, or raise line.http.max.inflight.size where the node has the memory.',
  },
  NOT_SUPPORTED: {
    kinds: ['invalid'],
    meaning: 'A writer of a sequenced cluster was asked to demote, which it does not do.',
    action: 'Stop that writer instead; the other writers go on taking writes.',
  },
  PENDING_FULL: {
    kinds: ['unavailable'],
    meaning:
      'Too many bytes wait for upload (or for the sequencer): the object store or sequencer has been unavailable for a while.',
    action: 'Retry later; writes resume when uploads catch up. Fix the object store or sequencer.',
  },
  PRIMARY_REFUSED: {
    kinds: ['invalid', 'fenced'],
    meaning:
      'The node refuses the primary role: the store does not honour conditional writes, or the store says another primary holds the cluster.',
    action:
      'Read the reason in the message: fix the store (or its settings), or start this node as a replica.',
  },
  PROMOTION_LOST: {
    kinds: ['conflict'],
    meaning: 'Another node took the new epoch first; this node stays a replica.',
    action: 'Nothing: the other node is the primary now.',
  },
  PROMOTION_REFUSED: {
    kinds: ['invalid'],
    meaning: 'This replica serves only some tables, so it cannot become the primary.',
    action: 'Promote a replica that serves every table.',
  },
  QUERY_ABORTED: {
    kinds: ['unavailable', 'closed'],
    meaning: 'The query or read was aborted by its caller (the client went away).',
    action: 'Nothing; resend the query if it is still wanted.',
  },
  QUERY_BUSY: {
    kinds: ['unavailable'],
    meaning: 'Every query host is busy and the queue is full, or no host became free in time.',
    action: 'Retry shortly (the answer says Retry-After), or raise query.queue.max / query.queue.wait.max.',
  },
  QUERY_DATABASE_BUSY: {
    kinds: ['unavailable'],
    meaning: 'SQLite stayed busy or locked while the query ran.',
    action: 'Retry shortly.',
  },
  QUERY_INTERNAL: {
    kinds: ['internal'],
    meaning: 'A query host failed with an unexpected error.',
    action: 'Report it with the message and the log; retry the query.',
  },
  QUERY_INVALID: {
    kinds: ['invalid'],
    meaning: 'The query is empty or SQLite rejected it (a syntax error, an unknown table or column).',
    action: 'Fix the SQL as the message says.',
  },
  QUERY_READ_ONLY: {
    kinds: ['invalid'],
    meaning: 'The query would change data or a connection setting; only read-only queries are served.',
    action: 'Send SELECT, WITH … SELECT, VALUES, EXPLAIN or a schema PRAGMA; write through ILP.',
  },
  QUERY_TIMEOUT: {
    kinds: ['unavailable'],
    meaning: 'The query ran longer than its time limit and was stopped.',
    action: 'Narrow it (a time range, a LIMIT) or raise the query time limit.',
  },
  QUERY_TOO_LARGE: {
    kinds: ['invalid'],
    meaning: 'The query returns too many rows or bytes, or used more memory than its query host may.',
    action: 'Add a LIMIT, ask for a page (limit=lo,hi) or fewer columns, or raise query.memory.limit.',
  },
  QUERY_WORKER_FAILED: {
    kinds: ['unavailable'],
    meaning: 'A query host could not start, open the database, or died while running the query.',
    action: 'Retry (a new host is started); if it repeats, read the log for the cause.',
  },
  READ_BUSY: {
    kinds: ['unavailable'],
    meaning: 'Too many reads already wait for a commit token on this replica.',
    action: 'Retry shortly, or read from another node.',
  },
  READ_ONLY: {
    kinds: ['invalid'],
    meaning: 'A write was attempted on a table store opened read-only.',
    action: 'Use a writable table store for that operation.',
  },
  REGISTRY_CONTENDED: {
    kinds: ['unavailable'],
    meaning: 'tables.json in the store kept changing while this node tried to update it.',
    action: 'Retry; it is retried later on its own.',
  },
  REPLICA_REFUSED: {
    kinds: ['invalid'],
    meaning:
      'The data dir holds txns of a primary that never reached the object store, so it cannot start as a replica.',
    action: 'Start it as a primary to upload them first, or start the replica on a new data dir.',
  },
  RESTORE_BEYOND_END: {
    kinds: ['data'],
    meaning: 'A restore target lies past what the store holds for a table.',
    action: 'Restore to the txn the message names, or to an earlier point.',
  },
  RESTORE_NO_CLUSTER: {
    kinds: ['invalid'],
    meaning: 'The store given to restore holds no cluster.json: there is nothing to restore.',
    action: 'Check that --store points at the right root.',
  },
  ROLLBACK_UNSAFE: {
    kinds: ['data'],
    meaning:
      "A table cannot be rolled back to its last uploaded txn (its pending txns changed it in a way that can't be undone).",
    action: 'Read the reason in the message; restore the table from the store or a snapshot instead.',
  },
  SEGMENTS_COLLECTED: {
    kinds: ['data'],
    meaning:
      "The segments this replica needs next were removed by WAL retention; the table's chain starts later now.",
    action: 'Bootstrap the replica again from a snapshot (or a new data dir).',
  },
  SEGMENT_ENTRY_MISMATCH: {
    kinds: ['data'],
    meaning: 'A staged segment does not match the txn-log entry that numbers it (size, checksum or writer).',
    action:
      'It is not applied; the table is suspended. Inspect the segment and entry named (walship verify).',
  },
  SEGMENT_MISPLACED: {
    kinds: ['data'],
    meaning: 'A segment holds other txns than the slot (or log entry) it sits in.',
    action: 'It is not applied; the table is suspended. Inspect the segment named (walship verify).',
  },
  SEGMENT_MISSING: {
    kinds: ['data'],
    meaning: 'A segment the table needs next is gone from the store.',
    action:
      'The table is suspended; if retention removed it, bootstrap this node from a snapshot, otherwise restore the object.',
  },
  SEGMENT_NOT_STAGED: {
    kinds: ['data'],
    meaning: 'A txn-log entry points at a numbered segment, not at a staged one.',
    action: 'It is not applied; the table is suspended. Inspect the entry named (walship verify).',
  },
  SEGMENT_OVERLAP: {
    kinds: ['data'],
    meaning: 'The next segment in the store starts before the txn this replica needs: two segments overlap.',
    action: 'The table is suspended. Inspect the chain (walship verify) and remove the stray segment.',
  },
  SEGMENT_STAGED: {
    kinds: ['data'],
    meaning: "A staged segment (a writer's local numbering) sits in the numbered chain.",
    action: 'It is not applied; the table is suspended. Remove the stray object (walship verify names it).',
  },
  SEGMENT_WRONG_TABLE: {
    kinds: ['data'],
    meaning: 'A segment holds another table than the one it is stored under.',
    action: 'It is not applied; the table is suspended. Remove the stray object (walship verify names it).',
  },
  SEQUENCER_BATCH_ORDER: {
    kinds: ['invalid'],
    meaning: 'A writer sent the sequencer a batch out of order.',
    action: 'Restart the writer; report it if it repeats.',
  },
  SEQUENCER_CLUSTER_MISMATCH: {
    kinds: ['invalid'],
    meaning: "The sequencer is bound to another cluster than the store's.",
    action: 'Point replication.sequencer (or the store) at the matching cluster.',
  },
  SEQUENCER_FENCED: {
    kinds: ['fenced'],
    meaning: 'The sequencer refused a writer that is not registered or was replaced by a newer registration.',
    action: 'Stop writing through this writer; restart it to register again.',
  },
  SEQUENCER_FORMAT_UNSUPPORTED: {
    kinds: ['invalid'],
    meaning: 'The sequencer file has a layout this walship does not read (or is not a sequencer file).',
    action: 'Use the walship version that wrote it, or point at the right file.',
  },
  SEQUENCER_LOCKED: {
    kinds: ['invalid'],
    meaning: 'Another sequencer process holds the sequencer file.',
    action: 'Stop the other sequencer first, or use another file.',
  },
  SEQUENCER_NOT_INITIALIZED: {
    kinds: ['invalid'],
    meaning: 'replication.sequencer is set, but the sequencer or store was never initialised for it.',
    action: 'Run walship sequencer init first.',
  },
  SEQUENCER_PROTOCOL: {
    kinds: ['invalid'],
    meaning: 'The sequencer answered something that is not its protocol (not JSON, an unexpected status).',
    action:
      'Check that replication.sequencer points at a walship sequencer and not at a proxy or another service.',
  },
  SEQUENCER_RECORD_CORRUPT: {
    kinds: ['data'],
    meaning: 'sequencer.json in the store is not a valid sequencer record.',
    action: 'Inspect sequencer.json (walship verify) and repair it.',
  },
  SEQUENCER_REQUIRED: {
    kinds: ['invalid'],
    meaning:
      'The cluster has several writers ordered by a sequencer, but this node has no replication.sequencer.',
    action: 'Set replication.sequencer on this node, or start it as a replica.',
  },
  SEQUENCER_UNAUTHORIZED: {
    kinds: ['invalid'],
    meaning: 'The sequencer refused the token (HTTP 401, 403 or 429).',
    action: 'Fix the token in replication.sequencer or give it the needed scope.',
  },
  SEQUENCER_UNAVAILABLE: {
    kinds: ['unavailable'],
    meaning:
      'The sequencer could not be reached or did not answer in time; for a commit the outcome is unknown.',
    action: 'Retry; check the sequencer and the network.',
  },
  SNAPSHOT_CORRUPT: {
    kinds: ['data'],
    meaning: 'A snapshot manifest or image fails its checks.',
    action: 'Do not use it: restore or bootstrap from another snapshot.',
  },
  SNAPSHOT_EXISTS: {
    kinds: ['conflict'],
    meaning:
      'A snapshot with the same id already exists: two snapshots in the same millisecond under one node id.',
    action: 'Retry; check that no two nodes share a node id.',
  },
  SNAPSHOT_MISSING: {
    kinds: ['unavailable'],
    meaning:
      "A table's chain starts after txn 1 (retention removed the start) and no recent snapshot covers it, so a new replica cannot bootstrap it.",
    action: 'Take a snapshot on a replica that serves every table, then start this replica again.',
  },
  SNAPSHOT_REFUSED: {
    kinds: ['invalid'],
    meaning: 'A snapshot was asked of a replica that serves only some tables.',
    action: 'Take snapshots on a replica that serves every table.',
  },
  SNAPSHOT_TOO_LARGE: {
    kinds: ['invalid'],
    meaning: 'The compressed snapshot image is larger than one upload may carry.',
    action: 'Snapshots of this size are not supported; rely on the WAL chain (raise retention) instead.',
  },
  STAGED_CONFLICT: {
    kinds: ['internal'],
    meaning:
      'A staged object in the store holds another segment than the one this writer sealed: the staged queue does not match the store.',
    action: 'Stop the writer and report it; a restored or copied data dir is the usual cause.',
  },
  STALE_REPLICA: {
    kinds: ['unavailable'],
    meaning: 'The replica could not confirm it is within the read’s max_staleness_ms of the object store.',
    action: 'Retry, read from another replica or the primary, or allow more staleness.',
  },
  STORAGE_FAILED: {
    kinds: ['unavailable', 'data', 'invalid', 'internal'],
    meaning:
      'SQLite failed a local operation; the kind follows the SQLite result code (busy or disk: unavailable, corrupt: data).',
    action:
      'Read the SQLite message: free disk space or fix permissions and retry; for kind data, restore the file.',
  },
  STORE_CORRUPT: {
    kinds: ['unavailable'],
    meaning: 'cluster.json in the store could not be parsed or fails its checksum; it is read again.',
    action: 'If it persists, inspect cluster.json (walship verify) and restore it.',
  },
  STORE_FORMAT_UNSUPPORTED: {
    kinds: ['invalid'],
    meaning: 'A local file (table store or staged queue) has a layout version this walship does not read.',
    action: 'Use the walship version that wrote it, or a new data dir.',
  },
  STORE_INCONSISTENT: {
    kinds: ['unavailable'],
    meaning:
      'The object store contradicted itself (a listing named an object that is not there, a create-only write refused but the object unreadable).',
    action: 'Retry (it is retried on its own); if it persists, check the object store’s consistency.',
  },
  STORE_REJECTED: {
    kinds: ['invalid'],
    meaning:
      'The object store refused the request: wrong credentials or permissions, or the bucket does not exist.',
    action: 'Check the bucket, credentials and permissions in replication.object.store.',
  },
  STORE_TIMEOUT: {
    kinds: ['unavailable'],
    meaning: 'An object-store request timed out; whether it took effect is unknown.',
    action: 'Retry (walship does); check the store and the network.',
  },
  STORE_UNAVAILABLE: {
    kinds: ['unavailable'],
    meaning: 'The object store could not be reached or answered an error.',
    action: 'Retry (walship does); check the store and the network.',
  },
  TABLE_EXCLUDED: {
    kinds: ['invalid'],
    meaning: 'A table to serve matches a pattern of replication.replica.tables.exclude.',
    action: 'Change that key and restart the node to serve it.',
  },
  TABLE_EXISTS: {
    kinds: ['conflict'],
    meaning: "A table to add is in this node's database already.",
    action: 'Nothing, or drop it first.',
  },
  TABLE_HAS_PENDING: {
    kinds: ['invalid'],
    meaning: 'A table to drop holds txns that never reached the store; it is not dropped.',
    action: 'Let them upload (start the node as primary) or restore the data dir first.',
  },
  TABLE_UNKNOWN: {
    kinds: ['invalid'],
    meaning: 'The named table does not exist on this node.',
    action: 'Check the table name.',
  },
  TIMESTAMP_MISSING: {
    kinds: ['data'],
    meaning: 'A txn record has rows without a designated timestamp.',
    action: 'It is not applied; inspect the segment named (walship verify).',
  },
  TOO_MANY_COLUMNS: {
    kinds: ['invalid'],
    meaning: 'A write would give a table more columns than allowed.',
    action: 'Write fewer distinct columns to that table.',
  },
  TOO_MANY_TABLES: {
    kinds: ['invalid'],
    meaning: 'The cluster has the most tables it may have, or a table list in the configuration is too long.',
    action: 'Drop tables, or use a pattern in the configuration list.',
  },
  TOO_MANY_TABLES_IN_REQUEST: {
    kinds: ['invalid'],
    meaning: 'One write request to a sequenced writer touches more tables than one batch may hold.',
    action: 'Split the request.',
  },
  TXNLOG_BROKEN: {
    kinds: ['data'],
    meaning: 'The txn log of a table is not contiguous where a replica reads it.',
    action: 'The table is suspended; inspect the txn log (walship verify) and report it.',
  },
  TXNLOG_CONFLICT: {
    kinds: ['data'],
    meaning:
      "A txn-log entry in the store differs from the sequencer's: the sequencer's state was lost or forked.",
    action: 'Exports stop; compare the sequencer with the store before writing on.',
  },
  TXN_GAP: {
    kinds: ['data'],
    meaning: 'A txn does not follow the last applied txn of its table.',
    action: 'It is not applied; inspect the chain (walship verify).',
  },
  TXN_INVALID: {
    kinds: ['data'],
    meaning: 'A txn record in a segment is malformed (lengths, null bitmaps).',
    action: 'It is not applied; inspect the segment named (walship verify).',
  },
  TXN_LOG_ENTRY_CORRUPT: {
    kinds: ['data'],
    meaning: 'A txn-log entry in the store is not a valid entry.',
    action: 'Inspect the entry named (walship verify) and report it.',
  },
  TXN_NOT_IN_CLUSTER: {
    kinds: ['conflict'],
    meaning:
      'A commit token names a txn that never reached the cluster: a newer primary took over before it was uploaded.',
    action: 'That write is lost; write it again through the current primary.',
  },
  TYPE_CONFLICT: {
    kinds: ['invalid', 'data'],
    meaning: 'A write (or, as kind data, a stored txn) sends a column with another type than the table has.',
    action: 'Send the column with its existing type, or write to a new column.',
  },
  UNKNOWN_TABLE: {
    kinds: ['internal'],
    meaning: 'An upload asked for a table with no schema: a bug.',
    action: 'Report it with the message and the log.',
  },
  WATERMARK_INVALID: {
    kinds: ['internal'],
    meaning: 'A table’s uploaded or committed txn watermark would move out of order: a bug.',
    action: 'Report it with the message and the log.',
  },
  WRITE_ABORTED: {
    kinds: ['unavailable'],
    meaning:
      'A write was refused because one committed just before it on this primary failed (its txns were numbered after that one).',
    action: 'Retry the write; the primary takes writes again at once.',
  },
  WRONG_ROLE: {
    kinds: ['conflict'],
    meaning: 'An admin action needs another role than this node has now (or the node is changing role).',
    action: 'Send it to a node of the right role, or retry after the role change.',
  },
} as const satisfies Record<string, ErrorCodeSpec>;

/** A registered error code: `new WalshipError(code, …)` takes only these. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** True when `code` is registered (for codes read from the wire). */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

/** One `code` of an HTTP error answer that is no WalshipError code. */
export interface HttpAnswerCodeSpec {
  /** The HTTP status(es) it is sent with; 0 when no server sends it (a command's own answer). */
  readonly status: readonly number[];
  /** Who sends it. */
  readonly sentBy: string;
  readonly meaning: string;
  readonly action: string;
}

/**
 * Codes of JSON error answers that are not WalshipError codes: the QuestDB-compatible ILP answers
 * (`{code, message, line, errorId}`, lower-case words as QuestDB sends them) and the answers of the
 * HTTP listeners themselves. Answers for a WalshipError carry its code from ERROR_CODES instead.
 */
export const HTTP_ANSWER_CODES = {
  'admin disabled': {
    status: [403],
    sentBy: 'admin endpoints',
    meaning: 'The admin endpoints are off because admin.token is not set.',
    action: 'Set admin.token to enable them.',
  },
  forbidden: {
    status: [403],
    sentBy: 'sequencer',
    meaning: 'The token is valid but lacks the scope the route needs.',
    action: 'Use a token with that scope.',
  },
  'internal error': {
    status: [500, 503],
    sentBy: 'HTTP listeners, ILP over HTTP',
    meaning: 'The server failed unexpectedly (500), or storage is temporarily unavailable (503).',
    action: 'Retry on 503; on 500 read the node log (the errorId ties the answer to it).',
  },
  invalid: {
    status: [400],
    sentBy: 'ILP over HTTP',
    meaning: 'The ILP request is not valid (a parse error or a column type conflict); nothing was committed.',
    action: 'Fix the line named by `line` and resend.',
  },
  'method not allowed': {
    status: [405],
    sentBy: 'every HTTP listener',
    meaning: 'The route does not take this HTTP method.',
    action: 'Use the method named in the Allow header.',
  },
  NO_NODE: {
    status: [503],
    sentBy: 'router (reads)',
    meaning: 'No node could answer the read under its preference and bounds.',
    action: 'Read the tried nodes in the message; relax max_staleness_ms or min_txn, or fix the nodes.',
  },
  NO_PRIMARY: {
    status: [503],
    sentBy: 'router (reads)',
    meaning: 'A read with preference primary found no primary that could answer.',
    action: 'Retry after a failover finishes, or allow replica reads.',
  },
  NO_REPLICA: {
    status: [503],
    sentBy: 'router (reads)',
    meaning: 'A read with preference replica found no replica that could answer.',
    action: 'Retry, relax the bounds, or allow reads from the primary.',
  },
  'no primary': {
    status: [503],
    sentBy: 'router (writes)',
    meaning: 'No primary took the write within the retry time (a switchover or failover in progress?).',
    action: 'Retry the batch; it was not committed.',
  },
  'not accepting writes': {
    status: [421],
    sentBy: 'ILP over HTTP',
    meaning: 'This node is not the primary and takes no writes.',
    action: 'Send writes to the primary (or through the router).',
  },
  'not found': {
    status: [404],
    sentBy: 'every HTTP listener, admin endpoints',
    meaning: 'No route or admin action has this path.',
    action: 'Check the URL.',
  },
  'not ready': {
    status: [503],
    sentBy: 'node',
    meaning: 'The node is starting and does not serve this route yet.',
    action: 'Retry shortly.',
  },
  'not supported': {
    status: [400, 415],
    sentBy: 'ILP over HTTP',
    meaning: 'The request uses a Content-Encoding or timestamp precision walship does not support.',
    action: 'Send uncompressed bodies (no Content-Encoding) and a precision of n, ns, u, us, ms, s, m or h.',
  },
  'payload too large': {
    status: [413],
    sentBy: 'sequencer, POST /admin/tables',
    meaning: 'The request body is larger than the route accepts.',
    action: 'Send a smaller body.',
  },
  'request too large': {
    status: [413],
    sentBy: 'ILP over HTTP, router (writes)',
    meaning: 'The ILP request or one of its lines is larger than allowed; nothing was committed.',
    action: 'Send smaller batches or lines.',
  },
  'switching role': {
    status: [503],
    sentBy: 'node',
    meaning: 'The node is changing role (promotion or demotion).',
    action: 'Retry shortly.',
  },
  'too many failed authentications': {
    status: [429],
    sentBy: 'every HTTP listener',
    meaning: 'This client address failed authentication too often.',
    action: 'Fix the credentials and retry after the Retry-After seconds.',
  },
  unauthorised: {
    status: [401],
    sentBy: 'ILP over HTTP, router, /metrics',
    meaning: 'Credentials are missing or wrong.',
    action: 'Send the configured HTTP credentials.',
  },
  unauthorized: {
    status: [401],
    sentBy: 'admin endpoints, sequencer',
    meaning: 'The bearer token is missing or wrong.',
    action: 'Send Authorization: Bearer with the configured token.',
  },
  unreachable: {
    status: [0],
    sentBy: 'walship promote / switchover (no server)',
    meaning: 'The command could not reach the node at all.',
    action: 'Check the node URL and that the node runs.',
  },
  'uri too long': {
    status: [414],
    sentBy: 'every HTTP listener',
    meaning: 'The request URL is longer than allowed.',
    action: 'Send a shorter URL.',
  },
  'write outcome unknown': {
    status: [503],
    sentBy: 'router (writes)',
    meaning: 'The primary went away after the write was sent: the batch may or may not be committed.',
    action: 'Check before resending: resending may write the batch twice.',
  },
} as const satisfies Record<string, HttpAnswerCodeSpec>;

export type HttpAnswerCode = keyof typeof HTTP_ANSWER_CODES;
