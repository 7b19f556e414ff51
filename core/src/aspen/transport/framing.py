"""Length-prefixed msgpack frames (docs/protocol.md).

A frame is a 4-byte big-endian unsigned length, then that many bytes of one msgpack map
with string keys (packed with ``use_bin_type=True``, unpacked with ``raw=False`` so bytes
stay bytes and str stays str). :class:`FrameDecoder` parses every complete frame in what
it is fed, copying only a partial trailing frame.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack

from aspen.errors import InvalidArgumentError
from aspen.limits import MAX_FRAME_BYTES

__all__ = [
    "HEADER_BYTES",
    "FrameDecoder",
    "FrameError",
    "encode_frame",
    "pack",
    "running_on_asyncio",
]

#: Size of the length prefix.
HEADER_BYTES = 4

_packb = msgpack.Packer(use_bin_type=True).pack
_unpackb = msgpack.unpackb
_header = struct.Struct(">I")
_pack_header = _header.pack
_unpack_header = _header.unpack_from
#: Frames smaller than this are decoded from a copy (cheaper than a memoryview slice).
_COPY_BELOW = 16 * 1024


class FrameError(InvalidArgumentError):
    """A frame is oversized, not msgpack, or not a map with string keys."""


def pack(obj: Any) -> bytes:
    """Return the msgpack encoding of ``obj`` (no length prefix)."""
    return _packb(obj)


def encode_frame(obj: Any, *, max_frame: int = MAX_FRAME_BYTES) -> bytes:
    """Return ``obj`` as one frame: 4-byte big-endian length + msgpack body.

    Raises :class:`FrameError` if the body would exceed ``max_frame`` bytes (the peer
    would refuse it and close the connection).
    """
    try:
        body = _packb(obj)
    except (TypeError, ValueError, OverflowError) as exc:
        raise FrameError(f"cannot encode message as msgpack: {exc}") from exc
    n = len(body)
    if n > max_frame:
        raise FrameError(
            f"message of {n} bytes exceeds MAX_FRAME_BYTES ({max_frame})",
            size=n,
            limit=max_frame,
        )
    return _pack_header(n) + body


class FrameDecoder:
    """Incremental frame parser: :meth:`feed` bytes in, get every complete message out."""

    __slots__ = ("_buf", "max_frame", "sizes")

    def __init__(self, max_frame: int = MAX_FRAME_BYTES, *, record_sizes: bool = False) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        #: With ``record_sizes``: the body size of every frame returned, in order (the caller
        #: clears it).
        self.sizes: list[int] | None = [] if record_sizes else None

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[dict[str, Any]]:
        """Parse every complete frame in the buffered bytes plus ``data``.

        Raises :class:`FrameError` on an oversized length prefix (before buffering the
        body), on a body that is not msgpack, or on a message that is not a map with string
        keys. After an error the decoder is unusable: close the connection.
        """
        buf = self._buf
        if buf:
            buf += data
            src: Any = buf
        else:
            src = data
        total = len(src)
        out: list[dict[str, Any]] = []
        pos = 0
        max_frame = self.max_frame
        sizes = self.sizes
        while total - pos >= HEADER_BYTES:
            (length,) = _unpack_header(src, pos)
            if length > max_frame:
                raise FrameError(
                    f"frame of {length} bytes exceeds MAX_FRAME_BYTES ({max_frame})",
                    size=length,
                    limit=max_frame,
                )
            start = pos + HEADER_BYTES
            end = start + length
            if end > total:
                break
            if length < _COPY_BELOW:
                out.append(_decode(src[start:end]))
            else:
                with memoryview(src) as view:
                    out.append(_decode(view[start:end]))
            if sizes is not None:
                sizes.append(length)
            pos = end
        if src is buf:
            if pos:
                del buf[:pos]
        elif pos < total:
            buf += src[pos:]
        return out


def _decode(body: Any) -> dict[str, Any]:
    """Unpack one frame body, checking it is a map with string keys."""
    try:
        obj = _unpackb(body, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise FrameError(f"frame is not valid msgpack: {_msgpack_reason(exc)}") from exc
    if type(obj) is not dict:
        raise FrameError(f"frame is not a msgpack map but {type(obj).__name__}")
    for key in obj:
        if type(key) is not str:
            raise FrameError(f"frame has a non-string key {key!r}")
    return obj


def _msgpack_reason(exc: Exception) -> str:
    """Why msgpack refused a body (some of its errors have no message)."""
    if isinstance(exc, msgpack.OutOfData):
        return "the body ends in the middle of a value (truncated)"
    return str(exc) or f"{type(exc).__name__} (malformed body)"


def running_on_asyncio() -> bool:
    """Whether the running event loop is asyncio's (or uvloop's): picks the fast I/O driver."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
