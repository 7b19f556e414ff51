"""Competing consumer groups (JetStream work queue / Redis PEL), run on the leader.

A group record (``g/<topic>/<group>``) holds its settings, one cursor per partition (the
next offset never delivered) and its counters. Each delivered, un-acked message has a
pending entry (consumer, delivery count, deadline), stored as runs of consecutive
deliveries (``p/…``, see :mod:`aspen_pubsub.pending`: a fetch of 100 writes one record).
Every change of a group is one ``kv.txn`` that compares the group record's mod_revision
and rewrites it, so a group's changes are serialised in the log; the leader keeps the
group and its pending entries in memory (checked by that compare) and serialises its own
work on a lock per group.

Deadlines are the leader's clock plus ``ack_wait`` (or a nak's delay), written into the
entries; whether one has passed is decided by the leader when a consumer fetches and the
decision (redeliver, or dead-letter after ``max_deliver``) is proposed as a command. Applying
never reads a clock.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from aspen.errors import CompareFailedError, NotFoundError, ResourceExhaustedError
from aspen.kv import paging
from aspen_pubsub import keys, limits, store
from aspen_pubsub import pending as pending_runs
from aspen_pubsub.model import Topic, delivered, pack

__all__ = ["ACK_KINDS", "GroupService", "StaleAckError", "dead_letter_event", "gone"]

#: What an ack may say: done, again (after ``delay``), still working, never again.
ACK_KINDS = ("ack", "nak", "progress", "term")


class StaleAckError(CompareFailedError):
    """An ack names a message not pending for this consumer at that delivery (acked
    already, or redelivered to someone else after its ack wait)."""


def dead_letter_event(
    node: Any, topic: str, group: str, partition: int, offset: int, deliveries: int
) -> dict[str, Any]:
    """The ``kv.txn`` op publishing ``pubsub.dead_letter`` (docs/events.md) in the same
    entry that moves the message to the group's dead-letter list."""
    payload = {
        "topic": topic,
        "group": group,
        "partition": partition,
        "offset": offset,
        "deliveries": deliveries,
    }
    return node.events.op("pubsub.dead_letter", f"{topic}/{group}", payload)


def gone(topic: str, group: str, *, deleting: bool = False) -> NotFoundError:
    """The ``not_found`` of a group that does not exist, or is being deleted: its state is
    Dead (as Kafka reports a deleted group), in the message and the details."""
    why = "is being deleted" if deleting else "does not exist"
    return NotFoundError(
        f"group {group!r} of topic {topic!r} {why} (state Dead)", group=group, state="Dead"
    )


def now_ms() -> int:
    """The leader's clock, in milliseconds (only ever written into entries)."""
    return int(time.time() * 1000)


@dataclass
class _State:
    """A group as the leader last read or wrote it."""

    topic: Topic
    record: dict[str, Any]
    revision: int
    pending: pending_runs.Entries
    runs: pending_runs.Runs  #: how ``pending`` is stored (see :mod:`aspen_pubsub.pending`)


