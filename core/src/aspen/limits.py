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
#: Default page size of a range when the caller gives no limit.
DEFAULT_RANGE_LIMIT = 1000
#: Most keys one delete-range may remove in one command.
MAX_DELETE_RANGE_KEYS = 100_000

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

# --- Watch and history ----------------------------------------------------------------
#: Most events sent in one watch message.
MAX_WATCH_EVENTS_PER_MESSAGE = 1000
#: Most open watches on one client connection.
MAX_WATCHES_PER_CONNECTION = 1000
#: Seconds between progress notifications on an idle watch (when requested).
WATCH_PROGRESS_INTERVAL_SECONDS = 10.0
#: Revisions of history kept by automatic compaction (0 = never compact automatically).
AUTO_COMPACT_RETAIN_REVISIONS = 1_000_000

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

# --- Raft and snapshots ----------------------------------------------------------------
#: Bytes of state per snapshot chunk sent to a follower.
SNAPSHOT_CHUNK_BYTES = 1024 * 1024
#: Largest snapshot a node accepts from a leader, in bytes.
MAX_SNAPSHOT_BYTES = 64 * 1024**3
#: Seconds between Raft ticks.
RAFT_TICK_SECONDS = 0.05
#: Ticks without a leader's word before a follower campaigns (randomized up to twice this).
RAFT_ELECTION_TICKS = 10
#: Ticks between a leader's heartbeats.
RAFT_HEARTBEAT_TICKS = 2
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
#: Largest replicated command (a log entry), in bytes: below MAX_FRAME_BYTES so that any
#: entry fits one peer message.
MAX_ENTRY_BYTES = 3 * 1024 * 1024
#: Seconds a write or a linearizable read waits for the cluster before ``timeout``.
PROPOSAL_TIMEOUT_SECONDS = 8.0
#: A learner is promoted to voter only when it is at most this many entries behind the commit.
PROMOTE_MAX_LAG_ENTRIES = 100
#: Seconds before an unanswered ReadIndex request is asked again.
READ_INDEX_RETRY_SECONDS = 1.0
#: Most linearizable reads waiting for one ReadIndex round.
MAX_PENDING_READS = 100_000

# --- Client ---------------------------------------------------------------------------
#: Unread items one client stream (e.g. a watch) buffers before it is cancelled as too slow.
CLIENT_MAX_STREAM_BUFFERED_ITEMS = 10_000
#: Most ``not_leader`` redirects (or leaderless retries) the client follows for one request.
CLIENT_MAX_REDIRECTS = 5
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

# --- Plugin: hooks, handlers and runner (aspen-hooks) -----------------------------------
#: Longest handler name.
HOOKS_MAX_NAME_CHARS = 128
#: Longest handler pattern (``kv.put:/app/config/*``).
HOOKS_MAX_PATTERN_CHARS = 512
#: Most handlers a cluster may hold.
HOOKS_MAX_HANDLERS = 1000
#: Longest handler timeout, in seconds (and the default).
HOOKS_MAX_TIMEOUT_SECONDS = 3600.0
HOOKS_DEFAULT_TIMEOUT_SECONDS = 30.0
#: Most retries of one event (and the default).
HOOKS_MAX_RETRIES = 20
HOOKS_DEFAULT_RETRIES = 3
#: First and longest backoff between retries, in seconds (doubling in between).
HOOKS_BACKOFF_BASE_SECONDS = 0.2
HOOKS_BACKOFF_MAX_SECONDS = 30.0
#: TTL of the runner's lease: how long a dead runner's node blocks a new runner.
HOOKS_RUNNER_LEASE_SECONDS = 3
#: How often every node checks whether it should run (leader, runner key free).
HOOKS_SUPERVISE_INTERVAL_SECONDS = 0.25
#: Longest time a runner keeps a handler's cursor and counters unsaved while it is busy.
HOOKS_STATE_FLUSH_SECONDS = 0.2
#: An idle handler's cursor is saved at most this often, and only once other writes moved
#: it by HOOKS_IDLE_SAVE_REVISIONS (so that idle handlers do not keep writing each other's
#: progress).
HOOKS_IDLE_FLUSH_SECONDS = 5.0
HOOKS_IDLE_SAVE_REVISIONS = 1000
#: Tries of one progress or dead-letter save through brief trouble (timeouts, elections).
HOOKS_SAVE_ATTEMPTS = 5
#: Largest handler outcome kept in a dead-letter entry, in bytes (larger outputs are cut).
HOOKS_MAX_DLQ_OUTCOME_BYTES = 128 * 1024
#: Threads for synchronous python handlers (apart from the node's own worker threads).
HOOKS_MAX_PYTHON_THREADS = 8
#: Handlers one ``hooks trigger`` runs at the same time.
HOOKS_MAX_TRIGGER_CONCURRENCY = 16
#: Value bytes of a kv event carried in a hook's payload (larger values: size only).
HOOKS_MAX_PAYLOAD_VALUE_BYTES = 64 * 1024
#: Most dead-letter entries kept per handler (the oldest go first).
HOOKS_MAX_DLQ_ENTRIES = 10_000
#: Most recent durations kept per handler for p50/p99.
HOOKS_DURATION_SAMPLES = 512
#: Largest payload ``hooks trigger`` accepts, in bytes (msgpack).
HOOKS_MAX_TRIGGER_PAYLOAD_BYTES = 256 * 1024

