"""Every resource bound in Aspen, as a named constant.

Input over a bound gets an ``invalid_argument`` (or ``resource_exhausted``) error that
names the bound; nothing is silently truncated.
"""

from __future__ import annotations

# --- KV data ------------------------------------------------------------------------
#: Largest key, in bytes.
MAX_KEY_BYTES = 1024
#: Largest value, in bytes.
MAX_VALUE_BYTES = 1024 * 1024
#: Most operations (put/delete/range/nested txn) in one transaction, across all branches.
MAX_TXN_OPS = 1000
#: Most compares in one transaction.
MAX_TXN_COMPARES = 1000
#: Deepest nesting of transactions inside transactions.
MAX_TXN_DEPTH = 4
#: Most keys returned by one range page (a larger ``limit`` is refused).
MAX_RANGE_LIMIT = 10_000
#: Most bytes of key-values one ``kv.range`` page carries (keys and values as stored, plus
#: ``aspen.kv.reads.KV_WIRE_OVERHEAD_BYTES`` each): the page is cut before the key-value that
#: would go over and answered with ``more`` true, so a scan continues from there. Well under
#: MAX_FRAME_BYTES; a single key-value (MAX_KEY_BYTES + MAX_VALUE_BYTES) always fits.
MAX_RANGE_PAGE_BYTES = 2 * 1024 * 1024
#: Default page size of a range when the caller gives no limit.
DEFAULT_RANGE_LIMIT = 1000
#: Most keys one delete-range may remove in one command.
MAX_DELETE_RANGE_KEYS = 100_000
#: Most key-values one write or txn answer may carry: the kvs of a txn's ranges (their
#: limits must add up to at most this, checked before proposing) and the ``prev_kv`` of
#: deletes and puts.
MAX_RESPONSE_KVS = 10_000
#: Most bytes of key-values (as stored: key, value and revisions) one write or txn answer
#: may carry; with MAX_RESPONSE_KVS this keeps any answer inside MAX_FRAME_BYTES.
MAX_RESPONSE_KV_BYTES = 2 * 1024 * 1024
#: Most keys the ranges and compares of one txn may visit (a range visits the keys it
#: answers and one more, or every key in it when it counts); bounds a txn's work on every
#: replica.
MAX_TXN_SCAN_KEYS = 100_000

# --- Leases -------------------------------------------------------------------------
#: Shortest lease TTL, in seconds (shorter requests are raised to this, as etcd does).
MIN_LEASE_TTL_SECONDS = 2
#: Longest lease TTL, in seconds.
MAX_LEASE_TTL_SECONDS = 10 * 365 * 24 * 3600
#: Most live leases on a node.
MAX_LEASES = 100_000
#: Most keys attached to one lease that ``lease ttl --keys`` lists.
MAX_LEASE_KEYS_LISTED = 10_000
#: How often the node looks for expired leases, in seconds.
LEASE_CHECK_INTERVAL_SECONDS = 0.25
#: Most leases expired by one proposed command.
MAX_LEASES_EXPIRED_PER_COMMAND = 1000
#: Most keys one lease expiry command deletes (whole leases while they fit; a lease with
#: more keys loses them over several commands), so no single apply stalls the driver.
LEASE_EXPIRY_SLICE_KEYS = 2_000
#: Most bytes (encoded key + stored record) one lease expiry command deletes.
LEASE_EXPIRY_SLICE_BYTES = 2 * 1024 * 1024
#: Pause between two lease expiry commands while more are due, in seconds: followers apply
#: each slice between their heartbeats (etcd rate-limits lease revocation the same way).
LEASE_EXPIRY_PAUSE_SECONDS = 0.05

