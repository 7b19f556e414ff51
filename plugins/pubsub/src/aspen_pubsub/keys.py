"""Where the plugin's state lives in the replicated KV store (all under ``/_aspen/pubsub/``).

=======================================  ==============================================
``t/<topic>``                            the topic: partitions, retention, dedup window
``h/<topic>/<pppp>``                     a partition's head: next offset, first, bytes
``m/<topic>/<pppp>/<offset:016x>``       a segment: the messages one entry added, keyed by
                                         the last one's offset (a fetch: a range from there)
``d/<topic>/<bucket:016x>/<msg-id>``     a de-duplication record: partition, offset, time;
                                         the bucket is the publish time (ms) // the
                                         topic's slice (:func:`dedup_slice_ms`), so
                                         records older than the window go by range
``i/<topic>/<msg-id>``                   a de-duplication record as written before
                                         buckets (still read, expired by a scan)
``g/<topic>/<group>``                    a group: settings, cursors, counters
``p/<topic>/<group>/<pppp>/<offset>``    delivered, un-acked messages (competing groups):
                                         a run of them from that offset
``x/<topic>/<group>/<pppp>/<offset>``    a dead letter
=======================================  ==============================================

Names never contain ``/`` (see :func:`aspen_pubsub.model.check_name`), so one topic's
prefix never covers another's.
"""

from __future__ import annotations

from aspen.client import prefix_end
from aspen_pubsub import limits

PREFIX = b"/_aspen/pubsub/"


def _name(name: str) -> bytes:
    return name.encode()


def topic(name: str) -> bytes:
    """The topic record."""
    return PREFIX + b"t/" + _name(name)


TOPICS = PREFIX + b"t/"


def head(name: str, partition: int) -> bytes:
    """A partition's head record."""
    return PREFIX + b"h/" + _name(name) + b"/%04d" % partition


def messages(name: str, partition: int) -> bytes:
    """The prefix of a partition's messages."""
    return PREFIX + b"m/" + _name(name) + b"/%04d/" % partition


def message(name: str, partition: int, offset: int) -> bytes:
    """The segment whose last message is at ``offset``."""
    return messages(name, partition) + b"%016x" % offset


def offset_of(key: bytes) -> int:
    """The offset a message key ends with."""
    return int(key[-16:], 16)


def dedup(name: str, msg_id: str) -> bytes:
    """A de-duplication record as written before buckets (read and expired, never written)."""
    return legacy_dedups(name) + msg_id.encode()


def legacy_dedups(name: str) -> bytes:
    """The prefix of a topic's de-duplication records written before buckets."""
    return PREFIX + b"i/" + _name(name) + b"/"


def dedups(name: str) -> bytes:
    """The prefix of a topic's bucketed de-duplication records."""
    return PREFIX + b"d/" + _name(name) + b"/"


def dedup_bucket(name: str, bucket: int) -> bytes:
    """The prefix of one bucket of a topic's de-duplication records (buckets sort in
    time order)."""
    return dedups(name) + b"%016x/" % bucket


def dedup_in(name: str, bucket: int, msg_id: str) -> bytes:
    """The de-duplication record of ``msg_id`` published in ``bucket``."""
    return dedup_bucket(name, bucket) + msg_id.encode()


def dedup_slice_ms(window_seconds: float) -> int:
    """The width of a topic's de-duplication buckets, in milliseconds: its window cut in
    PUBSUB_DEDUP_SLICES (at least 1 ms)."""
    return max(1, int(window_seconds * 1000) // limits.PUBSUB_DEDUP_SLICES)


def group(name: str, group_name: str) -> bytes:
    """A group record."""
    return PREFIX + b"g/" + _name(name) + b"/" + _name(group_name)


def groups(name: str) -> bytes:
    """The prefix of a topic's groups."""
    return PREFIX + b"g/" + _name(name) + b"/"


def pending_prefix(name: str, group_name: str) -> bytes:
    """The prefix of a group's un-acked deliveries."""
    return PREFIX + b"p/" + _name(name) + b"/" + _name(group_name) + b"/"


def pending(name: str, group_name: str, partition: int, offset: int) -> bytes:
    """One un-acked delivery."""
    return pending_prefix(name, group_name) + b"%04d/%016x" % (partition, offset)


def dead_prefix(name: str, group_name: str) -> bytes:
    """The prefix of a group's dead letters."""
    return PREFIX + b"x/" + _name(name) + b"/" + _name(group_name) + b"/"


def dead(name: str, group_name: str, partition: int, offset: int) -> bytes:
    """One dead letter."""
    return dead_prefix(name, group_name) + b"%04d/%016x" % (partition, offset)


def position(key: bytes) -> tuple[int, int]:
    """``(partition, offset)`` of a pending or dead-letter key."""
    return int(key[-21:-17]), int(key[-16:], 16)


def topic_prefixes(name: str) -> list[tuple[bytes, bytes]]:
    """Every ``[start, end)`` span holding a topic's state (to delete it): the topic,
    then ``h/ m/ i/ g/ p/ x/ d/`` in this order (:func:`aspen_pubsub.rpc.topic_delete`
    picks them by position)."""
    spans = [(topic(name), topic(name) + b"\0")]
    for kind in (b"h/", b"m/", b"i/", b"g/", b"p/", b"x/", b"d/"):
        start = PREFIX + kind + _name(name) + b"/"
        spans.append((start, prefix_end(start)))
    return spans
