"""LeaseService's deadlines: a lease check costs what expires, not what is granted (issue 18)."""

from __future__ import annotations

import pytest
from kvstore import Store

from aspen import limits
from aspen.node.leases import LeaseService

LEASES = 20_000


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _never(command: dict) -> None:  # the service's proposer; unused here
    raise AssertionError("not proposed in these tests")


def _leading() -> None:  # this node leads in these tests
    return None


@pytest.fixture
def new_keeper(tmp_path):
    """Makes lease services (over one real, empty store) with a hand-moved clock."""
    store = Store(tmp_path / "db")

    def make(clock: Clock, leases: int = LEASES) -> LeaseService:
        keeper = LeaseService(
            store.storage, store.sm, propose=_never, require_leader=_leading, clock=clock
        )
        keeper.track(((i, 60 + i % 600) for i in range(1, leases + 1)), replace=True)
        return keeper

    yield make
    store.storage.close()


def test_a_check_with_nothing_due_examines_nothing(new_keeper) -> None:
    clock = Clock()
    keeper = new_keeper(clock)
    for _ in range(100):
        assert keeper.expired() == []
    assert keeper.examined == 0


def test_a_check_examines_only_the_expired_leases(new_keeper) -> None:
    clock = Clock()
    keeper = new_keeper(clock)
    clock.now += 60.5  # ttl 60: leases 600, 1200, … (i % 600 == 0) ran out
    due = keeper.expired()
    assert due == sorted(due) and set(due) == {i for i in range(1, LEASES + 1) if i % 600 == 0}
    assert keeper.examined == len(due)
    for lease_id in due:
        keeper.forget(lease_id)
    before = keeper.examined
    assert keeper.expired() == []
    assert keeper.examined - before == len(due)  # the revoked leases' entries, dropped once


def test_due_leases_stay_due_until_revoked(new_keeper) -> None:
    clock = Clock()
    keeper = new_keeper(clock, leases=10)
    clock.now += 61
    first = keeper.expired()
    assert first and keeper.expired() == first  # proposing their expiry may have failed


def test_one_check_returns_at_most_one_command_of_leases_oldest_first(new_keeper) -> None:
    clock = Clock()
    keeper = new_keeper(clock, leases=0)
    n = limits.MAX_LEASES_EXPIRED_PER_COMMAND + 500
    for i in range(n, 0, -1):  # granted newest deadline first
        clock.now += 0.001
        keeper.track([(i, 10)], replace=False)
    clock.now += 100
    due = keeper.expired()
    assert due == list(range(n, n - limits.MAX_LEASES_EXPIRED_PER_COMMAND, -1))
    assert keeper.examined == limits.MAX_LEASES_EXPIRED_PER_COMMAND


def test_keepalives_push_the_deadline_and_keep_the_heap_bounded(new_keeper) -> None:
    clock = Clock()
    keeper = new_keeper(clock, leases=1000)
    for _ in range(20):
        clock.now += 30
        for i in range(1, 1001):
            keeper.keepalive(i)
        assert keeper.expired() == []
    assert len(keeper._heap) <= 2 * len(keeper) + 64
    clock.now += 61
    assert set(keeper.expired()) == {i for i in range(1, 1001) if 60 + i % 600 <= 61}
