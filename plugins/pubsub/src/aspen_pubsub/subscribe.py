"""Subscriptions without a group: every message of a topic (or of the topics a NATS-style
pattern matches, ``orders.*``, ``orders.>``, including topics created after it started),
in order per partition, then new ones as they commit, with no gap.

A watch on the topic's messages is registered *before* the first read, so whatever
commits after a read is announced by the watch; the cursors (next offset per partition)
decide what is sent: an announced message at a cursor is sent from the event, anything
else sends the reader back to a range read from the cursors. A page costs what it returns.
On the leader, the publisher also tells the subscription each entry's messages as soon as
the entry is committed: that skips waiting for this node's apply to be committed to LMDB
(data flushed) before the watch fires, the largest part of publish → deliver latency.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from aspen.client import prefix_end
from aspen.errors import (
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
from aspen_pubsub import keys, limits, store
from aspen_pubsub.model import Topic, delivered, unpack
from aspen_pubsub.publisher import Publisher
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


class _Inbox:
    """What tells a subscription of new messages, in one queue: its ``kv.watch`` (pumped by
    a task of the node, so it can wait on both at once) and, on the leader, the publisher's
    committed entries, which come before this node's apply of them is visible (the watch
    announces them again later; the cursors skip what was sent)."""

    def __init__(self, node: Any, watch: dict[str, Any]) -> None:
        self.node, self.watch = node, watch
        self.send, self.receive = anyio.create_memory_object_stream[tuple[str, Any]](
            limits.PUBSUB_SUBSCRIBE_QUEUE
        )
        self._ready = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._stop_feed: Callable[[], None] | None = None

    async def open(self) -> None:
        """Start the watch and wait until it is registered (before anything is read)."""
        self.node.spawn(self._pump, name="pubsub-subscription")
        await self._ready.wait()
        if self._error is not None:
            raise self._error

    def feed(self, publisher: Publisher | None, cursors: dict[tuple[str, int], int]) -> None:
        """Also take ``publisher``'s committed messages of the partitions in ``cursors``."""
        if publisher is None:
            return

        def heard(topic: str, partition: int, found: list[tuple[int, bytes]]) -> None:
            if (topic, partition) in cursors:
                # full or closed: dropped, the watch announces the same messages
                with contextlib.suppress(
                    anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError
                ):
                    self.send.send_nowait(("feed", (topic, partition, found)))

        self._stop_feed = publisher.listen(heard)

    async def next(self) -> tuple[str, Any]:
        """The next notice: ``("watch", item)`` or ``("feed", (topic, partition, found))``."""
        try:
            return await self.receive.receive()
        except anyio.EndOfStream:
            raise self._error or UnavailableError("the subscription's watch ended") from None

    async def _pump(self) -> None:
        with anyio.CancelScope() as scope:
            self._scope = scope
            if self._closed:
                return
            try:
                async with self.send:
                    async for item in self.node.stream("kv.watch", self.watch):
                        if not self._ready.is_set():
                            self._ready.set()  # created: registered
                            continue
                        await self.send.send(("watch", item))
            except Exception as exc:  # handed to the subscription, which raises it
                self._error = exc
            finally:
                self._ready.set()

    def close(self) -> None:
        """Stop the watch and the feed."""
        self._closed = True
        if self._stop_feed is not None:
            self._stop_feed()
        if self._scope is not None:
            self._scope.cancel()
        self.receive.close()


def _take(
    found: list[tuple[int, bytes]],
    name: str,
    partition: int,
    cursors: dict[tuple[str, int], int],
    page: list[dict[str, Any]],
    room: int,
) -> bool:
    """Add to ``page`` the messages of ``found`` at the partition's cursor and after (at most
    ``room``; 0: any number), moving the cursor; ``False`` if ``found`` skips past the
    cursor (a gap: the subscription reads from its cursors instead)."""
    for offset, blob in found:
        expected = cursors.get((name, partition))
        if expected is None or offset < expected:
            continue  # not subscribed, or sent already
        if offset > expected:
            return False
        page.append(delivered(name, partition, offset, unpack(blob)))
        cursors[(name, partition)] = offset + 1
        if room and len(page) >= room:
            break
    return True


async def subscription(
    node: Any,
    pattern: str,
    start: str,
    offsets: dict[str, Any],
    at: float,
    most: int,
    publisher: Publisher | None = None,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Pages of messages of topic ``pattern`` (or of every topic matching a wildcard
    pattern: those that exist when it starts from ``start``, those created later from their
    first message), or from ``offsets`` (keys
    ``"<partition>"`` for one topic, ``"<topic>/<partition>"`` for any); ends after
    ``most`` messages (0: never). ``publisher`` (this node's) delivers what this node
    commits as soon as it is committed, without waiting for the watch."""
    messages = keys.PREFIX + b"m/"
    prefix = messages + (literal_prefix(pattern) if is_pattern(pattern) else pattern + "/").encode()
    inbox = _Inbox(node, {"key": prefix, "end": prefix_end(prefix), "filters": ["nodelete"]})
    try:
        await inbox.open()  # registered before anything is read
        cursors: dict[tuple[str, int], int] = {}
        for topic in await _topics(node, pattern):
            for partition in range(topic.partitions):
                given = offsets.get(f"{topic.name}/{partition}", offsets.get(str(partition)))
                cursors[(topic.name, partition)] = await _cursor(
                    node, topic.name, partition, start, given, at
                )
        inbox.feed(publisher, cursors)
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
            kind, item = await inbox.next()
            page: list[dict[str, Any]] = []
            room = most - sent if most else 0
            if kind == "feed":
                name, partition, fresh = item
                behind = not _take(fresh, name, partition, cursors, page, room)
            for event in item.get("events", ()) if kind == "watch" else ():
                key = event["kv"]["key"]
                name = key[len(messages) : -22].decode()
                partition, last = keys.position(key)
                if (name, partition) not in cursors and await _follow(node, pattern, name, cursors):
                    behind = True  # a topic created since it started: read it from its start
                    break
                if last < cursors.get((name, partition), last + 1):
                    continue  # sent already (from the publisher): not decoded again
                fresh = store.segment(key, event["kv"]["value"])
                if not _take(fresh, name, partition, cursors, page, room and room - len(page)):
                    behind = True
                    break
                if room and len(page) >= room:
                    break
            if page:
                sent += len(page)
                yield page
                if most and sent >= most:
                    return
    finally:
        inbox.close()
