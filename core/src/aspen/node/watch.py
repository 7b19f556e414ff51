"""Watches: streams of KV changes read from the durable history.

A watcher never holds events in memory of its own: it remembers its *position* — the
history key (revision, sub-index) of the next entry it has not examined — and, whenever
the store's revision moves past what it has read, reads the history from there. So a
slow watcher costs nothing while it is behind, catches up from history, and is told
``compacted`` if compaction overtakes it.

Reads run in worker threads (at most ``WATCH_READ_THREADS`` at once), in slices bounded
by ``WATCH_READ_SLICE_ENTRIES`` / ``WATCH_READ_SLICE_BYTES`` of history examined, and
each message holds at most ``MAX_WATCH_MESSAGE_BYTES`` of keys and values (a single
larger event travels alone) and ``MAX_WATCH_EVENTS_PER_MESSAGE`` events. Resuming from
the position, not from the start of a revision, keeps a catch-up through one huge
transaction linear. A message followed at once by more history says ``"more": true``:
the revision of its last event may go on in the next message.

The hub also remembers the keys the last revisions changed (:class:`RecentKeys`, bounded
by ``WATCH_RECENT_REVISIONS`` / ``WATCH_RECENT_KEY_BYTES``), from the events of each
commit. A watcher woken by revisions that changed no key in its range moves past them
without reading: on a busy node most watchers (plugins watch their own prefixes) would
otherwise make a worker-thread hop per write to find nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import anyio

from aspen import limits
from aspen.errors import CompactedError
from aspen.events import Event, KvBatch, KvDelete, KvPut
from aspen.kv.commands import WatchRequest
from aspen.kv.reads import in_range
from aspen.kv.records import DELETE, HISTORY_KEY, entry_record, history_key
from aspen.kv.state_machine import KVStateMachine
from aspen.storage import Storage

__all__ = ["EVENT_FIELDS_BYTES", "LARGEST_EVENT_BYTES", "RecentKeys", "WatchHub", "event_bytes"]

#: Bytes an event's encoding adds to its keys and values (field names, revisions,
#: version, lease, type; measured well under this by test_watch_largest_event_fits_a_frame).
EVENT_FIELDS_BYTES = 256
#: Bytes of the largest event a watch can carry: a put of a MAX_VALUE_BYTES value under a
#: MAX_KEY_BYTES key over an equally large previous value, with ``prev_kv``. It must fit
#: one frame (MAX_FRAME_BYTES) with its message around it; the tests check that it does.
LARGEST_EVENT_BYTES = EVENT_FIELDS_BYTES + 2 * (limits.MAX_KEY_BYTES + limits.MAX_VALUE_BYTES)


def event_bytes(event: dict[str, Any]) -> int:
    """The bytes a watch message spends on ``event`` (keys, values, fixed fields)."""
    size = EVENT_FIELDS_BYTES
    for kv in (event["kv"], event["prev_kv"]):
        if kv is not None:
            size += len(kv["key"]) + len(kv["value"])
    return size


@dataclass(frozen=True, slots=True)
class _Page:
    """One read of the history: what to send, where to go on, and whether it is all."""

    revision: int  # the store revision the read saw
    events: list[dict[str, Any]]
    position: bytes  # history key of the next entry not examined
    more: bool  # stopped at a bound: more history follows at once


class RecentKeys:
    """The keys changed by the last revisions, when every change of them is known.

    :meth:`record` takes each commit's events; revisions whose changes the events do not
    fully account for (a journal publish, a snapshot install, no events given) make it
    forget everything up to them, so :meth:`untouched` never claims a revision it has not
    seen every change of.
    """

    def __init__(self, revision: int) -> None:
        self.known_from = revision  # every change after this revision is remembered
        self._revisions: deque[tuple[int, tuple[bytes, ...]]] = deque()
        self._bytes = 0

    def record(self, before: int, after: int, events: Sequence[Event]) -> None:
        """Remember the keys of revisions ``before + 1 .. after`` from their ``events``."""
        keys: dict[int, list[bytes]] = {}
        for event in events:
            if isinstance(event, KvPut | KvDelete):
                keys.setdefault(event.revision, []).append(event.kv.key)
            elif not isinstance(event, KvBatch):  # its changes come as puts and deletes too
                keys.clear()
                break
        if (
            before != self.latest
            or len(keys) != after - before
            or min(keys, default=0) != before + 1
            or max(keys, default=0) != after
        ):
            self._forget(after)
            return
        for revision in sorted(keys):
            changed = tuple(keys[revision])
            self._revisions.append((revision, changed))
            self._bytes += sum(map(len, changed))
        while self._revisions and (
            len(self._revisions) > limits.WATCH_RECENT_REVISIONS
            or self._bytes > limits.WATCH_RECENT_KEY_BYTES
        ):
            revision, changed = self._revisions.popleft()
            self._bytes -= sum(map(len, changed))
            self.known_from = revision

    @property
    def latest(self) -> int:
        """The newest revision remembered (``known_from`` when none is)."""
        return self._revisions[-1][0] if self._revisions else self.known_from

    def untouched(self, req: WatchRequest, seen: int, current: int) -> bool:
        """True if revisions ``seen + 1 .. current`` are all remembered and changed no key
        in ``req``'s range."""
        if seen < self.known_from or current > self.latest:
            return False
        for revision, changed in reversed(self._revisions):
            if revision <= seen:
                break
            if revision <= current and any(in_range(k, req.key, req.end) for k in changed):
                return False
        return True

    def _forget(self, revision: int) -> None:
        self._revisions.clear()
        self._bytes = 0
        self.known_from = revision