# --- Watch and history ----------------------------------------------------------------
#: Most events sent in one watch message.
MAX_WATCH_EVENTS_PER_MESSAGE = 1000
#: Most bytes of keys and values (``kv`` and ``prev_kv``) in one watch message; a single
#: larger event (at most two keys and two values at their maxima) travels alone.
MAX_WATCH_MESSAGE_BYTES = 1024 * 1024
#: Most stored history entries one watch read examines (matching the watch or not) in
#: one worker-thread slice before it hands back what it found.
WATCH_READ_SLICE_ENTRIES = 10_000
#: Most bytes of stored history one watch read examines in one worker-thread slice.
WATCH_READ_SLICE_BYTES = 8 * 1024 * 1024
#: Watch history reads running at once in worker threads (the others wait their turn),
#: so catching-up watches never hold the threads the Raft driver needs.
WATCH_READ_THREADS = 2
#: Most revisions whose changed keys the watch hub remembers, so a watcher woken by a
#: change outside its range skips the history read (a worker-thread hop) it would make.
WATCH_RECENT_REVISIONS = 1024
#: Most bytes of keys the watch hub remembers for that (older revisions are forgotten;
#: a watcher behind them reads the history as before).
WATCH_RECENT_KEY_BYTES = 1024 * 1024
#: Most open watches on one client connection.
MAX_WATCHES_PER_CONNECTION = 1000
#: Seconds between progress notifications on an idle watch (when requested).
WATCH_PROGRESS_INTERVAL_SECONDS = 10.0
#: Revisions of history kept by automatic compaction (0 = never compact automatically).
AUTO_COMPACT_RETAIN_REVISIONS = 1_000_000
#: Most history entries one write cycle deletes for a compaction (a compaction of more goes
#: on in the following cycles, so it never holds writes up for long).
COMPACT_SLICE_ENTRIES = 10_000
#: Most bytes of history entries one write cycle deletes for a compaction.
COMPACT_SLICE_BYTES = 8 * 1024 * 1024

# --- Write path -----------------------------------------------------------------------
#: Most commands in one group commit (one LMDB transaction, one fsync).
MAX_COMMANDS_PER_BATCH = 4096
#: Most proposals waiting for the writer before new ones get ``resource_exhausted``.
MAX_PENDING_PROPOSALS = 100_000

# --- Storage --------------------------------------------------------------------------
#: LMDB map size: the largest the data file may grow, in bytes.
LMDB_MAP_SIZE = 64 * 1024**3
#: Most LMDB named databases in one environment.
LMDB_MAX_DBS = 32
#: Most concurrent LMDB read transactions.
LMDB_MAX_READERS = 512
#: Free disk space a node keeps for Raft's own small writes (term, vote, commit index,
#: log compaction): a write that would leave less free is refused (``resource_exhausted``).
DISK_RESERVE_BYTES = 4 * 1024 * 1024
#: Bytes of disk (and of the LMDB map) a write is assumed to need per byte of its encoded
#: command: the log entry, the key's value, its history record, copy-on-write pages.
WRITE_SPACE_FACTOR = 4
#: Seconds the Raft driver pauses after a write cycle failed for lack of space (disk full
#: or LMDB map full) before it retries; writes resume by themselves once space is freed.
DISK_FULL_RETRY_SECONDS = 0.5
#: Room beyond a write's own need (on disk and in the LMDB map) above which the last
#: measurement of free space is reused instead of measuring again on every write.
SPACE_REUSE_HEADROOM_BYTES = 256 * 1024 * 1024
#: Longest a measurement of free space is reused, in seconds.
SPACE_REUSE_SECONDS = 1.0

