"""One outbound peer link: its bounded queue and how queued frames reach the connection.

Frames are queued already encoded. On the asyncio fast path (a
:class:`~aspen.transport.aio.FrameProtocol`) everything queued in one loop iteration is
written by one ``call_soon`` callback, with no task switch; on the anyio path a writer task
wakes up and sends the batch. Either way at most ``PEER_WRITE_BATCH_BYTES`` go in one write.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio

from aspen.limits import PEER_WRITE_BATCH_BYTES
from aspen.transport.framed import LINK_ERRORS, describe_error

__all__ = ["NO_LINK_STATS", "PeerLink"]

#: What :meth:`PeerLink.stats` says for a peer this node never sent to.
NO_LINK_STATS: dict[str, Any] = {
    "connected": False,
    "queued": 0,
    "queued_bytes": 0,
    "sent": 0,
    "writes": 0,
    "sent_bytes": 0,
    "dropped": 0,
    "connects": 0,
    "connect_failures": 0,
    "last_error": "",
}


class PeerLink:
    """The queue and connection state of the link to one peer."""

    __slots__ = (
        "address_known",
        "conn_scope",
        "connected",
        "connects",
        "dropped",
        "failing",
        "failures",
        "flush_scheduled",
        "last_error",
        "peer_id",
        "queue",
        "queued_bytes",
        "sent",
        "sent_bytes",
        "started",
        "task_scope",
        "wake",
        "writer",
        "writes",
    )

    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.wake = anyio.Event()
        self.address_known = anyio.Event()
        self.conn_scope: anyio.CancelScope | None = None
        self.task_scope = anyio.CancelScope()
        #: The connection frames are written to directly (asyncio fast path), if any.
        self.writer: Any = None
        self.flush_scheduled = False
        self.started = False
        self.connected = False
        self.failing = False
        self.sent = self.dropped = self.connects = self.failures = 0
        #: Socket writes (batches) and the bytes in them: frames per write is ``sent / writes``.
        self.writes = self.sent_bytes = 0
        self.last_error = ""

    def enqueue(self, data: bytes, max_messages: int, max_bytes: int) -> bool:
        """Queue one encoded frame unless a bound is reached (then count the drop)."""
        if len(self.queue) >= max_messages or self.queued_bytes + len(data) > max_bytes:
            self.dropped += 1
            return False
        self.queue.append(data)
        self.queued_bytes += len(data)
        self.kick()
        return True

    def kick(self) -> None:
        """Have what is queued written soon."""
        writer = self.writer
        if writer is not None:
            if not self.flush_scheduled:
                self.flush_scheduled = True
                writer.loop.call_soon(self._flush)
        elif not self.wake.is_set():
            self.wake.set()

    def take(self, limit: int = PEER_WRITE_BATCH_BYTES) -> tuple[bytes, int]:
        """Remove queued frames (at least one, at most ``limit`` bytes when more)."""
        queue = self.queue
        if self.queued_bytes <= limit or len(queue) == 1:
            frames = list(queue)
            queue.clear()
            self.queued_bytes = 0
        else:
            frames, size = [], 0
            while queue and (not frames or size + len(queue[0]) <= limit):
                frame = queue.popleft()
                frames.append(frame)
                size += len(frame)
            self.queued_bytes -= size
        return (frames[0] if len(frames) == 1 else b"".join(frames)), len(frames)

    def _flush(self) -> None:
        """Write queued batches to the direct writer while it takes them."""
        self.flush_scheduled = False
        writer = self.writer
        while writer is not None and self.queue and writer.writable:
            data, count = self.take()
            writer.write(data)
            self._count(data, count)

    def _count(self, data: bytes, frames: int) -> None:
        """Count one write of ``frames`` frames."""
        self.sent += frames
        self.writes += 1
        self.sent_bytes += len(data)

    async def pump(self, framed: Any) -> str:
        """Carry queued frames over ``framed`` until the connection fails; return why.

        The peer never sends on this connection: a frame from it ends the link too.
        """
        reason = "closed"

        def unexpected(frame: dict[str, Any]) -> None:
            nonlocal reason
            reason = f"unexpected frame from the peer: {sorted(frame)}"
            framed.abort()

        self.connected = True
        try:
            with anyio.CancelScope() as scope:
                self.conn_scope = scope
                if framed.direct:
                    self.writer = framed
                    framed.on_writable = self.kick
                    self.kick()
                    await framed.deliver(unexpected)
                else:
                    await self._pump_task(framed)
        except LINK_ERRORS as exc:
            if reason == "closed":
                reason = describe_error(exc)
        finally:
            self.connected = False
            self.conn_scope = None
            self.writer = None
            await framed.aclose()
        return reason

    async def _pump_task(self, framed: Any) -> None:
        """The anyio path: a writer loop beside a reader that notices the peer closing."""
        failures: list[BaseException] = []
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                try:
                    frame = await framed.recv()
                    reason = f"unexpected frame from the peer: {sorted(frame)}"
                    failures.append(anyio.BrokenResourceError(reason))
                except LINK_ERRORS as exc:
                    failures.append(exc)
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                while True:
                    if not self.queue:
                        self.wake = anyio.Event()
                        await self.wake.wait()
                        continue
                    data, count = self.take()
                    await framed.send_bytes(data)
                    self._count(data, count)
            except LINK_ERRORS as exc:
                failures.append(exc)
                tg.cancel_scope.cancel()
        if failures:
            raise failures[0]

    def stats(self) -> dict[str, Any]:
        """The link's counters."""
        return {
            "connected": self.connected,
            "queued": len(self.queue),
            "queued_bytes": self.queued_bytes,
            "sent": self.sent,
            "writes": self.writes,
            "sent_bytes": self.sent_bytes,
            "dropped": self.dropped,
            "connects": self.connects,
            "connect_failures": self.failures,
            "last_error": self.last_error,
        }
