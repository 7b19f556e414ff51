"""The lease lifecycle in one place (``aspen.node.leases.LeaseService``) on a real LMDB state
machine: commands are applied as the node would after Raft commits them, and the clock is a
number the test moves, so no test waits for a TTL to pass."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
from kvstore import Store

from aspen import limits
from aspen.errors import AspenError, NotFoundError, NotLeaderError
from aspen.events import KvDelete
from aspen.node.leases import LeaseService
from aspen.testing import async_wait_for


class Clock:
    """A monotonic clock the test advances."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Leases:
    """A lease service over a real store; ``leading`` stands for this node's Raft role."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.clock = Clock()
        self.leading = True
        #: keys each applied ``lease_expire`` command deleted
        self.expiry_deletes: list[int] = []
        self.service = LeaseService(
            store.storage,
            store.sm,
            propose=self.propose,
            require_leader=self.require_leader,
            clock=self.clock,
        )

    async def propose(self, command: dict[str, Any]) -> Any:
        result, events = self.store.apply(command)
        if isinstance(result, AspenError):
            raise result
        if command["op"] == "lease_expire":
            self.expiry_deletes.append(sum(isinstance(e, KvDelete) for e in events))
        return result

    async def loaded(self) -> None:
        """Run the service until a new leader's lease load is installed."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.service.run)
            await async_wait_for(lambda: not self.service.loading, message="leases loaded")
            tg.cancel_scope.cancel()

    def require_leader(self) -> None:
        if not self.leading:
            raise NotLeaderError("this node is not the leader")


@pytest.fixture
def leases(tmp_path):
    store = Store(tmp_path / "db")
    yield Leases(store)
    store.storage.close()


@pytest.mark.anyio
async def test_a_granted_lease_counts_down_and_keepalive_renews_it(leases):
    granted = await leases.service.grant({"ttl": 10})
    assert leases.service.remaining(granted["id"]) == 10
    leases.clock.now += 4
    assert (await leases.service.time_to_live(granted["id"], False))["ttl"] == 6
    assert leases.service.keepalive(granted["id"]) == 10
    assert leases.service.remaining(granted["id"]) == 10
    assert await leases.service.ids() == [granted["id"]]


@pytest.mark.anyio
async def test_a_new_leader_gives_every_stored_lease_a_full_ttl(leases):
    a = (await leases.service.grant({"ttl": 10, "id": 1}))["id"]
    b = (await leases.service.grant({"ttl": 30, "id": 2}))["id"]
    leases.clock.now += 8
    leases.service.leadership_changed(False)
    assert len(leases.service) == 0 and leases.service.remaining(a) == -1
    leases.service.leadership_changed(True)
    leases.service.leader_ready()
    await leases.loaded()
    assert len(leases.service) == 2
    assert (leases.service.remaining(a), leases.service.remaining(b)) == (10, 30)


@pytest.mark.anyio
async def test_a_new_leaders_lease_load_runs_in_a_worker_thread(leases, monkeypatch):
    for i in range(1, 501):
        leases.store.ok({"op": "lease_grant", "id": i, "ttl": 10 + i})
    loop_thread, load_threads = threading.get_ident(), []
    read_stored = leases.service._read_stored

    def recorded() -> Any:
        load_threads.append(threading.get_ident())
        return read_stored()

    monkeypatch.setattr(leases.service, "_read_stored", recorded)
    leases.service.leadership_changed(True)
    leases.service.leader_ready()
    assert len(leases.service) == 0 and leases.service.loading  # nothing read on the loop
    await leases.loaded()
    assert len(load_threads) == 1 and load_threads[0] != loop_thread
    assert len(leases.service) == 500 and leases.service.remaining(500) == 510


@pytest.mark.anyio
async def test_leases_granted_renewed_or_revoked_while_loading_keep_that(leases):
    for i in (1, 2, 3):
        leases.store.ok({"op": "lease_grant", "id": i, "ttl": 20})
    leases.service.leadership_changed(True)
    fresh = (await leases.service.grant({"ttl": 10, "id": 9}))["id"]  # ours, during the load
    leases.clock.now += 4
    assert leases.service.keepalive(1) == 20  # stored, not loaded yet: tracked on demand
    await leases.service.revoke({"id": 2})
    leases.clock.now += 1
    leases.service.leader_ready()
    await leases.loaded()
    assert leases.service.remaining(fresh) == 5  # its own deadline, not a fresh one
    assert leases.service.remaining(1) == 19
    assert leases.service.remaining(2) == -1  # the load did not bring it back
    assert leases.service.remaining(3) == 20
    assert len(leases.service) == 3