# --- Wire protocol --------------------------------------------------------------------
#: Largest frame (one msgpack message) on a client or peer link, in bytes.
MAX_FRAME_BYTES = 4 * 1024 * 1024
#: Largest method name.
MAX_METHOD_NAME_BYTES = 128
#: Seconds a new connection has to complete its hello.
HELLO_TIMEOUT_SECONDS = 5.0
#: Most simultaneous client connections on a node.
MAX_CLIENT_CONNECTIONS = 10_000
#: Most requests in flight on one connection before the server stops reading from it.
MAX_INFLIGHT_PER_CONNECTION = 1024
#: Reply bytes queued on one connection (not yet taken by the peer) above which the server
#: stops reading that connection and starts no new handler for it until the peer reads.
MAX_QUEUED_REPLY_BYTES_PER_CONNECTION = 8 * 1024 * 1024
#: Reply size assumed for each request a connection has in flight, before its replies show
#: their real size (the largest frame: a new connection starts 2 handlers at once; the
#: estimate then follows its replies, and small ones let it reach MAX_INFLIGHT_PER_CONNECTION).
REPLY_BYTES_ASSUMED_PER_REQUEST = 4 * 1024 * 1024
#: Bytes of requests (4 KiB or more each) one connection may have running, their params
#: held by handlers, before the server starts no new handler for it (one always runs).
MAX_INFLIGHT_REQUEST_BYTES_PER_CONNECTION = 16 * 1024 * 1024
#: Queued reply bytes at which a connection is closed as not reading: a last resort that
#: back-pressure keeps well-behaved connections far below.
MAX_UNREAD_REPLY_BYTES_PER_CONNECTION = 128 * 1024 * 1024
#: Default client request deadline, in seconds.
DEFAULT_REQUEST_TIMEOUT_SECONDS = 10.0
#: Seconds the client waits for a TCP connect before trying the next endpoint.
CONNECT_TIMEOUT_SECONDS = 3.0

# --- Peer links and TLS ---------------------------------------------------------------
#: Messages queued for one peer before new ones are dropped (and counted; Raft resends).
PEER_QUEUE_MESSAGES = 10_000
#: Bytes of encoded messages queued for one peer before new ones are dropped.
PEER_QUEUE_BYTES = 64 * 1024 * 1024
#: Most bytes of queued frames coalesced into one write on a peer link.
PEER_WRITE_BATCH_BYTES = 1024 * 1024
#: Bytes asked for per receive on a peer link.
PEER_READ_CHUNK_BYTES = 256 * 1024
#: First delay before reconnecting a peer link, in seconds (doubles per failure, jittered).
PEER_RECONNECT_MIN_SECONDS = 0.05
#: Longest delay between reconnect attempts of a peer link, in seconds.
PEER_RECONNECT_MAX_SECONDS = 2.0
#: Seconds a peer link waits for a TCP connect.
PEER_CONNECT_TIMEOUT_SECONDS = 3.0
#: Seconds a new peer connection has for its TLS handshake and hello (both directions).
PEER_HANDSHAKE_TIMEOUT_SECONDS = 5.0
#: Seconds sent data may stay unacknowledged before the kernel drops a peer connection
#: (TCP_USER_TIMEOUT: a vanished peer is noticed and the link reconnects).
PEER_TCP_USER_TIMEOUT_SECONDS = 15.0
#: Most simultaneous inbound peer connections on a node (links, streams, joins).
MAX_PEER_CONNECTIONS = 1024
#: Most snapshot (or other) streams a node receives at once.
MAX_PEER_STREAMS = 4
#: Blob transfers (fetches of a replica, streamed copies of a put; see aspen.blobs.transfer)
#: a node serves at once; counted apart from MAX_PEER_STREAMS so that blob copies never hold
#: up a snapshot.
MAX_PEER_BLOB_TRANSFERS = 16
#: Largest chunk of a peer stream, in bytes (bigger chunks are split).
PEER_STREAM_CHUNK_BYTES = 1024 * 1024
#: Seconds a stream receiver waits for the next chunk before giving up.
PEER_STREAM_IDLE_TIMEOUT_SECONDS = 30.0
#: Seconds a stream sender waits for the receiver's answer after the last chunk.
PEER_STREAM_RESULT_TIMEOUT_SECONDS = 300.0
#: Seconds a joining node waits for a member's grant (the member may commit a change first).
JOIN_TIMEOUT_SECONDS = 30.0
#: Validity of a node certificate issued by the cluster CA, in days.
NODE_CERT_VALIDITY_DAYS = 3650
#: A node certificate closer than this to its expiry is re-issued at start-up, in days.
NODE_CERT_RENEW_DAYS = 30
#: Validity of the cluster CA certificate, in days.
CLUSTER_CA_VALIDITY_DAYS = 30 * 365
#: Certificates are valid from this many seconds before they are issued (clock skew).
CERT_BACKDATE_SECONDS = 3600

