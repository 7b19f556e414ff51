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
#: Most outgoing frames queued on one connection before it is closed as too slow.
MAX_OUTBOUND_FRAMES_PER_CONNECTION = 4096
#: Default client request deadline, in seconds.
DEFAULT_REQUEST_TIMEOUT_SECONDS = 10.0
#: Seconds the client waits for a TCP connect before trying the next endpoint.
CONNECT_TIMEOUT_SECONDS = 3.0

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

# --- Client ---------------------------------------------------------------------------
#: Unread items one client stream (e.g. a watch) buffers before it is cancelled as too slow.
CLIENT_MAX_STREAM_BUFFERED_ITEMS = 10_000
#: Most ``not_leader`` redirects (or leaderless retries) the client follows for one request.
CLIENT_MAX_REDIRECTS = 5
#: Default page size of the client's ``kv.scan``.
CLIENT_SCAN_PAGE_SIZE = 1000

__all__ = [name for name in list(globals()) if name.isupper()]
