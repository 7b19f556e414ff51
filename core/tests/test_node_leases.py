"""The lease lifecycle in one place (``aspen.node.leases.LeaseService``) on a real LMDB state
machine: commands are applied as the node would after Raft commits them, and the clock is a
number the test moves, so no test waits for a TTL to pass."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from kvstore import Store

from aspen.errors import AspenError, NotFoundError, NotLeaderError
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
        self.service = LeaseService(
            store.storage,
            store.sm,
            propose=self.propose,
            require_leader=self.require_leader,
            clock=self.clock,
        )

    async def propose(self, command: dict[str, Any]) -> Any:
        result, _ = self.store.apply(command)
        if isinstance(result, AspenError):
            raise result
        return result

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
    assert leases.service.time_to_live(granted["id"], False)["ttl"] == 6
    assert leases.service.keepalive(granted["id"]) == 10
    assert leases.service.remaining(granted["id"]) == 10
    assert leases.service.ids() == [granted["id"]]


@pytest.mark.anyio
async def test_a_new_leader_gives_every_stored_lease_a_full_ttl(leases):
    a = (await leases.service.grant({"ttl": 10, "id": 1}))["id"]
    b = (await leases.service.grant({"ttl": 30, "id": 2}))["id"]
    leases.clock.now += 8
    leases.service.leadership_changed(False)
    assert len(leases.service) == 0 and leases.service.remaining(a) == -1
    leases.service.leadership_changed(True)
    assert (leases.service.remaining(a), leases.service.remaining(b)) == (10, 30)


@pytest.mark.anyio
async def test_leader_ready_adds_leases_of_the_previous_leader_and_keeps_known_deadlines(leases):
    known = (await leases.service.grant({"ttl": 10, "id": 1}))["id"]
    leases.clock.now += 4
    # granted under another leader: in the store, not yet tracked here
    leases.store.ok({"op": "lease_grant", "id": 2, "ttl": 20})
    leases.service.leader_ready()
    assert leases.service.remaining(known) == 6
    assert leases.service.remaining(2) == 20


@pytest.mark.anyio
async def test_keepalive_and_ttl_are_answered_by_the_leader_only(leases):
    lease = (await leases.service.grant({"ttl": 10}))["id"]
    leases.leading = False
    with pytest.raises(NotLeaderError):
        leases.service.keepalive(lease)
    with pytest.raises(NotLeaderError):
        leases.service.time_to_live(lease, False)
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
        await async_wait_for(lambda: leases.service.ids() == [long], message="expiry proposed")
        tg.cancel_scope.cancel()
    assert leases.service.remaining(short) == -1
    assert leases.store.sm.lease_info(None, short) is None
    assert leases.service.expired() == []


@pytest.mark.anyio
async def test_revoke_forgets_the_deadline(leases):
    lease = (await leases.service.grant({"ttl": 10}))["id"]
    await leases.service.revoke({"id": lease})
    assert leases.service.remaining(lease) == -1 and leases.service.ids() == []