class WatchHub:
    """Tells waiting watchers when the store revision moves, and streams their history."""

    def __init__(self, storage: Storage, state_machine: KVStateMachine, revision: int) -> None:
        self._storage = storage
        self._sm = state_machine
        self.revision = revision
        self._changed = anyio.Event()
        self._readers = anyio.CapacityLimiter(limits.WATCH_READ_THREADS)
        self.recent = RecentKeys(revision)
        self.active = 0
        self.skipped_reads = 0
        #: Waits until every write this node applied is visible to a new read transaction
        #: (``Replicator.settled``, set by the node): events go out before the LMDB commit
        #: that makes them readable, and a watcher's read waits for (and so prompts) it.
        self.settled: Callable[[], Awaitable[None]] = _nothing_pending

    def advance(self, revision: int, events: Sequence[Event] = ()) -> None:
        """Record a new store revision (reached by the commits of ``events``) and wake
        every watcher."""
        if revision > self.revision:
            self.recent.record(self.revision, revision, events)
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

    def _read(self, req: WatchRequest, position: bytes) -> _Page:
        """Read one page of ``req``'s events from ``position`` (runs in a worker thread)."""
        events: list[dict[str, Any]] = []
        size = examined = examined_bytes = 0
        with self._storage.begin() as txn:
            current = self._sm.current_revision(txn)
            _check_compacted(HISTORY_KEY.unpack(position)[0], self._sm.compact_revision(txn))
            with closing(self._sm.reader.history_entries(txn, position)) as entries:
                for db_key, raw in entries:
                    if (
                        examined >= limits.WATCH_READ_SLICE_ENTRIES
                        or examined_bytes >= limits.WATCH_READ_SLICE_BYTES
                        or len(events) >= limits.MAX_WATCH_EVENTS_PER_MESSAGE
                    ):
                        return _Page(current, events, db_key, True)
                    examined, examined_bytes = examined + 1, examined_bytes + len(raw)
                    kind, rec = entry_record(db_key, raw)
                    if not _wanted(kind, rec[0], req):
                        continue
                    shaped = self._sm.reader.event(txn, db_key, kind, rec, with_prev=req.prev_kv)
                    event = {k: shaped[k] for k in ("type", "kv", "prev_kv")}
                    cost = event_bytes(event)
                    if events and size + cost > limits.MAX_WATCH_MESSAGE_BYTES:
                        return _Page(current, events, db_key, True)
                    events.append(event)
                    size += cost
        return _Page(current, events, max(position, history_key(current + 1)), False)

    def _check_start(self, req: WatchRequest) -> int:
        """Return the current revision; raise ``compacted`` for a start that is gone."""
        with self._storage.begin() as txn:
            current = self._sm.current_revision(txn)
            _check_compacted(req.start_revision, self._sm.compact_revision(txn))
        return current

    async def stream(self, req: WatchRequest) -> AsyncIterator[dict[str, Any]]:
        """Yield the protocol's watch items for ``req`` until the caller stops iterating.

        A transaction larger than one message is split across messages (each but the last
        with ``"more": true``) without losing or repeating events.
        """
        current = self._check_start(req)
        position = history_key(req.start_revision or current + 1)
        seen = -1  # the revision up to which every history entry has been examined
        self.active += 1
        try:
            yield {"created": True, "header": {"revision": current}}
            while True:
                if self.revision > seen >= 0 and self.recent.untouched(req, seen, self.revision):
                    seen = self.revision  # nothing in req's range changed: no read needed
                    position = history_key(seen + 1)
                    self.skipped_reads += 1
                else:
                    await self.settled()
                    page = await anyio.to_thread.run_sync(
                        self._read, req, position, limiter=self._readers
                    )
                    position = page.position
                    if page.events:
                        item: dict[str, Any] = {
                            "header": {"revision": page.revision},
                            "events": page.events,
                        }
                        if page.more:
                            item["more"] = True
                        yield item
                    if page.more:
                        continue
                    seen = page.revision
                moved = await self._wait_beyond(seen, limits.WATCH_PROGRESS_INTERVAL_SECONDS)
                if not moved and req.progress_notify:
                    yield {"header": {"revision": seen}, "progress": True}
        finally:
            self.active -= 1


async def _nothing_pending() -> None:
    """The default ``settled``: every apply is visible at once (no apply batch)."""


def _check_compacted(revision: int, compacted: int) -> None:
    """Raise ``compacted`` if history at ``revision`` is gone (0 means "from now")."""
    if 0 < revision < compacted:
        raise CompactedError(
            f"revision {revision} has been compacted (compact revision {compacted}); "
            f"watch from {compacted} or later",
            compact_revision=compacted,
        )


def _wanted(kind: int, key: bytes, req: WatchRequest) -> bool:
    """True if ``req`` wants the change of ``key`` of ``kind`` (a history entry's)."""
    if kind == DELETE:
        if "nodelete" in req.filters:
            return False
    elif "noput" in req.filters:
        return False
    return in_range(key, req.key, req.end)
