"""Read-side queries over the ``kv`` and ``history`` databases: range, compare, history.

Every function works inside the caller's transaction — a read transaction for client
reads, or the nested write transaction of a command being applied (so a range inside a
txn sees the txn's earlier writes). Range end semantics (etcd): ``end=None`` (or empty) is
the single key, ``end=b"\\0"`` every key from ``key`` on, otherwise ``[key, end)``.

A read at an old revision R is computed from history: a key changed after R is restored
from the ``prev`` of its first change after R (or is absent, if that change created it);
every other key is as it is now.
"""

from __future__ import annotations

import heapq
from collections.abc import Generator, Iterator
from typing import Any

import lmdb
import msgpack

from aspen import limits
from aspen.errors import CompactedError, InvalidArgumentError
from aspen.kv.budget import ReadBudget
from aspen.kv.commands import RangeRequest
from aspen.kv.keycodec import SHORT_KEY_BYTES, encode_key, scan
from aspen.kv.records import (
    Record,
    history_event,
    history_key,
    record_key,
    record_to_wire,
    unpack,
)
from aspen.storage.env import Storage

__all__ = ["KV_WIRE_OVERHEAD_BYTES", "KVReader", "in_range"]

#: Bytes a range page counts for each key-value beyond its key and value (stored form) when
#: it is cut at ``page_bytes``: the field names and revisions of its wire map.
KV_WIRE_OVERHEAD_BYTES = 96
#: Record field of each compare target.
_TARGET_FIELD = {"value": 1, "create_revision": 2, "mod_revision": 3, "version": 4, "lease": 5}


def in_range(key: bytes, start: bytes, end: bytes | None) -> bool:
    """True if ``key`` is in the range (``start``, ``end``) with range end semantics."""
    if not end:
        return key == start
    return start <= key and (end == b"\0" or key < end)


def _stored_size(stored: bytes | Record) -> int:
    """Bytes of a key-value as stored (a record restored from history is packed again)."""
    return len(stored) if isinstance(stored, bytes) else len(msgpack.packb(stored))


def _count(items: Iterator[Any], budget: ReadBudget | None) -> int:
    """Consume ``items``, counting them (each a key visited for ``budget``)."""
    n = 0
    for _ in items:
        n += 1
        if budget is not None:
            budget.visit()
    return n


def _holds(actual: Any, op: str, expected: Any) -> bool:
    """Evaluate one compare operator."""
    if op == "==":
        return actual == expected
    if op == "!=":
        return actual != expected
    if op == "<":
        return actual < expected
    return actual > expected


