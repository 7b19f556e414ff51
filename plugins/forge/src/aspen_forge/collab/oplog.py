"""Op logs: the event-sourced history of one issue or patch, and its deterministic fold.

An :class:`Op` carries its ``type`` (``create``, ``comment``…), ``actor`` (who proposed it:
``root`` or a token id), ``time`` (the proposer's clock), ``parents`` (the ids of the log
heads the proposer saw) and a ``body``. Its ``id`` is a hash of all of these, so the same op
has the same id on every cluster, and the ops of one object form a DAG (one chain while a
single cluster appends under compare-and-swap; two chains after logs of two clusters are
merged, for federation).

:func:`ordered` puts a set of ops in a topological order where ties — ops neither of which
saw the other — go by op id; :func:`fold` applies a reducer in that order. The result
depends only on the set of ops, never on the order they arrived in.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack

__all__ = ["Op", "fold", "heads", "make_op", "ordered"]

S = TypeVar("S")


@dataclass(frozen=True)
class Op:
    """One entry of an object's log (see the module docstring)."""

    id: str
    type: str
    actor: str
    time: float
    parents: tuple[str, ...] = ()
    body: dict[str, Any] = field(default_factory=dict)

    def to_value(self) -> bytes:
        """The KV value (msgpack of :meth:`to_wire`)."""
        return msgpack.packb(self.to_wire(), use_bin_type=True)

    @classmethod
    def from_value(cls, value: bytes) -> Op:
        """Decode a value written by :meth:`to_value`."""
        data = msgpack.unpackb(value, raw=False)
        return cls(
            id=data["id"],
            type=data["type"],
            actor=data["actor"],
            time=float(data["time"]),
            parents=tuple(data.get("parents", ())),
            body=dict(data.get("body") or {}),
        )

    def to_wire(self) -> dict[str, Any]:
        """A JSON-able map."""
        return {
            "id": self.id,
            "type": self.type,
            "actor": self.actor,
            "time": self.time,
            "parents": list(self.parents),
            "body": self.body,
        }


def make_op(
    type_: str, actor: str, time: float, parents: Iterable[str], body: dict[str, Any]
) -> Op:
    """A new op; its id is the SHA-256 (first 32 hex) of its canonical encoding."""
    parents = tuple(sorted(parents))
    digest = hashlib.sha256(
        msgpack.packb([type_, actor, time, list(parents), body], use_bin_type=True)
    ).hexdigest()[:32]
    return Op(digest, type_, actor, time, parents, body)


def ordered(ops: Iterable[Op]) -> list[Op]:
    """``ops`` in a deterministic topological order: an op after every parent it names
    (parents absent from ``ops`` are ignored), ties by op id."""
    by_id = {op.id: op for op in ops}
    waiting = {op.id: sum(1 for p in set(op.parents) if p in by_id) for op in by_id.values()}
    children: dict[str, list[str]] = {}
    for op in by_id.values():
        for parent in set(op.parents):
            if parent in by_id:
                children.setdefault(parent, []).append(op.id)
    ready = [op_id for op_id, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    out: list[Op] = []
    while ready:
        op_id = heapq.heappop(ready)
        out.append(by_id[op_id])
        for child in children.get(op_id, ()):
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    # A cycle cannot come from hashes naming parents, but a hand-made log could hold one:
    # its ops go last, by id, rather than being dropped.
    seen = {op.id for op in out}
    out.extend(sorted((op for op in by_id.values() if op.id not in seen), key=lambda o: o.id))
    return out


def heads(ops: Iterable[Op]) -> list[str]:
    """The ids of the ops no other op names as a parent (sorted)."""
    ops = list(ops)
    named = {p for op in ops for p in op.parents}
    return sorted(op.id for op in ops if op.id not in named)


def fold(ops: Iterable[Op], reducer: Callable[[S, Op], S], initial: S) -> S:
    """Apply ``reducer`` to ``initial`` and each op of :func:`ordered` ``ops`` in turn."""
    state = initial
    for op in ordered(ops):
        state = reducer(state, op)
    return state
