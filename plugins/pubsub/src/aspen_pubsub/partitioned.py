"""Partitioned consumer groups (Kafka): members, a sticky assignor, cooperative handover,
member epochs and committed offsets, run on the leader.

The group record holds the members (``{id: {epoch, static}}``), each partition's
``target`` (what the assignor wants) and ``owners`` (who holds it now), and ``cursors``
(the committed next offset per partition). A partition goes to its target only once
nobody owns it: the old owner released it (a heartbeat no longer listing it, or
``leave``) or its session expired. So a partition never has two owners.

Heartbeats are kept in the leader's memory (``_seen``), not written; a heartbeat writes
only when ownership changes. Session expiry is decided by the leader's clock and proposed
as a change of the group record. A new leader starts every member's session afresh.

Every join gives the member a new epoch (a static member rejoining with its instance id
keeps its id and partitions, and fences its previous incarnation); ``commit`` and
``heartbeat`` with another epoch are refused (:class:`FencedError`).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from aspen.errors import CompareFailedError, ResourceExhaustedError
from aspen_pubsub import limits
from aspen_pubsub.groups import GroupService

__all__ = ["FencedError", "PartitionedGroups", "assign", "group_state"]


class FencedError(CompareFailedError):
    """A member's epoch is not its current one (a zombie, or removed): rejoin."""


def assign(members: list[str], partitions: int, previous: list[str | None]) -> list[str | None]:
    """The target owner of each partition: an even share per member (sorted ids first get
    the remainder), keeping each partition where it was while its member is under its share."""
    if not members:
        return [None] * partitions
    ordered = sorted(members)
    base, extra = divmod(partitions, len(ordered))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(ordered)}
    load = dict.fromkeys(ordered, 0)
    target: list[str | None] = [None] * partitions
    for partition, member in enumerate(previous):
        if member in quota and load[member] < quota[member]:
            target[partition] = member
            load[member] += 1
    for partition in range(partitions):
        if target[partition] is None:
            member = next(m for m in ordered if load[m] < quota[m])
            target[partition] = member
            load[member] += 1
    return target


def group_state(record: dict[str, Any]) -> str:
    """Dead (being deleted), Empty, PreparingRebalance (a handover under way) or Stable."""
    if record.get("deleting"):
        return "Dead"
    if not record["members"]:
        return "Empty"
    return "Stable" if record["owners"] == record["target"] else "PreparingRebalance"


def _grant(record: dict[str, Any], member: str) -> dict[str, Any]:
    """Give ``member`` the partitions targeted to it that nobody owns; its answer."""
    owners, target = record["owners"], record["target"]
    for partition, want in enumerate(target):
        if want == member and owners[partition] is None:
            owners[partition] = member
    mine = [p for p, o in enumerate(owners) if o == member]
    return {
        "member": member,
        "epoch": record["members"][member]["epoch"],
        "assigned": [
            {"partition": p, "offset": record["cursors"][p]} for p in mine if target[p] == member
        ],
        "revoke": [p for p in mine if target[p] != member],
        "state": group_state(record),
    }


def _remove(record: dict[str, Any], member: str) -> None:
    record["members"].pop(member, None)
    record["owners"] = [None if o == member else o for o in record["owners"]]
    record["target"] = assign(list(record["members"]), len(record["owners"]), record["target"])


