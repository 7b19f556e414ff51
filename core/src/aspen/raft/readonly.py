"""ReadIndex requests waiting for the leader to confirm it still leads.

A request records the commit index at the time it arrived; it is answered once a quorum
of voters acknowledged a heartbeat carrying its context (or a later one: heartbeats carry
the newest pending context, and confirming a later request confirms every earlier one).

Invariants: ``order`` lists the contexts of ``pending`` in arrival order; a context is
pending at most once; the queue holds at most ``max_pending`` requests.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["ReadRequest", "ReadRequestQueue"]


@dataclass(slots=True)
class ReadRequest:
    """One ReadIndex request: answer ``origin`` with ``index`` once a quorum acked."""

    index: int
    context: bytes
    origin: str
    acks: set[str] = field(default_factory=set)


class ReadRequestQueue:
    """Pending safe ReadIndex requests of a leader, in arrival order."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self.pending: dict[bytes, ReadRequest] = {}
        self.order: deque[bytes] = deque()

    def add(self, index: int, context: bytes, origin: str) -> bool:
        """Queue a request; False when its context is already pending or the queue is full."""
        if context in self.pending or len(self.order) >= self.max_pending:
            return False
        self.pending[context] = ReadRequest(index, context, origin)
        self.order.append(context)
        return True

    def ack(self, node: str, context: bytes) -> set[str] | None:
        """Record that ``node`` confirmed the heartbeat tagged ``context``."""
        request = self.pending.get(context)
        if request is None:
            return None
        request.acks.add(node)
        return request.acks

    def release(self, context: bytes) -> list[ReadRequest]:
        """Remove and return every request up to and including ``context``."""
        if context not in self.pending:
            return []
        done = []
        while self.order:
            ctx = self.order.popleft()
            done.append(self.pending.pop(ctx))
            if ctx == context:
                break
        return done

    def last_context(self) -> bytes:
        """Context of the newest pending request (b"" when none)."""
        return self.order[-1] if self.order else b""
