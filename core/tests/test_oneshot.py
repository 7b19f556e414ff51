"""``aspen.node.oneshot.OneShot``: the per-request flag proposals and reads wait on.

It must behave as ``anyio.Event`` does for its one waiting task on asyncio and on trio:
set before or after the wait, a wait cancelled by a cancel scope and retried (a ReadIndex
read does that), and a ``set()`` after a cancelled wait.
"""

from __future__ import annotations

import importlib.util

import anyio
import pytest

from aspen.node.oneshot import OneShot

BACKENDS = ["asyncio"] + (["trio"] if importlib.util.find_spec("trio") else [])


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """asyncio (what nodes run on) and trio (the fallback) when it is installed."""
    return request.param


@pytest.mark.anyio
async def test_set_before_wait_returns_at_once() -> None:
    flag = OneShot()
    assert not flag.is_set()
    flag.set()
    flag.set()  # twice is harmless
    assert flag.is_set()
    with anyio.fail_after(5):
        await flag.wait()


@pytest.mark.anyio
async def test_wait_returns_once_another_task_sets_it() -> None:
    flag = OneShot()
    woke: list[bool] = []

    async def waiter() -> None:
        await flag.wait()
        woke.append(flag.is_set())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert woke == []
            flag.set()
    assert woke == [True]


@pytest.mark.anyio
async def test_cancelled_wait_can_be_retried_and_set_after_it_is_harmless() -> None:
    flag = OneShot()
    with anyio.move_on_after(0.01) as scope:
        await flag.wait()
    assert scope.cancelled_caught and not flag.is_set()
    flag.set()  # the cancelled wait's future is not set again
    with anyio.fail_after(5):
        await flag.wait()


@pytest.mark.anyio
async def test_retried_wait_is_woken() -> None:
    flag = OneShot()
    with anyio.move_on_after(0.01):
        await flag.wait()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(flag.wait)
            await anyio.wait_all_tasks_blocked()
            flag.set()
    assert flag.is_set()