# --- Event bus ------------------------------------------------------------------------
#: Events buffered per subscriber before new ones are dropped (and counted).
SUBSCRIBER_MAILBOX_SIZE = 10_000
#: Seconds one notification hook call may take before it is abandoned (and counted).
SUBSCRIBER_CALL_TIMEOUT_SECONDS = 5.0
#: Seconds an ``aspen_startup``/``aspen_shutdown`` hook may take.
LIFECYCLE_HOOK_TIMEOUT_SECONDS = 30.0


# --- Log ------------------------------------------------------------------------------
#: Log entries kept behind the applied index before the log is compacted.
LOG_RETAIN_ENTRIES = 10_000
#: Bytes of log kept behind the applied index (the log is compacted once it holds twice
#: this): large commands (1000-put txns) would otherwise keep gigabytes for LOG_RETAIN_ENTRIES.
LOG_RETAIN_BYTES = 32 * 1024 * 1024
#: Log entries one write cycle deletes at most when it compacts the log: deleting
#: LOG_RETAIN_ENTRIES small entries at once held every write up ~12 ms here.
LOG_COMPACT_SLICE_ENTRIES = 1000

# --- Raft and snapshots ----------------------------------------------------------------
#: Bytes of state per snapshot chunk sent to a follower.
SNAPSHOT_CHUNK_BYTES = 1024 * 1024
#: Largest snapshot a node accepts from a leader, in bytes.
MAX_SNAPSHOT_BYTES = 64 * 1024**3
#: Seconds between Raft ticks.
RAFT_TICK_SECONDS = 0.05
#: Ticks without a leader's word before a follower campaigns (randomized up to twice this);
#: also the default of `aspen.raft.Config.election_tick`.
RAFT_ELECTION_TICKS = 10
#: Ticks between a leader's heartbeats; also the default of `aspen.raft.Config.heartbeat_tick`.
RAFT_HEARTBEAT_TICKS = 2
#: Seconds a leader waits before it tells followers a commit no APPEND has carried yet (a
#: "commit notice", an empty APPEND each): at one client the next write's APPEND carries it
#: sooner, so the notice rarely goes out (measured on the shared 2-core box: the next APPEND
#: came 1.0 ms after the commit at the median, 2.8 ms at p99; with 2 ms, 28% of notices
#: still went out under heavy load). A follower applies (and its watchers hear) a lone
#: write up to this much later; a write followed by another, after that one's round trip
#: and fsync. Sub-tick, so the driver times it (`aspen.raft.leader`).
COMMIT_NOTICE_DELAY_SECONDS = 0.005
#: Ready rounds handled inside one driver cycle's transaction (one fsync).
MAX_READY_PER_CYCLE = 4
#: Longest node id accepted in a request.
MAX_NODE_ID_CHARS = 64
#: Longest host:port accepted for a member's address (joins, ``cluster.add_learner``).
MAX_ADDRESS_CHARS = 256
#: Most addresses a joining node may announce.
MAX_JOIN_ADDRESSES = 16
#: Most Raft messages stepped per driver cycle.
MAX_RAFT_MESSAGES_PER_CYCLE = 4096
#: Bytes of durable, not yet applied log entries Raft keeps in memory after the driver
#: persisted them (``aspen.raft.log.RaftLog``), so that handing them out to apply (and to
#: followers) does not read them back from storage; older ones are read from storage.
RAFT_STABLE_CACHE_BYTES = 4 * 1024 * 1024
#: Largest replicated command (a log entry), in bytes: below MAX_FRAME_BYTES so that any
#: entry fits one peer message.
MAX_ENTRY_BYTES = 3 * 1024 * 1024