class KVReader:
    """Range, compare and history queries over a :class:`Storage`'s kv and history dbs."""

    def __init__(self, storage: Storage) -> None:
        """Bind to ``storage``'s databases."""
        self._kv = storage.db("kv")
        self._history = storage.db("history")
        #: Rows (key records and history entries) read so far: a statistic that tests use
        #: to pin what a read costs (a page reads O(page) rows, not O(range)).
        self.rows_read = 0

    # ------------------------------------------------------------------ current state
    def get_record(self, txn: lmdb.Transaction, key: bytes) -> Record | None:
        """The current record of ``key``, or None."""
        raw = txn.get(encode_key(key), db=self._kv)
        self.rows_read += 1
        return None if raw is None else unpack(raw)

    def scan(
        self, txn: lmdb.Transaction, key: bytes, end: bytes | None
    ) -> Iterator[tuple[bytes, bytes, bytes]]:
        """Yield ``(encoded, key, stored record)`` of current keys in range, in key order.

        Lazy: a caller that stops early reads only the rows it consumed (plus the one the
        cursor stands on).
        """
        if not end:
            encoded = encode_key(key)
            raw = txn.get(encoded, db=self._kv)
            self.rows_read += 1
            if raw is not None:
                yield encoded, key, raw
            return
        with txn.cursor(db=self._kv) as cur:
            for row in scan(cur, key, None if end == b"\0" else end, record_key):
                self.rows_read += 1
                yield row

    # ------------------------------------------------------------------ range
    def range(
        self,
        txn: lmdb.Transaction,
        req: RangeRequest,
        current: int,
        compacted: int,
        budget: ReadBudget | None = None,
        *,
        materialise: bool = True,
        page_bytes: int = 0,
    ) -> dict[str, Any]:
        """The ``kvs``/``more`` of a range page (no header), and ``count`` when asked for.

        A page costs what it returns: it reads its key-values and one more key (to know
        ``more``), never the rest of the range, unless ``req.count`` or ``req.count_only``
        asks for the total. ``page_bytes`` (0: no bound) cuts the page before the key-value
        that would take it over that many bytes (key, value and
        :data:`KV_WIRE_OVERHEAD_BYTES` each), with ``more`` true; the first always fits.

        ``current`` is the revision the live data reflects, ``compacted`` the compact revision.
        Every key visited and returned is charged to ``budget`` (when given); without
        ``materialise`` the kvs are only charged, not built (``kvs`` is then empty).
        """
        items = self._items(txn, req, current, compacted, budget)
        if req.count_only:
            count = self._count_from(txn, req, current, req.key, items, budget, taken=0)
            return {"kvs": [], "more": False, "count": count}
        limit = req.limit or limits.DEFAULT_RANGE_LIMIT
        kvs: list[dict[str, Any]] = []
        taken = size = 0
        more = False
        for key, stored in items:
            if budget is not None:
                budget.visit()
            charge = len(key) if req.keys_only else _stored_size(stored)
            if taken == limit or (
                taken and page_bytes and size + charge + KV_WIRE_OVERHEAD_BYTES > page_bytes
            ):
                more = True
                break
            taken += 1
            size += charge + KV_WIRE_OVERHEAD_BYTES
            if budget is not None:
                budget.take(charge)
            if materialise:
                rec = unpack(stored) if isinstance(stored, bytes) else stored
                kvs.append(record_to_wire(rec, req.keys_only))  # type: ignore[arg-type]
        result: dict[str, Any] = {"kvs": kvs, "more": more}
        if req.count:
            rest = self._count_from(txn, req, current, key, items, budget, taken=1) if more else 0
            result["count"] = taken + rest
        return result

    def _count_from(
        self,
        txn: lmdb.Transaction,
        req: RangeRequest,
        current: int,
        start: bytes,
        items: Iterator[tuple[bytes, bytes | Record]],
        budget: ReadBudget | None,
        *,
        taken: int,
    ) -> int:
        """Keys of the range from ``start`` (included) on, where ``items`` yields them after
        the ``taken`` it already yielded from ``start`` on.

        Off the keys alone (no record read or decoded) for a standalone read of the live
        range between short bounds, else by consuming ``items``."""
        bounded = req.end and len(req.end) <= SHORT_KEY_BYTES and len(start) <= SHORT_KEY_BYTES
        if budget is None and req.revision in (0, current) and bounded:
            return self.count_keys(txn, start, req.end)  # type: ignore[arg-type]
        return taken + _count(items, budget)

    def count_keys(self, txn: lmdb.Transaction, start: bytes, end: bytes) -> int:
        """Current keys in [start, end) (``end`` ``b"\\0"``: no bound), both bounds at most
        SHORT_KEY_BYTES long: then encoded order against them is true order, so only
        the LMDB keys are read."""
        n = 0
        with txn.cursor(db=self._kv) as cur:
            if cur.set_range(start):
                if end == b"\0":
                    for _ in cur.iternext(keys=True, values=False):
                        n += 1
                else:
                    for k in cur.iternext(keys=True, values=False):
                        if k >= end:
                            break
                        n += 1
        self.rows_read += n
        return n

    def _items(
        self,
        txn: lmdb.Transaction,
        req: RangeRequest,
        current: int,
        compacted: int,
        budget: ReadBudget | None,
    ) -> Iterator[tuple[bytes, bytes | Record]]:
        """``(key, stored record or record)`` of the range at ``req.revision``, lazily."""
        rev = req.revision
        if rev > current:
            raise InvalidArgumentError(
                f"revision {rev} is a future revision (current revision {current})"
            )
        if 0 < rev < compacted:
            raise CompactedError(
                f"revision {rev} has been compacted (compact revision {compacted})",
                compact_revision=compacted,
            )
        if rev in (0, current):
            return ((k, raw) for _, k, raw in self.scan(txn, req.key, req.end))
        return self._items_at(txn, rev, req.key, req.end, budget)

    def _items_at(
        self,
        txn: lmdb.Transaction,
        revision: int,
        key: bytes,
        end: bytes | None,
        budget: ReadBudget | None = None,
    ) -> Iterator[tuple[bytes, bytes | Record]]:
        """``(key, stored record or record)`` of the keys in range as they were at ``revision``
        (every history entry read is a key visited for ``budget``).

        Reads the history after ``revision`` once (to learn which keys in range changed
        since, and where their first change is), then merges the live range, lazily, with
        those keys restored: the live range is read only as far as the caller goes.
        """
        first_change: dict[bytes, bytes] = {}
        with txn.cursor(db=self._history) as cur:
            if cur.set_range(history_key(revision + 1)):
                for db_key, raw in cur:
                    self.rows_read += 1
                    if budget is not None:
                        budget.visit()
                    k = unpack(raw)[1][0]
                    if k not in first_change and in_range(k, key, end):
                        first_change[k] = db_key
        live: Iterator[tuple[bytes, bytes | Record]] = (
            (k, raw) for _, k, raw in self.scan(txn, key, end) if k not in first_change
        )
        restored: Iterator[tuple[bytes, bytes | Record]] = self._restored(txn, first_change)
        yield from heapq.merge(live, restored, key=lambda item: item[0])

    def _restored(
        self, txn: lmdb.Transaction, first_change: dict[bytes, bytes]
    ) -> Iterator[tuple[bytes, Record]]:
        """``(key, record before its first change)`` in key order, for the keys that existed
        then; each record is read from history only when the merge reaches it."""
        for k in sorted(first_change):
            raw = txn.get(first_change[k], db=self._history)
            self.rows_read += 1
            prev = unpack(raw)[2]
            if prev is not None:
                yield k, prev

    # ------------------------------------------------------------------ compare
    def compare(
        self, txn: lmdb.Transaction, cmp: dict[str, Any], budget: ReadBudget | None = None
    ) -> bool:
        """Evaluate one txn compare (it must hold for every key of a range compare); every
        key looked at is a key visited for ``budget``."""
        field = _TARGET_FIELD[cmp["target"]]
        op, expected = cmp["op"], cmp["value"]
        seen = False
        for _, _, raw in self.scan(txn, cmp["key"], cmp["end"]):
            seen = True
            if budget is not None:
                budget.visit()
            if not _holds(unpack(raw)[field], op, expected):
                return False
        if seen:
            return True
        # A missing key (or empty range): no value, every number 0.
        return field != 1 and _holds(0, op, expected)

    # ------------------------------------------------------------------ history
    def history_entries(
        self, txn: lmdb.Transaction, position: bytes
    ) -> Generator[tuple[bytes, bytes], None, None]:
        """``(history key, stored entry)`` from ``position`` (a history key) on, oldest first.

        Nothing is decoded: the caller decides what to unpack (see :func:`history_event`).
        """
        with txn.cursor(db=self._history) as cur:
            if cur.set_range(position):
                yield from cur

    def history(
        self, txn: lmdb.Transaction, start_revision: int, key: bytes, end: bytes | None, limit: int
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` watch events with revision >= ``start_revision`` in range, oldest first.

        A revision may be split by ``limit``. Watches page by position instead (see
        :mod:`aspen.node.watch`).
        """
        out: list[dict[str, Any]] = []
        if limit <= 0:
            return out
        for db_key, raw in self.history_entries(txn, history_key(max(start_revision, 0))):
            event = history_event(db_key, raw)
            if in_range(event["kv"]["key"], key, end):
                out.append(event)
                if len(out) >= limit:
                    break
        return out
