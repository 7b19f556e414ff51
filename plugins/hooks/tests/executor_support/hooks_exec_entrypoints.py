"""Python handler entry points used by test_hooks_executors.py (imported by name)."""

from __future__ import annotations

import threading
from typing import Any

import anyio

#: Set by a test to let a stuck sync handler (``blocked_sync``) return.
RELEASE = threading.Event()
#: Not callable: an entry point naming it is refused.
NOT_CALLABLE = 42


def echo_sync(event: dict[str, Any]) -> dict[str, Any]:
    """Return what it got (and scribble on it: the caller's event must not change)."""
    got = dict(event)
    event["scribbled"] = True
    return {"got": got, "thread": threading.current_thread() is not threading.main_thread()}


async def echo_async(event: dict[str, Any]) -> dict[str, Any]:
    """Return what it got, from the event loop."""
    await anyio.sleep(0)
    return {"got": dict(event), "async": True}


def boom(event: dict[str, Any]) -> None:
    """Fail."""
    raise ValueError(f"boom {event.get('revision')}")


def blocked_sync(event: dict[str, Any]) -> str:
    """Block its thread until the test sets RELEASE (at most 10 s)."""
    RELEASE.wait(10)
    return "released"


async def blocked_async(event: dict[str, Any]) -> str:
    """Sleep far past any test timeout."""
    await anyio.sleep(30)
    return "woke"


def not_json(event: dict[str, Any]) -> object:
    """Return something JSON cannot carry."""
    return {1, 2}


class Handlers:
    """An entry point may name an attribute path (``module:Handlers.double``)."""

    @staticmethod
    def double(event: dict[str, Any]) -> int:
        """Twice the event's revision."""
        return 2 * int(event["revision"])