class PartitionedGroups:
    """The leader's side of partitioned groups (one per node)."""

    def __init__(self, groups: GroupService) -> None:
        self.groups = groups
        #: (topic, group, member) → when the leader last heard from it (monotonic)
        self._seen: dict[tuple[str, str, str], float] = {}

    def _check(self, record: dict[str, Any], member: str, epoch: int) -> None:
        if record["mode"] != "partitioned":
            raise CompareFailedError(f"group {record['name']!r} is competing: use pubsub.fetch")
        known = record["members"].get(member)
        if known is None or known["epoch"] != epoch:
            raise FencedError(
                f"member {member!r} epoch {epoch} is fenced"
                + (" (not a member: rejoin)" if known is None else f" (now {known['epoch']})"),
                member=member,
            )

    async def join(
        self, topic: str, group: str, consumer: str, instance: str | None
    ) -> dict[str, Any]:
        """Add a member (``instance``: a static id kept across restarts); its assignment."""

        async def mutate(state: Any, change: Any) -> dict[str, Any]:
            record = change.record
            if record["mode"] != "partitioned":
                raise CompareFailedError(f"group {group!r} is competing: use pubsub.fetch")
            member = instance or f"{consumer}-{secrets.token_hex(4)}"
            full = len(record["members"]) >= limits.PUBSUB_MAX_MEMBERS
            if member not in record["members"] and full:
                raise ResourceExhaustedError(
                    f"group {group!r} has PUBSUB_MAX_MEMBERS ({limits.PUBSUB_MAX_MEMBERS}) members",
                    limit=limits.PUBSUB_MAX_MEMBERS,
                )
            record["epoch_seq"] += 1
            record["members"][member] = {"epoch": record["epoch_seq"], "static": bool(instance)}
            record["target"] = assign(
                list(record["members"]), state.topic.partitions, record["target"]
            )
            self._seen[(topic, group, member)] = time.monotonic()
            return _grant(record, member)

        return await self.groups.update(topic, group, mutate)

    async def heartbeat(
        self, topic: str, group: str, member: str, epoch: int, owned: list[int]
    ) -> dict[str, Any]:
        """The member is alive and holds ``owned``: what it holds no longer is released;
        answers its assignment and what it must release."""

        async def mutate(state: Any, change: Any) -> dict[str, Any]:
            record = change.record
            self._check(record, member, epoch)
            self._seen[(topic, group, member)] = time.monotonic()
            held = set(owned)
            record["owners"] = [
                None if o == member and p not in held else o for p, o in enumerate(record["owners"])
            ]
            return _grant(record, member)

        return await self.groups.update(topic, group, mutate)

    async def commit(
        self, topic: str, group: str, member: str, epoch: int, offsets: dict[int, int]
    ) -> dict[str, Any]:
        """Record the next offsets of partitions the member owns (fenced otherwise)."""

        async def mutate(state: Any, change: Any) -> dict[str, Any]:
            record = change.record
            self._check(record, member, epoch)
            for partition, offset in offsets.items():
                if not 0 <= partition < len(record["owners"]):
                    raise CompareFailedError(f"no partition {partition}", partition=partition)
                if record["owners"][partition] != member:
                    raise FencedError(
                        f"member {member!r} does not own partition {partition}",
                        partition=partition,
                    )
                record["cursors"][partition] = offset
            return {"committed": len(offsets)}

        return await self.groups.update(topic, group, mutate)

    async def leave(self, topic: str, group: str, member: str, epoch: int) -> dict[str, Any]:
        """Remove the member and release its partitions at once."""

        async def mutate(state: Any, change: Any) -> dict[str, Any]:
            self._check(change.record, member, epoch)
            _remove(change.record, member)
            self._seen.pop((topic, group, member), None)
            return {"left": member}

        return await self.groups.update(topic, group, mutate)

    async def expire(self, topic: str, group: str, record: dict[str, Any]) -> None:
        """Remove members whose session passed (the leader's clock); a member the leader
        has not heard from yet starts its session now."""
        now = time.monotonic()
        timeout = record.get("session_timeout", limits.PUBSUB_DEFAULT_SESSION_SECONDS)
        late = []
        for member in record["members"]:
            seen = self._seen.setdefault((topic, group, member), now)
            if now - seen > timeout:
                late.append(member)
        if not late:
            return

        async def mutate(state: Any, change: Any) -> None:
            for member in late:
                if now - self._seen.get((topic, group, member), now) > timeout:
                    _remove(change.record, member)
                    self._seen.pop((topic, group, member), None)

        await self.groups.update(topic, group, mutate)

    def forget(self) -> None:
        """Leadership moved: sessions start afresh on the next leader."""
        self._seen.clear()