# --- Raft-log WAL (aspen.storage.wal) ---------------------------------------------------
#: WAL bytes written since the last checkpoint that start the next one (LMDB flushed, a new
#: segment begun, the old one deleted): this bounds the WAL on disk (about one segment of
#: this size) and the replay work after a crash.
WAL_CHECKPOINT_BYTES = 64 * 1024 * 1024
#: Log entries written to the WAL since the last checkpoint that start the next one (also
#: bounds how many entries a restart may re-apply beyond LMDB's durable applied index).
WAL_CHECKPOINT_ENTRIES = 20_000
#: Bytes of log entries (their data) a node may hold in its WAL and memory only, not yet
#: written into LMDB's copy of the log (``LmdbRaftStorage.defer``): a write cycle that only
#: persists entries syncs the WAL and skips the LMDB commit; the next cycle that commits
#: LMDB anyway (to apply, or at a checkpoint) writes them there. Past this a cycle commits.
MAX_RAFT_TAIL_BYTES = 8 * 1024 * 1024
#: Largest payload of one WAL record, in bytes: entries are written in records up to this
#: size (one entry may exceed it up to MAX_ENTRY_BYTES); a larger length read back is corrupt.
WAL_RECORD_BYTES = 4 * 1024 * 1024
#: Disk a node keeps allocated (``posix_fallocate``) past the last used page of its LMDB
#: data file, topped up when half is used: a write cycle's commit, which comes after the
#: WAL sync that let its acknowledgements out, then finds its blocks already allocated and
#: does not fail for a disk another program filled (the top-up fails first, before the WAL).
LMDB_RESERVE_BYTES = 4 * 1024 * 1024
#: Longest an apply batch stays open: the driver keeps one LMDB write transaction open
#: across cycles for the state machine's applies (``aspen.node.replicator``) and commits it
#: this long after its first uncommitted apply at the latest (checked every cycle and
#: every Raft tick). Readers never wait for it: a read that needs the batch's writes
#: visible commits it at once. It bounds the WAL a restart replays beyond LMDB.
APPLY_BATCH_SECONDS = 0.05
#: Largest ``--apply-batch-seconds`` a node accepts.
MAX_APPLY_BATCH_SECONDS = 60.0
#: Bytes of log entries (their data) applied into one open apply batch past which it is
#: committed: what they need (WRITE_SPACE_FACTOR per byte) stays within half of
#: LMDB_RESERVE_BYTES, the part of the reserve a cycle finds allocated, so the commit of
#: writes already answered does not fail for a disk another program filled.
APPLY_BATCH_BYTES = LMDB_RESERVE_BYTES // (2 * WRITE_SPACE_FACTOR)
#: Log entries applied into one open apply batch past which it is committed: bounds the
#: write transaction's dirty pages when many small writes touch scattered keys (a few
#: pages each).
APPLY_BATCH_ENTRIES = 1000
#: Commands one driver cycle of a single voter applies from which it commits its apply
#: batch at once (the commit's flush gathers the next cycle's writes: see the driver's
#: docstring, "a single voter under load"); a lone client's cycles keep the batch open.
APPLY_BATCH_BUSY_COMMANDS = 4
#: After a read had to commit the apply batch (it waited for what the batch held), every
#: write cycle commits as it ends for this long: with reads and writes interleaved (a
#: consumer's fetch after its ack), each read would otherwise pay a commit cycle of its own.
APPLY_BATCH_READ_WINDOW_SECONDS = 0.5
#: Seconds a write or a linearizable read waits for the cluster before ``timeout``.
PROPOSAL_TIMEOUT_SECONDS = 8.0
#: A learner is promoted to voter only when it is at most this many entries behind the commit.
PROMOTE_MAX_LAG_ENTRIES = 100
#: Seconds before an unanswered ReadIndex request is asked again.
READ_INDEX_RETRY_SECONDS = 1.0
#: Most linearizable reads waiting for one ReadIndex round.
MAX_PENDING_READS = 100_000
#: Most reads (ranges, read-only txns, bound checks) a node runs at once in worker threads,
#: off the event loop; leaves threads for the Raft driver's writes.
MAX_READ_THREADS = 4

