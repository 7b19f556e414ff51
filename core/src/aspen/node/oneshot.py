"""A set-once flag one task waits on, cheap enough for one per request.

Every proposal and read waits for the Raft driver on its own flag. ``anyio.Event`` costs
about 6-9 µs per use on uvloop (its backend lookup and asyncio's pure-Python ``Event``); on
asyncio :class:`OneShot` waits on a bare loop future instead (about 0.5 µs). Off asyncio
(trio) it falls back to ``anyio.Event``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio

__all__ = ["OneShot"]


class OneShot:
    """``set()`` once; ``wait()`` returns once it is set. ``is_set()``, ``set()`` and
    ``wait()`` as ``anyio.Event`` offers them, for ONE waiting task at a time (a cancelled
    wait may be retried): a second concurrent waiter is a bug, not supported."""

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        #: The pending wait: a loop future on asyncio, an ``anyio.Event`` elsewhere.
        self._waiter: Any = None

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        return self._flag

    def set(self) -> None:
        """Set the flag and wake the waiting task (call it on the event loop's thread)."""
        if self._flag:
            return
        self._flag = True
        waiter, self._waiter = self._waiter, None
        if waiter is None:
            return
        if isinstance(waiter, asyncio.Future):
            if not waiter.done():  # a cancelled wait left its future cancelled
                waiter.set_result(None)
        else:
            waiter.set()

    async def wait(self) -> None:
        """Return once the flag is set (at once if it already is)."""
        if self._flag:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on asyncio (trio)
            event = self._waiter = anyio.Event()
            await event.wait()
            return
        future = self._waiter = loop.create_future()
        await future
