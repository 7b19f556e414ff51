"""Subscriptions without a group: every message of a topic (or of the topics a NATS-style
pattern matches, ``orders.*``, ``orders.>``, including topics created after it started),
in order per partition, then new ones as they commit, with no gap.

A watch on the topic's messages is registered *before* the first read, so whatever
commits after a read is announced by the watch; the cursors (next offset per partition)
decide what is sent: an announced message at a cursor is sent from the event, anything
else sends the reader back to a range read from the cursors. A page costs what it returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aspen.client import prefix_end
from aspen.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError
from aspen_pubsub import keys, limits, store
from aspen_pubsub.model import Topic, delivered, unpack
from aspen_pubsub.subjects import check_pattern, is_pattern, literal_prefix, matches

__all__ = ["subscription"]

#: Messages one subscription reads per partition per page.
_PAGE = 200


async def _at_time(node: Any, name: str, partition: int, at_ms: int) -> int:
    """The first offset of ``partition`` published at or after ``at_ms`` (binary search
    over the kept offsets: O(log n) reads)."""
    head, _ = await store.head(node, name, partition)
    low, high = head.first, head.next
    while low < high:
        middle = (low + high) // 2
        found = await store.messages(node, name, partition, middle, 1)
        if not found:
            return head.next
        offset, record = found[0]
        if record["t"] >= at_ms:
            high = middle
        else:
            low = offset + 1
    return low


async def _cursor(node: Any, name: str, partition: int, start: str, given: Any, at: float) -> int:
    if isinstance(given, int) and given >= 0:
        return given
    if start == "time":
        return await _at_time(node, name, partition, int(at * 1000))
    head, _ = await store.head(node, name, partition)
    return head.first if start == "start" else head.next


async def _topics(node: Any, pattern: str) -> list[Topic]:
    """The topics a name or pattern stands for (at most PUBSUB_MAX_SUBSCRIBED_TOPICS)."""
    if not is_pattern(pattern):
        return [(await store.topic(node, pattern))[0]]
    check_pattern(pattern)
    start = keys.TOPICS + literal_prefix(pattern).encode()
    found = []
    for kv in await store.read_range(node, start, prefix_end(start), limits.PUBSUB_MAX_LIST):
        name = kv["key"][len(keys.TOPICS) :].decode()
        if matches(pattern, name):
            found.append(Topic.from_record(name, unpack(kv["value"])))
    if len(found) > limits.PUBSUB_MAX_SUBSCRIBED_TOPICS:
        raise InvalidArgumentError(
            f"{pattern!r} matches {len(found)} topics, over PUBSUB_MAX_SUBSCRIBED_TOPICS "
            f"({limits.PUBSUB_MAX_SUBSCRIBED_TOPICS})",
            limit=limits.PUBSUB_MAX_SUBSCRIBED_TOPICS,
        )
    return found


async def _follow(node: Any, pattern: str, name: str, cursors: dict[tuple[str, int], int]) -> bool:
    """Whether topic ``name``, announced by the watch and not followed yet, is one the
    wildcard ``pattern`` matches (created after the subscription started): then its
    partitions are followed from their first message (cursors at 0)."""
    if not is_pattern(pattern) or not matches(pattern, name):
        return False
    if any(topic == name for topic, _ in cursors):
        return False  # followed already (a partition it did not know of: not a new topic)
    try:
        topic, _ = await store.topic(node, name)
    except NotFoundError:
        return False  # deleted meanwhile
    followed = {t for t, _ in cursors}
    if len(followed) >= limits.PUBSUB_MAX_SUBSCRIBED_TOPICS:
        raise ResourceExhaustedError(
            f"{pattern!r} now matches more than PUBSUB_MAX_SUBSCRIBED_TOPICS "
            f"({limits.PUBSUB_MAX_SUBSCRIBED_TOPICS}) topics",
            limit=limits.PUBSUB_MAX_SUBSCRIBED_TOPICS,
        )
    for partition in range(topic.partitions):
        cursors[(name, partition)] = 0
    return True


async def subscription(
    node: Any, pattern: str, start: str, offsets: dict[str, Any], at: float, most: int
) -> AsyncIterator[list[dict[str, Any]]]:
    """Pages of messages of topic ``pattern`` (or of every topic matching a wildcard
    pattern: those that exist when it starts from ``start``, those created later from their
    first message), or from ``offsets`` (keys
    ``"<partition>"`` for one topic, ``"<topic>/<partition>"`` for any); ends after
    ``most`` messages (0: never)."""
    messages = keys.PREFIX + b"m/"
    prefix = messages + (literal_prefix(pattern) if is_pattern(pattern) else pattern + "/").encode()
    watch = node.stream(
        "kv.watch", {"key": prefix, "end": prefix_end(prefix), "filters": ["nodelete"]}
    )
    try:
        await watch.__anext__()  # created: registered before anything is read
        cursors: dict[tuple[str, int], int] = {}
        for topic in await _topics(node, pattern):
            for partition in range(topic.partitions):
                given = offsets.get(f"{topic.name}/{partition}", offsets.get(str(partition)))
                cursors[(topic.name, partition)] = await _cursor(
                    node, topic.name, partition, start, given, at
                )
        yield []  # ready: where it starts is fixed (a from-end subscription sees what follows)
        sent = 0
        behind = True
        while True:
            while behind:
                behind = False
                for (name, partition), cursor in cursors.items():
                    room = _PAGE if not most else min(_PAGE, most - sent)
                    found = await store.messages(node, name, partition, cursor, room)
                    if not found:
                        continue
                    behind = True
                    cursors[(name, partition)] = found[-1][0] + 1
                    sent += len(found)
                    yield [delivered(name, partition, o, r) for o, r in found]
                    if most and sent >= most:
                        return
            item = await watch.__anext__()
            page = []
            for event in item.get("events", ()):
                key = event["kv"]["key"]
                name = key[len(messages) : -22].decode()
                partition, _ = keys.position(key)
                if (name, partition) not in cursors and await _follow(node, pattern, name, cursors):
                    behind = True  # a topic created since it started: read it from its start
                    break
                for offset, blob in store.segment(key, event["kv"]["value"]):
                    expected = cursors.get((name, partition))
                    if expected is None or offset < expected:
                        continue  # not subscribed, or sent already
                    if offset > expected:
                        behind = True
                        break
                    page.append(delivered(name, partition, offset, unpack(blob)))
                    cursors[(name, partition)] = offset + 1
                    if most and sent + len(page) >= most:
                        break
                if most and sent + len(page) >= most:
                    break
            if page:
                sent += len(page)
                yield page
                if most and sent >= most:
                    return
    finally:
        close = getattr(watch, "aclose", None)
        if close is not None:
            await close()