@pytest.mark.anyio
async def test_a_load_outlived_by_its_leadership_is_dropped(leases, monkeypatch):
    leases.store.ok({"op": "lease_grant", "id": 1, "ttl": 20})
    reading, release, finished = threading.Event(), threading.Event(), []
    read_stored, load_leases = leases.service._read_stored, leases.service._load_leases

    def held() -> Any:  # in the worker thread: wait until the test lets it go on
        reading.set()
        release.wait(30)
        return read_stored()

    async def load(generation: int) -> None:
        await load_leases(generation)
        finished.append(generation)

    monkeypatch.setattr(leases.service, "_read_stored", held)
    monkeypatch.setattr(leases.service, "_load_leases", load)
    leases.service.leadership_changed(True)
    leases.service.leader_ready()
    async with anyio.create_task_group() as tg:
        tg.start_soon(leases.service.run)
        await async_wait_for(reading.is_set, message="the load started")
        leases.service.leadership_changed(False)  # while it reads
        release.set()
        await async_wait_for(lambda: finished, message="the load finished")
        tg.cancel_scope.cancel()
    assert len(leases.service) == 0 and not leases.service.loading


@pytest.mark.anyio
async def test_keepalive_and_ttl_are_answered_by_the_leader_only(leases):
    lease = (await leases.service.grant({"ttl": 10}))["id"]
    leases.leading = False
    with pytest.raises(NotLeaderError):
        leases.service.keepalive(lease)
    with pytest.raises(NotLeaderError):
        await leases.service.time_to_live(lease, False)
    leases.leading = True
    with pytest.raises(NotFoundError, match="lease 12345 not found"):
        leases.service.keepalive(12345)


@pytest.mark.anyio
async def test_leases_that_ran_out_are_expired_through_a_proposal(leases):
    short = (await leases.service.grant({"ttl": 5, "id": 1}))["id"]
    long = (await leases.service.grant({"ttl": 60, "id": 2}))["id"]
    leases.store.put("k", "v", lease=short)
    leases.clock.now += 6
    assert leases.service.expired() == [short]
    async with anyio.create_task_group() as tg:
        tg.start_soon(leases.service.run)
        await async_wait_for(lambda: len(leases.service) == 1, message="expiry proposed")
        tg.cancel_scope.cancel()
    assert await leases.service.ids() == [long]
    assert leases.service.remaining(short) == -1
    assert leases.store.sm.lease_info(None, short) is None
    assert leases.service.expired() == []


@pytest.mark.anyio
async def test_many_leases_run_out_in_commands_bounded_by_keys(leases, monkeypatch):
    monkeypatch.setattr(limits, "LEASE_EXPIRY_SLICE_KEYS", 7)
    for i in range(1, 31):  # 30 leases x 3 keys, and one lease of 20 keys
        await leases.service.grant({"ttl": 5, "id": i})
        for k in range(3):
            leases.store.put(f"l/{i}/{k}", "v", lease=i)
    await leases.service.grant({"ttl": 5, "id": 99})
    for k in range(20):
        leases.store.put(f"big/{k}", "v", lease=99)
    leases.clock.now += 6
    async with anyio.create_task_group() as tg:
        tg.start_soon(leases.service.run)
        await async_wait_for(lambda: len(leases.service) == 0, message="every lease expired")
        tg.cancel_scope.cancel()
    assert leases.store.kvs() == [] and await leases.service.ids() == []
    assert sum(leases.expiry_deletes) == 110
    assert max(leases.expiry_deletes) <= 7


@pytest.mark.anyio
async def test_revoke_forgets_the_deadline(leases):
    lease = (await leases.service.grant({"ttl": 10}))["id"]
    await leases.service.revoke({"id": lease})
    assert leases.service.remaining(lease) == -1 and await leases.service.ids() == []
