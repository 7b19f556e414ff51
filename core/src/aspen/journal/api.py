"""``node.events``: the event journal as a plugin sees it (docs/events.md).

Publish on its own (``await node.events.publish("forge.push", "acme/widgets", {...})``), or
in the same transaction as the KV change the event reports: put ``node.events.op(...)`` in a
``kv.txn`` branch; the event is appended only if that branch runs and the transaction
commits. Read a page (``read``) or follow new events (``watch``) from a position.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from aspen.journal.commands import publish_op

if TYPE_CHECKING:
    from aspen.api import NodeAPI

__all__ = ["EventsAPI", "read_params"]


class EventsAPI:
    """Publish to and read the node's event journal (in-process, as the node itself)."""

    __slots__ = ("_node",)

    def __init__(self, node: NodeAPI) -> None:
        """Use ``node``'s ``call`` and ``stream``."""
        self._node = node

    @staticmethod
    def op(name: str, subject: str = "", payload: Any = None) -> dict[str, Any]:
        """A ``kv.txn`` op publishing this event when its branch runs (checked now:
        ``invalid_argument`` naming the bound for a bad name, subject or payload)."""
        event = {"name": name, "subject": subject, "payload": payload}
        publish_op(event)
        return {"publish": event}

    async def publish(self, name: str, subject: str = "", payload: Any = None) -> int:
        """Append one event on its own (on the leader; ``not_leader`` elsewhere); return
        its position."""
        params = {"name": name, "subject": subject, "payload": payload}
        return int((await self._node.call("events.publish", params))["position"])

    async def read(
        self,
        start: int = 0,
        *,
        after_revision: int | None = None,
        match: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """One page from position ``start`` (0: the oldest kept) or after a revision:
        ``{events, next, more, first, end}``; ``compacted`` (details ``oldest``) if
        ``start`` was trimmed."""
        params = read_params(start, after_revision, match, limit)
        return dict(await self._node.call("events.read", params))

    def watch(
        self,
        start: int | None = None,
        *,
        after_revision: int | None = None,
        match: str | None = None,
    ) -> AsyncGenerator[Any, None]:
        """Follow events from position ``start`` (default: now) or after a revision: items
        ``{"created", "next"}``, ``{"events", "next"}``, ``{"progress", "next"}``."""
        return self._node.stream("events.watch", read_params(start, after_revision, match, None))


def read_params(
    start: int | None, after_revision: int | None, match: str | None, limit: int | None
) -> dict[str, Any]:
    """The ``events.read`` / ``events.watch`` params of these arguments."""
    params: dict[str, Any] = {}
    if after_revision is not None:
        params["after_revision"] = after_revision
    elif start is not None:
        params["from"] = start
    if match is not None:
        params["match"] = match
    if limit is not None:
        params["limit"] = limit
    return params
