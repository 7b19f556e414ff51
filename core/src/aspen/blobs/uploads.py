"""Puts in progress: one :class:`Upload` per ``blob.put_open``, fed in order by
``blob.put_chunk`` requests that may arrive pipelined, dropped (and its temporary file
deleted) when its client goes quiet for ``upload_idle_seconds``."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import anyio

from aspen.blobs.store import BlobWriter
from aspen.blobs.tee import Tee
from aspen.errors import AspenError, InvalidArgumentError, NotFoundError, ResourceExhaustedError
from aspen.limits import BLOB_CHUNK_BYTES, BLOB_MAX_UPLOADS, BLOB_MAX_UPLOADS_PER_CONNECTION

__all__ = ["Upload", "Uploads"]


@dataclass
class Upload:
    """One put in progress on this node."""

    id: str
    connection: int
    writer: BlobWriter
    replicas: int | None
    pin: str | None
    size: int | None
    written: int = 0
    last_active: float = field(default_factory=time.monotonic)
    failed: AspenError | None = None
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    moved: anyio.Event = field(default_factory=anyio.Event)
    #: The members this put streams copies to.
    tee: Tee | None = None

    async def write(self, offset: int, data: bytes, idle_timeout: float) -> None:
        """Append ``data`` at ``offset`` once every byte before it is written."""
        if len(data) > BLOB_CHUNK_BYTES:
            raise InvalidArgumentError(
                f"a chunk of {len(data)} bytes is over BLOB_CHUNK_BYTES ({BLOB_CHUNK_BYTES})",
                field="data",
            )
        with anyio.fail_after(idle_timeout):
            while self.written < offset and self.failed is None:
                await self.moved.wait()
        async with self.lock:
            if self.failed is not None:
                raise self.failed
            if offset != self.written:
                raise InvalidArgumentError(
                    f"chunk at offset {offset}, but {self.written} bytes were received",
                    field="offset",
                )
            try:
                if self.tee is not None:  # in order, under the lock; waits only on a laggard
                    await self.tee.forward(data)
                await anyio.to_thread.run_sync(self.writer.write, data)
            except AspenError as exc:
                self.failed = exc
                raise
            finally:
                self.last_active = time.monotonic()
                self.moved.set()
                self.moved = anyio.Event()
            self.written += len(data)


class Uploads:
    """The uploads of one node, by id."""

    def __init__(self) -> None:
        self._by_id: dict[str, Upload] = {}

    def __len__(self) -> int:
        """How many uploads are open."""
        return len(self._by_id)

    def open(
        self,
        connection: int,
        writer: BlobWriter,
        replicas: int | None,
        pin: str | None,
        size: int | None,
    ) -> Upload:
        """Register a new upload (refused over the per-connection or per-node bound)."""
        mine = sum(1 for u in self._by_id.values() if u.connection == connection)
        if mine >= BLOB_MAX_UPLOADS_PER_CONNECTION or len(self._by_id) >= BLOB_MAX_UPLOADS:
            writer.abort()
            raise ResourceExhaustedError(
                f"too many uploads open (BLOB_MAX_UPLOADS_PER_CONNECTION = "
                f"{BLOB_MAX_UPLOADS_PER_CONNECTION}, BLOB_MAX_UPLOADS = {BLOB_MAX_UPLOADS})"
            )
        upload = Upload(secrets.token_hex(12), connection, writer, replicas, pin, size)
        self._by_id[upload.id] = upload
        return upload

    def get(self, connection: int, upload_id: object) -> Upload:
        """The upload ``upload_id`` of this connection, or ``not_found``."""
        upload = self._by_id.get(upload_id) if isinstance(upload_id, str) else None
        if upload is None or upload.connection != connection:
            raise NotFoundError(
                f"no upload {upload_id!r} on this connection (it finished, was aborted, or "
                "sat idle too long)",
                upload=str(upload_id),
            )
        upload.last_active = time.monotonic()
        return upload

    def finish(self, upload: Upload) -> None:
        """Forget ``upload`` (its writer is committed or aborted by the caller)."""
        self._by_id.pop(upload.id, None)

    def close(self, upload: Upload) -> None:
        """Forget ``upload`` and drop whatever it wrote that was not committed (and the
        copies it streams)."""
        self._by_id.pop(upload.id, None)
        upload.writer.abort()
        if upload.tee is not None:
            upload.tee.abort()
        if upload.failed is None:
            upload.failed = NotFoundError(f"upload {upload.id} was closed", upload=upload.id)
        upload.moved.set()

    def reap(self, idle_seconds: float) -> int:
        """Close every upload idle for ``idle_seconds``; return how many."""
        cutoff = time.monotonic() - idle_seconds
        idle = [u for u in self._by_id.values() if u.last_active < cutoff and not u.lock.locked()]
        for upload in idle:
            self.close(upload)
        return len(idle)
