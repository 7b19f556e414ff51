"""Bounds of the federation plugin (bytes first, then counts and times)."""

from __future__ import annotations

#: Largest encoded announcement: a BEP-44 value is at most 1000 bytes bencoded, and a
#: bencoded byte string of 996 bytes is ``996:`` + 996 bytes = 1000.
MAX_ANNOUNCEMENT_BYTES = 996
#: Largest cluster name in an identity document or announcement.
MAX_NAME_BYTES = 64
#: Largest cluster description in an identity document.
MAX_DESCRIPTION_BYTES = 512
#: Largest encoded identity document (the signed map), as stored and as sent in a trust request.
MAX_IDENTITY_DOCUMENT_BYTES = 1024
#: Largest endpoint (``host:port``) in an announcement.
MAX_ENDPOINT_BYTES = 128
#: Most endpoints in one announcement.
MAX_ENDPOINTS = 8
#: Largest shared-resource name (``forge:OWNER/NAME``) in an announcement or a share.
MAX_RESOURCE_BYTES = 160
#: Most shared resources listed in one announcement (the rest are found by asking the cluster).
MAX_ANNOUNCED_SHARES = 8
#: An announcement older than this (by its signed timestamp) is stale and refused.
ANNOUNCEMENT_MAX_AGE_SECONDS = 3600
#: An announcement dated further than this in the future is refused (clock skew bound).
ANNOUNCEMENT_MAX_FUTURE_SECONDS = 300
#: How often the leader re-publishes the cluster's announcement into the DHT.
REPUBLISH_SECONDS = 600.0
#: How often a node re-pings its configured DHT contacts while its routing table is small
#: (``add_dht_node`` is a single ping; a lost one would leave the node alone).
CONTACT_PING_SECONDS = 2.0
#: Below this many routing-table nodes, contacts keep being re-pinged.
CONTACT_PING_BELOW_NODES = 8
#: Most DHT contacts a node keeps (``dht-bootstrap`` beyond this is refused).
MAX_DHT_CONTACTS = 64
#: How long one DHT put waits for its answer.
DHT_OPERATION_TIMEOUT_SECONDS = 20.0
#: How long ``aspen federation publish`` waits for its call: one DHT put, longer than a
#: client's default request timeout, and the answer's way back.
PUBLISH_CALL_TIMEOUT_SECONDS = DHT_OPERATION_TIMEOUT_SECONDS + 5.0
#: How long one DHT get attempt waits for a value (libtorrent's own traversal waits out
#: each unresponsive node for up to 15 s); an attempt that found nothing is retried.
DHT_LOOKUP_ATTEMPT_SECONDS = 3.0
#: DHT get attempts per lookup (so a lookup answers within about 2 x 3 s, under a
#: client's default RPC timeout).
DHT_LOOKUP_ATTEMPTS = 2
#: Once a get has a value, how much longer it waits for a higher seq from other nodes.
DHT_LOOKUP_SETTLE_SECONDS = 0.25
#: How often the DHT thread polls libtorrent for alerts.
DHT_ALERT_POLL_SECONDS = 0.05
#: The libtorrent alert queue size (alerts beyond it are dropped by libtorrent).
DHT_ALERT_QUEUE_SIZE = 4096
#: Per-IP DHT request rate a private test network allows (``dht_block_ratelimit``); only
#: applied with ``dht_private`` (every test node shares 127.0.0.1).
PRIVATE_DHT_BLOCK_RATELIMIT = 1_000_000
#: Most remote clusters the trust store keeps (trusted, public or blocked).
MAX_PEERS = 1024
#: Most pending trust requests queued for an operator (more are refused, resource_exhausted).
MAX_TRUST_REQUESTS = 256
#: Most shared resources per cluster.
MAX_SHARES = 4096
#: Most remote keys on one resource's allow-list.
MAX_ALLOW_LIST = 256
#: Most entries one listing page answers.
MAX_LIST_PAGE = 500
#: Gossip: messages per second one peer may send (its bucket refills at this rate).
GOSSIP_PEER_RATE = 5.0
#: Gossip: one peer's burst.
GOSSIP_PEER_BURST = 20.0
#: Gossip: messages per second from all peers together.
GOSSIP_GLOBAL_RATE = 100.0
#: Gossip: the global burst.
GOSSIP_GLOBAL_BURST = 200.0
#: Gossip: most peers with a bucket held at once (the least recently seen is dropped).
GOSSIP_MAX_BUCKETS = 4096
#: Most refs one signed ref list (and so one sync) carries.
MAX_SYNC_REFS = 10_000
#: Largest ref name a sync accepts.
MAX_SYNC_REF_BYTES = 1024
#: A signed ref list older than this is refused by the puller.
SIGNED_REFS_MAX_AGE_SECONDS = 600
#: How often a sync re-reads the origin's signed refs when they moved during the fetch.
SYNC_ATTEMPTS = 3
#: Most git objects one sync walks when checking the fetched graph is complete.
MAX_SYNC_OBJECTS = 5_000_000
#: Most live read grants kept per remote cluster (revoked together when it is blocked).
MAX_GRANTS_PER_PEER = 256
#: Largest gossip message.
MAX_GOSSIP_BYTES = 1024
#: Largest gossip subject (a repository, channel, blob hash or token id).
MAX_GOSSIP_SUBJECT_BYTES = 256
#: A gossip message older (or further ahead) than this is refused.
GOSSIP_MAX_AGE_SECONDS = 300
#: How many (sender, seq) pairs the inbox remembers to drop a re-delivered message.
GOSSIP_SEEN = 65536

