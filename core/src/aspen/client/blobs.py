"""``client.blobs``: put, get, stat, pin, unpin, list, pins and status of the blob store.

A put opens an upload on the node the client is connected to and sends the bytes as
``blob.put_chunk`` requests of ``BLOB_CHUNK_BYTES``, at most ``BLOB_PUT_WINDOW_CHUNKS`` in
flight; ``blob.put_close`` answers once the blob is durable on its replicas. A get asks for
windows of ``BLOB_GET_WINDOW_BYTES`` (``blob.get`` streams one window), at most two windows
ahead of the caller: neither side holds more than that, whatever the blob's size.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, BinaryIO

import anyio
import blake3

from aspen.blobs.hashing import BlobRef, check_range, parse_hash
from aspen.errors import InvalidArgumentError, NotFoundError, UnavailableError
from aspen.limits import (
    BLOB_CHUNK_BYTES,
    BLOB_GET_WINDOW_BYTES,
    BLOB_LIST_LIMIT,
    BLOB_PUT_WINDOW_CHUNKS,
)

if TYPE_CHECKING:
    from aspen.client.aclient import AsyncClient, Stream

__all__ = ["BlobClient", "BlobSource", "Progress", "blob_pieces", "read_blob"]

#: What ``put`` takes: bytes, a binary file, or (async) iterables of bytes.
BlobSource = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes] | AsyncIterable[bytes]
#: What ``list`` and ``pins`` answer: one map per blob or pin.
Rows = list[dict[str, Any]]
#: ``progress(bytes_done)``: called as a put or get moves on.
Progress = Callable[[int], None]
#: Seconds ``blob.put_close`` may take (it waits for the replicas to store the blob).
PUT_CLOSE_TIMEOUT_SECONDS = 3600.0


async def blob_pieces(source: BlobSource) -> AsyncIterator[bytes]:
    """The bytes of ``source`` in pieces of at most ``BLOB_CHUNK_BYTES``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        for start in range(0, len(view), BLOB_CHUNK_BYTES):
            yield bytes(view[start : start + BLOB_CHUNK_BYTES])
        return
    read = getattr(source, "read", None)
    if read is not None:
        while True:
            piece = await anyio.to_thread.run_sync(read, BLOB_CHUNK_BYTES)
            if not piece:
                return
            yield piece
    elif isinstance(source, AsyncIterable):
        async for item in source:
            for start in range(0, len(item), BLOB_CHUNK_BYTES):
                yield bytes(item[start : start + BLOB_CHUNK_BYTES])
    else:
        for item in source:
            for start in range(0, len(item), BLOB_CHUNK_BYTES):
                yield bytes(item[start : start + BLOB_CHUNK_BYTES])


async def read_blob(
    client: AsyncClient,
    digest: str,
    size: int,
    offset: int = 0,
    length: int | None = None,
) -> AsyncIterator[bytes]:
    """Yield ``[offset, offset + length)`` of a blob of ``size`` bytes through ``client``,
    window by window; the next window is requested while the caller takes this one."""
    end = size if length is None else offset + length
    streams: deque[Stream] = deque()
    next_start = offset

    async def request_next() -> None:
        nonlocal next_start
        if next_start < end:
            length = min(BLOB_GET_WINDOW_BYTES, end - next_start)
            params = {"hash": digest, "offset": next_start, "length": length}
            stream = client.stream("blob.get", params)
            streams.append(stream)
            await stream.__aenter__()
            next_start += length

    try:
        await request_next()
        await request_next()
        while streams:
            stream = streams[0]
            async for item in stream:
                data = item.get("data")
                if data is not None:
                    yield data
            streams.popleft()
            await stream.aclose()
            await request_next()
    finally:
        for stream in streams:
            with anyio.CancelScope(shield=True):
                await stream.aclose()


