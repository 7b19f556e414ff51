"""Group commit: the leader puts many concurrent publishes in one Raft entry, and keeps
several entries in flight.

Every ``pubsub.publish`` on the leader joins a queue; one task takes what has queued (up to
``PUBSUB_COMMIT_MAX_MESSAGES`` / ``PUBSUB_COMMIT_MAX_BYTES``) and proposes it as one
``kv.txn``: the messages, the partitions' new heads, the de-dup records and the retention
deletes. Offsets come from the heads (never a clock). Up to ``PUBSUB_PUBLISH_PIPELINE``
entries are in flight at once: entry N+1 is built on the heads entry N will write.

The leader keeps the topics and heads in memory. Every entry compares the mod_revision of
each topic it used, and each partition head it used against what it expects there: the
mod_revision it read, or the exact VALUE an earlier entry of the pipeline writes. So an
entry built on a stale cache (an earlier entry failed, a new leader, a topic deleted
meanwhile) fails its compares and writes nothing; its publishes are queued again (in
their order, at the front) and the entry is rebuilt from heads read afresh once the
pipeline has drained. An offset is answered only once its entry committed, so none is
ever given twice. An entry whose outcome is unknown (an error, not a failed compare) is
answered with that error, as before.

Retention (which reads the stored oldest messages) and message ids seen in an entry still
in flight are planned only with nothing in flight. The publish time (the leader's clock,
milliseconds, never going back on one leader) travels in the entry; applying it never
reads a clock.

De-duplication records are kept in time buckets (:func:`aspen_pubsub.keys.dedup_in`): a
lookup reads the buckets that can still be inside the topic's window, and a sweep (the
same request that applies age retention) deletes the buckets wholly older than the
window by range, at most PUBSUB_DEDUP_EXPIRE_RECORDS / _BYTES per entry; records written
before buckets are still read and are expired by a bounded scan.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgpack

from aspen.client import prefix_end
from aspen.errors import AspenError, NotFoundError, UnavailableError
from aspen_pubsub import keys, limits, store
from aspen_pubsub.model import Head, Message, Topic, pack, partition_for, unpack

log = logging.getLogger(__name__)

__all__ = ["Publisher"]


class _Request:
    """One publish (a batch of one topic), waiting for its entry.

    A plain class with slots and a bare asyncio future (not an ``anyio.Event``): one is
    made per publish call, so its cost is per message when publishers send one each."""

    __slots__ = (
        "attempts",
        "done",
        "error",
        "ids",
        "messages",
        "result",
        "seq",
        "size",
        "sweep",
        "topic",
    )

    def __init__(
        self, topic: str, messages: list[Message], size: int, *, sweep: bool = False
    ) -> None:
        self.topic = topic
        self.messages = messages
        self.size = size
        self.ids = sum(1 for m in messages if m.msg_id is not None)  #: messages with an id
        self.seq = 0  #: arrival order (failed entries' requests go back in this order)
        self.sweep = sweep  #: a retention sweep: no messages, every partition checked
        self.attempts = 0  #: entries it was in whose compares failed
        #: resolved once answered (the caller awaits it on the node's event loop)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.result: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def answer(self, error: BaseException | None = None) -> None:
        """Wake the caller (with ``error``, or with ``result``); nothing if it was
        answered already or stopped waiting (cancelled)."""
        if not self.done.done():
            self.error = error
            self.done.set_result(None)


#: A stored message: offset, stored size, publish time (ms) and its packed record.
_Stored = tuple[int, int, int, bytes]

#: Told of every committed entry's messages, per partition: ``(topic, partition,
#: [(offset, packed message)])`` (a subscription on the leader: see :meth:`Publisher.listen`).
Listener = Callable[[str, int, list[tuple[int, bytes]]], None]


@dataclass
class _Plan:
    """One entry being built."""

    now_ms: int
    requests: list[_Request] = field(default_factory=list)
    compare: list[dict[str, Any]] = field(default_factory=list)
    puts: dict[bytes, dict[str, Any]] = field(default_factory=dict)  #: key → op, in order
    deletes: list[dict[str, Any]] = field(default_factory=list)
    topics: dict[str, Topic] = field(default_factory=dict)
    heads: dict[tuple[str, int], Head] = field(default_factory=dict)
    #: per partition, the messages this entry adds: (offset, size, publish ms, packed)
    new: dict[tuple[str, int], list[_Stored]] = field(default_factory=dict)
    ids: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    #: per partition, the messages it adds and keeps: (offset, packed), for listeners
    kept: dict[tuple[str, int], list[tuple[int, bytes]]] = field(default_factory=dict)


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


def _expect_value(key: bytes, head: Head) -> dict[str, Any]:
    """A compare: the head at ``key`` is exactly ``head`` (as an entry in flight writes it)."""
    return {"key": key, "target": "value", "op": "==", "value": pack(head.record())}


def _retains(topic: Topic) -> bool:
    """Whether ``topic`` has a retention limit (its commits may trim old messages)."""
    return bool(topic.max_messages or topic.max_bytes or topic.max_age)


class Publisher:
    """The leader's publish queue and group-commit pipeline (one per node; idle on
    followers)."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._queue: deque[_Request] = deque()
        #: asyncio events, set and cleared again (not a new anyio.Event each time: one
        #: per publish call for ``_wake``)
        self._wake = asyncio.Event()
        self._seq = itertools.count()
        self._topics: dict[str, tuple[Topic, int]] = {}
        #: per cached topic, a de-duplication bucket below which it holds no records: read
        #: with the topic (after its linearizable read, so nothing committed is missed);
        #: this leader writes only at or above it (its clock never goes back), sweeps only
        #: delete, so lookups skip the buckets below it (dropped with the topic)
        self._first_bucket: dict[str, int] = {}
        #: per partition: the head the next entry builds on and the compare that checks it
        self._heads: dict[tuple[str, int], tuple[Head, dict[str, Any]]] = {}
        self._spread: dict[str, int] = {}
        self._committed = anyio.Event()
        #: entries proposed and not yet answered; set when one is
        self._inflight = 0
        self._settled = asyncio.Event()
        #: message ids written by entries in flight (a repeat waits for them to settle)
        self._inflight_ids: set[tuple[str, str]] = set()
        #: requests of entries whose compares failed, to queue again once drained
        self._retry: list[_Request] = []
        #: the cache may be wrong (an entry failed, leadership moved): drain, then re-read
        self._stale = False
        #: told of each committed entry's messages (subscriptions on this node)
        self._listeners: set[Listener] = set()
        #: packs the message records (reused: cheaper than ``msgpack.packb`` per message;
        #: only ever used on the event loop)
        self._pack = msgpack.Packer(use_bin_type=True).pack
        #: the last entry's publish time: the next one's is never earlier
        self._last_ms = 0
        #: topics known to hold no de-duplication records written before buckets (never
        #: written any more, so once gone they stay gone: no lookup of them)
        self._no_legacy: set[str] = set()
        #: per topic, where the next scan of pre-bucket de-duplication records starts
        self._legacy_at: dict[str, bytes] = {}
        #: Entries committed and messages in them, and publishes queued again after
        #: their entry's compares failed, since start (``stats``).
        self.entries = 0
        self.messages = 0
        self.requeued = 0

    # ------------------------------------------------------------------ API
    async def publish(
        self, topic: str, messages: list[Message], size: int | None = None
    ) -> list[dict[str, Any]]:
        """Append ``messages`` to ``topic`` (in one entry, with others queued meanwhile);
        ``[{partition, offset}]`` once durable (``duplicate`` for a de-duplicated id).
        ``size``: their bytes (:attr:`Message.size`, summed) if the caller has it."""
        if size is None:
            size = sum(m.size for m in messages)
        return await self._submit(_Request(topic, messages, size))

    async def sweep(self, topic: str) -> bool:
        """Apply ``topic``'s retention now (age limits on a topic nobody publishes to) and
        delete de-duplication records older than its window (a bounded batch); ``True``
        if expired records are left for another sweep."""
        result = await self._submit(_Request(topic, [], 0, sweep=True))
        return bool(result and result[0].get("more"))

    async def ids_expired(self, topic: Topic) -> bool:
        """Whether ``topic`` may hold de-duplication records older than its window (a
        read of at most one record of this node: whether a :meth:`sweep` is due)."""
        if topic.name not in self._no_legacy:
            return True
        cutoff = _bucket(topic, int(time.time() * 1000) - int(topic.dedup_window * 1000))
        start = keys.dedups(topic.name)
        end = keys.dedup_bucket(topic.name, max(0, cutoff))
        return bool(await store.read_range(self.node, start, end, 1, local=True))

    def figures(self) -> dict[str, int]:
        """This node's group-commit counters since it started (``pubsub.stats``)."""
        return {"entries": self.entries, "messages": self.messages, "requeued": self.requeued}

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Tell ``listener`` the messages of every entry this node commits from now on, as
        soon as it is committed (before this node's apply of it is visible to reads and
        watches); returns the function that stops it. Called on the event loop; it must
        not block."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def next_commit(self) -> anyio.Event:
        """The event set once the next entry is committed (consumers waiting for messages):
        take it BEFORE looking for messages, then wait on it, so an entry committed in
        between is not missed."""
        return self._committed

    def forget(self, topic: str | None = None) -> None:
        """Drop cached state (a topic changed, or leadership moved); entries still in
        flight drain before the next one is built."""
        self._stale = True
        if topic is None:
            self._topics.clear()
            self._first_bucket.clear()
            self._heads.clear()
            return
        self._topics.pop(topic, None)
        self._first_bucket.pop(topic, None)
        for k in [k for k in self._heads if k[0] == topic]:
            del self._heads[k]

    async def _submit(self, request: _Request) -> list[dict[str, Any]]:
        request.seq = next(self._seq)
        self._queue.append(request)
        self._wake.set()
        await request.done
        if request.error is not None:
            raise request.error
        return request.result

    # ------------------------------------------------------------------ loop
    async def run(self) -> None:
        """Take queued publishes and propose them, up to PUBSUB_PUBLISH_PIPELINE entries in
        flight, until cancelled."""
        async with anyio.create_task_group() as tasks:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue or self._retry:
                    if self._stale or self._retry:
                        await self._drain()
                        continue
                    if self._inflight >= limits.PUBSUB_PUBLISH_PIPELINE:
                        await self._settled.wait()
                        continue
                    batch = self._take()
                    if self._inflight and self._needs_quiet(batch):
                        self._queue.extendleft(reversed(batch))
                        await self._drain()
                        continue
                    plan = await self._plan(batch)
                    if plan is not None:
                        self._inflight += 1
                        tasks.start_soon(self._propose, plan)

    async def _drain(self) -> None:
        """Wait for every entry in flight, then drop the cache if it may be wrong and queue
        the failed entries' requests again, at the front, in their order."""
        while self._inflight:
            await self._settled.wait()
        if self._stale:
            self._stale = False
            self._topics.clear()
            self._first_bucket.clear()
            self._heads.clear()
        retry, self._retry = sorted(self._retry, key=lambda r: r.seq), []
        self._queue.extendleft(reversed(retry))

    def _needs_quiet(self, batch: list[_Request]) -> bool:
        """Whether ``batch`` must be planned with nothing in flight: retention reads the
        stored oldest messages, and a message id may be in an entry not yet committed."""
        for request in batch:
            cached = self._topics.get(request.topic)
            if request.sweep or cached is None or _retains(cached[0]):
                return True
            for message in request.messages:
                if (request.topic, message.msg_id) in self._inflight_ids:
                    return True
        return False

    def _take(self) -> list[_Request]:
        """The next entry's requests: at least one, then while the bounds allow."""
        batch = [self._queue.popleft()]
        count, size = len(batch[0].messages), batch[0].size
        touched = {batch[0].topic: (count, batch[0].ids)}
        while self._queue:
            nxt = self._queue[0]
            if count + len(nxt.messages) > limits.PUBSUB_COMMIT_MAX_MESSAGES:
                break
            if size + nxt.size > limits.PUBSUB_COMMIT_MAX_BYTES:
                break
            more = dict(touched)
            had = more.get(nxt.topic, (0, 0))
            more[nxt.topic] = (had[0] + len(nxt.messages), had[1] + nxt.ids)
            if self._compares(more) > limits.PUBSUB_COMMIT_MAX_COMPARES:
                break
            self._queue.popleft()
            batch.append(nxt)
            count += len(nxt.messages)
            size += nxt.size
            touched = more
        return batch

    def _compares(self, touched: dict[str, tuple[int, int]]) -> int:
        """At most how many compares an entry publishing ``touched`` (topic → messages,
        of them with an id) makes: per topic its record, the heads of the partitions it
        can touch, and the de-duplication buckets each id may be in."""
        total = 0
        for name, (count, ids) in touched.items():
            cached = self._topics.get(name)
            partitions = cached[0].partitions if cached else limits.PUBSUB_MAX_PARTITIONS
            total += 1 + min(count, partitions) + ids * (limits.PUBSUB_DEDUP_SLICES + 1)
        return total

    async def _plan(self, batch: list[_Request]) -> _Plan | None:
        """Build the entry of ``batch`` and move the cached heads past it (``None``: every
        request was answered already, e.g. its topic does not exist)."""
        self._last_ms = max(self._last_ms, int(time.time() * 1000))
        plan = _Plan(now_ms=self._last_ms)
        try:
            for request in batch:
                request.result = []
                try:
                    await self._add(plan, request)
                    plan.requests.append(request)
                except NotFoundError as exc:
                    request.answer(exc)
            if not plan.requests:
                return None
            await self._retention(plan)
            for request in plan.requests:
                if request.sweep:
                    more = await self._expire_ids(plan, plan.topics[request.topic])
                    request.result.append({"more": more})
        except Exception as exc:
            self._fail(batch, exc)
            return None
        if not (plan.heads or plan.puts or plan.deletes):  # a sweep with nothing to do
            for request in plan.requests:
                request.answer()
            return None
        for (topic, partition), new in plan.new.items():
            first = plan.heads[(topic, partition)].first
            kept = [m for m in new if m[0] >= first]
            plan.kept[(topic, partition)] = [(m[0], m[3]) for m in kept]
            for last, blobs in _segments(kept):
                key = keys.message(topic, partition, last)
                plan.puts[key] = store.put(key, pack(blobs))
        for (topic, partition), head in plan.heads.items():
            key = keys.head(topic, partition)
            plan.puts[key] = store.put(key, head.record())
            after = Head(head.next, head.first, head.bytes)
            self._heads[(topic, partition)] = (after, _expect_value(key, after))
        self._inflight_ids.update(plan.ids)
        return plan

    def _fail(self, requests: list[_Request], exc: BaseException) -> None:
        """Answer ``requests`` with ``exc`` (an unknown outcome); the cache may be wrong."""
        self._stale = True
        if not isinstance(exc, AspenError):
            log.error("pubsub: commit failed", exc_info=exc)
        for request in requests:
            request.answer(exc)

    async def _propose(self, plan: _Plan) -> None:
        """Propose ``plan``'s entry and answer its requests: their offsets once it
        committed, again later if a compare failed, the error if the outcome is unknown."""
        try:
            revision = await store.txn(
                self.node, plan.compare, [*plan.puts.values(), *plan.deletes]
            )
        except Exception as exc:
            self._fail(plan.requests, exc)
        else:
            if revision is None:  # built on a stale cache: nothing written, build it again
                self._requeue(plan.requests)
            else:
                self.entries += 1
                self.messages += sum(len(r.messages) for r in plan.requests)
                for request in plan.requests:
                    request.answer()
                self._tell(plan)  # after: the publishers' answers go out first
                self._committed.set()
                self._committed = anyio.Event()
        finally:
            self._inflight_ids.difference_update(plan.ids)
            self._inflight -= 1
            self._settled.set()  # wakes every waiter now: clearing it at once is safe
            self._settled.clear()
            self._wake.set()

    def _tell(self, plan: _Plan) -> None:
        """Tell the listeners the messages ``plan``'s entry (committed) added."""
        for listener in list(self._listeners):
            for (topic, partition), kept in plan.kept.items():
                if kept:
                    listener(topic, partition, kept)

    def _requeue(self, requests: list[_Request]) -> None:
        """Queue the requests of an entry whose compares failed again (after the drain),
        or answer ``unavailable`` once one failed PUBSUB_COMMIT_ATTEMPTS times."""
        self._stale = True
        self.requeued += len(requests)
        for request in requests:
            request.attempts += 1
            if request.attempts >= limits.PUBSUB_COMMIT_ATTEMPTS:
                request.answer(
                    UnavailableError("publish kept conflicting with concurrent changes; try again")
                )
            else:
                self._retry.append(request)

    # ------------------------------------------------------------------ planning
    async def _topic(self, plan: _Plan, name: str) -> Topic:
        if name in plan.topics:
            return plan.topics[name]
        cached = self._topics.get(name)
        if cached is None:
            cached = await store.topic(self.node, name)
            self._topics[name] = cached
            self._first_bucket[name] = await self._oldest_bucket(cached[0], plan.now_ms)
        plan.topics[name] = cached[0]
        plan.compare.append(store.same(keys.topic(name), cached[1]))
        return cached[0]

    async def _head(self, plan: _Plan, topic: str, partition: int) -> Head:
        key = (topic, partition)
        if key in plan.heads:
            return plan.heads[key]
        cached = self._heads.get(key)
        if cached is None:
            head, revision = await store.head(self.node, topic, partition)
            cached = (head, store.same(keys.head(topic, partition), revision))
            self._heads[key] = cached
        head = Head(cached[0].next, cached[0].first, cached[0].bytes)
        plan.heads[key] = head
        plan.compare.append(cached[1])
        return head

    async def _duplicate(self, plan: _Plan, topic: Topic, msg_id: str) -> tuple[int, int] | None:
        """Where an earlier message with ``msg_id`` went, if inside the dedup window.

        Its record is in one of the buckets that can still be inside the window (newest
        first; none below the topic's oldest one, see ``_first_bucket``), or, written
        before buckets, at its old key. Serializable reads of this
        node (no ReadIndex round per message): the entry compares each record's
        mod_revision with what was read, so a read this node had not applied yet fails
        the entry, which is rebuilt once the pipeline drained, when this node has applied
        everything up to it (ids in entries still in flight wait for them:
        :meth:`_needs_quiet`)."""
        seen = plan.ids.get((topic.name, msg_id))
        if seen is not None:
            return seen
        window_ms = topic.dedup_window * 1000
        newest = _bucket(topic, plan.now_ms)
        oldest = _bucket(topic, plan.now_ms - int(window_ms))
        oldest = max(oldest, self._first_bucket.get(topic.name, oldest))
        places = [
            keys.dedup_in(topic.name, bucket, msg_id) for bucket in range(newest, oldest - 1, -1)
        ]
        for key in places:
            record, revision = await store.get(self.node, key, local=True)
            plan.compare.append(store.same(key, revision))
            if record is not None and plan.now_ms - record["t"] <= window_ms:
                return record["p"], record["o"]
        if topic.name in self._no_legacy:
            return None
        # never written again, only deleted by this leader's sweeps: no compare needed
        record, _ = await store.get(self.node, keys.dedup(topic.name, msg_id), local=True)
        if record is not None and plan.now_ms - record["t"] <= window_ms:
            return record["p"], record["o"]
        return None

    async def _oldest_bucket(self, topic: Topic, now_ms: int) -> int:
        """The bucket of ``topic``'s oldest de-duplication record (a read of this node),
        or the bucket of ``now_ms`` if it holds none."""
        start = keys.dedups(topic.name)
        found = await store.read_range(self.node, start, prefix_end(start), 1, local=True)
        if not found:
            return _bucket(topic, now_ms)
        return int(found[0]["key"][len(start) : len(start) + 16], 16)

    def _partition(self, topic: Topic, message: Message) -> int:
        if message.key is not None:
            return partition_for(message.key, topic.partitions)
        turn = self._spread.get(topic.name, 0)
        self._spread[topic.name] = turn + 1
        return turn % topic.partitions

    async def _add(self, plan: _Plan, request: _Request) -> None:
        topic = await self._topic(plan, request.topic)
        if request.sweep and _retains(topic):
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
            value = message.stored(plan.now_ms, self._pack)
            head.bytes += len(value)
            plan.new.setdefault((topic.name, partition), []).append(
                (offset, len(value), plan.now_ms, value)
            )
            if message.msg_id is not None:
                plan.ids[(topic.name, message.msg_id)] = (partition, offset)
                dkey = keys.dedup_in(topic.name, _bucket(topic, plan.now_ms), message.msg_id)
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

    async def _expire_ids(self, plan: _Plan, topic: Topic) -> bool:
        """Delete ``topic``'s de-duplication records older than its window, at most
        PUBSUB_DEDUP_EXPIRE_RECORDS / _BYTES: the oldest buckets wholly outside the window
        (one delete-range up to the last record read), and the records written before
        buckets that have aged out (a scan resumed where the last one stopped). ``True`` if
        some may be left."""
        window_ms = int(topic.dedup_window * 1000)
        cutoff = _bucket(topic, plan.now_ms - window_ms)
        start = keys.dedups(topic.name)
        end = keys.dedup_bucket(topic.name, max(0, cutoff))
        count, size = limits.PUBSUB_DEDUP_EXPIRE_RECORDS, limits.PUBSUB_DEDUP_EXPIRE_BYTES
        found = await store.read_range(self.node, start, end, count, local=True)
        taken = _within(found, size)
        if taken:
            plan.deletes.append(store.delete(start, taken[-1]["key"] + b"\0"))
        more = len(taken) < len(found) or len(found) == count
        count -= len(taken)
        size -= sum(len(kv["key"]) + len(kv["value"]) for kv in taken)
        if topic.name in self._no_legacy or count <= 0:
            return more
        span = keys.legacy_dedups(topic.name)
        at = self._legacy_at.get(topic.name, span)
        found = await store.read_range(self.node, at, prefix_end(span), count, local=True)
        if not found and at == span:
            self._no_legacy.add(topic.name)
            return more
        taken = _within(found, size)
        for kv in taken:
            if plan.now_ms - unpack(kv["value"])["t"] > window_ms:
                plan.deletes.append(store.delete(kv["key"]))
        if len(taken) < len(found) or len(found) == count:
            self._legacy_at[topic.name] = taken[-1]["key"] + b"\0" if taken else at
            return True
        self._legacy_at.pop(topic.name, None)  # scanned to the end: from the start
        return more

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


def _bucket(topic: Topic, ms: int) -> int:
    """The de-duplication bucket of publish time ``ms`` in ``topic``."""
    return max(0, ms) // keys.dedup_slice_ms(topic.dedup_window)


def _within(found: list[dict[str, Any]], most: int) -> list[dict[str, Any]]:
    """The first of ``found`` whose keys and values add up to at most ``most`` bytes."""
    size = 0
    for n, kv in enumerate(found):
        size += len(kv["key"]) + len(kv["value"])
        if size > most:
            return found[:n]
    return found
