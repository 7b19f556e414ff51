"""The journal in LMDB: its events, its state, its retention, and reads of it.

``events`` database: position (8 bytes BE) → the msgpack array ``[revision, time, name,
subject, payload]`` (``payload`` embedded as the publisher's msgpack). Positions are dense:
the journal holds exactly ``[first, next)``, so its count is ``next - first`` without
counting and a reader detects a gap by position alone.

Meta keys (replicated, in snapshots): ``events/state`` = first, next, bytes (of keys and
values kept) and the revision of the last trimmed event (four 8-byte BE ints);
``events/retention`` = the cluster's retention override (a msgpack map).

Retention is applied in apply, deterministically: after a command published events, the
oldest are trimmed while the journal holds more than ``max_events`` events or ``max_bytes``
bytes, or (with ``max_age``) while the oldest is more than ``max_age`` seconds older than the
newest event's (proposer's) time; at most the events published plus
``EVENTS_TRIM_SLICE_EVENTS`` per command.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar

import lmdb
import msgpack

from aspen import limits
from aspen.errors import CompactedError
from aspen.events import Event
from aspen.journal.commands import ReadRequest
from aspen.journal.match import Match
from aspen.storage.env import Storage

__all__ = [
    "EVENT_WIRE_OVERHEAD_BYTES",
    "JOURNAL_META_KEYS",
    "JournalAppended",
    "JournalState",
    "JournalStore",
    "Retention",
]

_STATE_KEY = b"events/state"
_RETENTION_KEY = b"events/retention"
#: The meta keys of the journal (part of the replicated state, hence of snapshots).
JOURNAL_META_KEYS = (_STATE_KEY, _RETENTION_KEY)
_STATE = struct.Struct(">QQQQ")
_POSITION = struct.Struct(">Q")
#: Bytes a page counts for an event's fields beyond its stored record.
EVENT_WIRE_OVERHEAD_BYTES = 64


@dataclass(frozen=True, slots=True)
class JournalAppended(Event):
    """Events ``first..last`` were appended at ``revision`` (the node wakes its journal
    watchers on it; no notification hook receives it)."""

    name: ClassVar[str] = "journal.appended"
    revision: int
    first: int
    last: int


@dataclass(slots=True)
class JournalState:
    """The journal holds positions ``[first, next)``: ``bytes`` of records; the last trimmed
    event had revision ``trimmed_revision`` (0: none trimmed yet)."""

    first: int = 1
    next: int = 1
    bytes: int = 0
    trimmed_revision: int = 0

    def to_json(self) -> dict[str, int]:
        """The wire form (``count`` included)."""
        return {
            "first": self.first,
            "next": self.next,
            "count": self.next - self.first,
            "bytes": self.bytes,
            "trimmed_revision": self.trimmed_revision,
        }


@dataclass(frozen=True, slots=True)
class Retention:
    """How much the journal keeps (``max_age`` 0: no age bound)."""

    max_events: int = limits.EVENTS_RETAIN_EVENTS
    max_bytes: int = limits.EVENTS_RETAIN_BYTES
    max_age: float = limits.EVENTS_RETAIN_SECONDS

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        return {"max_events": self.max_events, "max_bytes": self.max_bytes, "max_age": self.max_age}


def pack_record(revision: int, op: dict[str, Any]) -> bytes:
    """The stored record of a ``publish`` op applied at ``revision`` (payload embedded)."""
    head = msgpack.packb([revision, op["time"], op["name"], op["subject"]], use_bin_type=True)
    return b"\x95" + head[1:] + op["payload"]  # fixarray of 4 -> of 5, payload appended


def event_to_wire(position: int, record: list[Any]) -> dict[str, Any]:
    """The protocol form of a stored event."""
    revision, time, name, subject, payload = record
    return {
        "position": position,
        "revision": revision,
        "time": time,
        "name": name,
        "subject": subject,
        "payload": payload,
    }


def _unpack(raw: bytes) -> list[Any]:
    return msgpack.unpackb(raw, raw=False)


class JournalStore:
    """The ``events`` database and the journal's meta keys of one :class:`Storage`."""

    def __init__(self, storage: Storage) -> None:
        """Bind to ``storage``'s databases."""
        self.db = storage.db("events")
        self.meta = storage.db("meta")
        #: Stored events read so far (tests pin a page's cost with it).
        self.rows_read = 0
        self._retention: tuple[bytes | None, Retention] = (None, Retention())

    # ------------------------------------------------------------------ state
    def state(self, txn: lmdb.Transaction) -> JournalState:
        """The journal's extent in ``txn``."""
        raw = txn.get(_STATE_KEY, db=self.meta)
        return JournalState(*_STATE.unpack(raw)) if raw is not None else JournalState()

    def _save(self, txn: lmdb.Transaction, state: JournalState) -> None:
        packed = _STATE.pack(state.first, state.next, state.bytes, state.trimmed_revision)
        txn.put(_STATE_KEY, packed, db=self.meta)

    def retention(self, txn: lmdb.Transaction) -> Retention:
        """The cluster's retention (the defaults of aspen.limits unless overridden)."""
        raw = txn.get(_RETENTION_KEY, db=self.meta)
        if raw != self._retention[0]:  # decoded once per change, not per command
            self._retention = (raw, Retention(**msgpack.unpackb(raw)) if raw else Retention())
        return self._retention[1]

    # ------------------------------------------------------------------ apply
    def append(self, txn: lmdb.Transaction, revision: int, op: dict[str, Any]) -> int:
        """Append a validated ``publish`` op at ``revision``; return its position."""
        state = self.state(txn)
        position = state.next
        key = _POSITION.pack(position)
        record = pack_record(revision, op)
        txn.put(key, record, db=self.db, append=True)
        state.next += 1
        state.bytes += len(key) + len(record)
        self._save(txn, state)
        return position

    def set_retention(self, txn: lmdb.Transaction, cmd: dict[str, Any]) -> Retention:
        """Apply an ``events_retention`` command (the fields it gives replace the current
        ones), then trim a slice; return the retention now in force."""
        current = self.retention(txn).to_json()
        current.update({k: cmd[k] for k in ("max_events", "max_bytes", "max_age") if k in cmd})
        retention = Retention(**current)
        txn.put(_RETENTION_KEY, msgpack.packb(retention.to_json()), db=self.meta)
        self.trim(txn, 0)
        return retention

    def trim(self, txn: lmdb.Transaction, published: int) -> int:
        """Trim the oldest events over the retention, at most ``published`` +
        ``EVENTS_TRIM_SLICE_EVENTS``; return how many were trimmed."""
        state = self.state(txn)
        retention = self.retention(txn)
        budget = published + limits.EVENTS_TRIM_SLICE_EVENTS
        newest = None
        if retention.max_age and state.next > state.first:
            last = txn.get(_POSITION.pack(state.next - 1), db=self.db)
            newest = _unpack(last)[1] if last is not None else None
        trimmed = 0

        def over() -> bool:
            return (
                state.next - state.first > retention.max_events or state.bytes > retention.max_bytes
            )

        if newest is None and not over():
            return 0  # the common case: nothing to trim, nothing read
        with txn.cursor(db=self.db) as cur:
            while trimmed < budget and state.first < state.next:
                if not over() and newest is None:
                    break
                if not cur.set_key(_POSITION.pack(state.first)):
                    break
                key, raw = cur.key(), cur.value()
                record = _unpack(raw)
                if not over():  # only the age bound may trim it
                    assert newest is not None
                    if record[1] >= newest - retention.max_age:
                        break
                state.first += 1
                state.bytes -= len(key) + len(raw)
                state.trimmed_revision = record[0]
                trimmed += 1
                cur.delete()
        if trimmed:
            self._save(txn, state)
        return trimmed

    # ------------------------------------------------------------------ reads
    def start(self, txn: lmdb.Transaction, req: ReadRequest, *, default_end: bool) -> int:
        """The position ``req`` reads from (without one: the end with ``default_end``, else
        the oldest); ``compacted`` naming the oldest kept position if it was trimmed."""
        state = self.state(txn)
        if req.after_revision is not None:
            if req.after_revision < state.trimmed_revision:
                raise _trimmed(f"events after revision {req.after_revision}", state)
            return self.first_after_revision(txn, state, req.after_revision)
        if req.start is None:
            return state.next if default_end else state.first
        if req.start == 0:
            return state.first
        if req.start < state.first:
            raise _trimmed(f"event position {req.start}", state)
        return req.start

    def first_after_revision(
        self, txn: lmdb.Transaction, state: JournalState, revision: int
    ) -> int:
        """The position of the first kept event with a revision above ``revision`` (``next``
        if none): a binary search, positions and revisions rising together."""
        lo, hi = state.first, state.next
        while lo < hi:
            mid = (lo + hi) // 2
            raw = txn.get(_POSITION.pack(mid), db=self.db)
            self.rows_read += 1
            if raw is not None and _unpack(raw)[0] > revision:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def read(self, txn: lmdb.Transaction, start: int, match: Match, limit: int) -> dict[str, Any]:
        """One page from position ``start`` (``compacted`` if it was trimmed): ``{events,
        next, more, first, end}``. At most ``limit``
        events and ``EVENTS_MAX_PAGE_BYTES`` (a larger single event alone), examining at
        most ``EVENTS_READ_SLICE_EVENTS`` stored events; ``next`` is where to go on,
        ``more`` whether more events follow at once."""
        state = self.state(txn)
        if start < state.first:
            raise _trimmed(f"event position {start}", state)
        events: list[dict[str, Any]] = []
        size = examined = 0
        position = start
        everything = match.everything
        with txn.cursor(db=self.db) as cur:
            if not cur.set_range(_POSITION.pack(position)):
                return self._page(events, max(start, state.next), False, state)
            for key, raw in cur:
                self.rows_read += 1
                if len(events) >= limit or examined >= limits.EVENTS_READ_SLICE_EVENTS:
                    return self._page(events, position, True, state)
                record = _unpack(raw)
                if everything or match(record[2], record[3]):
                    cost = len(raw) + EVENT_WIRE_OVERHEAD_BYTES
                    if events and size + cost > limits.EVENTS_MAX_PAGE_BYTES:
                        return self._page(events, position, True, state)
                    events.append(event_to_wire(position, record))
                    size += cost
                examined += 1
                position = _POSITION.unpack(key)[0] + 1
        return self._page(events, max(position, state.next), False, state)

    @staticmethod
    def _page(
        events: list[dict[str, Any]], nxt: int, more: bool, state: JournalState
    ) -> dict[str, Any]:
        return {
            "events": events,
            "next": nxt,
            "more": more,
            "first": state.first,
            "end": state.next,
        }


def _trimmed(what: str, state: JournalState) -> CompactedError:
    """The typed error for a read below the retention."""
    return CompactedError(
        f"{what} is no longer in the journal (trimmed by its retention); the oldest event "
        f"kept is at position {state.first}: read from there, or from 0 (the oldest)",
        oldest=state.first,
        trimmed_revision=state.trimmed_revision,
    )
