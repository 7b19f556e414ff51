"""The anyio adapter of framed connections, for backends other than asyncio (trio).

:class:`StreamAdapter` is the one anyio driver loop pair under the RPC server's and the
client's portable drivers: a reader that receives big chunks (and waits while reading is
paused) and a writer that sends everything queued since its last wake-up in one ``send``.
:class:`FramedStream` sends frames and receives them either one at a time (hellos, joins,
peer streams) or in batches, parsing every complete frame of each big receive.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute, TLSStream

from aspen.errors import AspenError
from aspen.limits import MAX_FRAME_BYTES, PEER_READ_CHUNK_BYTES, PEER_TCP_USER_TIMEOUT_SECONDS
from aspen.transport.framing import FrameDecoder, encode_frame

__all__ = [
    "LINK_ERRORS",
    "FramedStream",
    "StreamAdapter",
    "describe_error",
    "error_frame",
    "open_tls",
    "tune_peer_socket",
    "wrap_tls",
]

#: What a broken, refused or misbehaving connection raises (handled as "link lost").
LINK_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes ssl.SSLError
    TimeoutError,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.BusyResourceError,
    AspenError,  # includes FrameError and errors sent by the other side
)


def tune_peer_socket(sock: Any) -> None:
    """No Nagle delay, and a bound on how long sent data may go unacknowledged
    (``PEER_TCP_USER_TIMEOUT_SECONDS``, where the OS has ``TCP_USER_TIMEOUT``)."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            millis = int(PEER_TCP_USER_TIMEOUT_SECONDS * 1000)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, millis)


def describe_error(exc: BaseException) -> str:
    """A short, log-friendly reason for a lost or refused connection."""
    if isinstance(exc, anyio.EndOfStream):
        return "connection closed by the other side"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, AspenError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, anyio.BrokenResourceError) and exc.__cause__ is not None:
        return describe_error(exc.__cause__)
    return str(exc) or type(exc).__name__


async def wrap_tls(
    stream: anyio.abc.ByteStream, ctx: ssl.SSLContext, *, server_side: bool
) -> TLSStream:
    """Run the TLS handshake on ``stream`` (no closing handshake: links just close)."""
    return await TLSStream.wrap(
        stream, server_side=server_side, ssl_context=ctx, standard_compatible=False
    )


async def open_tls(
    host: str, port: int, ctx: ssl.SSLContext, *, connect_timeout: float, handshake_timeout: float
) -> TLSStream:
    """Connect to ``host:port`` and run the TLS handshake; closes the socket on failure."""
    with anyio.fail_after(connect_timeout):
        sock = await anyio.connect_tcp(host, port)
    tune_peer_socket(sock.extra(anyio.abc.SocketAttribute.raw_socket, None))
    try:
        with anyio.fail_after(handshake_timeout):
            return await wrap_tls(sock, ctx, server_side=False)
    except BaseException:
        await anyio.aclose_forcefully(sock)
        raise


class StreamAdapter:
    """A reader and a writer loop over one anyio byte stream (run both in a task group)."""

    __slots__ = ("_gate", "_out", "_wake", "read_chunk", "sending", "stream")

    def __init__(self, stream: anyio.abc.ByteStream, read_chunk: int) -> None:
        self.stream = stream
        self.read_chunk = read_chunk
        #: Bytes of the ``send`` in progress.
        self.sending = 0
        self._out: list[bytes] = []
        self._wake = anyio.Event()
        self._gate: anyio.Event | None = None

    def queue(self, data: bytes) -> None:
        """Send ``data`` with everything else queued before the writer wakes up."""
        self._out.append(data)
        self._wake.set()

    def take_queued(self) -> bytes:
        """Remove and return what :meth:`queue` holds, as one buffer."""
        out = self._out
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def wake(self) -> None:
        """Have the writer look for bytes to send."""
        self._wake.set()

    def pause_reading(self) -> None:
        """Make the reader wait (back-pressure) until :meth:`resume_reading`."""
        if self._gate is None:
            self._gate = anyio.Event()

    def resume_reading(self) -> None:
        """Let the reader go on."""
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    async def read_loop(self, received: Callable[[bytes], None]) -> None:
        """Hand every received chunk to ``received``; raise how the stream ended."""
        receive, chunk = self.stream.receive, self.read_chunk
        while True:
            gate = self._gate
            if gate is not None:
                await gate.wait()
                continue
            received(await receive(chunk))

    async def write_loop(self, take: Callable[[], bytes | None], sent: Callable[[], None]) -> None:
        """On each wake-up send what ``take()`` returns in one ``send`` and call ``sent()``;
        return when ``take()`` returns None (raise if the stream breaks)."""
        send = self.stream.send
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            data = take()
            if data is None:
                return
            if data:
                self.sending = len(data)
                try:
                    await send(data)
                finally:
                    self.sending = 0
                sent()


class FramedStream:
    """Length-prefixed msgpack frames over a (TLS) byte stream."""

    __slots__ = ("_pending", "decoder", "max_frame", "stream")

    #: Frames are written by a task (see :class:`aspen.transport.aio.FrameProtocol`).
    direct = False

    def __init__(self, stream: anyio.abc.ByteStream, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.stream = stream
        self.max_frame = max_frame
        self.decoder = FrameDecoder(max_frame)
        self._pending: deque[dict[str, Any]] = deque()

    @property
    def ssl_object(self) -> ssl.SSLObject:
        """The TLS session of the stream."""
        return self.stream.extra(TLSAttribute.ssl_object)

    async def send(self, frame: dict[str, Any]) -> None:
        """Encode and send one frame."""
        await self.stream.send(encode_frame(frame, max_frame=self.max_frame))

    async def send_bytes(self, data: bytes) -> None:
        """Send already encoded frames."""
        await self.stream.send(data)

    async def recv(self) -> dict[str, Any]:
        """Receive the next frame (``anyio.EndOfStream`` when the other side closed;
        :class:`~aspen.transport.framing.FrameError` on garbage)."""
        pending = self._pending
        while not pending:
            pending.extend(self.decoder.feed(await self.stream.receive(PEER_READ_CHUNK_BYTES)))
        return pending.popleft()

    async def recv_batch(self) -> list[dict[str, Any]]:
        """Return every frame buffered, or else every frame of the next receive(s)."""
        if self._pending:
            batch = list(self._pending)
            self._pending.clear()
            return batch
        feed, receive = self.decoder.feed, self.stream.receive
        while True:
            frames = feed(await receive(PEER_READ_CHUNK_BYTES))
            if frames:
                return frames

    async def deliver(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Hand every frame to ``callback`` until the connection ends; raise why it ended."""
        while True:
            for frame in await self.recv_batch():
                callback(frame)

    async def aclose(self) -> None:
        """Close the stream at once."""
        await anyio.aclose_forcefully(self.stream)


def error_frame(exc: AspenError) -> dict[str, Any]:
    """The connection-level error frame for ``exc``."""
    return {"type": "error", "error": exc.to_wire()}
