"""The event bus never lets a bad subscriber slow the node or other subscribers."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from aspen.events import KeyValue, KvPut
from aspen.node.bus import EventBus
from aspen.testing import async_wait_for


def _put(rev: int) -> KvPut:
    return KvPut(index=rev, term=1, revision=rev, kv=KeyValue(b"k", b"v", rev, rev, 1))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_blocking_raising_and_slow_subscribers_do_not_stall_others() -> None:
    release = threading.Event()
    seen: list[int] = []

    def blocks_forever(event):
        release.wait()

    async def sleeps_forever(event):
        await anyio.sleep_forever()

    def raises(event):
        raise RuntimeError("boom")

    async def records(event, node):
        seen.append(event.revision)

    bus = EventBus(
        {
            "aspen_on_kv_event": [
                ("blocker", blocks_forever),
                ("sleeper", sleeps_forever),
                ("raiser", raises),
                ("recorder", records),
            ]
        },
        node=None,
        mailbox_size=5,
        timeout=0.2,
    )
    async with anyio.create_task_group() as tg:
        await bus.run(tg)
        slowest_publish = 0.0
        for rev in range(1, 21):
            started = time.perf_counter()
            bus.publish([_put(rev)])
            slowest_publish = max(slowest_publish, time.perf_counter() - started)
            await anyio.sleep(0.005)  # let consumers run, as the apply loop does between batches
        # publishing is a non-blocking hand-off, whatever the subscribers do
        assert slowest_publish < 0.05
        await async_wait_for(lambda: len(seen) == 20)
        stats = {s["plugin"]: s for s in bus.stats()}
        await async_wait_for(lambda: stats["raiser"]["failed"] + stats["raiser"]["dropped"] == 20)
        stats = {s["plugin"]: s for s in bus.stats()}
        assert stats["raiser"]["last_error"] == "RuntimeError: boom"
        # the blocker holds one event, its mailbox holds 5, the rest were dropped and counted
        assert stats["blocker"]["dropped"] >= 20 - 5 - 1
        assert stats["blocker"]["busy_seconds"] > 0
        await async_wait_for(
            lambda: {s["plugin"]: s for s in bus.stats()}["sleeper"]["timed_out"] >= 1
        )
        release.set()
        bus.close()
        tg.cancel_scope.cancel()
    # the healthy subscriber got every event, in order, despite its neighbours
    assert seen == list(range(1, 21))


@pytest.mark.anyio
async def test_events_are_routed_by_family() -> None:
    from aspen.events import LeaderChanged

    kv_seen: list[str] = []
    raft_seen: list[str] = []

    async def on_kv(event):
        kv_seen.append(event.name)

    async def on_raft(event):
        raft_seen.append(event.name)

    bus = EventBus(
        {"aspen_on_kv_event": [("a", on_kv)], "aspen_on_raft_event": [("b", on_raft)]}, node=None
    )
    async with anyio.create_task_group() as tg:
        await bus.run(tg)
        bus.publish([_put(1), LeaderChanged(index=1, term=2, leader="n1", previous=None)])
        await async_wait_for(lambda: kv_seen and raft_seen)
        bus.close()
    assert kv_seen == ["kv.put"]
    assert raft_seen == ["raft.leader_changed"]
