"""Every resource bound of the coord plugin, as a named constant.

The core's bounds live in :mod:`aspen.limits`; these are aspen-coord's own. Input over a
bound gets an ``invalid_argument`` (or ``resource_exhausted``) error that names the bound.
"""

from __future__ import annotations

# --- Names and values ------------------------------------------------------------------
#: Longest name of a primitive (lock, counter, service…), in UTF-8 bytes.
COORD_MAX_NAME_BYTES = 200
#: Longest value an election candidate proclaims, in bytes.
COORD_MAX_VALUE_BYTES = 4096
#: Longest service-instance address, in UTF-8 bytes.
COORD_MAX_ADDRESS_BYTES = 512
#: Most tags on one service instance, and the longest tag in UTF-8 bytes.
COORD_MAX_TAGS = 32
COORD_MAX_TAG_BYTES = 128
#: Most bytes of all tags plus metadata of one service instance.
COORD_MAX_INSTANCE_BYTES = 8192

# --- Queues (locks, elections, semaphores, rwlocks, barriers) -------------------------
#: Most waiters (holders included) in one lock / election / semaphore / rwlock queue,
#: and most participants of one barrier; one more is refused with resource_exhausted.
COORD_MAX_WAITERS = 256
#: Most permits of one semaphore, and most participants a barrier may wait for.
COORD_MAX_PERMITS = COORD_MAX_WAITERS
#: Longest wait of one acquire / campaign / barrier call, in seconds.
COORD_MAX_WAIT_SECONDS = 600.0
#: Shortest and longest TTL of a lease granted by the plugin, in seconds.
COORD_MIN_TTL_SECONDS = 1
COORD_MAX_TTL_SECONDS = 3600

# --- Elections -------------------------------------------------------------------------
#: Seconds ``election observe`` / ``election leader`` wait for their linearizable read of
#: the election before answering ``unavailable`` (a node cut off from the cluster's leader
#: would otherwise wait the core's PROPOSAL_TIMEOUT_SECONDS and answer ``timeout``).
COORD_ELECTION_READ_SECONDS = 3.0
#: Seconds before that read is tried again when a leader change cut it short.
COORD_ELECTION_READ_RETRY_SECONDS = 0.2

# --- Counters and sequences ------------------------------------------------------------
#: Counters are signed 64-bit integers; an add or cas outside this range is refused.
COORD_COUNTER_MIN = -(2**63)
COORD_COUNTER_MAX = 2**63 - 1
#: Most numbers one ``sequence reserve`` hands out.
COORD_MAX_RESERVE = 1_000_000
#: Read + compare-and-swap rounds one counter add tries under contention before it
#: answers ``unavailable`` (each round loses only to another writer's success).
COORD_MAX_CAS_ATTEMPTS = 200

# --- Rate limiters --------------------------------------------------------------------
#: Highest refill rate (tokens per second) and bucket size of a rate limiter.
COORD_MAX_RATE = 1_000_000.0
COORD_MAX_BURST = 1_000_000_000

# --- Listings --------------------------------------------------------------------------
#: Most instances one ``service discover`` answers (a page; ``more`` says if there are more).
COORD_MAX_LIST = 1000
