"""A fault-injecting TCP proxy for tests of real processes over real sockets.

Put a :class:`FaultProxy` in front of a server (one per link to cut), point the client at
``proxy.address``, and from the test call :meth:`~FaultProxy.partition`,
:meth:`~FaultProxy.heal`, :meth:`~FaultProxy.delay` or :meth:`~FaultProxy.drop_rate`.
The proxy runs its own asyncio loop in a daemon thread; every control returns once it has
taken effect. It listens on loopback (127.0.0.0/8) only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

__all__ = ["FaultProxy", "PartitionMode", "ProxyStats"]

#: How a partition treats connections: ``reset`` closes them (RST), ``blackhole`` stalls them.
PartitionMode = Literal["reset", "blackhole"]

_CHUNK = 65536
_QUEUE_CHUNKS = 64  # chunks in flight per direction before the proxy stops reading
_CONTROL_TIMEOUT = 10.0  # seconds a control call waits for the proxy thread
_CONNECT_TIMEOUT = 5.0  # seconds to reach the target

_T = TypeVar("_T")


@dataclass(frozen=True)
class ProxyStats:
    """Counters of a :class:`FaultProxy` (bytes count what was delivered)."""

    accepted: int  # connections accepted from clients
    active: int  # connections open now
    refused: int  # connections reset on arrival because of a partition
    resets: int  # connections reset by ``drop_rate``
    upstream_failures: int  # connections whose target could not be reached
    bytes_up: int  # client -> target
    bytes_down: int  # target -> client
    partitioned: PartitionMode | None
    delay: float
    drop_rate: float


def _parse_address(address: tuple[str, int] | str) -> tuple[str, int]:
    """``("host", port)`` from a tuple or ``"host:port"``."""
    if isinstance(address, str):
        host, _, port = address.rpartition(":")
        return host, int(port)
    return address[0], int(address[1])


def _abort(writer: asyncio.StreamWriter | None) -> None:
    """Close a connection at once with a TCP reset, dropping anything unsent."""
    if writer is None or writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Conn:
    """One proxied connection: the client side, the target side, and its handler task."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.target: asyncio.StreamWriter | None = None
        self.task = asyncio.current_task()
        self.dead = False

    def reset(self) -> None:
        """Reset both sides and stop forwarding."""
        self.dead = True
        _abort(self.client)
        _abort(self.target)
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    def close(self) -> None:
        """Close both sides politely (after both directions ended)."""
        for writer in (self.client, self.target):
            if writer is not None:
                writer.close()


