"""``client.events``: publish to, read and follow the cluster's event journal (docs/events.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aspen.journal.api import read_params

if TYPE_CHECKING:
    from aspen.client.aclient import AsyncClient

__all__ = ["EventsClient"]


class EventsClient:
    """``client.events``: ``publish``, ``read`` (one page), ``tail`` (follow), ``status``."""

    __slots__ = ("_client",)

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def publish(self, name: str, subject: str = "", payload: Any = None) -> dict[str, Any]:
        """Append one event; ``{"position", "revision"}`` (needs ``events:write:<name>``)."""
        params = {"name": name, "subject": subject, "payload": payload}
        return dict(await self._client.call("events.publish", params))

    async def read(
        self,
        start: int = 0,
        *,
        after_revision: int | None = None,
        match: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """One page from position ``start`` (0: the oldest kept): ``{"events", "next",
        "more", "first", "end"}``; ``compacted`` (details ``oldest``) below the retention."""
        return dict(
            await self._client.call("events.read", read_params(start, after_revision, match, limit))
        )

    async def tail(
        self,
        start: int | None = None,
        *,
        after_revision: int | None = None,
        match: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield events from position ``start`` (default: from now on) as they are applied,
        until the caller stops; each event is ``{"position", "revision", "time", "name",
        "subject", "payload"}``."""
        stream = self._client.stream(
            "events.watch", read_params(start, after_revision, match, None)
        )
        try:
            async for item in stream:
                for event in item.get("events") or ():
                    yield event
        finally:
            await stream.aclose()

    async def status(self) -> dict[str, Any]:
        """The journal's ``first``/``next`` positions, ``count``, ``bytes`` and retention."""
        return dict(await self._client.call("events.status"))

    async def set_retention(
        self,
        *,
        max_events: int | None = None,
        max_bytes: int | None = None,
        max_age: float | None = None,
    ) -> dict[str, Any]:
        """Change the cluster's retention (the bounds given); the retention now in force."""
        params = {"max_events": max_events, "max_bytes": max_bytes, "max_age": max_age}
        given = {k: v for k, v in params.items() if v is not None}
        return dict((await self._client.call("events.retention", given))["retention"])
