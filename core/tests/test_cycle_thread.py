"""The Raft driver's worker thread: results, errors, order, and no abandoned cycle."""

from __future__ import annotations

import threading

import anyio
import pytest

from aspen.node.cycle_thread import CycleThread

pytestmark = pytest.mark.anyio


async def test_runs_off_the_event_loop_and_returns_the_result():
    worker = CycleThread("t")
    try:
        here = threading.get_ident()
        ran_in = await worker.run(threading.get_ident)
        assert ran_in != here
        assert await worker.run(threading.get_ident) == ran_in  # always the same thread
        assert await worker.run(lambda a, b: a + b, 2, 3) == 5
    finally:
        worker.close()


async def test_an_error_in_the_thread_is_raised_to_the_caller():
    worker = CycleThread("t")
    try:
        with pytest.raises(ZeroDivisionError):
            await worker.run(lambda: 1 / 0)
        assert await worker.run(lambda: "still serving") == "still serving"
    finally:
        worker.close()


async def test_a_cancelled_caller_still_waits_for_the_function_to_finish():
    worker = CycleThread("t")
    started, release = threading.Event(), threading.Event()
    finished: list[bool] = []

    def cycle() -> None:
        started.set()
        release.wait(10)
        finished.append(True)

    try:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    await worker.run(cycle)

                tg.start_soon(run)
                await anyio.to_thread.run_sync(started.wait, 10)
                scope.cancel()  # the caller is cancelled while the cycle runs ...
                release.set()
        assert finished == [True]  # ... and returned only once the cycle had finished
    finally:
        worker.close()
