"""Journal watchers: wake them as events are applied, stream their pages from LMDB.

Like a KV watch (:mod:`aspen.node.watch`), a journal watcher holds no events of its own: it
remembers the next position it has not read and, whenever the journal's end moves past it,
reads a page from there in a worker thread (at most ``WATCH_READ_THREADS`` such reads at
once). A slow watcher costs nothing while behind and is told ``compacted`` if retention
overtakes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import anyio

from aspen import limits
from aspen.events import Event, SnapshotInstalled
from aspen.journal.commands import ReadRequest
from aspen.journal.store import JournalAppended, JournalStore
from aspen.storage import Storage

__all__ = ["JournalHub"]


class JournalHub:
    """Knows the journal's end on this node and streams pages to its watchers."""

    def __init__(self, storage: Storage, journal: JournalStore) -> None:
        """Bind to the node's storage and journal; the end is read from storage."""
        self._storage = storage
        self.journal = journal
        with storage.begin() as txn:
            self.end = journal.state(txn).next
        self._changed = anyio.Event()
        self._readers = anyio.CapacityLimiter(limits.WATCH_READ_THREADS)
        #: Running ``events.watch`` streams on this node.
        self.active = 0
        #: Waits until every write this node applied is visible to a new read transaction
        #: (``Replicator.settled``, set by the node): :meth:`follow` runs before the LMDB
        #: commit that makes the events readable, and a watcher's read waits for it.
        self.settled: Callable[[], Awaitable[None]] = _nothing_pending

    def follow(self, events: Iterable[Event]) -> None:
        """After an apply (maybe before its LMDB commit: see ``settled``): move the end past
        appended events (re-read it after a snapshot was installed, which is committed
        first) and wake the watchers."""
        end = self.end
        for event in events:
            if type(event) is JournalAppended:
                end = max(end, event.last + 1)
            elif type(event) is SnapshotInstalled:
                with self._storage.begin() as txn:
                    end = self.journal.state(txn).next
        if end != self.end:
            self.end = end
            changed, self._changed = self._changed, anyio.Event()
            changed.set()

    def read_page(self, req: ReadRequest, start: int | None = None) -> dict[str, Any]:
        """One page of ``req`` from ``start`` (default: the request's own start, the oldest
        when it names none) in a fresh read transaction (blocking: run it in a thread)."""
        with self._storage.begin() as txn:
            if start is None:
                start = self.journal.start(txn, req, default_end=False)
            return self.journal.read(txn, start, req.match, req.limit)

    def _start(self, req: ReadRequest) -> int:
        with self._storage.begin() as txn:
            return self.journal.start(txn, req, default_end=True)

    async def stream(self, req: ReadRequest) -> AsyncIterator[dict[str, Any]]:
        """Yield ``events.watch`` items for ``req`` until the caller stops iterating: first
        ``{"created": True, "next"}``, then ``{"events", "next"}`` pages as events arrive,
        and ``{"progress": True, "next"}`` after EVENTS_PROGRESS_INTERVAL_SECONDS idle."""
        position = await anyio.to_thread.run_sync(self._start, req, limiter=self._readers)
        self.active += 1
        try:
            yield {"created": True, "next": position}
            while True:
                if position < self.end:
                    await self.settled()
                    page = await anyio.to_thread.run_sync(
                        self.read_page, req, position, limiter=self._readers
                    )
                    moved = page["next"] != position
                    position = page["next"]
                    if page["events"]:
                        yield {"events": page["events"], "next": position}
                    if page["more"] or (moved and position < self.end):
                        continue
                changed = self._changed
                with anyio.move_on_after(limits.EVENTS_PROGRESS_INTERVAL_SECONDS):
                    await changed.wait()
                if not changed.is_set():
                    yield {"progress": True, "next": position}
        finally:
            self.active -= 1


async def _nothing_pending() -> None:
    """The default ``settled``: every apply is visible at once (no apply batch)."""
