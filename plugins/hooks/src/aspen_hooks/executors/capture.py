"""Bounded capture of a child's output: read everything, keep the first bytes."""

from __future__ import annotations

import anyio
import anyio.abc

__all__ = ["BoundedCapture"]


class BoundedCapture:
    """Keeps the first ``limit`` bytes fed to it and counts the rest.

    :meth:`drain` reads a stream to its end whatever its size, so a child writing
    megabytes never blocks on a full pipe; only the kept bytes cost memory.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.kept = bytearray()
        #: Bytes seen in all, kept or not.
        self.total = 0
        #: Set once the stream has ended (or failed).
        self.done = anyio.Event()

    def feed(self, data: bytes) -> None:
        """Count ``data`` and keep what still fits."""
        self.total += len(data)
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += data[:room]

    @property
    def truncated(self) -> bool:
        """Whether bytes were dropped."""
        return self.total > len(self.kept)

    def text(self) -> str:
        """The kept bytes as text; a last line says when and how much was truncated."""
        text = self.kept.decode("utf-8", "replace")
        if self.truncated:
            text += f"\n[output truncated: kept {len(self.kept)} of {self.total} bytes]"
        return text

    async def drain(self, stream: anyio.abc.ByteReceiveStream | None) -> None:
        """Read ``stream`` until it ends (or is closed), then set :attr:`done`."""
        try:
            if stream is not None:
                async for chunk in stream:
                    self.feed(chunk)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            self.done.set()
