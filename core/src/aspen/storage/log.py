"""The Raft log and hard state, stored in the ``log`` and ``meta`` databases.

Entries are keyed by their index as 8 big-endian bytes (so LMDB order is log order) and
stored as 8 big-endian bytes of term followed by the entry's data. Compaction drops a
prefix of the log and remembers the index and term of the last dropped entry, so
``first_index``/``last_index``/``last_term`` stay answerable on an empty log (Raft's
``snapshot`` position). Every method takes the caller's transaction: the driver appends
entries and sets hard state in one write transaction (one fsync per batch).

Invariants: indexes in the ``log`` db are contiguous, from ``first_index`` to
``last_index``; ``first_index == compacted_index + 1``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import lmdb
import msgpack

from aspen.storage.env import Storage

__all__ = ["Log", "LogCompactedError", "LogEntry"]

_U64 = struct.Struct(">Q")
_U64x2 = struct.Struct(">QQ")
_COMPACTED_KEY = b"log/compacted"
_HARD_STATE_KEY = b"raft/hard_state"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One Raft log entry: its position, the term it was proposed in, and its payload."""

    index: int
    term: int
    data: bytes


class LogCompactedError(LookupError):
    """The requested entries were compacted away (the follower needs a snapshot)."""


class Log:
    """The Raft log seam over the ``log`` and ``meta`` databases of a :class:`Storage`."""

    def __init__(self, storage: Storage) -> None:
        """Bind to ``storage``'s databases."""
        self._log = storage.db("log")
        self._meta = storage.db("meta")

    # ------------------------------------------------------------------ positions
    def compacted(self, txn: lmdb.Transaction) -> tuple[int, int]:
        """Return (index, term) of the last compacted entry, (0, 0) if none was."""
        raw = txn.get(_COMPACTED_KEY, db=self._meta)
        return _U64x2.unpack(raw) if raw is not None else (0, 0)

    def first_index(self, txn: lmdb.Transaction) -> int:
        """Index of the first entry still in the log (compacted index + 1)."""
        return self.compacted(txn)[0] + 1

    def last_index(self, txn: lmdb.Transaction) -> int:
        """Index of the last entry, or the compacted index when the log is empty."""
        with txn.cursor(db=self._log) as cur:
            if cur.last():
                return _U64.unpack(cur.key())[0]
        return self.compacted(txn)[0]

    def last_term(self, txn: lmdb.Transaction) -> int:
        """Term of the last entry, or the compacted term when the log is empty."""
        with txn.cursor(db=self._log) as cur:
            if cur.last():
                return _U64.unpack_from(cur.value())[0]
        return self.compacted(txn)[1]

    def term(self, txn: lmdb.Transaction, index: int) -> int | None:
        """Term of the entry at ``index`` (also the compacted one), ``None`` if unknown."""
        raw = txn.get(_U64.pack(index), db=self._log) if index > 0 else None
        if raw is not None:
            return _U64.unpack_from(raw)[0]
        c_index, c_term = self.compacted(txn)
        return c_term if index == c_index else None

    # ------------------------------------------------------------------ reads
    def entry(self, txn: lmdb.Transaction, index: int) -> LogEntry | None:
        """The entry at ``index``, or ``None`` if it is not in the log."""
        if index <= 0:
            return None
        raw = txn.get(_U64.pack(index), db=self._log)
        return _decode(index, raw) if raw is not None else None

    def entries(
        self, txn: lmdb.Transaction, lo: int, hi: int, max_bytes: int | None = None
    ) -> list[LogEntry]:
        """Entries with ``lo <= index < hi``, stopping once their data exceeds ``max_bytes``.

        At least one entry is returned when the range is not empty (as etcd's raft does).
        Raises :class:`LogCompactedError` if ``lo`` was compacted and ``ValueError`` if
        ``hi`` is beyond ``last_index + 1``.
        """
        if lo < self.first_index(txn):
            raise LogCompactedError(f"log entry {lo} was compacted")
        last = self.last_index(txn)
        if hi > last + 1:
            raise ValueError(f"log entries up to {hi - 1} requested, last index is {last}")
        out: list[LogEntry] = []
        size = 0
        with txn.cursor(db=self._log) as cur:
            if not cur.set_key(_U64.pack(lo)):
                return out
            for key, raw in cur:
                index = _U64.unpack(key)[0]
                if index >= hi:
                    break
                size += len(raw) - 8
                if out and max_bytes is not None and size > max_bytes:
                    break
                out.append(_decode(index, raw))
        return out

    # ------------------------------------------------------------------ writes
    def append(self, txn: lmdb.Transaction, entries: Iterable[LogEntry]) -> None:
        """Append contiguous entries right after ``last_index`` (truncate conflicts first)."""
        expected = self.last_index(txn) + 1
        for e in entries:
            if e.index != expected:
                raise ValueError(f"log append at index {e.index}, expected {expected}")
            txn.put(_U64.pack(e.index), _U64.pack(e.term) + e.data, db=self._log, append=True)
            expected += 1

    def truncate_from(self, txn: lmdb.Transaction, index: int) -> None:
        """Drop the entry at ``index`` and every entry after it."""
        if index <= self.compacted(txn)[0]:
            raise ValueError(f"cannot truncate the log from {index}: it is compacted")
        with txn.cursor(db=self._log) as cur:
            if cur.set_range(_U64.pack(index)):
                while cur.delete():
                    pass

    def compact_to(self, txn: lmdb.Transaction, index: int) -> None:
        """Drop entries ``<= index`` (which must be in the log); a no-op if already compacted."""
        c_index, _ = self.compacted(txn)
        if index <= c_index:
            return
        term = self.term(txn, index)
        if term is None:
            raise ValueError(f"cannot compact the log to {index}: no such entry")
        self._drop_until(txn, index)
        txn.put(_COMPACTED_KEY, _U64x2.pack(index, term), db=self._meta)

    def size_bytes(self, txn: lmdb.Transaction) -> int:
        """Bytes of the pages the log occupies (from LMDB's counters: O(1), no scan)."""
        st = txn.stat(self._log)
        return (st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]) * st["psize"]

    def retention_cut(
        self, txn: lmdb.Transaction, applied: int, keep_entries: int, keep_bytes: int
    ) -> int:
        """The index to compact to so that about ``keep_entries`` entries and ``keep_bytes``
        bytes of log stay behind ``applied``, or 0 while the log holds less than twice either
        (compacting in large steps keeps the deletes few). O(1): sizes come from LMDB's
        counters, bytes per entry from their average."""
        first = self.first_index(txn)
        cut = applied - keep_entries if applied - first > 2 * keep_entries else 0
        size = self.size_bytes(txn)
        if size > 2 * keep_bytes:
            entries = txn.stat(self._log)["entries"]
            cut = max(cut, applied - max(1, keep_bytes * entries // size))
        return cut if cut >= first else 0

    def reset(self, txn: lmdb.Transaction, index: int, term: int) -> None:
        """Drop every entry and restart the log after (index, term), as a snapshot does."""
        with txn.cursor(db=self._log) as cur:
            if cur.first():
                while cur.delete():
                    pass
        txn.put(_COMPACTED_KEY, _U64x2.pack(index, term), db=self._meta)

    def _drop_until(self, txn: lmdb.Transaction, index: int) -> None:
        """Delete entries with index ``<= index``."""
        bound = _U64.pack(index)
        with txn.cursor(db=self._log) as cur:
            if not cur.first():
                return
            while cur.key() and cur.key() <= bound:
                if not cur.delete():
                    break

    # ------------------------------------------------------------------ hard state
    def get_hard_state(self, txn: lmdb.Transaction) -> tuple[int, Any]:
        """Return (current term, vote) — vote is the node voted for in that term, or None."""
        raw = txn.get(_HARD_STATE_KEY, db=self._meta)
        if raw is None:
            return 0, None
        term, vote = msgpack.unpackb(raw, raw=False)
        return term, vote

    def set_hard_state(self, txn: lmdb.Transaction, term: int, vote: Any) -> None:
        """Persist (current term, vote); ``vote`` is a node id (msgpack-able) or None."""
        txn.put(_HARD_STATE_KEY, msgpack.packb([term, vote], use_bin_type=True), db=self._meta)


def _decode(index: int, raw: bytes) -> LogEntry:
    """Build a LogEntry from its stored value."""
    return LogEntry(index, _U64.unpack_from(raw)[0], raw[8:])