class FaultProxy:
    """Forwards TCP connections from ``listen`` to ``target``, with faults on command."""

    def __init__(
        self,
        target: tuple[str, int] | str,
        listen: tuple[str, int] | str = ("127.0.0.1", 0),
    ) -> None:
        host, port = _parse_address(listen)
        try:
            loopback = ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"FaultProxy listens on 127.0.0.0/8 only, not {host!r}")
        self._target = _parse_address(target)
        self._listen = (host, port)
        self._mode: PartitionMode | None = None
        self._delay = 0.0
        self._drop = 0.0
        self._rng = random.Random(0)
        self._counts = dict.fromkeys(
            ("accepted", "refused", "resets", "upstream_failures", "bytes_up", "bytes_down"), 0
        )
        self._conns: set[_Conn] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"FaultProxy->{target}", daemon=True)
        self._thread.start()
        if not self._ready.wait(_CONTROL_TIMEOUT):
            raise TimeoutError("FaultProxy did not start")
        if self._error is not None:
            raise self._error

    # --- controls (any thread) --------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` to connect to instead of the target."""
        return f"{self._listen[0]}:{self._listen[1]}"

    @property
    def host(self) -> str:
        """The listening host."""
        return self._listen[0]

    @property
    def port(self) -> int:
        """The listening port."""
        return self._listen[1]

    def partition(self, mode: PartitionMode = "reset") -> None:
        """Cut the link: ``reset`` existing and new connections, or ``blackhole`` them."""
        if mode not in ("reset", "blackhole"):
            raise ValueError(f"unknown partition mode {mode!r}")
        self._call(self._set_partition(mode))

    def heal(self) -> None:
        """End a partition; stalled (blackholed) connections resume."""
        self._call(self._set_partition(None))

    def delay(self, seconds: float) -> None:
        """Hold every chunk read from now on ``seconds`` before forwarding it (order kept)."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self._call(self._set(_delay=float(seconds)))

    def drop_rate(self, p: float, seed: int | None = None) -> None:
        """Reset a connection with probability ``p`` per chunk forwarded (seeded)."""
        if not 0.0 <= p <= 1.0:
            raise ValueError("drop rate must be within [0, 1]")
        self._call(self._set(_drop=float(p), _rng=random.Random(seed)))

    def stats(self) -> ProxyStats:
        """A snapshot of the counters and settings."""
        return ProxyStats(
            active=len(self._conns),
            partitioned=self._mode,
            delay=self._delay,
            drop_rate=self._drop,
            **self._counts,
        )

    def close(self) -> None:
        """Stop listening, reset every connection, and stop the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None and self._loop.is_running():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(_CONTROL_TIMEOUT)

    def __enter__(self) -> FaultProxy:
        """Use as a context manager that closes the proxy."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the proxy."""
        self.close()

    def __repr__(self) -> str:
        """Where it listens and forwards to."""
        return f"FaultProxy({self.address} -> {self._target[0]}:{self._target[1]})"

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the proxy's loop and wait for it."""
        if self._closed or self._loop is None:
            coro.close()
            raise RuntimeError("FaultProxy is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_CONTROL_TIMEOUT)

    # --- the proxy thread -------------------------------------------------------------------

    def _run(self) -> None:
        """Thread body: serve until closed."""
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to the constructor if it failed early
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        """Listen, signal readiness, and on close tear everything down."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._flowing = asyncio.Event()
        self._flowing.set()
        server = await asyncio.start_server(self._handle, *self._listen)
        self._listen = server.sockets[0].getsockname()[:2]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for conn in list(self._conns):
                conn.reset()
            await asyncio.sleep(0)

    async def _set(self, **settings: Any) -> None:
        """Change settings on the loop, so that they apply between two chunks."""
        for name, value in settings.items():
            setattr(self, name, value)

    async def _set_partition(self, mode: PartitionMode | None) -> None:
        """Apply a partition mode (None heals)."""
        self._mode = mode
        if mode == "blackhole":
            self._flowing.clear()
            return
        self._flowing.set()
        if mode == "reset":
            for conn in list(self._conns):
                conn.reset()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection."""
        self._counts["accepted"] += 1
        if self._mode == "reset":
            self._counts["refused"] += 1
            _abort(writer)
            return
        conn = _Conn(writer)
        self._conns.add(conn)
        try:
            await self._flowing.wait()  # a blackholed connection waits for the heal
            try:
                opening = asyncio.open_connection(*self._target)
                up_reader, conn.target = await asyncio.wait_for(opening, _CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                self._counts["upstream_failures"] += 1
                conn.reset()
                return
            links = ((reader, conn.target, "bytes_up"), (up_reader, writer, "bytes_down"))
            async with asyncio.TaskGroup() as tasks:
                for source, sink, count in links:
                    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(_QUEUE_CHUNKS)
                    tasks.create_task(self._receive(source, queue, conn))
                    tasks.create_task(self._deliver(queue, sink, count))  # type: ignore[arg-type]
        except* (ConnectionError, OSError):
            conn.reset()
        finally:
            self._conns.discard(conn)
            conn.close()

    async def _receive(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[Any], conn: _Conn
    ) -> None:
        """Read one direction's chunks and queue them with their due time; None at the end."""
        loop = asyncio.get_running_loop()
        while True:
            await self._flowing.wait()
            data = await reader.read(_CHUNK)
            if not data:
                break
            if self._drop and self._rng.random() < self._drop:
                self._counts["resets"] += 1
                conn.reset()
                return
            await queue.put((loop.time() + self._delay, data))
        await queue.put(None)

    async def _deliver(
        self, queue: asyncio.Queue[Any], writer: asyncio.StreamWriter, count: str
    ) -> None:
        """Write queued chunks in order once due (and not blackholed); then pass on the EOF."""
        loop = asyncio.get_running_loop()
        while (item := await queue.get()) is not None:
            due, data = item
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()
            self._counts[count] += len(data)
        if writer.can_write_eof() and not writer.transport.is_closing():
            writer.write_eof()
