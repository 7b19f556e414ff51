"""Waiting on a condition with a deadline (in sync and async tests), and picking free ports."""

from __future__ import annotations

import inspect
import socket
import time
from collections.abc import Callable, Sequence
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


#: Ports the test helpers pick from: below Linux's default ephemeral range (32768-60999), so
#: an outgoing connection cannot take a picked port before the child process binds it. The
#: range this machine really uses (:func:`ephemeral_low`) lowers ``NODE_PORTS_HIGH`` further.
NODE_PORTS_LOW, NODE_PORTS_HIGH = 20000, 32000
#: Where the kernel says its ephemeral range starts (read once by :func:`ephemeral_low`).
EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
#: The first ephemeral port when :data:`EPHEMERAL_RANGE_FILE` cannot be read (Linux's default).
EPHEMERAL_LOW_DEFAULT = 32768


def ephemeral_low() -> int:
    """The first port of this machine's ephemeral range (the one outgoing connections take)."""
    try:
        with open(EPHEMERAL_RANGE_FILE) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return EPHEMERAL_LOW_DEFAULT


def _free_ports_at(offsets: Sequence[int], low: int, high: int, step: int = 1) -> int:
    """A random base in ``[low, high)`` (a multiple of ``step`` from ``low``) such that every
    ``base + offset`` binds now and lies below the ephemeral range."""
    import random

    top = min(high, ephemeral_low() - max(offsets))
    if top <= low:
        raise RuntimeError(
            f"no ports between {low} and {high} lie below the ephemeral range (starting at "
            f"{ephemeral_low()}, {EPHEMERAL_RANGE_FILE}): pass a lower range"
        )
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, top, step)
        if all(_port_free(base + offset) for offset in offsets):
            return base
    raise RuntimeError(f"no free ports at offsets {list(offsets)} between {low} and {top}")


def free_node_port(*, low: int = NODE_PORTS_LOW, high: int = NODE_PORTS_HIGH) -> int:
    """A client port for one ``aspen node start`` without ``--peer-listen``: it and the
    port after it (the default peer port) bind now, and both lie below the ephemeral
    range. (:func:`free_port` checks one ephemeral port only: the node's peer port, or the
    port itself, may be taken by the time the node binds, and it exits with code 4.)"""
    return _free_ports_at((0, 1), low, high)


def free_base_port(nodes: int, *, low: int = NODE_PORTS_LOW, high: int = NODE_PORTS_HIGH) -> int:
    """A base port (below the ephemeral range) for a :class:`~aspen.node.devcluster.DevCluster`
    of ``nodes``: every client port (base + i) and peer port (base + 100 + i) binds now."""
    from aspen.transport.ports import PEER_PORT_OFFSET

    offsets = list(range(1, nodes + 1))
    offsets += [PEER_PORT_OFFSET + i for i in range(1, nodes + 1)]
    return _free_ports_at(offsets, low, high, step=10)
