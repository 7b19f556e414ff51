"""Watches: streams of KV changes read from the durable history.

A watcher never holds events in memory of its own: it remembers the next revision it
wants and, whenever the store's revision moves past it, reads the history from LMDB in
pages of ``MAX_WATCH_EVENTS_PER_MESSAGE``. A slow watcher therefore costs nothing while it
is behind, catches up from history, and is told ``compacted`` if compaction overtakes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio

from aspen import limits
from aspen.errors import CompactedError
from aspen.kv.commands import WatchRequest
from aspen.kv.state_machine import KVStateMachine
from aspen.storage import Storage

__all__ = ["WatchHub"]


class WatchHub:
    """Tells waiting watchers when the store revision moves."""

    def __init__(self, storage: Storage, state_machine: KVStateMachine, revision: int) -> None:
        self._storage = storage
        self._sm = state_machine
        self.revision = revision
        self._changed = anyio.Event()
        self.active = 0

    def advance(self, revision: int) -> None:
        """Record a new store revision and wake every watcher."""
        if revision > self.revision:
            self.revision = revision
            changed, self._changed = self._changed, anyio.Event()
            changed.set()

    async def _wait_beyond(self, revision: int, timeout: float) -> bool:
        """Wait until the store revision exceeds ``revision``; False on timeout."""
        with anyio.move_on_after(timeout):
            while self.revision <= revision:
                await self._changed.wait()
            return True
        return False

    def _read(self, req: WatchRequest, next_rev: int, skip: int) -> tuple[int, list[dict]]:
        """Read the history page after (``next_rev``, ``skip`` events already sent of it)."""
        with self._storage.begin() as txn:
            current = self._sm.current_revision(txn)
            events = self._sm.history(
                txn, next_rev, req.key, req.end, limits.MAX_WATCH_EVENTS_PER_MESSAGE + skip
            )
        return current, events[skip:]

    def _check_start(self, req: WatchRequest) -> int:
        """Return the current revision; raise ``compacted`` for a start that is gone."""
        with self._storage.begin() as txn:
            current = self._sm.current_revision(txn)
            compacted = self._sm.compact_revision(txn)
        if req.start_revision and req.start_revision < compacted:
            raise CompactedError(
                f"revision {req.start_revision} has been compacted (compact revision "
                f"{compacted}); watch from {compacted} or later",
                compact_revision=compacted,
            )
        return current

    async def stream(self, req: WatchRequest) -> AsyncIterator[dict[str, Any]]:
        """Yield the protocol's watch items for ``req`` until the caller stops iterating.

        The position is (next revision, events of it already sent), so a transaction
        larger than one message is split across messages without losing events.
        """
        current = self._check_start(req)
        next_rev, skip = (req.start_revision or current + 1), 0
        self.active += 1
        try:
            yield {"created": True, "header": {"revision": current}}
            while True:
                current, events = self._read(req, next_rev, skip)
                if len(events) >= limits.MAX_WATCH_EVENTS_PER_MESSAGE:
                    last = events[-1]["kv"]["mod_revision"]
                    same = sum(1 for ev in events if ev["kv"]["mod_revision"] == last)
                    skip = skip + same if last == next_rev else same
                    next_rev = last
                else:
                    next_rev, skip = current + 1, 0
                shown = [self._shape(ev, req) for ev in events if self._wanted(ev, req)]
                if shown:
                    yield {"header": {"revision": current}, "events": shown}
                if events:
                    continue
                moved = await self._wait_beyond(current, limits.WATCH_PROGRESS_INTERVAL_SECONDS)
                if not moved and req.progress_notify:
                    yield {"header": {"revision": current}, "progress": True}
        finally:
            self.active -= 1

    @staticmethod
    def _wanted(event: dict, req: WatchRequest) -> bool:
        kind = event["type"]
        return not (
            (kind == "put" and "noput" in req.filters)
            or (kind == "delete" and "nodelete" in req.filters)
        )

    @staticmethod
    def _shape(event: dict, req: WatchRequest) -> dict:
        return {
            "type": event["type"],
            "kv": event["kv"],
            "prev_kv": event.get("prev_kv") if req.prev_kv else None,
        }
