"""Every resource bound of the pubsub plugin, as a named constant.

The core's bounds live in :mod:`aspen.limits`; these are aspen-pubsub's own. Input over a
bound gets an ``invalid_argument`` (or ``resource_exhausted``) error that names the bound.
"""

from __future__ import annotations

# --- Names and topics ------------------------------------------------------------------
#: Longest topic, group or consumer name, in characters (``[A-Za-z0-9_.-]``).
PUBSUB_MAX_NAME_CHARS = 128
#: Most partitions of one topic.
PUBSUB_MAX_PARTITIONS = 64
#: Most topics one ``pubsub.topics`` page lists.
PUBSUB_MAX_LIST = 1000

# --- Messages -------------------------------------------------------------------------
#: Largest message payload, in bytes.
PUBSUB_MAX_MESSAGE_BYTES = 256 * 1024
#: Largest message key, in bytes.
PUBSUB_MAX_KEY_BYTES = 256
#: Most headers on one message.
PUBSUB_MAX_HEADERS = 32
#: Most bytes of one message's headers (names and values together).
PUBSUB_MAX_HEADER_BYTES = 8 * 1024
#: Longest message id (de-duplication, as JetStream's ``Nats-Msg-Id``), in bytes.
PUBSUB_MAX_MSG_ID_BYTES = 128
#: Most messages in one ``pubsub.publish`` batch.
PUBSUB_MAX_BATCH_MESSAGES = 250
#: Most bytes (payloads, keys, headers) in one ``pubsub.publish`` batch.
PUBSUB_MAX_BATCH_BYTES = 1024 * 1024
#: Default and longest de-duplication window, in seconds.
PUBSUB_DEFAULT_DEDUP_SECONDS = 120.0
PUBSUB_MAX_DEDUP_SECONDS = 24 * 3600.0
#: De-duplication records are kept in time buckets of a topic's window / this many: a
#: lookup reads at most this many + 1 buckets (those that can still be inside the
#: window), and the records a topic holds span at most (1 + 1/this) windows.
PUBSUB_DEDUP_SLICES = 2
#: Most expired de-duplication records one sweep entry deletes (the rest go in the
#: next one, at once).
PUBSUB_DEDUP_EXPIRE_RECORDS = 500
#: Most bytes (keys and values) of expired de-duplication records one sweep entry deletes.
PUBSUB_DEDUP_EXPIRE_BYTES = 256 * 1024

#: The client's publish batching (:mod:`aspen_pubsub.coalesce`): a batch of this many
#: concurrent calls is sent at once, by the call that filled it, rather than at the end of
#: the event-loop turn. By default a whole turn's calls go together (up to the batch
#: bounds): fewer, larger Raft entries cost the node less CPU per message (1 node, 64
#: publishers: ~20 µs/message against ~35 with batches of 16); a smaller value
#: (``client.pubsub.coalescer.send_at``) lets the node start on a batch while the client
#: collects the next, which can pay on a cluster whose replication latency, not CPU,
#: bounds the throughput.
PUBSUB_CLIENT_SEND_AT = PUBSUB_MAX_BATCH_MESSAGES

