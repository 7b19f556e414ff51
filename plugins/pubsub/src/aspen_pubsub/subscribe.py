"""Subscriptions without a group: every message of a topic, in order per partition, then
new ones as they commit, with no gap.

A watch on the topic's messages is registered *before* the first read, so whatever
commits after a read is announced by the watch; the cursors (next offset per partition)
decide what is sent: an announced message at a cursor is sent from the event, anything
else sends the reader back to a range read from the cursors. A page costs what it returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aspen.client import prefix_end
from aspen_pubsub import keys, store
from aspen_pubsub.model import delivered, unpack

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


async def _cursors(
    node: Any, name: str, partitions: int, start: str, offsets: dict[Any, Any], at: float
) -> list[int]:
    cursors = []
    for partition in range(partitions):
        given = offsets.get(partition, offsets.get(str(partition)))
        if isinstance(given, int) and given >= 0:
            cursors.append(given)
        elif start == "time":
            cursors.append(await _at_time(node, name, partition, int(at * 1000)))
        else:
            head, _ = await store.head(node, name, partition)
            cursors.append(head.first if start == "start" else head.next)
    return cursors


async def subscription(
    node: Any, name: str, start: str, offsets: dict[Any, Any], at: float, most: int
) -> AsyncIterator[list[dict[str, Any]]]:
    """Pages of messages of topic ``name`` from ``start`` (or ``offsets``); ends after
    ``most`` messages (0: never)."""
    topic, _ = await store.topic(node, name)
    prefix = keys.PREFIX + b"m/" + name.encode() + b"/"
    watch = node.stream(
        "kv.watch", {"key": prefix, "end": prefix_end(prefix), "filters": ["nodelete"]}
    )
    try:
        await watch.__anext__()  # created: registered before anything is read
        cursors = await _cursors(node, name, topic.partitions, start, offsets, at)
        yield []  # ready: where it starts is fixed (a from-end subscription sees what follows)
        sent = 0
        behind = True
        while True:
            while behind:
                behind = False
                for partition in range(topic.partitions):
                    room = _PAGE if not most else min(_PAGE, most - sent)
                    found = await store.messages(node, name, partition, cursors[partition], room)
                    if not found:
                        continue
                    behind = True
                    cursors[partition] = found[-1][0] + 1
                    sent += len(found)
                    yield [delivered(name, partition, o, r) for o, r in found]
                    if most and sent >= most:
                        return
            item = await watch.__anext__()
            page = []
            for event in item.get("events", ()):
                key = event["kv"]["key"]
                partition, offset = keys.position(key)
                if partition >= len(cursors) or offset < cursors[partition]:
                    continue
                if offset > cursors[partition]:
                    behind = True
                    continue
                page.append(delivered(name, partition, offset, unpack(event["kv"]["value"])))
                cursors[partition] = offset + 1
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
