"""Waiting on a condition with a deadline (in sync and async tests), and picking free ports."""

from __future__ import annotations

import inspect
import socket
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

__all__ = ["async_wait_for", "free_base_port", "free_port", "wait_for"]

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,
    interval: float = 0.02,
    *,
    message: str = "",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy; return it.

    Exceptions of the types in ``ignore`` count as "not yet". After ``timeout`` seconds
    an :class:`AssertionError` says what was awaited (``message``, else the predicate).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except ignore as exc:
            last_error = exc
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            _timed_out(predicate, timeout, message, last_error)
        time.sleep(interval)


async def async_wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.01,
    *,
    message: str = "",
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """:func:`wait_for` for async tests: poll without blocking the event loop.

    ``predicate`` may be a plain function or return an awaitable (``lambda: c.kv.get(k)``
    on an async client), which is awaited. Returns the first truthy result; after
    ``timeout`` seconds an :class:`AssertionError` says what was awaited.
    """
    import anyio

    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
        except ignore as exc:
            last_error = exc
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            _timed_out(predicate, timeout, message, last_error)
        await anyio.sleep(interval)


def _timed_out(
    predicate: Callable[[], object],
    timeout: float,
    message: str,
    last_error: BaseException | None,
) -> NoReturn:
    what = message or getattr(predicate, "__qualname__", repr(predicate))
    raise AssertionError(f"condition not met within {timeout:g}s: {what}") from last_error


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago (for child processes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


#: Ports the test helpers pick from: below Linux's ephemeral range (32768-60999), so an
#: outgoing connection cannot take a picked port before the child process binds it.
NODE_PORTS_LOW, NODE_PORTS_HIGH = 20000, 32000


def free_node_port(*, low: int = NODE_PORTS_LOW, high: int = NODE_PORTS_HIGH) -> int:
    """A client port for one ``aspen node start`` without ``--peer-listen``: it and the
    port after it (the default peer port) bind now, and both lie below the ephemeral
    range. (:func:`free_port` checks one ephemeral port only: the node's peer port, or the
    port itself, may be taken by the time the node binds, and it exits with code 4.)"""
    import random

    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(low, high)
        if _port_free(port) and _port_free(port + 1):
            return port
    raise RuntimeError(f"no two free ports in a row between {low} and {high}")


def free_base_port(nodes: int, *, low: int = 20000, high: int = 40000) -> int:
    """A base port (below the ephemeral range) for a :class:`~aspen.node.devcluster.DevCluster`
    of ``nodes``: every client port (base + i) and peer port (base + 100 + i) binds now."""
    import random

    from aspen.transport.ports import PEER_PORT_OFFSET

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high, 10)
        ports = [base + i for i in range(1, nodes + 1)]
        ports += [base + PEER_PORT_OFFSET + i for i in range(1, nodes + 1)]
        if all(_port_free(port) for port in ports):
            return base
    raise RuntimeError(f"no free range of ports for {nodes} nodes between {low} and {high}")