class _Change:
    """One group change being built (one txn)."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self.record = copy.deepcopy(state.record)
        self.pending = dict(state.pending)
        self.ops: list[dict[str, Any]] = []
        self.dead: list[tuple[int, int, int]] = []
        self.touched: set[tuple[int, int]] = set()  #: pending positions put or dropped

    def put_pending(self, partition: int, offset: int, entry: dict[str, Any]) -> None:
        self.pending[(partition, offset)] = entry
        self.touched.add((partition, offset))

    def drop_pending(self, partition: int, offset: int) -> None:
        del self.pending[(partition, offset)]
        self.touched.add((partition, offset))

    def changed(self) -> bool:
        """Whether the change writes anything."""
        return bool(self.ops or self.touched) or self.record != self.state.record

    def count(self, name: str, by: int = 1) -> None:
        self.record[name] = self.record.get(name, 0) + by


class GroupService:
    """The leader's side of competing groups: fetch, ack and claim (one per node)."""

    def __init__(self, node: Any, next_commit: Callable[[], anyio.Event]) -> None:
        self.node = node
        #: the event set when the publisher's next entry commits (fetches waiting on it)
        self._next_commit = next_commit
        self._states: dict[tuple[str, str], _State] = {}
        self._locks: dict[tuple[str, str], anyio.Lock] = {}

    def forget(self, topic: str | None = None) -> None:
        """Drop cached groups (of ``topic``, or all)."""
        for k in [k for k in self._states if topic is None or k[0] == topic]:
            del self._states[k]

    def _lock(self, topic: str, group: str) -> anyio.Lock:
        return self._locks.setdefault((topic, group), anyio.Lock())

    async def _state(self, topic: str, group: str) -> _State:
        cached = self._states.get((topic, group))
        if cached is not None:
            return cached
        the_topic, _ = await store.topic(self.node, topic)
        record, revision = await store.get(self.node, keys.group(topic, group))
        if record is None:
            raise gone(topic, group)
        found: list[dict[str, Any]] = []
        if record["mode"] == "competing":
            found, _, _ = await paging.collect(
                self.node.call,
                keys.pending_prefix(topic, group),
                most=limits.PUBSUB_MAX_MAX_ACK_PENDING * 2,
                local=True,
            )
        state = _State(the_topic, record, revision, *pending_runs.load(found))
        self._states[(topic, group)] = state
        return state

    async def _save(self, change: _Change) -> bool:
        """Propose ``change``; whether it applied (else the cache is dropped: retry)."""
        state = change.state
        name = change.record["name"]
        gkey = keys.group(state.topic.name, name)
        announced = [
            dead_letter_event(self.node, state.topic.name, name, partition, offset, deliveries)
            for partition, offset, deliveries in change.dead
        ]
        stored, runs = pending_runs.writes(
            state.topic.name, name, change.pending, state.runs, change.touched
        )
        ops = [*stored, *change.ops, *announced, store.put(gkey, change.record)]
        try:
            revision = await store.txn(self.node, [store.same(gkey, state.revision)], ops)
        except BaseException:
            self.forget(state.topic.name)
            raise
        if revision is None:
            self.forget(state.topic.name)
            return False
        self._states[(state.topic.name, name)] = _State(
            state.topic, change.record, revision, change.pending, runs
        )
        return True

    async def update(
        self,
        topic: str,
        group: str,
        mutate: Callable[[_State, _Change], Awaitable[Any]],
        *,
        dead_ok: bool = False,
    ) -> Any:
        """Run ``mutate(state, change)`` under the group's lock and propose the change it
        made (none: nothing is written); retried on a stale cache. Its result. A group
        being deleted (Dead) is ``not_found`` unless ``dead_ok`` (its deletion)."""
        async with self._lock(topic, group):
            for _ in range(limits.PUBSUB_COMMIT_ATTEMPTS):
                state = await self._state(topic, group)
                if state.record.get("deleting") and not dead_ok:
                    raise gone(topic, group, deleting=True)
                change = _Change(state)
                result = await mutate(state, change)
                if not change.changed() or await self._save(change):
                    return result
        raise CompareFailedError("group changed concurrently; try again")

    async def _message(self, topic: str, partition: int, offset: int) -> dict[str, Any] | None:
        return await store.message(self.node, topic, partition, offset)

    # ------------------------------------------------------------------ fetch
    async def fetch(
        self,
        topic: str,
        group: str,
        consumer: str,
        most: int,
        wait: float,
        acks: Sequence[tuple[int, int, int | None]] = (),
    ) -> list[dict[str, Any]]:
        """Up to ``most`` messages for ``consumer``: expired deliveries first (or into the
        dead letters past ``max_deliver``), then undelivered ones; waits up to ``wait``
        seconds for one. ``acks`` (the previous batch) are acknowledged in the same entry."""
        deadline = time.monotonic() + wait
        soonest: list[int] = []

        async def mutate(state: _State, change: _Change) -> list[dict[str, Any]]:
            if state.record["mode"] != "competing":
                raise CompareFailedError(
                    f"group {group!r} is partitioned: use pubsub.join and pubsub.heartbeat",
                    group=group,
                )
            _settle(change, consumer, acks, "ack", 0.0)
            out = await self._take(change, consumer, most)
            soonest[:] = [min((e["dl"] for e in change.pending.values()), default=0)]
            return out

        while True:
            committed = self._next_commit()  # before looking: a commit meanwhile wakes it
            out = await self.update(topic, group, mutate)
            acks = ()
            left = deadline - time.monotonic()
            if out or left <= 0:
                return out
            if soonest and soonest[0]:
                left = min(left, max(0.0, soonest[0] / 1000 - time.time()) + 0.001)
            with anyio.move_on_after(left):
                await committed.wait()

    async def _take(self, change: _Change, consumer: str, most: int) -> list[dict[str, Any]]:
        record, topic = change.record, change.state.topic
        now = now_ms()
        wait_ms = int(record["ack_wait"] * 1000)
        out: list[dict[str, Any]] = []
        expired = sorted((e["dl"], p, o) for (p, o), e in change.pending.items() if e["dl"] <= now)
        for _, partition, offset in expired:
            if len(out) >= most:
                break
            entry = change.pending[(partition, offset)]
            message = await self._message(topic.name, partition, offset)
            if message is None:  # removed by retention meanwhile
                change.drop_pending(partition, offset)
                change.count("pending", -1)
                continue
            if entry["n"] >= record["max_deliver"]:
                change.drop_pending(partition, offset)
                change.count("pending", -1)
                change.count("dead")
                dead = {"n": entry["n"], "c": entry["c"], "t": now}
                change.ops.append(
                    store.put(keys.dead(topic.name, record["name"], partition, offset), dead)
                )
                change.dead.append((partition, offset, entry["n"]))
                continue
            out.append(_redeliver(change, consumer, partition, offset, message, now))
        room = min(most - len(out), record["max_ack_pending"] - len(change.pending))
        cursors = record["cursors"]
        turn = record.get("turn", 0)
        for i in range(topic.partitions):
            if room <= 0:
                break
            partition = (turn + i) % topic.partitions
            found = await store.messages(self.node, topic.name, partition, cursors[partition], room)
            for offset, message in found:
                change.put_pending(partition, offset, {"c": consumer, "n": 1, "dl": now + wait_ms})
                out.append(delivered(topic.name, partition, offset, message))
                cursors[partition] = offset + 1
            change.count("pending", len(found))
            change.count("delivered", len(found))
            room -= len(found)
        if out:
            record["turn"] = turn + 1
        return out

    # ------------------------------------------------------------------ ack
    async def ack(
        self,
        topic: str,
        group: str,
        consumer: str,
        acks: list[tuple[int, int, int | None]],
        kind: str,
        delay: float,
    ) -> int:
        """Settle deliveries of ``consumer`` (``kind`` in :data:`ACK_KINDS`); all or none."""

        async def mutate(state: _State, change: _Change) -> int:
            _settle(change, consumer, acks, kind, delay)
            return len(acks)

        return int(await self.update(topic, group, mutate))

    # ------------------------------------------------------------------ claim
    async def claim(
        self,
        topic: str,
        group: str,
        consumer: str,
        positions: list[tuple[int, int]],
        from_consumer: str | None,
    ) -> list[dict[str, Any]]:
        """Give pending deliveries (these positions, or all of ``from_consumer``'s) to
        ``consumer`` now, with a new delivery each (the operator's XCLAIM)."""

        async def mutate(state: _State, change: _Change) -> list[dict[str, Any]]:
            chosen = positions or [
                pos for pos, e in state.pending.items() if e["c"] == from_consumer
            ]
            if len(chosen) > limits.PUBSUB_MAX_FETCH:
                raise ResourceExhaustedError(
                    f"claim of {len(chosen)} messages exceeds PUBSUB_MAX_FETCH "
                    f"({limits.PUBSUB_MAX_FETCH})",
                    limit=limits.PUBSUB_MAX_FETCH,
                )
            out = []
            now = now_ms()
            for partition, offset in chosen:
                if (partition, offset) not in change.pending:
                    raise StaleAckError(
                        f"message {partition}/{offset} is not pending", partition=partition
                    )
                message = await self._message(topic, partition, offset)
                if message is not None:
                    out.append(_redeliver(change, consumer, partition, offset, message, now))
            return out

        return list(await self.update(topic, group, mutate))