# --- Group commit ---------------------------------------------------------------------
#: Most bytes of messages the leader puts in one Raft entry (one ``kv.txn``); below the
#: core's MAX_ENTRY_BYTES with room for heads, de-dup records and retention deletes.
PUBSUB_COMMIT_MAX_BYTES = 2 * 1024 * 1024
#: Most compares in one Raft entry (below the core's MAX_TXN_COMPARES): each topic's
#: record, each partition head, and for each message with an id the de-duplication
#: buckets it may be in (PUBSUB_DEDUP_SLICES + 1); an entry takes fewer messages if need be
#: (one batch of PUBSUB_MAX_BATCH_MESSAGES ids on PUBSUB_MAX_PARTITIONS partitions fits).
PUBSUB_COMMIT_MAX_COMPARES = 960
#: Most messages in one Raft entry (each is a put, plus one de-dup put; with the heads and
#: one retention delete-range per partition the txn stays under the core's MAX_TXN_OPS).
PUBSUB_COMMIT_MAX_MESSAGES = 300
#: Most old messages one commit deletes per partition for retention (one delete-range; the
#: rest go in the next commit or the leader's retention sweep), so no commit reads more
#: than a batch.
PUBSUB_TRIM_PER_COMMIT = 100
#: Most bytes of one stored segment (the messages one entry adds to a partition, one key;
#: each message counted with 5 bytes of framing): larger batches are split in several, so
#: a segment stays under the core's MAX_VALUE_BYTES.
PUBSUB_SEGMENT_MAX_BYTES = 512 * 1024
#: How often the leader applies age retention to idle topics and expires the sessions of
#: partitioned groups' members, in seconds.
PUBSUB_SWEEP_SECONDS = 0.5
#: Most entries one sweep proposes for one topic (each deleting at most
#: PUBSUB_DEDUP_EXPIRE_RECORDS de-duplication records) before the sweep moves on.
PUBSUB_SWEEP_ENTRIES = 20
#: Most group-commit entries the leader has in flight at once (each built on the heads the
#: previous one writes), so at most this many times PUBSUB_COMMIT_MAX_BYTES of messages wait
#: on Raft at once.
PUBSUB_PUBLISH_PIPELINE = 4
#: How many times a commit whose compares failed (stale leader cache) is rebuilt.
PUBSUB_COMMIT_ATTEMPTS = 5

# --- Consumers ------------------------------------------------------------------------
#: Most messages one fetch or subscribe page returns.
PUBSUB_MAX_FETCH = 1000
#: Default and longest ack wait, in seconds.
PUBSUB_DEFAULT_ACK_WAIT_SECONDS = 30.0
PUBSUB_MAX_ACK_WAIT_SECONDS = 12 * 3600.0
#: Default and largest max_deliver.
PUBSUB_DEFAULT_MAX_DELIVER = 5
PUBSUB_MAX_MAX_DELIVER = 1000
#: Default and largest max_ack_pending (messages delivered and not yet acked, per group).
PUBSUB_DEFAULT_MAX_ACK_PENDING = 1000
PUBSUB_MAX_MAX_ACK_PENDING = 5000
#: Longest nak delay and fetch wait, in seconds.
PUBSUB_MAX_DELAY_SECONDS = 12 * 3600.0
PUBSUB_MAX_WAIT_SECONDS = 60.0
#: Most deliveries one stored pending record (a run of consecutive offsets delivered
#: alike) holds: a change to one of them rewrites at most this many.
PUBSUB_PENDING_RUN_MAX = 256
#: Most acks in one ``pubsub.ack`` call.
PUBSUB_MAX_ACKS = 1000
#: Most dead letters one ``pubsub.dead_letters`` page lists.
PUBSUB_MAX_DEAD_LIST = 1000
#: Default and longest session timeout of a partitioned group's member, in seconds: a
#: member not heard from for this long loses its partitions.
PUBSUB_DEFAULT_SESSION_SECONDS = 10.0
PUBSUB_MAX_SESSION_SECONDS = 300.0
#: Most members of one partitioned group.
PUBSUB_MAX_MEMBERS = 256
#: Most groups one topic may have (and the retention sweeper looks at).
PUBSUB_MAX_GROUPS = 100
#: Most topics a wildcard subscription follows.
PUBSUB_MAX_SUBSCRIBED_TOPICS = 64
#: Notices (a watch event, or one committed entry's messages of one partition, each at
#: most PUBSUB_COMMIT_MAX_BYTES, shared with the entry) one subscription holds unread; a
#: notice from the publisher that finds it full is dropped (the watch brings the same).
PUBSUB_SUBSCRIBE_QUEUE = 16