# -- the federation inbox, gossip sending and the trust-request channel (issue 17) -------

#: Largest trust request on the wire (the signed envelope around an identity document).
MAX_TRUST_REQUEST_BYTES = MAX_IDENTITY_DOCUMENT_BYTES + 256
#: Most bytes of identity documents the pending trust-request queue holds (with
#: ``MAX_TRUST_REQUESTS`` for the count; more are refused, resource_exhausted).
MAX_TRUST_REQUEST_QUEUE_BYTES = 64 * 1024
#: A trust request older (or further ahead) than this, by its signed timestamp, is refused.
TRUST_REQUEST_MAX_AGE_SECONDS = 300
#: Trust requests per second one sender cluster may make (its bucket refills at this rate).
TRUST_REQUEST_SENDER_RATE = 1.0 / 60.0
#: One sender cluster's trust-request burst.
TRUST_REQUEST_SENDER_BURST = 3.0
#: Most gossip messages in one inbox delivery (one HTTP request).
GOSSIP_BATCH_MESSAGES = 32
#: Largest body the federation inbox reads (a gossip batch or a trust request).
MAX_INBOX_BODY_BYTES = GOSSIP_BATCH_MESSAGES * (MAX_GOSSIP_BYTES + 8) + 64
#: Most gossip messages waiting to be sent (the oldest is dropped beyond it: best-effort).
GOSSIP_OUTBOX_MESSAGES = 1024
#: Most bytes of gossip (kind + subject) waiting to be sent.
GOSSIP_OUTBOX_BYTES = 256 * 1024
#: How long the sender waits to batch what queued before sending it.
GOSSIP_SEND_INTERVAL_SECONDS = 0.2
#: Most peers the leader delivers gossip to at once.
GOSSIP_SEND_CONCURRENCY = 8
#: How long one delivery to a peer's inbox (gossip, a trust request) may take; with a
#: lookup's 2 x 3 s it keeps ``request-trust`` under a client's default 10 s RPC timeout.
GOSSIP_SEND_TIMEOUT_SECONDS = 3.0
#: How long a peer's inbox address (from its verified announcement) is reused.
GOSSIP_ENDPOINT_CACHE_SECONDS = 300.0
#: How long the sender waits before retrying to watch the journal after an error.
GOSSIP_WATCH_RETRY_SECONDS = 1.0


