"""Group commit: the leader puts many concurrent publishes in one Raft entry.

Every ``pubsub.publish`` on the leader joins a queue; one task takes what has queued (up to
``PUBSUB_COMMIT_MAX_MESSAGES`` / ``PUBSUB_COMMIT_MAX_BYTES``) while the previous entry is in
flight, and proposes it as one ``kv.txn``: the messages, the partitions' new heads, the
de-dup records and the retention deletes. Offsets come from the heads (never a clock).

The leader keeps the topics and heads it read in memory; every entry compares the
mod_revision of each topic and head it used, so a stale cache (a new leader, a topic
deleted meanwhile) fails the compares, is dropped and the entry is rebuilt: nothing is
applied from stale state. The publish time (the leader's clock, milliseconds) travels in
the entry; applying it never reads a clock.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio

from aspen.errors import AspenError, NotFoundError, UnavailableError
from aspen_pubsub import keys, limits, store
from aspen_pubsub.model import Head, Message, Topic, pack, partition_for, unpack

log = logging.getLogger(__name__)

__all__ = ["Publisher"]


@dataclass(eq=False)
class _Request:
    """One publish (a batch of one topic), waiting for its entry."""

    topic: str
    messages: list[Message]
    size: int
    sweep: bool = False  #: a retention sweep: no messages, every partition checked
    done: anyio.Event = field(default_factory=anyio.Event)
    result: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None


#: A stored message: offset, stored size, publish time (ms) and its packed record.
_Stored = tuple[int, int, int, bytes]


@dataclass
class _Plan:
    """One entry being built."""

    now_ms: int
    compare: list[dict[str, Any]] = field(default_factory=list)
    puts: dict[bytes, dict[str, Any]] = field(default_factory=dict)  #: key → op, in order
    deletes: list[dict[str, Any]] = field(default_factory=list)
    topics: dict[str, Topic] = field(default_factory=dict)
    heads: dict[tuple[str, int], Head] = field(default_factory=dict)
    #: per partition, the messages this entry adds: (offset, size, publish ms, packed)
    new: dict[tuple[str, int], list[_Stored]] = field(default_factory=dict)
    ids: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)


def _segments(messages: list[_Stored]) -> list[tuple[int, list[bytes]]]:
    """Consecutive ``messages`` cut into segments of at most PUBSUB_SEGMENT_MAX_BYTES:
    ``(last offset, packed messages)`` each (usually one: one key per partition)."""
    out: list[tuple[int, list[bytes]]] = []
    blobs: list[bytes] = []
    size = 0
    for offset, _, _, blob in messages:
        if blobs and size + len(blob) + 5 > limits.PUBSUB_SEGMENT_MAX_BYTES:
            out.append((offset - 1, blobs))
            blobs, size = [], 0
        blobs.append(blob)
        size += len(blob) + 5
    if blobs:
        out.append((messages[-1][0], blobs))
    return out


class Publisher:
    """The leader's publish queue and group-commit loop (one per node; idle on followers)."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._queue: deque[_Request] = deque()
        self._wake = anyio.Event()
        self._topics: dict[str, tuple[Topic, int]] = {}
        self._heads: dict[tuple[str, int], tuple[Head, int]] = {}
        self._spread: dict[str, int] = {}
        self._committed = anyio.Event()
        #: Entries committed and messages in them, since start (``stats``).
        self.entries = 0
        self.messages = 0

    # ------------------------------------------------------------------ API
    async def publish(self, topic: str, messages: list[Message]) -> list[dict[str, Any]]:
        """Append ``messages`` to ``topic`` (in one entry, with others queued meanwhile);
        ``[{partition, offset}]`` once durable (``duplicate`` for a de-duplicated id)."""
        request = _Request(topic, messages, sum(m.size for m in messages))
        return await self._submit(request)

    async def sweep(self, topic: str) -> None:
        """Apply ``topic``'s retention now (age limits on a topic nobody publishes to)."""
        await self._submit(_Request(topic, [], 0, sweep=True))

    async def committed(self) -> None:
        """Wait until the next entry is committed (consumers waiting for messages)."""
        await self._committed.wait()

    def forget(self, topic: str | None = None) -> None:
        """Drop cached state (a topic changed, or leadership moved)."""
        if topic is None:
            self._topics.clear()
            self._heads.clear()
            return
        self._topics.pop(topic, None)
        for k in [k for k in self._heads if k[0] == topic]:
            del self._heads[k]

    async def _submit(self, request: _Request) -> list[dict[str, Any]]:
        self._queue.append(request)
        self._wake.set()
        await request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    # ------------------------------------------------------------------ loop
    async def run(self) -> None:
        """Take queued publishes and commit them, one entry at a time, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._queue:
                batch = self._take()
                try:
                    await self._commit(batch)
                except Exception as exc:
                    self.forget()
                    if not isinstance(exc, AspenError):
                        log.exception("pubsub: commit failed")
                    for request in batch:
                        if not request.done.is_set():
                            request.error = exc
                finally:
                    for request in batch:
                        request.done.set()

    def _take(self) -> list[_Request]:
        """The next entry's requests: at least one, then while the bounds allow."""
        batch = [self._queue.popleft()]
        count, size = len(batch[0].messages), batch[0].size
        while self._queue:
            nxt = self._queue[0]
            if count + len(nxt.messages) > limits.PUBSUB_COMMIT_MAX_MESSAGES:
                break
            if size + nxt.size > limits.PUBSUB_COMMIT_MAX_BYTES:
                break
            self._queue.popleft()
            batch.append(nxt)
            count += len(nxt.messages)
            size += nxt.size
        return batch

    async def _commit(self, batch: list[_Request]) -> None:
        for _ in range(limits.PUBSUB_COMMIT_ATTEMPTS):
            plan = _Plan(now_ms=int(time.time() * 1000))
            live = []
            for request in batch:
                request.result = []
                try:
                    await self._add(plan, request)
                    live.append(request)
                except NotFoundError as exc:
                    request.error = exc
                    request.done.set()
            if not live:
                return
            await self._retention(plan)
            for (topic, partition), new in plan.new.items():
                first = plan.heads[(topic, partition)].first
                for last, blobs in _segments([m for m in new if m[0] >= first]):
                    key = keys.message(topic, partition, last)
                    plan.puts[key] = store.put(key, pack(blobs))
            for (topic, partition), head in plan.heads.items():
                plan.puts[keys.head(topic, partition)] = store.put(
                    keys.head(topic, partition), head.record()
                )
            revision = await store.txn(
                self.node, plan.compare, [*plan.puts.values(), *plan.deletes]
            )
            if revision is None:  # stale cache: read again and rebuild
                for topic in plan.topics:
                    self.forget(topic)
                batch = live
                continue
            for topic, part in plan.heads:
                self._heads[(topic, part)] = (plan.heads[(topic, part)], revision)
            self.entries += 1
            self.messages += sum(len(r.messages) for r in live)
            self._committed.set()
            self._committed = anyio.Event()
            return
        raise UnavailableError("publish kept conflicting with concurrent changes; try again")

    # ------------------------------------------------------------------ planning
    async def _topic(self, plan: _Plan, name: str) -> Topic:
        if name in plan.topics:
            return plan.topics[name]
        cached = self._topics.get(name)
        if cached is None:
            cached = await store.topic(self.node, name)
            self._topics[name] = cached
        plan.topics[name] = cached[0]
        plan.compare.append(store.same(keys.topic(name), cached[1]))
        return cached[0]

    async def _head(self, plan: _Plan, topic: str, partition: int) -> Head:
        key = (topic, partition)
        if key in plan.heads:
            return plan.heads[key]
        cached = self._heads.get(key)
        if cached is None:
            cached = await store.head(self.node, topic, partition)
            self._heads[key] = cached
        head = Head(cached[0].next, cached[0].first, cached[0].bytes)
        plan.heads[key] = head
        plan.compare.append(store.same(keys.head(topic, partition), cached[1]))
        return head

    async def _duplicate(self, plan: _Plan, topic: Topic, msg_id: str) -> tuple[int, int] | None:
        """Where an earlier message with ``msg_id`` went, if inside the dedup window."""
        seen = plan.ids.get((topic.name, msg_id))
        if seen is not None:
            return seen
        record, revision = await store.get(self.node, keys.dedup(topic.name, msg_id))
        plan.compare.append(store.same(keys.dedup(topic.name, msg_id), revision))
        if record is None or plan.now_ms - record["t"] > topic.dedup_window * 1000:
            return None
        return record["p"], record["o"]

    def _partition(self, topic: Topic, message: Message) -> int:
        if message.key is not None:
            return partition_for(message.key, topic.partitions)
        turn = self._spread.get(topic.name, 0)
        self._spread[topic.name] = turn + 1
        return turn % topic.partitions

    async def _add(self, plan: _Plan, request: _Request) -> None:
        topic = await self._topic(plan, request.topic)
        if request.sweep:
            for partition in range(topic.partitions):
                await self._head(plan, topic.name, partition)
        for message in request.messages:
            if message.msg_id is not None:
                seen = await self._duplicate(plan, topic, message.msg_id)
                if seen is not None:
                    request.result.append(
                        {"partition": seen[0], "offset": seen[1], "duplicate": True}
                    )
                    continue
            partition = self._partition(topic, message)
            head = await self._head(plan, topic.name, partition)
            offset = head.next
            head.next += 1
            value = message.stored(plan.now_ms)
            head.bytes += len(value)
            plan.new.setdefault((topic.name, partition), []).append(
                (offset, len(value), plan.now_ms, value)
            )
            if message.msg_id is not None:
                plan.ids[(topic.name, message.msg_id)] = (partition, offset)
                dkey = keys.dedup(topic.name, message.msg_id)
                plan.puts[dkey] = store.put(dkey, {"p": partition, "o": offset, "t": plan.now_ms})
            request.result.append({"partition": partition, "offset": offset})

    async def _retention(self, plan: _Plan) -> None:
        """Trim the oldest messages of every touched partition over its topic's limits
        (at most PUBSUB_TRIM_PER_COMMIT stored ones): one delete-range of the segments
        wholly below the new first offset, and the segment it falls inside rewritten with
        the messages it keeps (so every stored message is at or after ``first``)."""
        for (name, partition), head in plan.heads.items():
            topic = plan.topics[name]
            if not (topic.max_messages or topic.max_bytes or topic.max_age):
                continue
            if not self._over(topic, head, None, plan.now_ms) and not topic.max_age:
                continue
            new = plan.new.get((name, partition), [])
            stored_end = head.next - len(new)
            budget = min(limits.PUBSUB_TRIM_PER_COMMIT, stored_end - head.first)
            held = []
            if budget > 0:
                held = await store.segments(self.node, name, partition, head.first, budget)
            oldest = [
                (offset, len(blob), unpack(blob)["t"], blob)
                for _, messages in held
                for offset, blob in messages
                if offset >= head.first
            ][:budget]
            start = head.first
            for offset, size, stamp, _ in oldest + new:
                if not self._over(topic, head, stamp, plan.now_ms):
                    break
                head.first = offset + 1
                head.bytes -= size
            stored_cut = min(head.first, stored_end)
            if stored_cut <= start:
                continue
            plan.deletes.append(
                store.delete(
                    keys.message(name, partition, start),
                    keys.message(name, partition, stored_cut),
                )
            )
            for key, messages in held:  # the segment the cut falls inside, if any
                if messages[0][0] < stored_cut <= messages[-1][0]:
                    kept = [blob for offset, blob in messages if offset >= stored_cut]
                    plan.puts[key] = store.put(key, pack(kept))

    @staticmethod
    def _over(topic: Topic, head: Head, oldest_ms: int | None, now_ms: int) -> bool:
        """Whether the partition is over a retention limit (age: if its oldest is known)."""
        if topic.max_messages and head.next - head.first > topic.max_messages:
            return True
        if topic.max_bytes and head.bytes > topic.max_bytes:
            return True
        return bool(
            topic.max_age and oldest_ms is not None and now_ms - oldest_ms > topic.max_age * 1000
        )
