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
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import anyio

from aspen import limits
from aspen.errors import CompactedError
from aspen.kv.commands import WatchRequest
from aspen.kv.reads import in_range
from aspen.kv.records import DELETE, HISTORY_KEY, entry_record, history_key
from aspen.kv.state_machine import KVStateMachine
from aspen.storage import Storage

__all__ = ["EVENT_FIELDS_BYTES", "LARGEST_EVENT_BYTES", "WatchHub", "event_bytes"]

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


class WatchHub:
    """Tells waiting watchers when the store revision moves, and streams their history."""

    def __init__(self, storage: Storage, state_machine: KVStateMachine, revision: int) -> None:
        self._storage = storage
        self._sm = state_machine
        self.revision = revision
        self._changed = anyio.Event()
        self._readers = anyio.CapacityLimiter(limits.WATCH_READ_THREADS)
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
        self.active += 1
        try:
            yield {"created": True, "header": {"revision": current}}
            while True:
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
                moved = await self._wait_beyond(
                    page.revision, limits.WATCH_PROGRESS_INTERVAL_SECONDS
                )
                if not moved and req.progress_notify:
                    yield {"header": {"revision": page.revision}, "progress": True}
        finally:
            self.active -= 1


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