def _redeliver(
    change: _Change, consumer: str, partition: int, offset: int, message: dict[str, Any], now: int
) -> dict[str, Any]:
    """Deliver a pending message again, to ``consumer``, with a new ack deadline."""
    count = change.pending[(partition, offset)]["n"] + 1
    fresh = {"c": consumer, "n": count, "dl": now + int(change.record["ack_wait"] * 1000)}
    change.put_pending(partition, offset, fresh)
    change.count("redeliveries")
    return delivered(
        change.state.topic.name,
        partition,
        offset,
        message,
        delivery_count=count,
        redelivered=True,
    )


def _settle(
    change: _Change,
    consumer: str,
    acks: Sequence[tuple[int, int, int | None]],
    kind: str,
    delay: float,
) -> None:
    """Settle deliveries of ``consumer`` in ``change``; a delivery that is not its (acked
    already, or redelivered to another) refuses the whole request (:class:`StaleAckError`)."""
    now = now_ms()
    for partition, offset, deliveries in acks:
        entry = change.pending.get((partition, offset))
        if (
            entry is None
            or entry["c"] != consumer
            or (deliveries is not None and entry["n"] != deliveries)
        ):
            raise StaleAckError(
                f"message {partition}/{offset} is not pending for consumer {consumer!r}"
                + (f" at delivery {deliveries}" if deliveries is not None else "")
                + (
                    " (acked or terminated already)"
                    if entry is None
                    else f" (now delivery {entry['n']} to {entry['c']!r})"
                ),
                partition=partition,
                offset=offset,
            )
        if kind in ("ack", "term"):
            change.drop_pending(partition, offset)
            change.count("pending", -1)
            change.count("acked" if kind == "ack" else "terminated")
        else:
            later = delay if kind == "nak" else change.record["ack_wait"]
            change.put_pending(partition, offset, dict(entry, dl=now + int(later * 1000)))


def new_group(
    name: str,
    mode: str,
    cursors: list[int],
    *,
    ack_wait: float,
    max_deliver: int,
    max_ack_pending: int,
    session_timeout: float,
) -> bytes:
    """A new group's stored record (a partitioned one with no members yet)."""
    return pack(
        {
            "members": {},
            "owners": [None] * len(cursors),
            "target": [None] * len(cursors),
            "epoch_seq": 0,
            "session_timeout": session_timeout,
            "name": name,
            "mode": mode,
            "ack_wait": ack_wait,
            "max_deliver": max_deliver,
            "max_ack_pending": max_ack_pending,
            "cursors": cursors,
            "pending": 0,
            "delivered": 0,
            "acked": 0,
            "redeliveries": 0,
            "dead": 0,
            "terminated": 0,
        }
    )
