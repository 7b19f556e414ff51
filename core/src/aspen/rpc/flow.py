"""Flow control of one client connection's replies, by bytes (sans-IO).

A connection may have many requests in flight; their replies queue until the client reads
them. :class:`ReplyBudget` decides, from the bytes queued and the requests running, whether
the session may start another handler. The session asks it where it reads (and dispatches)
requests: when the answer is no, it holds the frames already decoded and stops reading the
socket, so a client that does not read is slowed down by TCP, not buffered for.

Each running unary request is assumed to produce ``estimate`` bytes: the largest reply seen
lately on this connection (peak hold, decaying by 1/8 per reply),
``REPLY_BYTES_ASSUMED_PER_REQUEST`` before any. So a connection of 3 MB replies runs a couple
of handlers at a time, and one of small replies up to ``MAX_INFLIGHT_PER_CONNECTION``.
The bytes of big requests still running (their params held by handlers) are bounded by
``MAX_INFLIGHT_REQUEST_BYTES_PER_CONNECTION`` the same way: pipelined 1 MB puts wait in the
socket, not in memory. Requests under ``TRACKED_REQUEST_BYTES`` are not counted (their number
is bounded).

Streams (watches) are not counted: each waits for the queue to drain before it sends its
next item, and a long-lived one must not hold the window shut.
"""

from __future__ import annotations

from aspen.limits import (
    MAX_INFLIGHT_PER_CONNECTION,
    MAX_INFLIGHT_REQUEST_BYTES_PER_CONNECTION,
    MAX_QUEUED_REPLY_BYTES_PER_CONNECTION,
    REPLY_BYTES_ASSUMED_PER_REQUEST,
)

__all__ = ["TRACKED_REQUEST_BYTES", "ReplyBudget"]

#: Requests at least this big count against ``MAX_INFLIGHT_REQUEST_BYTES_PER_CONNECTION``.
TRACKED_REQUEST_BYTES = 4096

#: Smallest per-request estimate (a reply frame is never smaller in practice).
_MIN_ESTIMATE = 64


class ReplyBudget:
    """How much one connection may have running and queued; see the module docstring."""

    __slots__ = ("estimate", "limit", "max_inflight", "request_limit")

    def __init__(
        self,
        limit: int = MAX_QUEUED_REPLY_BYTES_PER_CONNECTION,
        max_inflight: int = MAX_INFLIGHT_PER_CONNECTION,
        initial_estimate: int = REPLY_BYTES_ASSUMED_PER_REQUEST,
        request_limit: int = MAX_INFLIGHT_REQUEST_BYTES_PER_CONNECTION,
    ) -> None:
        self.limit = limit
        self.max_inflight = max_inflight
        self.request_limit = request_limit
        #: Bytes one running request is assumed to add to the queue.
        self.estimate = max(_MIN_ESTIMATE, initial_estimate)

    def replied(self, nbytes: int) -> None:
        """Note a reply frame of ``nbytes``: peak hold, decaying by 1/8 per reply."""
        decayed = self.estimate - (self.estimate >> 3)
        self.estimate = max(nbytes, decayed, _MIN_ESTIMATE)

    def over(self, queued: int) -> bool:
        """Whether ``queued`` bytes are more than the connection may have waiting."""
        return queued > self.limit

    def may_start(self, inflight: int, queued: int, request_bytes: int = 0, size: int = 0) -> bool:
        """Whether a request of ``size`` bytes may start with ``inflight`` unary requests
        running (holding ``request_bytes`` of big requests) and ``queued`` reply bytes not
        yet taken by the peer (one always may when none runs)."""
        if inflight >= self.max_inflight or queued > self.limit:
            return False
        return inflight == 0 or (
            queued + (inflight + 1) * self.estimate <= self.limit
            and request_bytes + size <= self.request_limit
        )