# --- Plugin: hooks, executors (aspen-hooks) ----------------------------------------------
#: Bytes of stdout and of stderr kept from one shell handler run (each; the rest is counted).
HOOKS_MAX_OUTPUT_BYTES = 64 * 1024
#: Seconds between SIGTERM and SIGKILL to a shell handler's process group.
HOOKS_KILL_GRACE_SECONDS = 2.0
#: Seconds output is still read after a shell handler's processes are gone (a process that
#: left the group may hold the pipes open).
HOOKS_OUTPUT_DRAIN_SECONDS = 1.0
#: Longest shell handler command, in characters.
HOOKS_MAX_COMMAND_CHARS = 4096
#: Largest ``ASPEN_HOOK_EVENT`` (compact JSON), in bytes; a larger event is passed without
#: its ``value`` (an environment string must stay under the kernel's 128 KiB).
HOOKS_MAX_EVENT_ENV_BYTES = 96 * 1024
#: Longest python handler entry point (``package.module:function``), in characters.
HOOKS_MAX_ENTRYPOINT_CHARS = 256
#: Most Aspen clusters an event may cross through forward handlers (loop protection).
HOOKS_MAX_FORWARD_HOPS = 4
#: Most endpoints (``host:port,...``) of one forward target.
HOOKS_MAX_FORWARD_ENDPOINTS = 16
#: Longest forward target token, in characters.
HOOKS_MAX_FORWARD_TOKEN_CHARS = 1024
#: Longest event name a forward target renames events to, in characters.
HOOKS_MAX_EVENT_NAME_CHARS = 256
#: Seconds ``hooks add`` spends checking a target online (connect + call, or import).
HOOKS_CHECK_TIMEOUT_SECONDS = 3.0
#: Longest one-line error reason of a handler run, in characters.
HOOKS_MAX_ERROR_CHARS = 1000

