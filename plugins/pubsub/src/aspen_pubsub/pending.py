"""How a competing group's un-acked deliveries are stored: as runs.

The leader holds one pending entry per delivered message (``{c: consumer, n: delivery
count, dl: deadline ms}``). Stored, consecutive offsets of a partition with the same
entry share ONE record, keyed by the run's first offset
(``p/<topic>/<group>/<pppp>/<first>``, value the entry plus ``e``: the last offset), so a
fetch of 100 messages writes one key, not 100, and their acks delete it. A record without
``e`` is a run of one (as written before runs).

A change rewrites only the runs it touches: every run holding a position it changed is
deleted (consecutive ones as one range) and what they still hold, with the changed
positions, is written again as runs of at most PUBSUB_PENDING_RUN_MAX messages.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

from aspen_pubsub import keys, limits, store
from aspen_pubsub.model import unpack

__all__ = ["Entries", "Runs", "load", "writes"]

#: (partition, offset) → the pending entry of that delivery.
Entries = dict[tuple[int, int], dict[str, Any]]
#: (partition, first offset) → last offset, of every stored run.
Runs = dict[tuple[int, int], int]


def load(kvs: Iterable[dict[str, Any]]) -> tuple[Entries, Runs]:
    """The pending entries and the runs of a group's stored records."""
    entries: Entries = {}
    runs: Runs = {}
    for kv in kvs:
        partition, first = keys.position(kv["key"])
        value = unpack(kv["value"])
        last = value.pop("e", first)
        runs[(partition, first)] = last
        for offset in range(first, last + 1):
            entries[(partition, offset)] = value
    return entries, runs


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["c"] == b["c"] and a["n"] == b["n"] and a["dl"] == b["dl"]


def writes(
    topic: str, group: str, entries: Entries, runs: Runs, changed: set[tuple[int, int]]
) -> tuple[list[dict[str, Any]], Runs]:
    """The txn ops storing ``entries`` after the positions ``changed`` were put or dropped
    (``runs``: what is stored now), and the runs stored after them."""
    if not changed:
        return [], runs
    starts = sorted(runs)
    touched = {_run_at(starts, runs, partition, offset) for partition, offset in changed}
    touched.discard(None)
    after = dict(runs)
    rewrite = set(changed)
    for start in touched:
        assert start is not None
        last = after.pop(start)
        rewrite.update((start[0], o) for o in range(start[1], last + 1))
    puts = _gather(entries, rewrite)
    fresh = sorted((partition, first) for partition, first, _, _ in puts)
    ops = _deletes(topic, group, runs, sorted(t for t in touched if t is not None), fresh)
    for partition, first, last, entry in puts:
        after[(partition, first)] = last
        value = entry if first == last else dict(entry, e=last)
        ops.append(store.put(keys.pending(topic, group, partition, first), value))
    return ops, after


def _gather(entries: Entries, positions: set[tuple[int, int]]) -> list[tuple[int, int, int, Any]]:
    """The runs ``(partition, first, last, entry)`` of the pending ones of ``positions``:
    consecutive offsets with the same entry, at most PUBSUB_PENDING_RUN_MAX each."""
    out: list[tuple[int, int, int, Any]] = []
    for position in sorted(p for p in positions if p in entries):
        partition, offset = position
        entry = entries[position]
        if out:
            p, first, last, held = out[-1]
            extends = p == partition and last + 1 == offset and _same(held, entry)
            if extends and last - first + 1 < limits.PUBSUB_PENDING_RUN_MAX:
                out[-1] = (p, first, offset, held)
                continue
        out.append((partition, offset, offset, entry))
    return out


def _deletes(
    topic: str,
    group: str,
    runs: Runs,
    touched: list[tuple[int, int]],
    fresh: list[tuple[int, int]],
) -> list[dict[str, Any]]:
    """The deletes of the ``touched`` runs (sorted) that no ``fresh`` run (sorted starts)
    overwrites: consecutive ones as one range when no fresh key falls inside it (a txn may
    not put a key it deletes)."""
    overwritten = set(fresh)
    ops: list[dict[str, Any]] = []
    span: list[int] = []  #: [partition, first, last, runs in it]
    for partition, first in touched:
        last = runs[(partition, first)]
        if (partition, first) in overwritten:
            continue
        adjacent = span and span[0] == partition and span[2] + 1 == first
        if adjacent and not _fresh_within(fresh, partition, span[1], last):
            span[2], span[3] = last, span[3] + 1
            continue
        if span:
            ops.append(_delete(topic, group, *span))
        span = [partition, first, last, 1]
    if span:
        ops.append(_delete(topic, group, *span))
    return ops


def _fresh_within(fresh: list[tuple[int, int]], partition: int, first: int, last: int) -> bool:
    """Whether a fresh run starts at an offset in ``first..last`` of ``partition``."""
    i = bisect.bisect_left(fresh, (partition, first))
    return i < len(fresh) and fresh[i] <= (partition, last)


def _run_at(
    starts: list[tuple[int, int]], runs: Runs, partition: int, offset: int
) -> tuple[int, int] | None:
    """The stored run holding ``offset`` of ``partition``, if any (``starts``: sorted)."""
    i = bisect.bisect_right(starts, (partition, offset)) - 1
    if i < 0:
        return None
    start = starts[i]
    return start if start[0] == partition and runs[start] >= offset else None


def _delete(topic: str, group: str, partition: int, first: int, last: int, count: int) -> Any:
    """The delete of ``count`` runs stored from ``first`` to ``last`` of ``partition`` (one
    run: its key only, as fresh runs may start inside it)."""
    key = keys.pending(topic, group, partition, first)
    if count == 1:
        return store.delete(key)
    return store.delete(key, keys.pending(topic, group, partition, last + 1))