class BlobClient:
    """``client.blobs``: the blob store (see the module docstring)."""

    __slots__ = ("_client",)

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def put(
        self,
        data: BlobSource,
        *,
        replicas: int | None = None,
        pin: str | None = None,
        size: int | None = None,
        progress: Progress | None = None,
    ) -> BlobRef:
        """Store ``data`` (bytes, a binary file, or an iterable of bytes); return its
        :class:`BlobRef` once it is durable on ``replicas`` nodes (default: the cluster's).
        ``pin`` keeps it under that name; ``size``, if known, lets the node refuse a blob
        that cannot fit before any byte is sent."""
        if size is None and isinstance(data, (bytes, bytearray, memoryview)):
            size = len(data)
        opened = await self._client.call(
            "blob.put_open",
            {
                k: v
                for k, v in {"size": size, "replicas": replicas, "pin": pin}.items()
                if v is not None
            },
        )
        upload = opened["upload"]
        sent = 0
        try:
            window = anyio.Semaphore(BLOB_PUT_WINDOW_CHUNKS)
            failure: list[Exception] = []
            async with anyio.create_task_group() as tg:

                async def send(offset: int, piece: bytes) -> None:
                    try:
                        await self._client.call(
                            "blob.put_chunk", {"upload": upload, "offset": offset, "data": piece}
                        )
                    except Exception as exc:  # the first failure ends the put
                        failure.append(exc)
                        tg.cancel_scope.cancel()
                    finally:
                        window.release()

                async for piece in blob_pieces(data):
                    await window.acquire()
                    if failure:
                        break
                    tg.start_soon(send, sent, piece)
                    sent += len(piece)
                    if progress is not None:
                        progress(sent)
            if failure:
                raise failure[0]
            result = await self._client.call(
                "blob.put_close", {"upload": upload}, timeout=PUT_CLOSE_TIMEOUT_SECONDS
            )
        except NotFoundError as exc:  # the upload is gone: its node restarted or we moved
            if exc.details.get("upload") is None:
                raise
            raise UnavailableError(
                f"the put was interrupted ({exc.message}); put the blob again",
                upload=upload,
            ) from exc
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self._client.call("blob.put_abort", {"upload": upload}, timeout=5)
            raise
        return BlobRef(result["hash"], result["size"], result.get("replicas"))

    async def get(
        self,
        digest: str,
        *,
        offset: int = 0,
        length: int | None = None,
        progress: Progress | None = None,
    ) -> AsyncIterator[bytes]:
        """Yield the blob's bytes (``[offset, offset + length)`` if given) in pieces, each
        verified by the node; raises ``not_found`` for an unknown hash. A whole blob is also
        checked against its hash here before the last piece is yielded."""
        digest = parse_hash(digest)
        info = await self.stat(digest)
        check_range(info["size"], offset, length)
        whole = offset == 0 and length is None
        hasher = blake3.blake3() if whole else None
        done = 0
        last: bytes | None = None
        async for piece in read_blob(self._client, digest, info["size"], offset, length):
            if hasher is not None:
                hasher.update(piece)
            if last is not None:
                yield last
            last = piece
            done += len(piece)
            if progress is not None:
                progress(done)
        if hasher is not None and hasher.hexdigest() != digest:
            raise InvalidArgumentError(f"the bytes received do not hash to {digest}")
        if last is not None:
            yield last

    async def get_bytes(self, digest: str, *, offset: int = 0, length: int | None = None) -> bytes:
        """The blob's bytes in one ``bytes`` (for small blobs)."""
        return b"".join([p async for p in self.get(digest, offset=offset, length=length)])

    async def stat(self, digest: str) -> dict[str, Any]:
        """``{"hash", "size", "holders", "pins", "replicas", "created"}``; ``not_found``
        for an unknown hash."""
        return await self._client.call("blob.stat", {"hash": digest})

    async def pin(self, name: str, digest: str) -> None:
        """Keep the blob under the pin ``name`` (moving the pin if it kept another)."""
        await self._client.call("blob.pin", {"name": name, "hash": digest})

    async def unpin(self, name: str) -> str:
        """Drop the pin ``name``; return the hash it kept."""
        return str((await self._client.call("blob.unpin", {"name": name}))["hash"])

    async def list(self, *, after: str = "", limit: int | None = None) -> Rows:
        """The blobs in hash order after ``after``: ``{"hash", "size", "holders", "pins",
        ...}`` each; every one (page by page, ``BLOB_LIST_LIMIT`` a page) or at most
        ``limit``."""
        return await self._pages("blob.list", {}, "blobs", "hash", after, limit)

    async def pins(self, prefix: str = "", *, after: str = "", limit: int | None = None) -> Rows:
        """The pins whose name starts with ``prefix``, in name order after ``after``:
        ``{"name", "hash", "size"}`` each; every one (page by page) or at most ``limit``."""
        return await self._pages("blob.pins", {"prefix": prefix}, "pins", "name", after, limit)

    async def _pages(
        self,
        method: str,
        params: dict[str, Any],
        items: str,
        cursor: str,
        after: str,
        limit: int | None,
    ) -> Rows:
        """Call ``method`` page after page (each continuing after the ``cursor`` field of
        the last item) until it says no more follow or ``limit`` items were read."""
        out: Rows = []
        while limit is None or len(out) < limit:
            want = BLOB_LIST_LIMIT if limit is None else min(BLOB_LIST_LIMIT, limit - len(out))
            page = await self._client.call(
                method, {**params, "after": after or None, "limit": want}
            )
            out.extend(page[items])
            if not page.get("more") or not page[items]:
                break
            after = str(page[items][-1][cursor])
        return out

    async def status(self) -> dict[str, Any]:
        """``{"blobs", "bytes", "under_replicated", "repairing", "replicas"}``."""
        return await self._client.call("blob.status")

    async def set_replicas(self, replicas: int) -> None:
        """Set the cluster's default replica count."""
        await self._client.call("blob.configure", {"replicas": replicas})
