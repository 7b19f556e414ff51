"""One linearizable read shared by every request waiting for it (etcd's read batching).

Nearly every request's first read is the mount table, and it is the request's one
linearizable read (:mod:`aspen_secrets.consistency`): on several nodes it waits for a
ReadIndex round to the followers. Under load many requests want it at once.
:class:`SharedRead` runs at most one such read at a time: a request that arrives while
one is running waits for the *next* one, which starts when the running one ends and
answers everybody who joined it. A read that starts after a request began is a valid
linearizable read for that request (it observes every write completed before the read
started, so before the request did); the running read, which may have started before,
is never handed to a later request. So requests stay linearizable, and N concurrent
requests cost about one read round instead of N. A request that finds nobody to share
with (no run, nobody waiting: the usual case with one client) runs the read itself, in
its own task, rather than paying for a task of its own; whoever asks meanwhile waits
for the next run as before.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["SharedRead"]

T = TypeVar("T")


class SharedRead(Generic[T]):
    """Shares the result of ``read`` (a linearizable read) among the callers of
    :meth:`get` that wait for the same run of it; one run at a time."""

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._waiting: list[asyncio.Future[T]] = []
        self._busy = False  # a run is going on (in a caller's task or in its own)
        self._task: asyncio.Task[None] | None = None  # the run in its own task (kept alive)

    async def get(self) -> T:
        """The result of a run of ``read`` that starts after this call."""
        if not self._busy and not self._waiting:
            return await self._run_here()
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        if not self._busy:
            self._start()
        return await waiter

    async def _run_here(self) -> T:
        """Run the read in the caller's task; then start the next run for whoever asked
        meanwhile (also when the caller was cancelled or the read failed)."""
        self._busy = True
        try:
            return await self._read()
        finally:
            self._busy = False
            self._waiting = [w for w in self._waiting if not w.done()]
            if self._waiting:
                self._start()

    def _start(self) -> None:
        waiters, self._waiting = self._waiting, []
        self._busy = True
        # a fresh context: the run belongs to no request (nor to its read scope)
        self._task = asyncio.get_running_loop().create_task(
            self._run(waiters), context=contextvars.Context()
        )

    async def _run(self, waiters: list[asyncio.Future[T]]) -> None:
        try:
            result = await self._read()
        except asyncio.CancelledError:  # the node stops: so do the requests waiting
            self._busy = False
            for waiter in waiters + self._waiting:
                waiter.cancel()
            self._waiting = []
            raise
        except Exception as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(result)
        self._busy = False
        self._waiting = [w for w in self._waiting if not w.done()]  # (gave up: no read)
        if self._waiting:
            self._start()
