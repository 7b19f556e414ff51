"""Read-side queries over the key-value state: range, compare, history.

Every function works inside the caller's transaction — a read transaction for client
reads, or the nested write transaction of a command being applied (so a range inside a
txn sees the txn's earlier writes). Range end semantics (etcd): ``end=None`` (or empty) is
the single key, ``end=b"\\0"`` every key from ``key`` on, otherwise ``[key, end)``.

A record is read by its position in ``history`` (see :mod:`aspen.kv.layout`): the current
one through the ``kv`` index, one at an old revision R through the key's earlier
positions in ``keyrevs`` (its latest at or before R, one seek), so a page at any revision
costs O(page).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import lmdb

from aspen import limits
from aspen.errors import CompactedError, InvalidArgumentError
from aspen.kv.budget import ReadBudget
from aspen.kv.commands import RangeRequest
from aspen.kv.keycodec import SHORT_KEY_BYTES, encode_key, scan
from aspen.kv.layout import KeyIndex, index_key
from aspen.kv.records import (
    DELETE,
    HISTORY_KEY,
    POSITION_BYTES,
    PUT,
    Record,
    entry_record,
    entry_to_wire,
    history_key,
    is_put,
    record_to_wire,
)
from aspen.storage.env import Storage

__all__ = ["KV_WIRE_OVERHEAD_BYTES", "KVReader", "in_range"]

#: Bytes a range page counts for each key-value beyond its stored history entry when it is
#: cut at ``page_bytes``: the field names and the mod revision of its wire map.
KV_WIRE_OVERHEAD_BYTES = 96
#: Record field of each compare target.
_TARGET_FIELD = {"value": 1, "create_revision": 2, "mod_revision": 3, "version": 4, "lease": 5}


def in_range(key: bytes, start: bytes, end: bytes | None) -> bool:
    """True if ``key`` is in the range (``start``, ``end``) with range end semantics."""
    if not end:
        return key == start
    return start <= key and (end == b"\0" or key < end)


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
    """Range, compare and history queries over a :class:`Storage`'s key-value state."""

    def __init__(self, storage: Storage) -> None:
        """Bind to ``storage``'s databases."""
        self.index = KeyIndex(storage)
        self._kv = self.index.kv
        self._history = self.index.history
        #: Rows (index rows and history entries) read so far: a statistic that tests use
        #: to pin what a read costs (a page reads O(page) rows, not O(range)).
        self.rows_read = 0

    # ------------------------------------------------------------------ current state
    def entry(self, txn: lmdb.Transaction, position: bytes) -> bytes:
        """The stored history entry at ``position`` (which must exist)."""
        self.rows_read += 1
        raw = txn.get(position, db=self._history)
        if raw is None:
            raise LookupError(f"no history entry at {HISTORY_KEY.unpack(position)}")
        return raw

    def get_record(self, txn: lmdb.Transaction, key: bytes) -> Record | None:
        """The current record of ``key``, or None."""
        row = txn.get(encode_key(key), db=self._kv)
        self.rows_read += 1
        if row is None:
            return None
        position = row[:POSITION_BYTES]
        return entry_record(position, self.entry(txn, position))[1]

    def positions(
        self, txn: lmdb.Transaction, key: bytes, end: bytes | None
    ) -> Iterator[tuple[bytes, bytes, bytes]]:
        """Yield ``(encoded, key, position)`` of the current keys in range, in key order
        (``position``: where the key's current record is in history), reading index rows
        only.

        Lazy: a caller that stops early reads only the rows it consumed (plus the one the
        cursor stands on).
        """
        if not end:
            encoded = encode_key(key)
            row = txn.get(encoded, db=self._kv)
            self.rows_read += 1
            if row is not None:
                yield encoded, key, row[:POSITION_BYTES]
            return
        with txn.cursor(db=self._kv) as cur:
            for encoded, k, row in scan(cur, key, None if end == b"\0" else end, index_key):
                self.rows_read += 1
                yield encoded, k, row[:POSITION_BYTES]

    def scan(
        self, txn: lmdb.Transaction, key: bytes, end: bytes | None
    ) -> Iterator[tuple[bytes, bytes, bytes, bytes]]:
        """Yield ``(encoded, key, position, stored entry)`` of the current keys in range,
        in key order, lazily (see :meth:`positions`)."""
        for encoded, k, position in self.positions(txn, key, end):
            yield encoded, k, position, self.entry(txn, position)

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
        history = self._history
        for key, position, stored in items:
            if budget is not None:
                budget.visit()
            if taken == limit:
                more = True
                break
            if stored is None:
                self.rows_read += 1
                stored = txn.get(position, db=history)
            charge = len(key) if req.keys_only else len(stored)
            if taken and page_bytes and size + charge + KV_WIRE_OVERHEAD_BYTES > page_bytes:
                more = True
                break
            taken += 1
            size += charge + KV_WIRE_OVERHEAD_BYTES
            if budget is not None:
                budget.take(charge)
            if materialise:
                kvs.append(entry_to_wire(position, stored, req.keys_only))
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
        items: Iterator[tuple[bytes, bytes, bytes | None]],
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
    ) -> Iterator[tuple[bytes, bytes, bytes | None]]:
        """``(key, position, stored entry or None: not read yet)`` of the range at
        ``req.revision``, lazily."""
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
            return ((k, pos, None) for _, k, pos in self.positions(txn, req.key, req.end))
        return self._items_at(txn, rev, req.key, req.end, budget)

    def _items_at(
        self,
        txn: lmdb.Transaction,
        revision: int,
        key: bytes,
        end: bytes | None,
        budget: ReadBudget | None = None,
    ) -> Iterator[tuple[bytes, bytes, bytes]]:
        """``(key, position, stored entry)`` of the keys in range as they were at
        ``revision``, lazily: each key of the index (live, or with earlier changes kept) is
        looked up once (see :mod:`aspen.kv.layout`); a key absent at ``revision`` is a key
        visited for ``budget``."""
        bound = history_key(revision + 1)
        stop = None if end == b"\0" else end
        keys = self.index.keys_between(txn, key, stop) if end else self._one_key(txn, key)
        with txn.cursor(db=self.index.revs) as revs:
            for k, encoded, row in keys:
                self.rows_read += 1
                position = row[:POSITION_BYTES] if row is not None else None
                if position is None or position >= bound:
                    position = self.index.at(revs, encoded, bound)
                    self.rows_read += 1
                if position is not None:
                    raw = self.entry(txn, position)
                    if is_put(raw):
                        yield k, position, raw
                        continue
                if budget is not None:
                    budget.visit()

    def _one_key(
        self, txn: lmdb.Transaction, key: bytes
    ) -> Iterator[tuple[bytes, bytes, bytes | None]]:
        """The :meth:`KeyIndex.keys_between` row of the single key ``key``."""
        encoded = encode_key(key)
        yield key, encoded, txn.get(encoded, db=self._kv)

    # ------------------------------------------------------------------ compare
    def compare(
        self, txn: lmdb.Transaction, cmp: dict[str, Any], budget: ReadBudget | None = None
    ) -> bool:
        """Evaluate one txn compare (it must hold for every key of a range compare); every
        key looked at is a key visited for ``budget``."""
        field = _TARGET_FIELD[cmp["target"]]
        op, expected = cmp["op"], cmp["value"]
        seen = False
        for _, _, position, raw in self.scan(txn, cmp["key"], cmp["end"]):
            seen = True
            if budget is not None:
                budget.visit()
            if not _holds(entry_record(position, raw)[1][field], op, expected):
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

        Nothing is decoded: the caller decides what to unpack (see :meth:`event`).
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
        for position, raw in self.history_entries(txn, history_key(max(start_revision, 0))):
            kind, rec = entry_record(position, raw)
            if in_range(rec[0], key, end):
                out.append(self.event(txn, position, kind, rec))
                if len(out) >= limit:
                    break
        return out

    def event(
        self,
        txn: lmdb.Transaction,
        position: bytes,
        kind: int,
        rec: Record,
        *,
        with_prev: bool = True,
    ) -> dict[str, Any]:
        """The protocol watch event (``{type, kv, prev_kv, revision}``) of the change at
        ``position``, which wrote ``rec`` (see :func:`entry_record`); ``prev_kv`` is looked
        up only ``with_prev``."""
        prev = self.previous(txn, position, rec[0]) if with_prev else None
        return {
            "type": "delete" if kind == DELETE else "put",
            "kv": record_to_wire(rec),
            "prev_kv": record_to_wire(prev),
            "revision": rec[3],
        }

    def previous(self, txn: lmdb.Transaction, position: bytes, key: bytes) -> Record | None:
        """The record ``key`` had just before its change at ``position`` (None: it did not
        exist)."""
        encoded = encode_key(key)
        current = txn.get(encoded, db=self._kv)
        with txn.cursor(db=self.index.revs) as cur:
            before = self.index.before(cur, encoded, position, current)
        self.rows_read += 2
        if before is None:
            return None
        kind, rec = entry_record(before, self.entry(txn, before))
        return rec if kind == PUT else None