# --- Client ---------------------------------------------------------------------------
#: Unread items one client stream (e.g. a watch) buffers before it is cancelled as too slow.
CLIENT_MAX_STREAM_BUFFERED_ITEMS = 10_000
#: Most ``not_leader`` redirects (or leaderless retries) the client follows for one request.
CLIENT_MAX_REDIRECTS = 5
#: Leader connections one ``aspen.client.leader.LeaderCaller`` keeps by default (a plugin
#: forwarding writes from a follower; one per leader endpoint it has seen).
LEADER_MAX_CLIENTS = 4
#: Seconds the client keeps retrying a request that is safe to retry (refused with
#: ``not_leader``, never sent, or read-only) across a leader change; a client option.
CLIENT_FAILOVER_RETRY_SECONDS = 10.0
#: Most unary requests one client connection has in flight; further calls wait for room.
CLIENT_MAX_INFLIGHT_PER_CONNECTION = 1024
#: Bytes of unary requests one client connection has in flight (sent or buffered); further
#: calls wait for room (a single larger request still goes alone).
CLIENT_MAX_INFLIGHT_REQUEST_BYTES = 16 * 1024 * 1024
#: Default page size of the client's ``kv.scan``.
CLIENT_SCAN_PAGE_SIZE = 1000
#: Most keys under /_aspen/ that ``aspen kv range`` counts to say how many it hides
#: ("more than N" beyond): one small page, never a count of the whole prefix.
CLI_HIDDEN_KEYS_COUNTED = 1000

# --- HTTP listeners plugins open (aspen.http) -------------------------------------------
#: Seconds a client has to send a request line and all its headers, counted from the
#: connection's start (or, on a kept-alive connection, the request's first byte); then it
#: is answered 408 and closed (slowloris).
HTTP_HEADER_TIMEOUT_SECONDS = 10.0
#: Seconds a request body may take, plus one second per HTTP_MIN_BODY_BYTES_PER_SECOND
#: received (a body trickled slower is answered 408 and closed).
HTTP_BODY_TIMEOUT_SECONDS = 30.0
#: Slowest sustained rate a request body may arrive at, in bytes per second.
HTTP_MIN_BODY_BYTES_PER_SECOND = 64 * 1024
#: Seconds an idle kept-alive connection stays open between requests.
HTTP_IDLE_TIMEOUT_SECONDS = 5.0
#: Most simultaneous connections on one HTTP listener; more are answered 503 and closed.
HTTP_MAX_CONNECTIONS = 512
#: Largest share of the process's open-file limit one HTTP listener may hold (lowers
#: HTTP_MAX_CONNECTIONS under a small ``ulimit -n``, so RPC and Raft keep descriptors).
HTTP_MAX_FD_SHARE = 0.25
#: Largest request line plus headers, in bytes (more: 431).
HTTP_MAX_HEADER_BYTES = 16 * 1024
#: Largest request body a listener accepts unless its plugin sets another bound, in bytes
#: (more: 413).
HTTP_MAX_BODY_BYTES = 1024 * 1024
#: Seconds open requests get to finish when a listener stops.
HTTP_SHUTDOWN_SECONDS = 2.0
#: Seconds a connection the listener answered with an error stays half-closed, reading
#: and dropping what the client still sends, so that the client reads the error instead
#: of a reset.
HTTP_LINGER_SECONDS = 1.0
#: Most connections of one listener lingering that way at once (more are closed at once).
HTTP_MAX_LINGERING_CONNECTIONS = 64
#: Bytes of one HTTP connection's input a listener buffers (a request body the app has not
#: read yet, or pipelined requests behind the one being answered) before it stops reading.
HTTP_READ_BUFFER_BYTES = 256 * 1024

