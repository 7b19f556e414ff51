"""One linearizability point per request: the read scope.

A linearizable ``kv.range`` waits for a ReadIndex round (a quorum round on a cluster of
several voters) before it reads. A request that reads several entries (the mount table,
a secret's metadata, then its version) does not need one round per read: once one read
of the request has been linearizable, this node's state already holds every write that
completed before the request began, and it only moves forward, so every later read of
the same request may be served locally (serializable) and the request as a whole stays
linearizable.

:func:`read_scope` opens that scope for one request (the dispatcher does it);
:func:`needs_barrier` tells the store whether a read must still be linearizable, and
:func:`mark_fresh` records that one was. Reads outside any scope stay linearizable.
Writes need no more than this: they are conditional commits whose compares the leader
checks against its whole state, so a stale read only makes the commit fail and retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["ReadScope", "in_scope", "mark_fresh", "needs_barrier", "read_scope"]


@dataclass(slots=True)
class ReadScope:
    """The consistency state of one request: whether a linearizable read happened yet."""

    fresh: bool = False


_SCOPE: ContextVar[ReadScope | None] = ContextVar("aspen_secrets_read_scope", default=None)


@contextmanager
def read_scope() -> Iterator[ReadScope]:
    """Serve the reads of the enclosed request with one linearizable read at most (a
    scope opened inside another one shares it)."""
    if _SCOPE.get() is not None:
        yield _SCOPE.get()  # type: ignore[misc]
        return
    scope = ReadScope()
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def in_scope() -> bool:
    """Whether the running request has a read scope."""
    return _SCOPE.get() is not None


def needs_barrier() -> bool:
    """Whether the next read must be linearizable (no scope, or none was yet)."""
    scope = _SCOPE.get()
    return scope is None or not scope.fresh


def mark_fresh() -> None:
    """Record that the running request did a linearizable read (or a read barrier)."""
    scope = _SCOPE.get()
    if scope is not None:
        scope.fresh = True
