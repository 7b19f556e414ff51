"""LeaseKeeper: a lease check costs what expires, not what is granted (issue 18)."""

from __future__ import annotations

from aspen import limits
from aspen.node.leases import LeaseKeeper

LEASES = 20_000


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _never(command: dict) -> None:  # the keeper's proposer; unused here
    raise AssertionError("not proposed in these tests")


def _keeper(clock: Clock, leases: int = LEASES) -> LeaseKeeper:
    keeper = LeaseKeeper(_never, clock=clock)
    keeper.load((i, 60 + i % 600) for i in range(1, leases + 1))
    return keeper


def test_a_check_with_nothing_due_examines_nothing() -> None:
    clock = Clock()
    keeper = _keeper(clock)
    for _ in range(100):
        assert keeper.expired() == []
    assert keeper.examined == 0


def test_a_check_examines_only_the_expired_leases() -> None:
    clock = Clock()
    keeper = _keeper(clock)
    clock.now += 60.5  # ttl 60: leases 600, 1200, … (i % 600 == 0) ran out
    due = keeper.expired()
    assert due == sorted(due) and set(due) == {i for i in range(1, LEASES + 1) if i % 600 == 0}
    assert keeper.examined == len(due)
    for lease_id in due:
        keeper.revoked(lease_id)
    before = keeper.examined
    assert keeper.expired() == []
    assert keeper.examined - before == len(due)  # the revoked leases' entries, dropped once


def test_due_leases_stay_due_until_revoked() -> None:
    clock = Clock()
    keeper = _keeper(clock, leases=10)
    clock.now += 61
    first = keeper.expired()
    assert first and keeper.expired() == first  # proposing their expiry may have failed


def test_one_check_returns_at_most_one_command_of_leases_oldest_first() -> None:
    clock = Clock()
    keeper = LeaseKeeper(_never, clock=clock)
    n = limits.MAX_LEASES_EXPIRED_PER_COMMAND + 500
    for i in range(n, 0, -1):  # granted newest deadline first
        clock.now += 0.001
        keeper.granted(i, 10)
    clock.now += 100
    due = keeper.expired()
    assert due == list(range(n, n - limits.MAX_LEASES_EXPIRED_PER_COMMAND, -1))
    assert keeper.examined == limits.MAX_LEASES_EXPIRED_PER_COMMAND


def test_keepalives_push_the_deadline_and_keep_the_heap_bounded() -> None:
    clock = Clock()
    keeper = _keeper(clock, leases=1000)
    for _ in range(20):
        clock.now += 30
        for i in range(1, 1001):
            keeper.keepalive(i)
        assert keeper.expired() == []
    assert len(keeper._heap) <= 2 * len(keeper) + 64
    clock.now += 61
    assert set(keeper.expired()) == {i for i in range(1, 1001) if 60 + i % 600 <= 61}
