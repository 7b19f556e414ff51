"""The Python API: :class:`Coord` over a sync client (``aspen.connect``) and
:class:`AsyncCoord` over any ``async call(method, params)`` — an ``aspen.aconnect`` client,
or a plugin's ``node.call`` (so aspen-jobs stands on the same methods inside a node)::

    with aspen.connect(endpoint, token=token) as client:
        coord = Coord(client)
        with coord.lock("orders", ttl=10, timeout=5) as lock:
            coord_write = lock.write([{"put": {"key": b"/app/x", "value": b"1"}}])
        coord.counter_add("hits", 5)

A held lock's lease is renewed in the background (every third of its TTL) until it is
released; errors come back as the typed ones of :mod:`aspen_coord.errors`.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio

from aspen.errors import AspenError
from aspen_coord.errors import BusyError, typed

__all__ = [
    "DEFAULT_WAIT_SECONDS",
    "AsyncCoord",
    "AsyncLock",
    "Coord",
    "Lock",
    "Observation",
    "wait_timeout",
]

#: Renew a held lease after this fraction of its TTL.
RENEW_FRACTION = 1 / 3
#: How long an acquire or campaign waits unless told (0: try once).
DEFAULT_WAIT_SECONDS = 30.0
#: A waiting call (acquire, campaign, barrier) gets its wait plus this many seconds to answer.
WAIT_MARGIN_SECONDS = 10.0


def wait_timeout(params: dict[str, Any]) -> float | None:
    """The client-side timeout of a call that may wait ``params["timeout"]`` seconds."""
    wait = params.get("timeout")
    return float(wait) + WAIT_MARGIN_SECONDS if isinstance(wait, int | float) and wait else None


class Coord:
    """The coordination primitives over a sync client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """Call ``coord.<method>``; coord errors come back typed."""
        try:
            return self.client.call(f"coord.{method}", params, timeout=wait_timeout(params))
        except AspenError as exc:
            raise typed(exc) from None

    def stream(self, method: str, params: dict[str, Any]) -> Iterator[Any]:
        """Iterate over the streaming method ``coord.<method>``."""
        return self.client.stream(f"coord.{method}", params)  # type: ignore[no-any-return]

    def lock(self, name: str, *, ttl: int = 10, timeout: float = DEFAULT_WAIT_SECONDS) -> Lock:
        """A lock handle; ``with coord.lock(…) as lock:`` acquires (waiting up to
        ``timeout`` s) and releases it."""
        return Lock(self, "lock", name, ttl=ttl, timeout=timeout)

    def semaphore(
        self, name: str, permits: int, *, ttl: int = 10, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> Lock:
        """A handle on one of semaphore ``name``'s ``permits``."""
        return Lock(self, "semaphore", name, ttl=ttl, timeout=timeout, permits=permits)

    def rwlock(
        self, name: str, mode: str, *, ttl: int = 10, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> Lock:
        """A handle on read-write lock ``name`` in ``mode`` ``read`` or ``write``."""
        return Lock(self, "rwlock", name, ttl=ttl, timeout=timeout, mode=mode)

    def counter_add(self, name: str, by: int = 1) -> int:
        """Add ``by`` to counter ``name``; the new value."""
        return int(self.call("counter.add", {"name": name, "by": by})["value"])

    def counter_get(self, name: str) -> int:
        """Counter ``name``'s value."""
        return int(self.call("counter.get", {"name": name})["value"])

    def counter_cas(self, name: str, expected: int, new: int) -> bool:
        """Set counter ``name`` to ``new`` if it is ``expected``; whether it did."""
        params = {"name": name, "expected": expected, "new": new}
        return bool(self.call("counter.cas", params)["succeeded"])

    def sequence_next(self, name: str) -> int:
        """The next number of sequence ``name``."""
        return int(self.call("sequence.next", {"name": name})["value"])

    def sequence_reserve(self, name: str, count: int) -> range:
        """``count`` consecutive numbers of sequence ``name``."""
        got = self.call("sequence.reserve", {"name": name, "count": count})
        return range(got["first"], got["last"] + 1)

    def barrier_wait(self, name: str, count: int, *, timeout: float = 60.0) -> None:
        """Wait until ``count`` participants arrived at barrier ``name``."""
        self.call("barrier.wait", {"name": name, "count": count, "timeout": timeout})

    def ratelimit_take(self, name: str, rate: float, burst: int, n: int = 1) -> dict[str, Any]:
        """Take ``n`` tokens: ``{allowed, tokens, retry_after}``."""
        params = {"name": name, "rate": rate, "burst": burst, "n": n}
        return self.call("ratelimit.take", params)  # type: ignore[no-any-return]

    def campaign(
        self, name: str, value: bytes, *, ttl: int = 10, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> Lock:
        """Campaign in election ``name`` with ``value``; the held leadership (a
        :class:`Lock` whose ``release`` resigns)."""
        leadership = Lock(self, "election", name, ttl=ttl, timeout=timeout, value=value)
        leadership.acquire()
        return leadership

    def observe(self, name: str) -> Observation:
        """Observe election ``name``: iterate for ``{leader, revision}`` items, the leader
        now and then every change of leader or value, in order, none skipped. It returns
        once the node has reported the leader now, so every leadership that begins after
        the call is seen; ``close()`` stops it. An error ends the iteration (observe again:
        the changes in between are not replayed)."""
        stream: Any = self.stream("election.observe", {"name": name})
        try:
            first = next(stream)
        except BaseException:
            stream.close()
            raise
        return Observation(first, stream)


class Observation:
    """An election being observed: its first item (the leader when it began) was already
    received; iterate for it and every change after; ``close()`` cancels the stream."""

    def __init__(self, first: Any, stream: Any) -> None:
        self._first: list[Any] = [first]
        self._stream = stream

    def __iter__(self) -> Observation:
        """Return self."""
        return self

    def __next__(self) -> Any:
        """The next item (the first one first)."""
        if self._first:
            return self._first.pop()
        return next(self._stream)

    def close(self) -> None:
        """Stop observing (cancels the stream on the node)."""
        self._stream.close()

    def __enter__(self) -> Observation:
        """Return self."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop observing."""
        self.close()


class Lock:
    """A held (or to-be-held) lock, permit, rwlock side or leadership, renewed in the
    background while held. ``fence`` is its fencing token once acquired."""

    def __init__(
        self, coord: Coord, kind: str, name: str, *, ttl: int, timeout: float, **extra: Any
    ) -> None:
        self.coord, self.kind, self.name = coord, kind, name
        self.ttl, self.timeout, self.extra = ttl, timeout, extra
        self.fence = 0
        self.lease = 0
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self, timeout: float | None = None) -> int:
        """Acquire (wait up to ``timeout`` s); the fencing token. ``BusyError`` if not."""
        verb = "campaign" if self.kind == "election" else "acquire"
        params = {"name": self.name, "ttl": self.ttl, **self.extra}
        params["timeout"] = self.timeout if timeout is None else timeout
        got = self.coord.call(f"{self.kind}.{verb}", params)
        self.fence, self.lease = int(got["fence"]), int(got["lease"])
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, daemon=True)
        self._renewer.start()
        return self.fence

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl * RENEW_FRACTION):
            try:
                self.renew()
            except AspenError:
                return  # lost (or unreachable): the fence protects what it guards

    def try_acquire(self) -> bool:
        """Acquire only if it is free now; whether it did."""
        try:
            self.acquire(timeout=0)
        except BusyError:
            return False
        return True

    def renew(self) -> int:
        """Keep the lease alive now; its TTL."""
        return int(self.coord.call(f"{self.kind}.renew", self._held())["ttl"])

    def write(self, ops: list[dict[str, Any]]) -> int:
        """Apply ``ops`` only while this lock is held at its fence (locks only); the
        revision. ``FencedError`` when it is not any more."""
        params = {**self._held(), "fence": self.fence, "ops": ops}
        return int(self.coord.call("lock.write", params)["revision"])

    def release(self) -> None:
        """Release it and revoke its lease."""
        self._stop.set()
        verb = "resign" if self.kind == "election" else "release"
        if self.lease:
            self.coord.call(f"{self.kind}.{verb}", {**self._held(), "revoke": True})
        self.lease = 0

    def _held(self) -> dict[str, Any]:
        return {"name": self.name, "lease": self.lease}

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class AsyncCoord:
    """The coordination primitives over ``call``: an async client's ``call`` or a plugin's
    ``node.call`` (and ``stream`` for the streaming methods)."""

    def __init__(
        self,
        call: Callable[[str, dict[str, Any]], Awaitable[Any]],
        stream: Callable[[str, dict[str, Any]], Any] | None = None,
    ) -> None:
        self._call = call
        self._stream = stream

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """Call ``coord.<method>``; coord errors come back typed."""
        try:
            return await self._call(f"coord.{method}", params)
        except AspenError as exc:
            raise typed(exc) from None

    def lock(self, name: str, *, ttl: int = 10, timeout: float = DEFAULT_WAIT_SECONDS) -> AsyncLock:
        """``async with coord.lock(…) as lock:`` acquires and releases lock ``name``."""
        return AsyncLock(self, name, ttl=ttl, timeout=timeout)

    async def counter_add(self, name: str, by: int = 1) -> int:
        """Add ``by`` to counter ``name``; the new value."""
        return int((await self.call("counter.add", {"name": name, "by": by}))["value"])

    async def sequence_next(self, name: str) -> int:
        """The next number of sequence ``name``."""
        return int((await self.call("sequence.next", {"name": name}))["value"])