# --- Plugin: secrets, common (aspen-secrets) ---------------------------------------------
#: Most keys one LIST of a secrets path returns.
SECRETS_MAX_LIST_KEYS = 10_000
#: Times a secrets engine re-reads and retries a write that raced another one.
SECRETS_MAX_WRITE_ATTEMPTS = 16
#: Longest path inside a secrets mount, in characters.
SECRETS_MAX_PATH_CHARS = 512
#: Largest request body the secrets HTTP API accepts, in bytes.
SECRETS_MAX_REQUEST_BYTES = 2 * 1024 * 1024
#: Keys the secrets store reads per ``kv.range`` page when it scans a prefix.
SECRETS_STORE_PAGE_SIZE = 1000
#: Entries one unmount deletes per transaction while it purges a mount's state.
SECRETS_UNMOUNT_BATCH = 500
#: Most secrets engines mounted at once (the mount table is one stored entry).
SECRETS_MAX_MOUNTS = 256
#: Most data-encryption key versions the keyring keeps (each rotation adds one).
SECRETS_MAX_KEYRING_TERMS = 4096
#: Seconds between attempts to open the keyring while the cluster has no leader.
SECRETS_STARTUP_RETRY_SECONDS = 0.5
#: Seconds the secrets HTTP server waits for open requests when the node stops.
SECRETS_HTTP_SHUTDOWN_SECONDS = 2.0
#: Leader connections a node keeps open to forward secrets writes (one per endpoint).
SECRETS_MAX_FORWARD_CLIENTS = 16
#: A mount's lease TTLs when it sets none (Vault's system default and maximum, 768h).
SECRETS_SYSTEM_LEASE_TTL_SECONDS = 768 * 3600
#: Longest ``default_lease_ttl`` / ``max_lease_ttl`` a mount may be tuned to (100 years).
SECRETS_MAX_MOUNT_TTL_SECONDS = 100 * 365 * 86400
#: Longest duration any secrets request field (TTLs, periods, buffers) may give (100 years).
SECRETS_MAX_DURATION_SECONDS = 100 * 365 * 86400
#: Bytes of opened (decrypted) stored values a node keeps to skip decrypting them again.
SECRETS_OPEN_CACHE_BYTES = 16 * 1024 * 1024
#: Largest opened value that cache keeps, in bytes (bigger ones are opened on every read).
SECRETS_OPEN_CACHE_MAX_VALUE_BYTES = 64 * 1024

# --- Plugin: secrets, KV v2 ------------------------------------------------------------
# (kv v2 constants go here)
#: Versions a KV v2 secret keeps when neither it nor its mount sets ``max_versions`` (Vault's).
KV2_DEFAULT_MAX_VERSIONS = 10
#: Largest ``max_versions`` a KV v2 mount or secret may set (also the most versions one
#: delete/undelete/destroy request may name); keeps one secret's metadata entry and its
#: delete-all commit (one write per version) well inside ``MAX_VALUE_BYTES``/``MAX_TXN_OPS``.
KV2_MAX_VERSIONS = 500
#: Largest ``data`` map of one KV v2 secret version, in bytes (msgpack-encoded).
KV2_MAX_DATA_BYTES = 512 * 1024
#: Deepest nesting of maps and lists inside one KV v2 ``data`` map.
KV2_MAX_DATA_DEPTH = 64
#: Most ``custom_metadata`` keys of one KV v2 secret (Vault's bound).
KV2_MAX_CUSTOM_METADATA_KEYS = 64
#: Longest ``custom_metadata`` key, in bytes (Vault's bound).
KV2_MAX_CUSTOM_METADATA_KEY_BYTES = 128
#: Longest ``custom_metadata`` value, in bytes (Vault's bound).
KV2_MAX_CUSTOM_METADATA_VALUE_BYTES = 512
#: Longest KV v2 secret path, in UTF-8 bytes (its storage keys add a mount prefix and a
#: version number and must stay under ``MAX_KEY_BYTES``).
KV2_MAX_PATH_BYTES = 512