# ---------------------------------------------------------------- blobs (aspen.blobs)
#: Largest blob, in bytes (a put over it is refused with ``resource_exhausted``); nodes
#: take ``ASPEN_BLOB_MAX_BYTES`` instead when it is set (tests use a small one).
BLOB_MAX_BYTES = 64 * 1024**3
#: Bytes of one piece of a blob on the wire (a put chunk request, a get item): well under
#: MAX_FRAME_BYTES, and the unit in which a node reads, verifies and sends a blob.
BLOB_CHUNK_BYTES = 2 * 1024 * 1024
#: Bytes one ``blob.get`` request streams at most; a reader asks for the next window while
#: it takes this one, so a reader holds at most two windows.
BLOB_GET_WINDOW_BYTES = 8 * 1024 * 1024
#: Put chunk requests a client keeps in flight on one upload (memory per upload on the
#: node is at most this many chunks).
BLOB_PUT_WINDOW_CHUNKS = 4
#: Uploads one connection may have open at once.
BLOB_MAX_UPLOADS_PER_CONNECTION = 16
#: Uploads one node may have open at once (each holds a temporary file).
BLOB_MAX_UPLOADS = 256
#: Seconds an upload may sit without a chunk before the node drops it and deletes its
#: temporary file (a client killed mid-put).
BLOB_UPLOAD_IDLE_SECONDS = 60.0
#: Free bytes a blob write must leave on the data dir's disk (on top of the blob).
BLOB_DISK_RESERVE_BYTES = 64 * 1024 * 1024
#: Default number of nodes a put waits to hold a blob (capped at the voters).
BLOB_DEFAULT_REPLICAS = 3
#: Most replicas a put or the cluster setting may ask for.
BLOB_MAX_REPLICAS = 16
#: Most seconds between two looks of a node for local replicas the cluster no longer
#: records (a quarter of the GC grace period when that is shorter).
BLOB_LOCAL_GC_INTERVAL_SECONDS = 60.0
#: Seconds an unpinned blob is kept after its last put before GC removes it
#: (``ASPEN_BLOB_GC_GRACE_SECONDS`` overrides it on a node).
BLOB_GC_GRACE_SECONDS = 3600.0
#: Seconds a holder may stay unreachable before the repairer copies its blobs elsewhere
#: (``ASPEN_BLOB_HOLDER_GRACE_SECONDS`` overrides it).
BLOB_HOLDER_GRACE_SECONDS = 300.0
#: Seconds between two passes of the repairer and the GC on the leader
#: (``ASPEN_BLOB_REPAIR_INTERVAL_SECONDS`` overrides it).
BLOB_REPAIR_INTERVAL_SECONDS = 10.0
#: Seconds between two background scrubs of a node's blobs (each re-verifies every local
#: blob; ``ASPEN_BLOB_SCRUB_INTERVAL_SECONDS`` overrides it).
BLOB_SCRUB_INTERVAL_SECONDS = 24 * 3600.0
#: Copies the repairer runs at once.
BLOB_REPAIR_CONCURRENCY = 4
#: Blobs one repair pass examines (bounds the metadata held in memory by one pass).
BLOB_REPAIR_SCAN_BLOBS = 100_000
#: Seconds a node-to-node copy of one blob may take before it is abandoned.
BLOB_COPY_TIMEOUT_SECONDS = 3600.0
#: Blobs ``blob.list`` returns in one page (and the most a caller may ask for).
BLOB_LIST_LIMIT = 1000
#: Pin names one ``blob.list`` page carries in all (a blob with more lists this many and
#: says ``pins_truncated``); pins of one page of ``blob.pins`` are ``BLOB_LIST_LIMIT``.
BLOB_LIST_MAX_PINS = 10_000
#: Bytes of a pin name.
BLOB_MAX_PIN_NAME_BYTES = 512