class AsyncLock:
    """A lock held from an async context; its lease is renewed by a task while held."""

    def __init__(self, coord: AsyncCoord, name: str, *, ttl: int, timeout: float) -> None:
        self.coord, self.name, self.ttl, self.timeout = coord, name, ttl, timeout
        self.fence = 0
        self.lease = 0
        self._group: Any = None

    async def __aenter__(self) -> AsyncLock:
        params = {"name": self.name, "ttl": self.ttl, "timeout": self.timeout}
        got = await self.coord.call("lock.acquire", params)
        self.fence, self.lease = int(got["fence"]), int(got["lease"])
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._renew_loop)
        return self

    async def _renew_loop(self) -> None:
        while True:
            await anyio.sleep(self.ttl * RENEW_FRACTION)
            try:
                await self.coord.call("lock.renew", {"name": self.name, "lease": self.lease})
            except AspenError:
                return

    async def write(self, ops: list[dict[str, Any]]) -> int:
        """Apply ``ops`` only while held at this fence; ``FencedError`` otherwise."""
        params = {"name": self.name, "lease": self.lease, "fence": self.fence, "ops": ops}
        return int((await self.coord.call("lock.write", params))["revision"])

    async def __aexit__(self, *exc_info: object) -> None:
        self._group.cancel_scope.cancel()
        await self._group.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            params = {"name": self.name, "lease": self.lease, "revoke": True}
            await self.coord.call("lock.release", params)