# -- sync of Pijul channels, blobs and KV prefixes; periodic mirrors ----------------------

#: Largest signed state (a channel's head, a blob listing, a KV snapshot's digest), encoded.
MAX_SIGNED_STATE_BYTES = 256 * 1024
#: Most keys one KV prefix snapshot carries (it is staged page by page into a generation
#: of its own, then made visible in one small txn).
KV_SYNC_MAX_KEYS = 200_000
#: Most bytes (keys + values) of one KV prefix snapshot.
KV_SYNC_MAX_BYTES = 256 * 1024 * 1024
#: Most keys one page of a KV sync fetches from the origin and writes in one ``kv.txn``
#: (core ``MAX_TXN_OPS`` = 1000 with the sync record; the core bounds each page's bytes by
#: ``MAX_RANGE_PAGE_BYTES`` = 2 MiB, under ``MAX_ENTRY_BYTES`` = 3 MiB with the longer
#: local keys).
KV_SYNC_PAGE_KEYS = 500
#: Most keys one request deletes when an old generation of a synced prefix goes.
KV_SYNC_DELETE_SLICE = 1000
#: Most key-values one ``federation.kv_read`` answers.
KV_READ_MAX_KEYS = 1000
#: Most pinned blobs one blob share lists (and one blob sync fetches).
BLOB_SYNC_MAX_PINS = 1000
#: Most bytes one blob sync fetches in all (each blob is also bounded by the core's
#: ``BLOB_MAX_BYTES``); the staging copy of a blob being fetched is on disk, never in memory.
BLOB_SYNC_MAX_BYTES = 16 * 1024 * 1024 * 1024
#: Most changes one Pijul channel sync fetches (the rest on the next run).
PIJUL_SYNC_MAX_CHANGES = 100_000
#: Most change hashes one ``pijul.get_changes`` request to the origin asks for, and one
#: local ``pijul.append`` appends (at most aspen-pijul's ``MAX_APPEND_HASHES`` = 200).
PIJUL_SYNC_BATCH = 200
#: Most log hashes one ``pijul.log`` page answers (aspen-pijul's ``MAX_LOG_PAGE``).
PIJUL_LOG_PAGE = 5000
#: Most periodic mirrors one cluster runs.
MAX_MIRRORS = 256
#: Shortest mirror interval.
MIRROR_MIN_SECONDS = 5.0
#: Longest back-off of a failing mirror (it doubles from the interval up to this).
MIRROR_MAX_BACKOFF_SECONDS = 3600.0
#: How often the leader looks for mirrors that are due.
MIRROR_POLL_SECONDS = 1.0
#: After gossip about a mirrored resource, how long the leader gathers more before it
#: runs the mirrors it names (a burst of pushes is one sync).
MIRROR_GOSSIP_DEBOUNCE_SECONDS = 1.0
#: Most distinct gossip messages noted for the mirrors between two runs (the rest wait
#: for their interval).
MIRROR_GOSSIP_PENDING = 1024
#: Largest pack one git sync fetches (the forge's receiver refuses more while indexing).
SYNC_MAX_PACK_BYTES = 4 * 1024 * 1024 * 1024
#: Largest Pijul change a sync takes (aspen-pijul's ``MAX_CLUSTER_CHANGE_BYTES``).
PIJUL_MAX_CHANGE_BYTES = 16 * 1024 * 1024
#: Bytes of a large Pijul change (one the origin keeps in its blob store) one
#: ``federation.pijul_change`` request answers.
PIJUL_CHANGE_PIECE_BYTES = 1024 * 1024
#: Most change bytes one local ``pijul.put_changes`` request carries inline (aspen-pijul
#: refuses a request over its ``MAX_TRANSFER_BYTES`` = 2 MiB); a larger change goes through
#: the local blob store.
PIJUL_PUT_REQUEST_BYTES = 1024 * 1024