# --- Plugin: secrets, Transit -----------------------------------------------------------
# (transit constants go here)
#: Largest plaintext or input (after base64 decoding) of one transit operation or batch item.
TRANSIT_MAX_INPUT_BYTES = 1024 * 1024
#: Most items in one transit ``batch_input``.
TRANSIT_MAX_BATCH_ITEMS = 1000
#: Most versions a transit key keeps (all live in one entry); trim old ones to rotate past it.
TRANSIT_MAX_KEY_VERSIONS = 256
#: Longest transit key name, in characters.
TRANSIT_MAX_KEY_NAME_CHARS = 128
#: Most bytes one transit ``random`` request returns (Vault's bound).
TRANSIT_MAX_RANDOM_BYTES = 128 * 1024
#: Longest derivation context, associated data or nonce of a transit request, in bytes.
TRANSIT_MAX_CONTEXT_BYTES = 4096
#: Smallest ``key_size`` of a transit ``hmac`` key, in bytes.
TRANSIT_HMAC_MIN_KEY_BYTES = 32
#: Largest ``key_size`` of a transit ``hmac`` key, in bytes.
TRANSIT_HMAC_MAX_KEY_BYTES = 512
#: Loaded transit key objects (parsed private keys) kept in memory per engine.
TRANSIT_KEY_CACHE_ENTRIES = 256
#: Most ``batch_input`` items a cheap transit operation (AES-GCM, ChaCha20, HMAC) runs on
#: the event loop; bigger batches and RSA/EC work go to a worker thread.
TRANSIT_INLINE_MAX_ITEMS = 16
#: Most input characters (all items) a cheap transit operation runs on the event loop.
TRANSIT_INLINE_MAX_CHARS = 64 * 1024

# --- Plugin: secrets, PKI ---------------------------------------------------------------
# (pki constants go here)
#: Default TTL of a PKI certificate when neither the request nor the role sets one (768h).
PKI_DEFAULT_TTL_SECONDS = 768 * 3600
#: A PKI mount's maximum TTL when neither the role nor the mount's ``max_lease_ttl`` sets one.
PKI_DEFAULT_MAX_TTL_SECONDS = 768 * 3600
#: Longest TTL any PKI certificate (a CA included) may be asked for (100 years).
PKI_MAX_TTL_SECONDS = 100 * 365 * 86400
#: Seconds a new certificate's ``notBefore`` is back-dated, for clock skew (Vault's 30s).
PKI_NOT_BEFORE_SKEW_SECONDS = 30
#: Seconds a freshly built CRL is valid (its ``nextUpdate``; Vault's 72h).
PKI_CRL_EXPIRY_SECONDS = 72 * 3600
#: Default ``safety_buffer`` of ``tidy``, in seconds (72h).
PKI_TIDY_DEFAULT_SAFETY_BUFFER_SECONDS = 72 * 3600
#: Most stored entries one ``tidy`` deletes per commit.
PKI_TIDY_BATCH = 500
#: Most revocations a PKI mount keeps (they all go into one CRL); ``tidy`` drops expired ones.
#: Below SECRETS_MAX_LIST_KEYS, so that one scan reads them all.
PKI_MAX_REVOKED_CERTS = 5_000
#: Largest PEM input (certificate, chain, CSR, bundle) a PKI request accepts, in bytes.
PKI_MAX_PEM_BYTES = 256 * 1024
#: Most certificates in a CA chain (``intermediate/set-signed``).
PKI_MAX_CHAIN_CERTS = 10
#: Most subject alternative names (DNS, IP, email, URI together) in one certificate.
PKI_MAX_SANS = 256
#: Most items in one list field of a PKI role (``allowed_domains``, ``ou``…).
PKI_MAX_ROLE_LIST_ITEMS = 1000
#: Longest name of a PKI role, in characters.
PKI_MAX_ROLE_NAME_CHARS = 128
#: Longest DNS name, email or URI checked against a role, in characters.
PKI_MAX_NAME_CHARS = 1024
#: Loaded CA issuers (parsed private keys) a process keeps, by stored entry.
PKI_ISSUER_CACHE_ENTRIES = 64

# --- Plugin: secrets, SOPS --------------------------------------------------------------
# (sops constants go here)
#: Largest SOPS file (or age key file) ``aspen secrets sops`` reads or writes, in bytes.
SOPS_MAX_FILE_BYTES = 4 * 1024 * 1024
#: Deepest nesting of maps and lists a SOPS document may have.
SOPS_MAX_DEPTH = 64
#: Most values (leaves) one SOPS document may hold.
SOPS_MAX_VALUES = 100_000

__all__ = [name for name in list(globals()) if name.isupper()]
