"""Replicating a put while it streams in: the node a client puts through opens a peer
stream (:meth:`aspen.transport.peer.PeerTransport.send_stream`, header ``{"kind": "blob"}``)
to each of ``R - 1`` other members and hands it every chunk, in order, as it writes its own
copy; at the end each member commits its copy and answers its hash, which must be the
blob's. A member that falls behind by more than ``BLOB_PUT_WINDOW_CHUNKS`` slows the put
down (bounded memory); one that fails drops out, and the put then copies the finished blob
to another member the ordinary way (:meth:`BlobService.publish`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from aspen.limits import BLOB_PUT_WINDOW_CHUNKS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aspen.node.node import Node

__all__ = ["Tee"]

log = logging.getLogger("aspen.blobs")

#: Seconds a member may keep a chunk waiting before it is dropped from the put.
FORWARD_TIMEOUT_SECONDS = 60.0
#: Seconds a member has to commit its copy after the last chunk (it fsyncs the blob).
COMMIT_TIMEOUT_SECONDS = 600.0


class _Aborted(Exception):
    """The put was abandoned: its copies must not be committed."""


@dataclass
class _Copy:
    """One member's copy of a put in progress."""

    target: str
    send: MemoryObjectSendStream[bytes]
    done: anyio.Event = field(default_factory=anyio.Event)
    aborted: bool = False
    result: Any = None
    error: BaseException | None = None


class Tee:
    """The members a put streams its copies to."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.copies: dict[str, _Copy] = {}

    def open(self, targets: list[str], size: int | None) -> None:
        """Start a copy to each of ``targets`` (each runs until committed or aborted)."""
        for target in targets:
            send, receive = anyio.create_memory_object_stream[bytes](BLOB_PUT_WINDOW_CHUNKS)
            copy = _Copy(target, send)
            self.copies[target] = copy
            self.node.spawn(self._run, copy, receive, size, name=f"blob-copy->{target[:12]}")

    async def _run(
        self, copy: _Copy, receive: MemoryObjectReceiveStream[bytes], size: int | None
    ) -> None:
        """Stream what :meth:`forward` hands over to ``copy.target``; record the answer."""

        async def chunks() -> AsyncIterator[bytes]:
            async with receive:
                async for data in receive:
                    yield data
            if copy.aborted:
                raise _Aborted  # the sender then closes without "end": nothing is committed

        header = {"kind": "blob", "size": size}
        try:
            transport = self.node.parts.cluster.transport
            assert transport is not None
            copy.result = await transport.send_stream(copy.target, None, header, chunks())
        except Exception as exc:
            copy.error = exc
            if not isinstance(exc, _Aborted):
                log.info("blobs: streaming a copy to %s failed: %s", copy.target, exc)
        finally:
            receive.close()  # a copy that ended early makes forward() drop it at once
            copy.done.set()

    def _drop(self, copy: _Copy) -> None:
        """Stop streaming to ``copy.target`` (its stream ends without being committed)."""
        copy.aborted = True
        copy.send.close()
        self.copies.pop(copy.target, None)

    async def forward(self, data: bytes) -> None:
        """Hand the next chunk to every copy still running (call in order)."""
        for copy in list(self.copies.values()):
            if copy.done.is_set():
                self._drop(copy)
                continue
            try:
                with anyio.fail_after(FORWARD_TIMEOUT_SECONDS):
                    await copy.send.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, TimeoutError):
                self._drop(copy)

    async def commit(self, digest: str) -> list[str]:
        """End every copy; return the members whose committed copy hashes to ``digest``."""
        done: list[str] = []
        copies, self.copies = list(self.copies.values()), {}
        for copy in copies:
            copy.send.close()
        with anyio.move_on_after(COMMIT_TIMEOUT_SECONDS):
            for copy in copies:
                await copy.done.wait()
        for copy in copies:
            result = copy.result if copy.done.is_set() else None
            if isinstance(result, dict) and result.get("hash") == digest:
                done.append(copy.target)
            elif copy.error is None:
                log.info("blobs: the copy on %s did not match %s: %r", copy.target, digest, result)
        return done

    def abort(self) -> None:
        """End every copy without committing it."""
        for copy in list(self.copies.values()):
            self._drop(copy)
