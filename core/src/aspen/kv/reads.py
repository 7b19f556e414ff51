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
from collections.abc import Generator, Iterable, Iterator
from typing import Any

import lmdb
import msgpack

from aspen import limits
from aspen.errors import CompactedError, InvalidArgumentError
from aspen.kv.budget import ReadBudget
from aspen.kv.commands import RangeRequest
from aspen.kv.keycodec import encode_key, scan
from aspen.kv.records import (
    Record,
    history_event,
    history_key,
    record_key,
    record_to_wire,
    unpack,
)
from aspen.storage.env import Storage

__all__ = ["KVReader", "in_range"]

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

    # ------------------------------------------------------------------ current state
    def get_record(self, txn: lmdb.Transaction, key: bytes) -> Record | None:
        """The current record of ``key``, or None."""
        raw = txn.get(encode_key(key), db=self._kv)
        return None if raw is None else unpack(raw)

    def scan(
        self, txn: lmdb.Transaction, key: bytes, end: bytes | None
    ) -> Iterator[tuple[bytes, bytes, bytes]]:
        """Yield ``(encoded, key, stored record)`` of current keys in range, in key order."""
        if not end:
            encoded = encode_key(key)
            raw = txn.get(encoded, db=self._kv)
            if raw is not None:
                yield encoded, key, raw
            return
        with txn.cursor(db=self._kv) as cur:
            yield from scan(cur, key, None if end == b"\0" else end, record_key)

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
    ) -> dict[str, Any]:
        """The ``kvs``/``more``/``count`` of a range (no header).

        ``current`` is the revision the live data reflects, ``compacted`` the compact revision.
        Every key visited and returned is charged to ``budget`` (when given); without
        ``materialise`` the kvs are only charged, not built (``kvs`` is then empty).
        """
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
        items: Iterable[tuple[bytes, bytes | Record]]
        if rev in (0, current):
            items = ((k, raw) for _, k, raw in self.scan(txn, req.key, req.end))
        else:
            items = self._items_at(txn, rev, req.key, req.end, budget)
        limit = req.limit or limits.DEFAULT_RANGE_LIMIT
        kvs: list[dict[str, Any]] = []
        count = 0
        for key, stored in items:
            count += 1
            if budget is not None:
                budget.visit()
            if count > limit or req.count_only:
                continue
            if budget is not None:
                budget.take(len(key) if req.keys_only else _stored_size(stored))
            if materialise:
                rec = unpack(stored) if isinstance(stored, bytes) else stored
                kvs.append(record_to_wire(rec, req.keys_only))  # type: ignore[arg-type]
        more = count > limit and not req.count_only
        return {"kvs": kvs, "more": more, "count": count}

    def _items_at(
        self,
        txn: lmdb.Transaction,
        revision: int,
        key: bytes,
        end: bytes | None,
        budget: ReadBudget | None = None,
    ) -> Iterator[tuple[bytes, bytes | Record]]:
        """``(key, stored record or record)`` of the keys in range as they were at ``revision``
        (every history entry read is a key visited for ``budget``)."""
        changed: dict[bytes, Record | None] = {}
        with txn.cursor(db=self._history) as cur:
            if cur.set_range(history_key(revision + 1)):
                for raw in cur.iternext(keys=False, values=True):
                    if budget is not None:
                        budget.visit()
                    _, kv, prev = unpack(raw)
                    k = kv[0]
                    if k not in changed and in_range(k, key, end):
                        changed[k] = prev
        restored = sorted((k, prev) for k, prev in changed.items() if prev is not None)
        live = ((k, raw) for _, k, raw in self.scan(txn, key, end) if k not in changed)
        yield from heapq.merge(live, restored, key=lambda item: item[0])  # type: ignore[misc]

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