# ---------------------------------------------------------------- event journal (aspen.journal)
#: Largest payload of one journal event (its msgpack encoding), in bytes.
EVENTS_MAX_PAYLOAD_BYTES = 64 * 1024
#: Longest event name (``forge.push``), in bytes.
EVENTS_MAX_NAME_BYTES = 128
#: Longest event subject (``acme/widgets``), in bytes.
EVENTS_MAX_SUBJECT_BYTES = 1024
#: Events the journal keeps by default (the oldest are trimmed past it, in apply);
#: ``aspen events retention --max-events`` overrides it for a cluster.
EVENTS_RETAIN_EVENTS = 100_000
#: Bytes of stored events the journal keeps by default (name, subject, payload and fixed
#: fields); ``--max-bytes`` overrides it for a cluster.
EVENTS_RETAIN_BYTES = 256 * 1024 * 1024
#: Seconds of events the journal keeps by default, measured against the newest event's
#: (proposer's) time; 0 = no age bound. ``--max-age`` overrides it for a cluster.
EVENTS_RETAIN_SECONDS = 0.0
#: Most events trimmed by one command beyond those it publishes, so a retention lowered a
#: lot is reached over several commands instead of stalling one apply.
EVENTS_TRIM_SLICE_EVENTS = 10_000
#: Most events one ``events.read`` page (or one watch message) carries.
EVENTS_MAX_PAGE_EVENTS = 1000
#: Most bytes of events (as stored) one page or watch message carries; a single larger event
#: travels alone.
EVENTS_MAX_PAGE_BYTES = 1024 * 1024
#: Most stored events one read examines (matching its filter or not) before it answers with
#: what it found and where to go on, so a filtered read costs at most this much.
EVENTS_READ_SLICE_EVENTS = 10_000
#: Most open ``events.watch`` streams on one client connection.
EVENTS_MAX_WATCHES_PER_CONNECTION = 100
#: Seconds between progress items of an idle ``events.watch`` (carrying the next position).
EVENTS_PROGRESS_INTERVAL_SECONDS = 10.0

__all__ = [name for name in list(globals()) if name.isupper()]

# --- capability tokens (aspen.auth) ------------------------------------------------------
#: Longest capability string (``kv:read:/app/``), in bytes.
MAX_CAPABILITY_BYTES = 1024 + 64
#: Most capabilities one token (or one attenuation block) may carry.
MAX_TOKEN_CAPABILITIES = 64
#: Deepest delegation chain: blocks appended to a token by attenuation, plus tokens created
#: from tokens (``aspen token create`` with a scoped token); a deeper chain is refused.
MAX_TOKEN_CHAIN_DEPTH = 8
#: Longest token text, in bytes: a node refuses a longer one in a hello before decoding it,
#: and creating or attenuating one that would be longer is refused.
MAX_TOKEN_BYTES = 64 * 1024
#: Longest token name (``aspen token create --name``), in bytes.
MAX_TOKEN_NAME_BYTES = 128
#: Longest lifetime of an issued token, in seconds (one year); ``--ttl`` above it is refused.
MAX_TOKEN_TTL_SECONDS = 365 * 24 * 3600
#: Most tokens ``token.list`` answers in one call.
MAX_TOKEN_LIST = 10_000
#: Most bytes of token records ``token.list`` answers in one call (then ``more`` is true).
MAX_TOKEN_LIST_BYTES = 1024 * 1024
#: Time a Biscuit authorizer may spend on one token's Datalog checks (at hello), in seconds.
TOKEN_DATALOG_SECONDS = 0.05
#: Default sustained requests per second of one scoped token, per node (token bucket rate);
#: overridable per token at creation (``--rate``).
TOKEN_RATE_PER_SECOND = 5000.0
#: Default burst of one scoped token's bucket, per node (``--burst``).
TOKEN_RATE_BURST = 10_000
#: Default most streams (watches…) one scoped token may have open at once on a node.
TOKEN_MAX_STREAMS = 64
#: Requests per second (and burst) of a token the core mints for its own client of the
#: cluster (``Node.internal_token``, e.g. the blob service's): high enough never to throttle
#: the node's own metadata writes, still a finite bucket.
INTERNAL_TOKEN_RATE_PER_SECOND = 1_000_000
#: Most distinct tokens a node keeps state for (verified grants, rate buckets, open
#: streams); the least recently used is dropped first (and verified again when it returns).
MAX_TRACKED_TOKENS = 10_000
#: Most records a node keeps in its audit log of denials and token creates/revokes
#: (oldest dropped first).
MAX_AUDIT_RECORDS = 10_000
#: Largest one audit record's text fields (method, capability, message), in bytes.
MAX_AUDIT_FIELD_BYTES = 512
