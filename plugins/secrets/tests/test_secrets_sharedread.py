"""Shared linearizable reads (:mod:`aspen_secrets.sharedread`): concurrent requests share
one run of the read, and none is answered by a run that started before it asked."""

from __future__ import annotations

import asyncio

import pytest

from aspen_secrets.sharedread import SharedRead


class Reads:
    """A read whose runs the test releases one by one; each answers its run number."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = asyncio.Event()

    async def __call__(self) -> int:
        self.runs += 1
        run = self.runs
        await self.release.wait()
        self.release.clear()
        return run


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.anyio
async def test_waiters_share_the_next_run_never_a_running_one() -> None:
    reads = Reads()
    shared = SharedRead(reads)
    first = asyncio.ensure_future(shared.get())
    await _settle()
    assert reads.runs == 1  # running, started after `first` asked
    later = [asyncio.ensure_future(shared.get()) for _ in range(10)]
    await _settle()
    assert reads.runs == 1  # they wait for the next run
    reads.release.set()
    assert await first == 1
    await _settle()
    assert reads.runs == 2  # one run for all ten, started after they asked
    reads.release.set()
    assert await asyncio.gather(*later) == [2] * 10


@pytest.mark.anyio
async def test_a_failed_run_fails_its_waiters_and_the_next_runs() -> None:
    calls = 0

    async def read() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise RuntimeError("no leader")
        return calls

    shared = SharedRead(read)
    with pytest.raises(RuntimeError, match="no leader"):
        await shared.get()
    assert await shared.get() == 2


@pytest.mark.anyio
async def test_a_cancelled_waiter_costs_no_run() -> None:
    reads = Reads()
    shared = SharedRead(reads)
    first = asyncio.ensure_future(shared.get())
    await _settle()
    gone = asyncio.ensure_future(shared.get())
    await _settle()
    gone.cancel()
    reads.release.set()
    assert await first == 1
    await _settle()
    assert reads.runs == 1  # nobody is left waiting for a second run


@pytest.mark.anyio
async def test_a_lone_caller_runs_the_read_in_its_own_task() -> None:
    tasks: list[asyncio.Task[object] | None] = []

    async def read() -> int:
        tasks.append(asyncio.current_task())
        return 7

    shared = SharedRead(read)
    assert await shared.get() == 7
    assert tasks == [asyncio.current_task()]  # no task of its own when nobody shares it


@pytest.mark.anyio
async def test_a_cancelled_lone_caller_still_starts_the_next_run_for_the_others() -> None:
    reads = Reads()
    shared = SharedRead(reads)
    first = asyncio.ensure_future(shared.get())
    await _settle()
    assert reads.runs == 1  # in `first`'s own task
    later = asyncio.ensure_future(shared.get())
    await _settle()
    first.cancel()
    await _settle()
    assert first.cancelled()
    assert reads.runs == 2  # the next run, for `later`, started after it asked
    reads.release.set()
    assert await later == 2
