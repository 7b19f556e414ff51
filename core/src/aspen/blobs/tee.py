"""Replicating a put while it streams: the node a client puts through opens an upload on
each of ``R - 1`` other members and forwards every chunk to them as it writes its own copy,
so the copies are ready when the last chunk is; at the end each member commits its copy
only if it hashes to the same blob. A member that fails drops out of the tee (the put then
copies the finished blob to another member the ordinary way, :meth:`BlobService.publish`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from aspen.errors import AspenError

if TYPE_CHECKING:
    from aspen.blobs.transfer import PeerClients

__all__ = ["Tee"]

log = logging.getLogger("aspen.blobs")

#: Seconds a member has to take one forwarded chunk (or open/abort an upload).
FORWARD_TIMEOUT_SECONDS = 60.0
#: Seconds a member has to commit its copy (it fsyncs the whole blob).
COMMIT_TIMEOUT_SECONDS = 600.0


class Tee:
    """The members a put streams to, with their upload ids."""

    def __init__(self, peers: PeerClients) -> None:
        self.peers = peers
        self.uploads: dict[str, str] = {}

    async def open(self, targets: list[str], size: int | None) -> None:
        """Open a replica upload on each of ``targets`` (the ones that refuse are skipped)."""

        async def open_one(target: str) -> None:
            params = {"replica": True, **({} if size is None else {"size": size})}
            try:
                opened = await self.peers.call(
                    target, "blob.put_open", params, FORWARD_TIMEOUT_SECONDS
                )
            except (AspenError, OSError) as exc:
                log.info("blobs: %s will not take a streamed copy: %s", target, exc)
                return
            self.uploads[target] = opened["upload"]

        async with anyio.create_task_group() as tg:
            for target in targets:
                tg.start_soon(open_one, target)

    async def forward(self, offset: int, data: bytes) -> None:
        """Send one chunk to every member still in the tee."""

        async def send(target: str, upload: str) -> None:
            params = {"upload": upload, "offset": offset, "data": data}
            try:
                await self.peers.call(target, "blob.put_chunk", params, FORWARD_TIMEOUT_SECONDS)
            except (AspenError, OSError) as exc:
                if self.uploads.pop(target, None) is not None:
                    log.info("blobs: streaming a copy to %s failed: %s", target, exc)

        async with anyio.create_task_group() as tg:
            for target, upload in list(self.uploads.items()):
                tg.start_soon(send, target, upload)

    async def commit(self, digest: str) -> list[str]:
        """Have every member commit its copy if it hashes to ``digest``; return those that
        did (their copies are durable)."""
        done: list[str] = []

        async def close(target: str, upload: str) -> None:
            params = {"upload": upload, "expect": digest}
            try:
                await self.peers.call(target, "blob.put_close", params, COMMIT_TIMEOUT_SECONDS)
            except (AspenError, OSError) as exc:
                log.info("blobs: %s could not commit its copy: %s", target, exc)
                return
            done.append(target)

        async with anyio.create_task_group() as tg:
            for target, upload in self.uploads.items():
                tg.start_soon(close, target, upload)
        self.uploads.clear()
        return done

    async def abort(self) -> None:
        """Drop the members' uploads (best effort: they also expire when idle)."""
        uploads, self.uploads = self.uploads, {}
        async with anyio.create_task_group() as tg:
            for target, upload in uploads.items():
                tg.start_soon(self._abort_one, target, upload)

    async def _abort_one(self, target: str, upload: str) -> None:
        try:
            await self.peers.call(target, "blob.put_abort", {"upload": upload}, 5.0)
        except (AspenError, OSError) as exc:
            log.debug("blobs: aborting the copy on %s: %s", target, exc)
